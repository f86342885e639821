"""The wheel a user installs: one top-level name, the presets and corpora inside it, the two
console scripts, and the library alone without extras."""

import email
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of the tree, so the build leaves no build/ or egg-info in the checkout.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        src, dst = ROOT / name, build / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(build)], check=True, capture_output=True, text=True)
    (path,) = out.glob("lbw_jax-*.whl")
    with zipfile.ZipFile(path) as z:
        yield z


def _metadata(wheel):
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return email.message_from_bytes(wheel.read(name))


@pytest.mark.slow
def test_the_wheel_has_no_top_level_name_but_the_projects(wheel):
    top = {n.split("/")[0] for n in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"lbw_jax"}


@pytest.mark.slow
def test_the_presets_and_corpora_ship_inside_it(wheel):
    names = set(wheel.namelist())
    assert {"lbw_jax/train/configs/tiny.py", "lbw_jax/train/configs/stress_cpu.py",
            "lbw_jax/train/configs/base.py"} <= names
    assert "lbw_jax/train/data/corpus/austen/emma.txt.gz" in names
    assert "lbw_jax/train/data/corpus/shakespeare/tinyshakespeare.txt.gz" in names
    assert not any(n.startswith(("tests/", "bench/", "experiments/")) for n in names)


@pytest.mark.slow
def test_its_console_scripts_are_the_two_jobs(wheel):
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(name).decode()
    assert "lbw-train = lbw_jax.train.run:cli" in text
    assert "lbw-stress = lbw_jax.train.stress.__main__:cli" in text


@pytest.mark.slow
def test_without_extras_it_needs_only_jax_optax_and_numpy(wheel):
    required = [r for r in _metadata(wheel).get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("<")[0].split("=")[0].strip() for r in required) == \
        ["jax", "numpy", "optax"]
