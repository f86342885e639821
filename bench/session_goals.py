"""The GPU goals of docs/gpu.md, read from a ``bench/gpu_session.sh`` output folder.

    python bench/session_goals.py gpu_out      # prints a markdown section; the session appends it

Each goal is computed from the parts' tables (``gpu_step.py`` and ``torch_reference.py``
rows) or says which part it lacks; nothing here measures anything itself.
"""

from __future__ import annotations

import pathlib
import re
import sys


def table(folder: pathlib.Path, part: str) -> dict[str, dict[str, str]] | None:
    """A part's last markdown table as {first cell: {column: cell}}, or None if it has none."""
    path = folder / f"{part}.txt"
    if not path.exists():
        return None
    header, rows = None, {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("guard", "arm"):
            header, rows = cells, {}
        elif header and not set(cells[0]) <= set("-"):
            rows[cells[0]] = dict(zip(header, cells))
    return rows or None


def _number(cell: str) -> float | None:
    match = re.match(r"[\d,.]+", cell or "")
    return float(match.group(0).replace(",", "")) if match else None


def _ratio_column(row: dict) -> str:
    return next(k for k in row if k.startswith("vs "))


def goals(folder: pathlib.Path) -> list[tuple[str, str]]:
    step, b16, xla, old = (table(folder, p) for p in ("step_b8", "step_b16", "step_b8_xla", "old_path"))
    torch, lora = table(folder, "torch_eager"), table(folder, "lora7b")
    out = []

    mfus = [(_number(row["MFU"]), name) for t, name in ((step, "batch 8"), (b16, "batch 16"))
            if t for row in t.values() if _number(row["MFU"]) is not None]
    if mfus:
        best, where = max(mfus)
        out.append(("0.5B ≥ 50% MFU at some batch", f"{'met' if best >= 50 else 'missed'}: "
                                                     f"{best:.1f}% ({where})"))
    else:
        out.append(("0.5B ≥ 50% MFU at some batch",
                    "no MFU: the device's peak is unknown" if step else "not measured (no step_b8)"))

    if step and torch and "reflex" in step and "adamw + reflex" in torch:
        ratio = _number(step["reflex"]["tokens/s"]) / _number(torch["adamw + reflex"]["tokens/s"])
        out.append(("≥ 2.2× the PyTorch eager loop with the reference law",
                    f"{'met' if ratio >= 2.2 else 'missed'}: {ratio:.2f}× (tokens/s, reflex)"))
    else:
        out.append(("≥ 2.2× the PyTorch eager loop with the reference law", "not measured"))

    if step and "none" in step:
        ratios = {p: _number(r[_ratio_column(r)]) for p, r in step.items() if p != "none"}
        worst = max(ratios.values()) if ratios else None
        out.append(("every policy ≤ 1.02× the plain step",
                    "no policy measured" if worst is None else
                    f"{'met' if worst <= 1.02 else 'missed'}: "
                    + ", ".join(f"{p} {v:.3f}×" for p, v in ratios.items())))
        compile_s = {p: _number(r["compile (s)"]) for p, r in step.items()}
        out.append(("the 0.5B step compiles in < 10 s",
                    f"{'met' if max(compile_s.values()) < 10 else 'missed'}: "
                    + ", ".join(f"{p} {v:.1f} s" for p, v in compile_s.items())))
        base = _number(step["none"]["tokens/s"])
        for name, other, label in (("cuDNN attention's gain (plain AdamW, batch 8)", xla, "XLA attention"),
                                   ("the new step against the old path (no scan, full logits)", old,
                                    "the old path")):
            out.append((name, f"{base / _number(other['none']['tokens/s']):.2f}× the tokens/s of {label}"
                        if other and "none" in other else "not measured"))
    else:
        out.append(("every policy ≤ 1.02× the plain step", "not measured (no step_b8)"))

    if lora:
        row = next(iter(lora.values()))
        text = (folder / "lora7b.txt").read_text(errors="replace")
        peak = re.search(r"device peak memory.*?: ([\d.]+ GiB)", text)
        out.append(("the full-depth 7B LoRA step fits one device and runs",
                    f"met: {row['step (s)']} s/step, MFU {row['MFU']}, compile {row['compile (s)']} s, "
                    f"peak {peak.group(1) if peak else 'not reported'}"))
    else:
        out.append(("the full-depth 7B LoRA step fits one device and runs",
                    "not measured, or it failed: see lora7b.txt"))
    return out


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_out")
    print("## Goals (bench/session_goals.py)\n")
    device = folder / "device.txt"
    if device.exists() and "backend: gpu" not in device.read_text(errors="replace"):
        print("Not a GPU: these are the checks, run on toy or CPU figures that say nothing about a GPU.\n")
    print("| goal | result |\n|---|---|")
    for goal, result in goals(folder):
        print(f"| {goal} | {result} |")


if __name__ == "__main__":
    main()
