"""The design space of a modality's standard protocol: its design variables, how a concrete
design builds a schedule (:class:`_Space`), and the validation of ``vary``, ``bounds`` and
``constraints`` (see :mod:`pkpd.design`)."""

from __future__ import annotations

import inspect
import itertools
import math
import warnings

import numpy as np

from ..modalities import get_modality
from ..protocols import PROTOCOLS, protocol
from ..schedule import PATTERNS, ROUTES, Schedule

CONTINUOUS = ("gap_h", "dose_mg", "loading_dose_mg")


DISCRETE = ("sessions_per_day", "sessions_per_week", "days")


CONSTRAINTS = ("max_sessions_per_day", "min_gap_h", "max_daily_dose_mg", "total_sessions", "total_pulses", "cmax")


class _Space:
    """The design variables of one modality's standard protocol and how they build schedules."""

    def __init__(self, modality: str, species: str, protocol_options: dict):
        self.modality = modality
        self.family = get_modality(modality).family
        self.device = self.family in ("stimulation", "seizure")
        self.standard_schedule = protocol(modality, species=species, **protocol_options)
        s = self.standard_schedule
        if self.device:
            sig = inspect.signature(PROTOCOLS[modality].build).parameters
            opts = {k: v.default for k, v in sig.items()}
            opts.update(protocol_options)
            per_day = int(opts["per_day"])
            dpw = int(opts["per_week"] if opts.get("per_week") is not None else opts["days_per_week"])
            self.dur_h = float(s.session_duration[0])
            self.pulses = float(s.session_pulses[0])
            self.const = dict(
                pulses=float(s.session_pulses[0]),
                frequency_hz=float(s.session_frequency_hz[0]),
                pattern=int(s.session_pattern[0]),
                intensity=float(s.session_intensity[0]),
                seizure=bool(s.session_seizure[0]),
            )
            self.standard_n = s.n_sessions
            self.standard = dict(
                gap_h=float(opts["gap_min"]) / 60.0,
                sessions_per_day=per_day,
                sessions_per_week=dpw,
                days=-(-s.n_sessions // per_day),
            )
            self.valid = ("gap_h", "sessions_per_day", "sessions_per_week", "days")
        else:
            if s.n_doses == 0 or np.any(s.dose_ss):
                raise ValueError(f"modality {modality!r}: its standard protocol cannot be designed here")
            self.interval = float(np.diff(s.dose_time)[0]) if s.n_doses > 1 else 24.0
            if s.n_doses > 2 and not np.allclose(np.diff(s.dose_time), self.interval):
                raise ValueError(
                    f"modality {modality!r}: only regularly spaced protocols can be designed "
                    "(protocol_options without per_week)"
                )
            self.route = int(s.dose_route[0])
            self.duration = float(s.dose_duration[0])
            self.standard = dict(
                dose_mg=float(s.dose_amount[-1]), loading_dose_mg=float(s.dose_amount[0]), days=s.n_doses
            )
            self.valid = ("dose_mg", "loading_dose_mg", "days")

    def n_sessions(self, d, total=None) -> int:
        return int(total) if total is not None else int(d["sessions_per_day"] * d["days"])

    def _layout(self, d, total):
        per_day, dpw = int(d["sessions_per_day"]), int(d["sessions_per_week"])
        n = self.n_sessions(d, total)
        days = -(-n // per_day)
        weeks = -(-days // dpw)
        return per_day, dpw, n, weeks

    def schedule(self, d: dict, total=None) -> Schedule:
        """The numpy schedule of a concrete design."""
        if self.device:
            per_day, dpw, n, weeks = self._layout(d, total)
            c = self.const
            return Schedule.sessions(
                per_day=per_day,
                days_per_week=dpw,
                weeks=weeks,
                gap=float(d["gap_h"]),
                gap_unit="h",
                duration=self.dur_h,
                duration_unit="h",
                pulses=c["pulses"],
                frequency_hz=c["frequency_hz"],
                pattern=PATTERNS[c["pattern"]],
                intensity=c["intensity"],
                seizure=c["seizure"],
                n=n,
                label=f"{self.modality} (designed)",
            )
        n = int(d["days"])
        amounts = np.full(n, float(d["dose_mg"]))
        amounts[0] = float(d["loading_dose_mg"])
        return Schedule.doses(
            np.arange(n) * self.interval,
            amounts,
            ROUTES[self.route],
            duration=self.duration,
            unit=self.standard_schedule.amount_unit,
            label=f"{self.modality} (designed)",
        )

    def coeffs(self, d: dict, cont, total=None) -> dict:
        """Coefficient arrays of :func:`_events` for the discrete part of design ``d``."""
        if self.device:
            per_day, dpw, n, weeks = self._layout(d, total)
            # as in Schedule.sessions: <5/week spread over the week, otherwise consecutive days
            weekdays = np.floor(np.arange(dpw) * 7.0 / dpw) if dpw in (1, 2, 3, 4) else np.arange(dpw, dtype=float)
            day_idx = (np.arange(weeks)[:, None] * 7 + weekdays[None, :]).ravel()
            base = np.broadcast_to(day_idx[:, None] * 24.0, (day_idx.size, per_day)).ravel()[:n]
            k = np.broadcast_to(np.arange(per_day, dtype=float)[None, :], (day_idx.size, per_day)).ravel()[:n]
            return dict(s_base=base, s_k=k, gap=np.asarray(float(d["gap_h"])))
        n = int(d["days"])
        first = np.zeros(n)
        first[0] = 1.0
        rest = 1.0 - first
        dose, load = float(d["dose_mg"]), float(d["loading_dose_mg"])
        if "dose_mg" in cont and "loading_dose_mg" in cont:
            a_base, a_dose, a_load = np.zeros(n), rest, first
        elif "dose_mg" in cont:  # the loading dose follows the maintenance dose unless it differs
            a_base, a_dose, a_load = (
                (first * load, rest, np.zeros(n)) if load != dose else (np.zeros(n), np.ones(n), np.zeros(n))
            )
        elif "loading_dose_mg" in cont:
            a_base, a_dose, a_load = rest * dose, np.zeros(n), first
        else:
            a_base, a_dose, a_load = rest * dose + first * load, np.zeros(n), np.zeros(n)
        return dict(d_time=np.arange(n) * self.interval, a_base=a_base, a_dose=a_dose, a_load=a_load)


def _whole_c(name, value) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v >= 1 and v == int(v)):
        raise ValueError(f"constraints: {name}={value!r} must be a whole number >= 1")
    return int(v)


def _combos(disc, box):
    if not disc:
        return []
    combos = list(itertools.product(*[range(int(box[v][0]), int(box[v][1]) + 1) for v in disc]))
    if len(combos) > 200:
        raise ValueError(f"bounds of {disc} span {len(combos)} combinations (> 200); narrow them")
    return combos


def _with(dd, names, values, space, total):
    out = {**dd, **dict(zip(names, values))}
    if space.device and total is not None:
        out["days"] = -(-total // out["sessions_per_day"])
    return out


def check_vary(vary, space: _Space, modality: str) -> list[str]:
    """The design variables to vary, validated against the modality's design space."""
    vary = [vary] if isinstance(vary, str) else list(vary)
    if not vary:
        raise ValueError(f"vary is empty; valid design variables for {modality!r}: {list(space.valid)}")
    for v in vary:
        if v not in CONTINUOUS + DISCRETE:
            raise ValueError(f"vary: unknown design variable {v!r}; valid: {list(CONTINUOUS + DISCRETE)}")
        if v not in space.valid:
            raise ValueError(
                f"vary: {v!r} does not apply to {modality!r} (a {'device' if space.device else 'drug'}); "
                f"valid for it: {list(space.valid)}"
            )
    if len(set(vary)) != len(vary):
        raise ValueError(f"vary lists a variable twice: {vary}")
    return vary


def search_box(vary: list[str], bounds) -> dict[str, tuple[float, float]]:
    """``{variable: (low, high)}`` from ``bounds``, validated (finite, ordered, >= 0, whole numbers
    for discrete variables, at most 7 session days a week)."""
    bounds = dict(bounds or {})
    for k in bounds:
        if k not in vary:
            raise ValueError(f"bounds: {k!r} is not in vary={vary}")
    box = {}
    for v in vary:
        if v not in bounds:
            raise ValueError(f"bounds: missing bounds for {v!r}; give bounds={{{v!r}: (low, high)}}")
        try:
            lo, hi = (float(b) for b in bounds[v])
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{v!r}]={bounds[v]!r} must be a pair (low, high) of numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"bounds[{v!r}]={bounds[v]!r} must be finite")
        if lo > hi:
            raise ValueError(f"bounds[{v!r}]=({lo:g}, {hi:g}) is inverted: low must be <= high")
        if lo < 0:
            raise ValueError(f"bounds[{v!r}]=({lo:g}, {hi:g}): low must be >= 0")
        if v in DISCRETE and (lo != int(lo) or hi != int(hi) or lo < 1):
            raise ValueError(f"bounds[{v!r}]=({lo:g}, {hi:g}) must be whole numbers >= 1 (a discrete variable)")
        if v == "sessions_per_week" and hi > 7:
            raise ValueError(f"bounds['sessions_per_week']=({lo:g}, {hi:g}): at most 7 sessions days a week")
        box[v] = (lo, hi)
    return box


def apply_constraints(space: _Space, constraints: dict, box: dict, vary: list[str], modality: str) -> int | None:
    """Validate ``constraints`` and narrow ``box`` by those that act on it (``max_sessions_per_day``,
    ``max_daily_dose_mg``). Returns the fixed total number of device sessions (``total_sessions``
    or ``total_pulses``), or None."""
    for k in constraints:
        if k not in CONSTRAINTS:
            raise ValueError(f"constraints: unknown constraint {k!r}; valid: {list(CONSTRAINTS)}")
    total = None
    if space.device:
        if "cmax" in constraints or "max_daily_dose_mg" in constraints:
            raise ValueError(f"constraints: 'cmax' and 'max_daily_dose_mg' apply to drugs; {modality!r} has no doses")
        if "total_sessions" in constraints and "total_pulses" in constraints:
            raise ValueError("constraints: give total_sessions or total_pulses, not both")
        if "total_sessions" in constraints:
            total = _whole_c("total_sessions", constraints["total_sessions"])
        if "total_pulses" in constraints:
            tp = float(constraints["total_pulses"])
            if space.pulses <= 0 or tp <= 0 or tp / space.pulses != int(tp / space.pulses):
                raise ValueError(
                    f"constraints: total_pulses={tp:g} is not a whole number of {space.pulses:g}-pulse sessions"
                )
            total = int(tp / space.pulses)
        if total is not None and "days" in vary:
            raise ValueError("vary: 'days' cannot vary when the total number of sessions is fixed by a constraint")
        if "max_sessions_per_day" in constraints:
            cap = _whole_c("max_sessions_per_day", constraints["max_sessions_per_day"])
            if "sessions_per_day" in box:
                box["sessions_per_day"] = (box["sessions_per_day"][0], min(box["sessions_per_day"][1], cap))
    else:
        for k in ("total_sessions", "total_pulses", "max_sessions_per_day", "min_gap_h"):
            if k in constraints:
                raise ValueError(f"constraints: {k!r} applies to device sessions, not to {modality!r}")
        if "max_daily_dose_mg" in constraints:
            cap = float(constraints["max_daily_dose_mg"]) * min(1.0, space.interval / 24.0)
            for v in ("dose_mg", "loading_dose_mg"):
                if v in box:
                    box[v] = (box[v][0], min(box[v][1], cap))
    for v, (lo, hi) in box.items():
        if lo > hi:
            raise ValueError(f"bounds[{v!r}] and the constraints leave no feasible value ({lo:g} > {hi:g})")
    return total


def start_design(space: _Space, box: dict, vary: list[str], constraints: dict, total, modality: str):
    """``(standard design, start)``: the standard protocol's design variables and their projection
    into the search box (warns when they differ)."""
    x_std = dict(space.standard)
    if space.device and total is not None:
        x_std["days"] = -(-total // x_std["sessions_per_day"])
    start = dict(x_std)
    for v, (lo, hi) in box.items():
        val = min(max(start[v], lo), hi)
        start[v] = int(round(val)) if v in DISCRETE else val
    if (
        space.device
        and "min_gap_h" in constraints
        and "gap_h" not in vary
        and start["gap_h"] < float(constraints["min_gap_h"])
    ):
        raise ValueError("constraints: min_gap_h exceeds the standard gap; add 'gap_h' to vary")
    if space.device and total is not None:
        start["days"] = -(-total // start["sessions_per_day"])
    if start != x_std:
        warnings.warn(
            f"the standard protocol of {modality!r} ({x_std}) lies outside the bounds/constraints; "
            f"the search starts from its projection {start}",
            stacklevel=3,
        )
    return x_std, start
