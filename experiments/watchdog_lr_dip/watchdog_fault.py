"""The divergence watchdog on the default model: a clean run against runs hit by a
1000x LR on five batches, recovered by rollback under several LR-dip settings.

Each faulted run rolls back to the last checkpoint before the loss blew up, skips the
batches that led up to the event and multiplies the LR by ``lr_factor``, which returns
to x1 over ``lr_recovery_steps``. The table gives each run's final validation
perplexity against the clean run's. (This is the setting of
``tests/test_run_failures.py::test_watchdog_recovers_an_injected_1000x_lr_window_by_rollback``.)

    python experiments/watchdog_lr_dip/watchdog_fault.py            # 8 host devices, as the tests run
    python experiments/watchdog_lr_dip/watchdog_fault.py --guard reflex   # under another guard than the default
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8, help="host CPU devices (XLA flag)")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--first-batch", type=int, default=110)
    parser.add_argument("--guard", default=None,
                        help="optimizer.policy (default: the config's, the governor)")
    parser.add_argument("--dips", default="1.0:0,0.5:20,0.5:50,0.5:100",
                        help="lr_factor:lr_recovery_steps pairs, comma-separated")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from lbw_jax.train.configs.tiny import get_config
    from lbw_jax.train.run import train

    def run(out, dip=None):
        cfg = get_config()
        cfg.output_dir = out
        cfg.optimizer.policy = args.guard or cfg.optimizer.policy
        cfg.train.update(steps=args.steps, batch_size=8, eval_every=args.steps,
                         checkpoint_every=20, log_every=5)
        if dip is not None:
            cfg.fault.update(lr_factor=1000.0, first_batch=args.first_batch,
                             last_batch=args.first_batch + 5)
            cfg.train.watchdog.update(lr_factor=dip[0], lr_recovery_steps=dip[1])
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return train(cfg)

    with tempfile.TemporaryDirectory() as tmp:
        clean = run(os.path.join(tmp, "clean"))
        print(f"default model, guard {args.guard or 'default'}, {args.steps} steps, batch 8, {args.devices} host devices; "
              f"1000x LR on batches {args.first_batch}-{args.first_batch + 4}\n")
        print("| run | lr_factor | lr_recovery_steps | rollbacks | event | val ppl | vs clean |")
        print("|---|---|---|---|---|---|---|")
        print(f"| clean | | | 0 | | {clean['val_ppl']:.2f} | |")
        for i, pair in enumerate(args.dips.split(",")):
            factor, recovery = float(pair.split(":")[0]), int(pair.split(":")[1])
            s = run(os.path.join(tmp, f"fault{i}"), (factor, recovery))
            e = s["events"][0] if s.get("events") else {}
            event = (f"{e['reason']} at step {e['step']} (onset {e['onset']}), back to step "
                     f"{e['to_step']}, batches {e['skipped_batches'][0]}-{e['skipped_batches'][1] - 1} "
                     f"skipped" if e else "")
            print(f"| 1000x LR | {factor:g} | {recovery} | {s['rollbacks']} | {event} | "
                  f"{s['val_ppl']:.2f} | {100 * (s['val_ppl'] / clean['val_ppl'] - 1):+.1f}% |",
                  flush=True)


if __name__ == "__main__":
    main()
