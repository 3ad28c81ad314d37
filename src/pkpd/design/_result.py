"""The result of :func:`pkpd.optimise_schedule`."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..schedule import Schedule


@dataclasses.dataclass
class DesignResult:
    """The outcome of :func:`optimise_schedule`.

    ``schedule``: the optimised :class:`pkpd.Schedule`; ``value``: the metric there (the posterior
    mean with ``draws``); ``standard_value`` / ``standard_schedule``: the standard protocol's;
    ``x`` / ``x_standard``: design variables (plus the resulting number of ``sessions`` for
    devices); ``history``: a pandas DataFrame of every design evaluated (stage, design variables,
    metric ``value``, penalised ``objective``, ``feasible``); ``draws``: per-draw results when
    posterior draws were given, else ``None``; ``improved``: whether the optimum beats the start.
    """

    schedule: Schedule
    value: float
    standard_value: float
    standard_schedule: Schedule
    x: dict
    x_standard: dict
    history: Any
    readout: str
    metric: str
    objective: str
    at_h: float
    improved: bool
    message: str
    constraints: dict
    draws: dict | None = None
    elapsed_s: float = 0.0

    def summary(self):
        """Standard protocol vs optimum, one row each (design variables and metric)."""
        import pandas as pd

        return pd.DataFrame(
            [{**self.x_standard, self.metric: self.standard_value}, {**self.x, self.metric: self.value}],
            index=["standard", "optimum"],
        )

    def __repr__(self):
        xs = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.x.items())
        return (
            f"DesignResult({self.objective} {self.metric} of {self.readout!r}: {self.value:.6g} "
            f"(standard {self.standard_value:.6g}) at {xs})"
        )
