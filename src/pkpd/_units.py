"""Units used across pkpd: time is stored in hours, drug amounts in the model's dose unit."""

from __future__ import annotations

import math

#: Hours per time unit accepted by builders, loaders and ``simulate``.
TIME_UNITS: dict[str, float] = {
    "min": 1.0 / 60.0,
    "h": 1.0,
    "d": 24.0,
    "day": 24.0,
    "week": 168.0,
    "wk": 168.0,
}

#: Amount units: (mass in mg, per-kg flag). Device sessions carry no amount unit.
AMOUNT_UNITS: dict[str, tuple[float, bool]] = {
    "g": (1000.0, False),
    "mg": (1.0, False),
    "ug": (1e-3, False),
    "µg": (1e-3, False),
    "mg/kg": (1.0, True),
    "ug/kg": (1e-3, True),
    "µg/kg": (1e-3, True),
}


def hours_per(unit: str, *, field: str = "time_unit") -> float:
    """Hours in one ``unit``; ``ValueError`` naming ``field`` for an unknown unit."""
    try:
        return TIME_UNITS[unit]
    except (KeyError, TypeError):
        raise ValueError(f"{field}={unit!r} is not a known time unit; valid: {sorted(TIME_UNITS)}") from None


def amount_factor(from_unit: str, to_unit: str) -> float:
    """Factor converting an amount in ``from_unit`` to ``to_unit`` (mass units only).

    Absolute and per-kilogram amounts cannot be converted into each other without a body
    weight; that raises ``ValueError``.
    """
    for name, unit in (("amount_unit", from_unit), ("dose_unit", to_unit)):
        if unit not in AMOUNT_UNITS:
            raise ValueError(f"{name}={unit!r} is not a known amount unit; valid: {sorted(AMOUNT_UNITS)}")
    (a, a_kg), (b, b_kg) = AMOUNT_UNITS[from_unit], AMOUNT_UNITS[to_unit]
    if a_kg != b_kg:
        raise ValueError(
            f"cannot convert an amount in {from_unit!r} to {to_unit!r}: one is per kilogram of body "
            "weight and the other is not; build the schedule in the model's dose unit "
            f"({to_unit!r}), e.g. multiply by body weight"
        )
    return a / b


def check_finite(name: str, value: float, *, lo: float | None = None, lo_open: bool = False) -> float:
    """Validate one scalar: finite and above ``lo`` (inclusive unless ``lo_open``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r} must be finite")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name}={value!r} must be {'>' if lo_open else '>='} {lo}")
    return v
