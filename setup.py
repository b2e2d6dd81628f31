"""Build hook: ship the repository's ``recipes/`` inside the package.

The recipes stay at the repository root, SpeechBrain style (``cd
recipes/CommonVoice && python train.py hparams/es_xfer.yaml``); a wheel carries
a copy as ``xlt_plugin/recipes/``, so ``xlt study`` runs from any install.
:func:`xlt_plugin.resources.recipes_folder` finds either. Everything else is in
``setup.cfg``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# What a recipe is made of; run outputs (results/, data/) and caches stay behind.
RECIPE_FILES = ("train.py", "README.md", "hparams/*.yaml")


def recipe_files(root: Path = ROOT) -> list[Path]:
    """The files of ``recipes/`` that ship, relative to ``recipes/``."""
    recipes = root / "recipes"
    return sorted(
        path.relative_to(recipes)
        for pattern in RECIPE_FILES
        for path in recipes.glob(f"*/{pattern}")
        if path.is_file()
    )


class BuildPyWithRecipes(build_py):
    """``build_py`` that also copies ``recipes/`` to ``xlt_plugin/recipes/``.

    Editable installs skip the copy: there the source tree's ``recipes/`` is
    the one found.
    """

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "xlt_plugin" / "recipes"
        for rel in recipe_files():
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / "recipes" / rel, dest)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = Path(self.build_lib) / "xlt_plugin" / "recipes"
        return outputs + [str(target / rel) for rel in recipe_files()]

    def get_source_files(self):
        # The sdist takes its files from here: it carries recipes/ too.
        recipes = [str(Path("recipes") / rel) for rel in recipe_files()]
        return super().get_source_files() + recipes


setup(cmdclass={"build_py": BuildPyWithRecipes})
