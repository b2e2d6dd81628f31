"""Files that ship with the plugin, found the same way in every kind of install.

The recipes live at the repository root (``recipes/``, SpeechBrain style); a
wheel carries a copy as ``xlt_plugin/recipes/`` (``setup.py`` copies it at build
time). :func:`recipes_folder` is the one place that knows both.

Example
-------
>>> (recipes_folder() / "EnglishBase" / "train.py").is_file()
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["recipes_folder"]

_PACKAGE = Path(__file__).resolve().parent


def recipes_folder() -> Path:
    """The folder holding the recipes (``EnglishBase/``, ``CommonVoice/``, ...).

    Returns
    -------
    Path
        ``xlt_plugin/recipes`` of a wheel install, else the ``recipes/`` folder
        beside the package in a source checkout (editable install, or
        ``PYTHONPATH`` pointing at the checkout).

    Raises
    ------
    FileNotFoundError
        Neither exists (a broken install).
    """
    candidates = (_PACKAGE / "recipes", _PACKAGE.parent / "recipes")
    for folder in candidates:
        if (folder / "EnglishBase" / "train.py").is_file():
            return folder
    raise FileNotFoundError(
        "the xlt_plugin recipes are missing (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall the package (`pip install xlt_plugin`) or run from a "
        "source checkout"
    )
