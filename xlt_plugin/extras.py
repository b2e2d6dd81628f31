"""Optional dependencies: which install extra brings which package.

The core (tokens, remap, training, decoding, export, Common Voice prep) needs
none of them. A feature that does imports its package through :func:`require`,
so a missing one fails at the point of use with the extra to install, e.g.
``pip install 'xlt_plugin[synth]'``. ``setup.cfg`` lists the extras.

Example
-------
>>> require("json", "reading").__name__
'json'
>>> try:
...     require("not_a_module_xlt", "the test feature")
... except MissingExtraError as err:
...     print(err)  # doctest: +ELLIPSIS
the test feature needs ... install it with `pip install not_a_module_xlt`
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: Importable module -> (PyPI package, extra of xlt_plugin that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "opencc": ("opencc", "zh"),
    "espeakng_loader": ("espeakng-loader", "synth"),
    "wordfreq": ("wordfreq", "synth"),
    "pyroomacoustics": ("pyroomacoustics", "synth"),
    "matplotlib": ("matplotlib", "study"),
    "kenlm": ("kenlm", "lm"),
    "tensorboard": ("tensorboard", "gpu"),
}


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra."""


def install_hint(module: str) -> str:
    """The pip command that provides ``module``.

    Example
    -------
    >>> install_hint("opencc")
    "pip install 'xlt_plugin[zh]'"
    """
    if module in EXTRAS:
        return f"pip install 'xlt_plugin[{EXTRAS[module][1]}]'"
    return f"pip install {module}"


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which extra to install.

    Arguments
    ---------
    module : str
        Module name (``"opencc"``, ``"matplotlib.pyplot"``).
    purpose : str
        What needs it, for the message (``"the opencc remap strategy"``).

    Returns
    -------
    module

    Raises
    ------
    MissingExtraError
        The package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed
        package = EXTRAS.get(top, (top, None))[0]
        raise MissingExtraError(
            f"{purpose} needs the Python package {package!r}, which is not "
            f"installed; install it with `{install_hint(top)}`"
        ) from err
