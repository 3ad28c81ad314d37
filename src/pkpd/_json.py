"""JSON-safe copies of nested results (shared by the report writers)."""

from __future__ import annotations

import numpy as np


def json_safe(x, digits: int | None = None):
    """A copy of ``x`` for ``json.dumps``: dict keys and lists kept, NaN and infinities as
    ``None``, numpy scalars as Python numbers, floats rounded to ``digits`` (if given)."""
    if isinstance(x, dict):
        return {k: json_safe(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v, digits) for v in x]
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return None
        return round(float(x), digits) if digits is not None else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x
