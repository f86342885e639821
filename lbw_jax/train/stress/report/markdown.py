"""The stress report's markdown, one function per section."""

from __future__ import annotations

import math

import numpy as np

from lbw_jax.train.stress.metrics import target as target_lib
from lbw_jax.train.stress.report import fault_table
from lbw_jax.train.values import format_pct


def markdown(result, tables, command, figures) -> str:
    """The whole report.md: ``tables`` as ``report.write`` gathers them."""
    lines = (_setup_md(result, tables, command) + _headline_md(result, tables)
             + _final_ppl_md(result, tables) + _multiplier_md(result, tables) + _controls_md(result)
             + _time_to_target_md(result, tables) + _estimates_md(result, tables)
             + _faults_md(result, tables) + _sequential_md(result) + _figures_md(figures))
    return "\n".join(lines) + "\n"


def _fmt(x, digits=2):
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _setup_md(result, tables, command) -> list[str]:
    s, opt = result.cfg.stress, result.cfg.optimizer
    shape = ("linear warmup over {w} steps, then cosine decay to 10% of the peak" if opt.schedule == "cosine"
             else "linear warmup over {w} steps, then constant").format(w=opt.warmup_steps)
    lines = [
        "# Stress suite report", "",
        f"Command: `{command}`", "",
        f"Model: {result.n_params:,} trainable parameters; {result.tokens_per_step:,} tokens a step; "
        f"{s.steps} steps per run; {s.seeds} seed(s) (data order). Every arm runs one schedule "
        f"({opt.schedule}: {shape}) peaking at the LR of its column, except those that bring their "
        f"own: Schedule-Free at the column's LR with its own warmup and no decay, and the LR-free "
        f"baselines at a multiplier of 1 on the schedule's shape. All take the same train step as "
        f"`lbw_jax.train.run`; AdamW b1={opt.b1}, b2={opt.b2}, weight decay {opt.weight_decay} (the "
        f"baselines that replace AdamW take the same).",
    ]
    if result.cfg.lora.enabled:
        lines.append(f"Every cell trains LoRA adapters only (rank {result.cfg.lora.rank}, alpha "
                     f"{result.cfg.lora.alpha}, on {', '.join(result.cfg.lora.targets)}) on "
                     f"`data.source={result.cfg.data.source}`; the base is frozen.")
    if result.pretrain.get("steps"):
        p = result.pretrain
        where = (f" on `{p['source']}` with its own tokenizer (a Hugging Face folder in the cache, "
                 f"{'reused' if p.get('cached') else 'made by this run'}; validation perplexity there)"
                 if p.get("source") else "")
        lines.append(f"Every run starts from one model pretrained for {p['steps']} steps at LR "
                     f"{p['lr']}{where} (validation perplexity {p['val_ppl']:.2f}).")
    env = tables["environment"]
    return lines + [f"Machine: {env['platform']} ({env['device']}), {env['cpu']}, jax {env['jax']}.", ""]


