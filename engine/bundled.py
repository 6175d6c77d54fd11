"""The model shipped inside the package: the repo's top-level assets/default.vbnf, installed as package data of
`engine` (pyproject.toml maps it; engine/assets links to ../assets in the checkout).

`vbnf view` and `vbnf info` open it when given no model, so a user can try the tools right after installing.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from engine.errors import VbnfError

BUNDLED_MODEL_NAME = "default.vbnf"


def bundled_model_path() -> Path:
    """Path of the bundled default model; VbnfError (one line) when the installation lacks it."""
    resource = files("engine") / "assets" / BUNDLED_MODEL_NAME
    if not isinstance(resource, Path) or not resource.is_file():
        raise VbnfError(f"the bundled model {BUNDLED_MODEL_NAME} is missing from this installation of vbnf "
                        f"({resource}); pass a model file, or reinstall vbnf")
    return resource
