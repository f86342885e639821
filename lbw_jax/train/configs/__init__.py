"""The presets: Python files exposing ``get_config()`` (ml_collections), shipped with the package.

``--config`` takes a preset by name (``--config tiny``, ``--config stress_overshoot:lora``) or
any file path (``--config my_config.py``): copy a preset beside your code and point at it.
"""

from __future__ import annotations

import pathlib
import sys

PRESETS = pathlib.Path(__file__).resolve().parent
# Files here that are building blocks of the presets, not runnable presets themselves.
_PARTS = frozenset({"__init__", "base", "finetune", "stress_base"})
_OLD_FOLDER = "configs/"   # before the harness moved under lbw_jax/ (one release)


def preset_names() -> list[str]:
    """The runnable presets' names (``tiny``, ``qwen7b``, ``stress_cpu``, ...)."""
    return sorted(p.stem for p in PRESETS.glob("*.py") if p.stem not in _PARTS)


def preset_path(name: str) -> str:
    """The file of the preset ``name``."""
    path = PRESETS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no preset {name!r}; the presets are {', '.join(preset_names())}")
    return str(path)


def resolve(spec: str, say=None) -> str:
    """``spec`` (a ``--config`` value, with an optional ``:ARGS`` tail) with a preset name turned
    into its file. A path that exists is kept; the old ``configs/NAME.py`` form of the repository
    checkout is read as the preset NAME, with a note."""
    path, sep, args = spec.partition(":")
    if pathlib.Path(path).exists():
        return spec
    name = path
    if path.startswith(_OLD_FOLDER) and path.endswith(".py"):
        name = path[len(_OLD_FOLDER):-3]
        if (PRESETS / f"{name}.py").is_file():
            (say or _note)(f"note: {path} moved to the package: write --config {name}{sep}{args} "
                           f"(the old path is read for one release)")
    if "/" not in name and (PRESETS / f"{name}.py").is_file():
        return f"{PRESETS / name}.py{sep}{args}"
    return spec


def resolve_argv(argv: list[str]) -> list[str]:
    """``argv`` with the value of its ``--config`` flag (either form) passed through ``resolve``."""
    out, take = [], False
    for arg in argv:
        if take:
            out.append(resolve(arg))
            take = False
        elif arg == "--config":
            out.append(arg)
            take = True
        elif arg.startswith("--config="):
            out.append("--config=" + resolve(arg[len("--config="):]))
        else:
            out.append(arg)
    return out


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_main(main) -> None:
    """Runs an absl ``main`` with its ``--config`` read as a preset name or a path: the
    entry point of each command that takes a config (``lbw-stress``, the study's). ``sys.argv``
    stays as typed, so a report records the command a reader can run."""
    from absl import app

    app.run(main, argv=resolve_argv(sys.argv))
