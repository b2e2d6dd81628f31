"""The layering of DESIGN.md, kept by import-linter (contracts in setup.cfg).

Layers, lowest first: extras/resources -> lobes/tokens/remap/freeze ->
pretrained/nemo -> data -> runs/brain/recipe/resume/scoring -> decode/export ->
synth -> study -> cli. Nothing imports upward, the core imports neither synth nor
study (nor their extras' packages), and no package has an import cycle. Imports
inside functions count.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _lint_imports() -> list[str]:
    """The ``lint-imports`` command of this environment."""
    script = Path(sys.executable).with_name("lint-imports")
    if script.is_file():
        return [str(script)]
    pytest.importorskip("importlinter", reason="install the dev extra")
    code = "import sys; from importlinter.cli import lint_imports_command as c; c()"
    return [sys.executable, "-c", code]


def test_import_contracts_hold():
    done = subprocess.run(
        [*_lint_imports(), "setup.cfg", "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = done.stdout + done.stderr
    broken = report.split("Broken contracts", 1)[-1] if done.returncode else ""
    assert done.returncode == 0, (
        "import-linter contracts are broken (setup.cfg [importlinter]); move the "
        "import down a layer, or the code up:\n" + (broken or report)
    )
    assert ", 0 broken." in report, report


# Run in a fresh interpreter where the extras' packages cannot be imported.
_WITHOUT_EXTRAS = r"""
import importlib, pkgutil, sys

BLOCKED = {"espeakng_loader", "wordfreq", "opencc", "matplotlib"}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Blocker())
import xlt_plugin

for info in pkgutil.walk_packages(xlt_plugin.__path__, "xlt_plugin."):
    if info.name.split(".")[1] not in ("synth", "study", "cli", "recipes"):
        importlib.import_module(info.name)

from xlt_plugin.extras import MissingExtraError
from xlt_plugin.remap import token_map

try:
    token_map(["<blank>", "们"], ["<blank>", "們"], strategy="opencc")
except MissingExtraError as err:
    print("remap:", err)
from xlt_plugin.cli import main

argv = ["synth", "--lang", "es", "--out", "unused", "--utterances", "4", "--quiet"]
print("synth exit", main(argv))
"""


def test_core_works_without_the_extras(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "remap: the remap strategy 'opencc' needs" in done.stdout, done.stdout
    assert "pip install 'xlt_plugin[zh]'" in done.stdout
    assert "synth exit 1" in done.stdout
    assert "pip install 'xlt_plugin[synth]'" in done.stderr, done.stderr