def _headline_md(result, tables) -> list[str]:
    s, head = result.cfg.stress, tables["headline"]
    tuned, stressed = head["_tuned"], head["_stressed"]
    lines = ["## Headline", "",
             f"Tuned AdamW: LR {tuned['lr']:g} (the best AdamW of the grid on this schedule), final "
             f"perplexity {tuned['ppl']:.2f}. Stressed LRs (above tuned, with AdamW more than "
             f"{s.stressed_above:.0%} worse than tuned): {', '.join(f'{lr:g}' for lr in stressed) or 'none'}.", "",
             "*LR sensitivity* (Wortsman et al. 2023): the mean over the LR grid of min(final "
             "log-perplexity, start log-perplexity) minus the best final log-perplexity of any arm; lower "
             "is better, 0 is the best run at every LR. *Worst gap*: the largest gap over the grid of the "
             "arm's mean final perplexity to tuned AdamW (— when a seed diverged). *vs replay* and *vs "
             "control*: at each stressed LR, the guard's mean final perplexity against AdamW replaying "
             "its multiplier trajectory and against AdamW at its mean effective LR (negative: the "
             "guard is better).", "",
             f"*Time to target*: the fewest steps (mean over seeds, every seed reaching it) in which "
             f"the arm, at its best LR for it, first evaluates within 1% of tuned AdamW's final perplexity "
             f"({tables['time_to_target']['target']:.2f}), and the wall time to it (see Time to target).", "",
             "*From tuned up*: the same sensitivity over the LRs from tuned AdamW's up, the ones a "
             "guard can act on (an LR-free arm counts with its one run).", "",
             "| arm | kind | LR sensitivity | from tuned up | worst gap to tuned AdamW | diverged cells | "
             "time to target (at its best LR) | vs replay | vs control |",
             "|---|---|---|---|---|---|---|---|---|"]
    ttt = tables["time_to_target"]
    for name in result.runs:
        h = head[name]
        best_lr, best_row = target_lib.fastest(ttt["arms"].get(name, {}))
        where = "" if best_lr is None else (" (no LR)" if name in result.lr_free else f" at {best_lr:g}")
        reach = target_lib.describe(best_row) + where
        sens, up = ("—" if h.get(k) is None else f"{h[k]:.3f}" for k in ("lr_sensitivity", "lr_sensitivity_up"))
        per_lr = lambda d: "—" if not d else ", ".join(f"{float(lr):g}: {format_pct(v)}" for lr, v in d.items())
        lines.append(f"| {result.labels[name]} | {h['kind']} | {sens} | {up} | {format_pct(h['worst_gap_pct'])} | "
                     f"{h['diverged']}/{h['cells']} | {reach} | {per_lr(h.get('vs_replay_pct'))} | "
                     f"{per_lr(h.get('vs_control_pct'))} |")
    return lines


def _final_ppl_md(result, tables) -> list[str]:
    s = result.cfg.stress
    lines = ["", "## Final validation perplexity", "",
             f"Mean ± std over seeds (the std only with several seeds). † marks runs that diverged "
             f"(non-finite, or more than {s.diverge_ratio}× the starting perplexity of "
             f"{result.start_ppl:.2f}), with their count; · marks an LR the arm did not run; ‡ marks an "
             f"LR-free arm, which has no LR to choose: its one run (peak multiplier 1 on the same "
             f"schedule shape) stands in every column.", ""]
    lrs = list(s.lrs)
    lines.append("| arm | " + " | ".join(f"LR {lr:g}" for lr in lrs) + " | tokens/s | wall (compile + run) |")
    lines.append("|---" * (len(lrs) + 3) + "|")
    for name, per in tables["grid"].items():
        row = [_ppl_cell(per[lr]) if lr in per else "·" for lr in lrs]
        t = tables["throughput"][name]
        lines.append(f"| {result.labels[name]} | " + " | ".join(row) +
                     f" | {t['tokens_per_s']:,.0f} | {t['compile_s']:.0f} s + {t['run_s']:.0f} s |")
    return lines


def _ppl_cell(g) -> str:
    """One arm at one LR: mean ± std, with its diverged and LR-free marks."""
    if not math.isfinite(g["mean"]):
        text = "non-finite"
    else:
        text = _fmt(g["mean"]) + (f" ± {_fmt(g['std'])}" if g["seeds"] > 1 else "")
    if g["diverged"]:
        text += f" †{g['diverged']}/{g['seeds']}"
    if g.get("flat"):
        text += " ‡"
    return text


