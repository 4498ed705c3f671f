"""The kit as an installed package: the wheel holds the data, the baselines and the recipes, and `minprune demo`
runs from it outside the source tree (a fresh virtual environment that sees this one's packages but not the
source checkout)."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    return next(out.glob("minprune-*.whl"))


def test_the_wheel_holds_the_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "minprune/assets/mnist_small.npz" in names and "minprune/assets/pydoc_topics.txt.xz" in names
    assert {Path(n).name for n in names if n.startswith("minprune/assets/recipes/")} >= {"tiny.toml",
                                                                                          "lenet5-capstone.toml"}
    shipped = {Path(p).name for p in (ROOT / "minprune" / "assets" / "baselines").glob("*.pt")}
    assert shipped and shipped <= {Path(n).name for n in names}


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed; this environment's site-packages are visible through a .pth file
    (only as a path: its own .pth files, such as the editable install of the source tree, are not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return python


def test_minprune_demo_runs_from_the_installed_wheel(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv", wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINPRUNE_DATA")}
    env["MINPRUNE_CACHE"] = str(tmp_path / "cache")
    where = subprocess.run([python, "-c", "import minprune; print(minprune.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert str(tmp_path / "venv") in where and str(ROOT) not in where
    script = python.parent / ("minprune.exe" if os.name == "nt" else "minprune")
    demo = subprocess.run([script, "demo", "--threads", "1"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    assert "266,610" in demo.stdout and "no shipped file" not in demo.stdout  # the shipped baselines were used
    assert "compression pipeline" in demo.stdout and "int8" in demo.stdout
    assert not (tmp_path / "cache").exists()  # nothing was trained, so nothing was cached
    run = subprocess.run([script, "run", "--help"], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "lenet5-capstone" in run.stdout


def test_dependencies_are_ranges_and_the_tested_set_is_pinned():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [r for r in project["dependencies"] if "==" in r], "pyproject.toml gives ranges; pins go in constraints"
    assert not [r for r in project["dependencies"] if r.startswith("torchao")]  # the code does not use it
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name = requirement.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        assert name in {k.lower() for k in pins}, f"{name} has no tested version in constraints.txt"


def test_environment_yml_installs_the_same_packages():
    text = (ROOT / "environment.yml").read_text()
    assert "- -c constraints.txt" in text and '- -e ".[dev]"' in text
    assert "==" not in text  # no versions of its own to disagree with pyproject.toml
