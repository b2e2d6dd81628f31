"""`xlt study` from a wheel install: the recipes ship inside the package.

Builds the wheel from a copy of the source (the checkout's build/ stays
untouched), installs it with ``--no-deps`` into a fresh venv outside the
repository that borrows this environment's packages (torch, SpeechBrain, ...)
through a ``.pth`` file instead of reinstalling them, and runs the smoke study
(a base and a transfer) from an empty folder. The editable checkout must not be
what runs: the .pth adds the project's site-packages as a plain path, so its
editable-install hook is never executed, and the test checks where
``xlt_plugin`` comes from.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a wheel is built from (setup.cfg/setup.py say what goes in).
SOURCES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "LICENSE")
SOURCE_DIRS = ("xlt_plugin", "recipes")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "results", "*.egg-info")


def _run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {done.returncode}:\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, its site-packages)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy2(REPO / name, src / name)
    for name in SOURCE_DIRS:
        shutil.copytree(REPO / name, src / name, ignore=IGNORE)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, "."],
        cwd=src,
        timeout=600,
    )
    (wheel,) = dist.glob("xlt_plugin-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=300)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
        ).strip()
    )
    # This environment's packages, after the venv's own (a plain path line: .pth
    # files in that folder, the editable hook among them, are not executed).
    (site / "_project_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # pip comes from the project environment through that path; --ignore-installed
    # keeps it from touching the editable xlt_plugin it can see there.
    _run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        + ["--no-deps", "--no-index", "--ignore-installed", wheel],
        cwd=root,
        timeout=600,
    )
    return python, site


def _clean_env() -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_installed_package_is_the_wheel_and_carries_the_recipes(wheel_venv, tmp_path):
    python, site = wheel_venv
    out = _run(
        [
            python,
            "-c",
            "import xlt_plugin, xlt_plugin.resources as r; "
            "print(xlt_plugin.__file__); print(r.recipes_folder())",
        ],
        cwd=tmp_path,
        env=_clean_env(),
    ).split("\n")
    package, recipes = Path(out[0]), Path(out[1])
    assert package.is_relative_to(site), package
    assert recipes == site / "xlt_plugin" / "recipes"
    for recipe in (REPO / "recipes").iterdir():
        if (recipe / "train.py").is_file():
            assert (recipes / recipe.name / "train.py").is_file(), recipe.name
            yamls = sorted(p.name for p in (recipe / "hparams").glob("*.yaml"))
            assert yamls == sorted(
                p.name for p in (recipes / recipe.name).glob("hparams/*.yaml")
            ), recipe.name


def test_xlt_study_runs_from_a_wheel_install(wheel_venv, tmp_path):
    python, site = wheel_venv
    xlt = python.with_name("xlt")
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run(
        [xlt, "study", "--profile", "smoke", "--out", "study", "--jobs", "2"],
        cwd=work,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=3000,
    )
    study = work / "study"
    logs = sorted((study / "runs").glob("*/log.txt"))
    tail = "\n".join(p.read_text()[-1500:] for p in logs[:2])
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{tail}"
    assert (study / "REPORT.md").is_file()
    assert "## 1. Languages" in (study / "REPORT.md").read_text()
    # Every run used the recipes of the installed package, not the checkout's.
    assert logs
    for log in logs:
        command = log.read_text().splitlines()[0]
        assert str(site / "xlt_plugin" / "recipes") in command, command
        assert str(REPO) not in command, command