def _multiplier_md(result, tables) -> list[str]:
    # Only the arms whose multiplier ever moved: a table of 1s says nothing.
    scaled = [n for n, per in tables["grid"].items() if any(abs(g["mean_multiplier"] - 1) > 1e-6 for g in per.values())]
    if not scaled:
        return []
    lrs = list(result.cfg.stress.lrs)
    lines = ["", "Mean step multiplier actually applied over the run (the guard's scale after any "
             "trust limit, 0 on a skipped step; reduce_on_plateau's scale; ZClip's clip factor; the "
             "update clip's smallest per-tensor factor; Mechanic's learnt scale of AdamW's "
             "accumulated updates, its summed s):", "",
             "| arm | " + " | ".join(f"LR {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for name in scaled:
        per = tables["grid"][name]
        lines.append(f"| {result.labels[name]} | " + " | ".join(
            f"{per[lr]['mean_multiplier']:.3f}" if lr in per else "·" for lr in lrs) + " |")
    return lines


def _controls_md(result) -> list[str]:
    if not any(kind in ("control", "replay") for kind in result.kinds.values()):
        return []
    return ["", "Controls: `effective_lr_<guard>` runs plain AdamW at LR × the guard's mean multiplier "
            "in the same cell (same LR and seed); `replay_<guard>` runs plain AdamW whose LR at each "
            "step is multiplied by the guard's multiplier at that step, averaged over the seeds at the "
            "same LR (open loop: every seed, and every faulted run, gets the same trajectory). "
            f"They ran at LRs {', '.join(f'{lr:g}' for lr in result.control_lrs)} "
            f"(stress.controls_at={result.cfg.stress.controls_at})."]


def _time_to_target_md(result, tables) -> list[str]:
    s, ttt = result.cfg.stress, tables["time_to_target"]
    lrs = list(s.lrs)
    lines = ["", "## Time to target", "",
             f"The first evaluation (every {s.eval_every} steps) at which validation perplexity is within "
             f"{ttt['within']:.0%} of tuned AdamW's final {ttt['tuned_ppl']:.2f} (target {ttt['target']:.2f}): "
             f"steps, mean over seeds, and the wall time to it (the step count × the arm's measured seconds "
             f"per cell-step in this suite, evaluations included). *k/n reached*: only k of n seeds "
             f"reached it; *never*: none did.", ""]
    tuned = ttt["tuned_steps"]
    listed = lambda entries: "; ".join(
        f"{result.labels[f['arm']]}" + ("" if f["lr"] is None else f" at LR {f['lr']:g}")
        + f" ({f['mean_steps']:.0f} steps)" for f in entries)
    if tuned is None:
        lines.append("Tuned AdamW itself does not reach the target in every seed.")
    else:
        text = f"Tuned AdamW (LR {ttt['tuned_lr']:g}) reaches it in {tuned:.0f} steps. " + (
            f"Faster by at least one evaluation ({ttt['resolution']} steps): {listed(ttt['faster'])}."
            if ttt["faster"] else "No arm at any LR reaches it at least one evaluation sooner.")
        if ttt["ties"]:
            text += (f" Sooner by less than one evaluation, so a tie (each seed is seen only at an "
                     f"evaluation): {listed(ttt['ties'])}.")
        lines.append(text)
    lines += ["", "| arm | " + " | ".join(f"LR {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for name in result.runs:
        per = {float(lr): row for lr, row in ttt["arms"].get(name, {}).items()}
        if name in result.lr_free:
            row = next(iter(per.values()), None)
            lines.append(f"| {result.labels[name]} | " + " | ".join([target_lib.describe(row) + " ‡"] * len(lrs)) + " |")
            continue
        lines.append(f"| {result.labels[name]} | " + " | ".join(
            target_lib.describe(per[lr]) if lr in per else "·" for lr in lrs) + " |")
    return lines


def _estimates_md(result, tables) -> list[str]:
    """The step-size estimates of the arms that keep one (Prodigy's and D-Adaptation's
    estim_lr, Mechanic's summed s): how fast they rise, on the clean cells."""
    series = {}
    for cell in tables["cells"]:
        if cell["scenario"] == "none" and "estimate" in cell:
            series.setdefault(cell["arm"], {}).setdefault(float(cell["lr"]), []).append(
                np.asarray([np.nan if v is None else v for v in cell["estimate"]], np.float64))
    if not series:
        return []
    lines = ["", "## Step-size estimates", "",
             "The arms that estimate their own step size, on their clean runs (mean over seeds): the estimate "
             "after the first step, at the run's quarter, half and end, and the first step at which it reaches "
             "half its final value (how long it takes to rise).", "",
             "| arm | LR | step 1 | step " + " | step ".join(str(k) for k in _marks(result.cfg.stress.steps))
             + " | steps to half the final value |", "|---|---|---|---|---|---|---|"]
    for name, per in series.items():
        for lr, curves in per.items():
            y = np.nanmean(np.stack(curves), axis=0)
            marks = [y[k - 1] for k in _marks(len(y))]
            half = next((i + 1 for i, v in enumerate(y) if np.isfinite(v) and v >= 0.5 * y[-1]), None)
            col = "—" if name in result.lr_free else f"{lr:g}"
            lines.append(f"| {result.labels[name]} | {col} | {y[0]:.3g} | " + " | ".join(f"{v:.3g}" for v in marks)
                         + f" | {half if half is not None else 'never'} |")
    return lines


def _marks(steps: int) -> list[int]:
    return [max(1, steps // 4), max(1, steps // 2), steps]


def _faults_md(result, tables) -> list[str]:
    if not tables["scenarios"]:
        return []
    s = result.cfg.stress
    return ["", "## Failure scenarios", "",
            f"Injected at step {s.inject_at} of runs at LR {s.scenario_lr} into the arms of "
            f"stress.fault_arms: {_scenario_settings(s)}.", "",
            f"*Survived*: finite and at most {s.diverge_ratio}× the perplexity before the fault. "
            f"*Cost*: final perplexity minus that of the same arm's clean run (same LR and seed). "
            f"*Recovered*: from then on within {s.recover_tolerance:.0%} of the clean run, "
            f"counted in steps from the fault (evaluations every {s.eval_every} steps). "
            f"*Clean spread*: the seed std of the arm's clean run at LR {s.scenario_lr:g}. "
            f"*Against the best*: the cost minus the lowest cost of the scenario; a difference "
            f"inside the clean spread (the larger of the two arms') is a tie, not a win or a loss.", "",
            *fault_table.HEADER, *tables["fault_rows"]]


def _scenario_settings(s) -> str:
    """Each scenario that ran, with its own settings only."""
    settings = {"burst": f"{s.burst_len} batches of random tokens",
                "lr_spike": f"the LR ×{s.lr_spike:g} for {s.lr_spike_len} steps",
                "grad_x100": f"one gradient ×{s.grad_factor:g}",
                "nan_grad": "one NaN gradient"}
    return "; ".join(f"**{name}**: {settings[name]}" for name in s.scenarios)


def _sequential_md(result) -> list[str]:
    if not result.sequential:
        return []
    s, q = result.cfg.stress, result.sequential
    ratio = q["grid_one_by_one_s"] / q["grid_batched_s"]
    verdict = (f"{ratio:.2f}× faster batched" if ratio >= 1 else f"{1 / ratio:.2f}× slower batched")
    return ["", "## Batched versus one by one", "",
            f"The first {q['cells']} cells of `{q['arm']}` were also run one at a time "
            f"(a one-cell program): {q['run_s_per_cell']:.2f} s a cell, against "
            f"{q['batched_run_s_per_cell']:.2f} s a cell inside its program of "
            f"{s.max_cells or 'all'} cell(s) (compile {q['compile_s']:.1f} s for the one-cell program).",
            f"Final perplexities alone: {', '.join(f'{x:.3f}' for x in q['ppl_alone'])}; "
            f"as run in the suite: {', '.join(f'{x:.3f}' for x in q['ppl_batched'])}.", "",
            f"Whole grid ({q['grid_cells']} cells): as run {q['grid_batched_s'] / 60:.1f} min "
            f"(measured, compiles included); one by one ≈ {q['grid_one_by_one_s'] / 60:.1f} min "
            f"(the measured one-cell time × {q['grid_cells']} cells + one compile per arm; "
            f"extrapolated, not run): {verdict}."]


def _figures_md(figures) -> list[str]:
    return ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
