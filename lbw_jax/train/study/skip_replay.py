"""Replays the governor's exact skip on recorded traces of (loss, gradient norm).

Which steps would the skip drop on a healthy run, and does it still drop the faults? This
answers both without retraining: it feeds each recorded step to the real ``Governor.decide``
(a gradient of the recorded norm, ``value=`` the recorded loss), so the statistics, the
widening and ``max_skips`` are the library's own code, not a copy.

- Healthy traces are plain AdamW's cells of a stress report (``results.json``) at the LRs at
  or below tuned AdamW's, clean, and the ``metrics.jsonl`` of any healthy ``lbw_jax.train.run`` (a
  guarded one's trace includes the steps its guard skipped, with their loss and gradient
  norm). A replayed skip there is a false alarm.
- Fault traces are the governor's own faulted cells (the random-token burst and the single
  ×``grad_factor`` gradient): the fault steps must stay skipped.

A replay is open-loop: after a replayed skip the recorded run went on with the step applied,
so the counts are what the skip would decide on that run, step by step.

    python -m lbw_jax.train.study.skip_replay docs/stress/*/results.json RUN/metrics.jsonl \
        --set grad_noise=0.01 --set grad_noise=0.1
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from lbw_jax.policies.governor import governor


def replay(loss, grad_norm, **knobs) -> dict:
    """The governor's skip decisions on one trace: a dict of per-step arrays
    ``skip``, ``loss_z``, ``grad_z`` (z-scores against the statistics before the step)."""
    policy = governor(use_trust=False, use_harm=False, use_overshoot=False, **knobs)

    def step(state, xs):
        loss_t, norm_t = xs
        decision, new = policy.decide(norm_t[None], state, step=None, value=loss_t, inner_state=None)
        return new, (decision.skip, new.loss_z, new.grad_z)

    xs = (jnp.asarray(loss, jnp.float32), jnp.asarray(grad_norm, jnp.float32))
    _, (skip, lz, gz) = jax.lax.scan(step, policy.init(None), xs)
    return {"skip": np.asarray(skip), "loss_z": np.asarray(lz), "grad_z": np.asarray(gz)}


def _runs(skip) -> int:
    """The longest run of consecutive skips."""
    best = run = 0
    for s in skip:
        run = run + 1 if s else 0
        best = max(best, run)
    return best


def traces(path: pathlib.Path) -> list[dict]:
    """The healthy and fault traces of one results.json or metrics.jsonl."""
    if path.suffix == ".jsonl":
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        train = [r for r in recs if r.get("kind") == "train"]
        skipped = int(max((r.get("skipped", 0) for r in train), default=0))
        return [{"source": str(path), "kind": "healthy",
                 "name": f"lbw_jax.train.run {path.parent.name} (recorded with {skipped} skips)",
                 "loss": [r["loss"] for r in train], "grad_norm": [r["grad_norm"] for r in train]}]
    results = json.loads(path.read_text())
    tuned = results["headline"]["_tuned"]["lr"]
    out = []
    for c in results["cells"]:
        healthy = c["arm"] == "adamw" and c["scenario"] == "none" and c["lr"] <= tuned
        fault = c["arm"] == "governor" and c["scenario"] in ("burst", "grad_x100")
        if healthy or fault:
            out.append({"source": str(path), "kind": "healthy" if healthy else c["scenario"],
                        "name": f"{path.parent.name}: {c['arm']} lr={c['lr']:g} seed={c['seed']} {c['scenario']}",
                        "loss": c["loss"], "grad_norm": c["grad_norm"],
                        "window": _window(results, c["scenario"])})
    return out


def _window(results, scenario) -> tuple[int, int] | None:
    stress = results["config"]["stress"]
    start = stress["inject_at"]
    if scenario == "burst":
        return start, start + stress["burst_len"]
    return (start, start + 1) if scenario == "grad_x100" else None


def summarize(trace: dict, **knobs) -> dict:
    """One row: skips (all, and in the fault window), the longest run, the largest z."""
    r = replay(trace["loss"], trace["grad_norm"], **knobs)
    calibrated = slice(governor(**knobs).warmup_steps, None)  # no skip while calibrating
    r = {k: v if k == "skip" else v[calibrated] for k, v in r.items()}
    row = {"name": trace["name"], "argmax_grad_z": int(np.nanargmax(r["grad_z"])) + calibrated.start, "kind": trace["kind"], "steps": len(trace["loss"]),
           "skips": int(r["skip"].sum()), "longest_run": _runs(r["skip"]),
           "max_grad_z": float(np.nanmax(r["grad_z"])), "max_loss_z": float(np.nanmax(r["loss_z"]))}
    window = trace.get("window")
    if window:
        a, b = window  # a cell's trace starts at step 0, so step s is index s
        row["fault_skipped"] = int(r["skip"][a:b].sum())
        row["fault_steps"] = b - a
    return row


def _parse_set(text: str) -> tuple[str, float]:
    key, _, value = text.partition("=")
    if not value:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KNOB=VALUE")
    return key, (int(value) if value.lstrip("-").isdigit() else float(value))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=pathlib.Path, help="results.json or metrics.jsonl files")
    p.add_argument("--set", action="append", type=_parse_set, default=[],
                   help="a knob setting to replay (KNOB=VALUE); each --set is one variant beside the defaults")
    p.add_argument("--json", type=pathlib.Path, help="also write every row here")
    args = p.parse_args(argv)
    all_traces = [t for path in args.paths for t in traces(path)]
    variants = [{}] + [dict([kv]) for kv in args.set]
    rows = []
    for knobs in variants:
        label = ", ".join(f"{k}={v}" for k, v in knobs.items()) or "defaults"
        got = [dict(summarize(t, **knobs), variant=label) for t in all_traces]
        rows += got
        print(f"\n## {label}")
        healthy = [g for g in got if g["kind"] == "healthy"]
        flagged = [g for g in healthy if g["skips"]]
        print(f"healthy traces: {len(healthy)}; with a skip: {len(flagged)}; skips "
              f"{sum(g['skips'] for g in healthy)} of {sum(g['steps'] for g in healthy)} steps; "
              f"longest run {max((g['longest_run'] for g in healthy), default=0)}; largest grad z "
              f"{max(g['max_grad_z'] for g in healthy):.2f}, loss z {max(g['max_loss_z'] for g in healthy):.2f}")
        for g in flagged:
            print(f"  {g['name']}: {g['skips']} skips, longest run {g['longest_run']}, "
                  f"max grad z {g['max_grad_z']:.2f} (step {g['argmax_grad_z']}), loss z {g['max_loss_z']:.2f}")
        for g in got:
            if g["kind"] != "healthy":
                print(f"  fault {g['name']}: {g['fault_skipped']}/{g['fault_steps']} fault steps skipped")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
