"""The README is executable documentation: its test command is the one CI runs, and
its API example prints what the README says it prints."""

import pytest
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(line for block in _blocks("bash") for line in block.splitlines()
                        if "pytest" in line)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


@pytest.mark.slow
def test_readme_example_prints_what_it_shows():
    example = next(block for block in _blocks("python") if "telemetry" in block)
    shown = re.search(r"prints\n\n```\n(.*?)```", README, flags=re.S).group(1)
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


@pytest.mark.slow
def test_quickstart_runs_and_reports_every_run():
    # The corrupted batches (every 40th of 400) are what the governor skips exactly.
    result = subprocess.run([sys.executable, "examples/quickstart.py"], capture_output=True,
                            text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    losses = re.fullmatch(
        r"held-out loss  adamw: (\S+)   lbw_guard\(adamw\): (\S+)   lbw_guard\(adamw, reflex\): (\S+)\n"
        r"governor: step 390, scale \S+, regime \w+, interventions \d+, skipped 10\n", result.stdout)
    assert losses, result.stdout
    assert all(0 < float(x) < 1e3 for x in losses.groups())
    assert result.stdout.splitlines()[0] in README  # the README shows this machine's output
