"""Where the model cards and published curves are, for an installed wheel and a source checkout."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def models_dir() -> Path:
    """The ``models/`` folder: ``$PKPD_MODELS`` if set, the copy shipped inside an installed wheel
    (``pkpd/_models``), else the repository's ``models/`` beside ``src/``."""
    env = os.environ.get("PKPD_MODELS")
    if env:
        return Path(env)
    shipped = Path(str(resources.files("pkpd"))) / "_models"
    if shipped.is_dir():
        return shipped
    repo = Path(__file__).resolve().parents[2] / "models"
    if repo.is_dir():
        return repo
    raise FileNotFoundError("pkpd cannot find its models/ folder; reinstall the package or set PKPD_MODELS")
