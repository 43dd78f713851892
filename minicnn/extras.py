"""The optional extras a command needs, with the one line that says how to install a missing one.

    require(parser, "optuna", "tune")     # the module, or exit 2 with:
    minicnn tune: error: this command needs Optuna, which is not installed here; run: pip install -e ".[tune]"

The extras are declared in setup.cfg (``[options.extras_require]``): ``tune`` (Optuna) for
``minicnn tune``, ``baselines`` (scikit-learn) for ``minicnn baselines``.
"""
from __future__ import annotations

import importlib

#: module -> (the project's name for it, the extra of setup.cfg that installs it)
EXTRAS = {"optuna": ("Optuna", "tune"), "sklearn": ("scikit-learn", "baselines")}


def install_hint(module: str) -> str:
    """The sentence naming the extra that installs ``module``."""
    name, extra = EXTRAS[module]
    return f"this command needs {name}, which is not installed here; run: pip install -e \".[{extra}]\""


def require(parser, module: str):
    """Import ``module`` and return it; where it is missing, end with one line (exit status 2) naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        parser.exit(2, f"{parser.prog}: error: {install_hint(module)}\n")
