"""Schedules: what is given and when.

A :class:`Schedule` is plain data: drug doses (time, amount, route, infusion duration,
steady-state flag), device sessions (start, duration, pulses, frequency, intensity, pattern,
seizure flag) and training or therapy sessions (start, duration, intensity: experience that the
treatment's plasticity window can amplify, :mod:`pkpd.windows`; they do not enter the ODE). Times are stored in **hours** from the start of treatment; builders accept other
units through ``time_unit``.

Ordering: the builders (:meth:`Schedule.doses`, :meth:`Schedule.repeated`, ...) sort their input
stably by time. The plain constructor rejects unsorted input, so that a hand-built schedule never
changes order behind the user's back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import numpy as np

from ._units import AMOUNT_UNITS, check_finite, hours_per

#: Dose routes. Extravascular routes (oral, ip, sc, im, intranasal) go to an absorption depot;
#: ``iv`` is a bolus into the central compartment; ``infusion`` is zero-order into it.
ROUTES: tuple[str, ...] = ("iv", "infusion", "oral", "ip", "sc", "im", "intranasal")
#: Device session patterns. ``rtms`` is regular repetitive stimulation at ``frequency_hz``;
#: ``itbs``/``ctbs`` are theta-burst patterns (50 Hz triplets at 5 Hz); ``ect``/``mst`` induce
#: a seizure.
PATTERNS: tuple[str, ...] = ("rtms", "itbs", "ctbs", "ect", "mst")

_EMPTY = np.zeros(0)


def _as_1d(name: str, values: Any, dtype=np.float64) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={values!r} must be numbers (a scalar or a 1-D sequence)") from None
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _codes(name: str, values: Any, vocabulary: tuple[str, ...], n: int) -> np.ndarray:
    if isinstance(values, str):
        values = [values] * n
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{name}={values!r} must be a name or a list of names; valid: {list(vocabulary)}") from None
    out = []
    for v in values:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < len(vocabulary):
                raise ValueError(
                    f"{name} code {v!r} out of range; valid codes 0..{len(vocabulary) - 1} for {vocabulary}"
                )
            out.append(int(v))
        elif v in vocabulary:
            out.append(vocabulary.index(v))
        else:
            raise ValueError(f"{name}={v!r} is not known; valid: {list(vocabulary)}")
    return np.asarray(out, dtype=np.int64)


def _whole(name: str, value, lo: int = 1) -> int:
    """A whole number >= lo (``ValueError`` for 2.7, NaN, ...)."""
    v = check_finite(name, value, lo=lo)
    if v != int(v):
        raise ValueError(f"{name}={value!r} must be a whole number >= {lo}")
    return int(v)


def _broadcast(name: str, values: Any, n: int, dtype=np.float64, ref: str = "times") -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={values!r} must be a number or one number per entry of {ref}") from None
    if arr.ndim == 0:
        return np.full(n, arr.item(), dtype=dtype)
    arr = _as_1d(name, arr, dtype)
    if arr.shape[0] != n:
        raise ValueError(
            f"length mismatch: {name} has {arr.shape[0]} entries but {ref} has {n}; "
            f"give {n} values or a single value for all"
        )
    return arr


class Schedule(eqx.Module):
    """Doses and device sessions, in hours. Build with the class-method builders.

    Dose fields (one entry per dose): ``dose_time`` (h), ``dose_amount`` (``amount_unit``),
    ``dose_route`` (index into :data:`ROUTES`), ``dose_duration`` (h; > 0 for infusions, 0
    otherwise), ``dose_ss`` (steady-state flag, NONMEM SS=1), ``dose_ii`` (h; dosing interval
    of a steady-state dose).

    Session fields (one entry per session): ``session_start`` (h), ``session_duration`` (h),
    ``session_pulses``, ``session_frequency_hz``, ``session_intensity`` (fraction of motor
    threshold, e.g. 1.2 = 120 %; for ECT/MST a dose relative to seizure threshold),
    ``session_pattern`` (index into :data:`PATTERNS`), ``session_seizure`` (bool).

    Training fields (one entry per training or therapy session, :meth:`training`):
    ``training_start`` (h), ``training_duration`` (h, > 0), ``training_intensity`` (>= 0, 1 = one
    standard session per hour of training). Training sessions are experience, not treatment: they
    do not enter the ODE (:func:`pkpd.simulate` ignores them) and are read by the learning readout
    of :mod:`pkpd.windows`.
    """

    dose_time: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    dose_amount: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    dose_route: np.ndarray = eqx.field(default_factory=lambda: np.zeros(0, np.int64))
    dose_duration: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    dose_ss: np.ndarray = eqx.field(default_factory=lambda: np.zeros(0, bool))
    dose_ii: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    session_start: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    session_duration: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    session_pulses: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    session_frequency_hz: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    session_intensity: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    session_pattern: np.ndarray = eqx.field(default_factory=lambda: np.zeros(0, np.int64))
    session_seizure: np.ndarray = eqx.field(default_factory=lambda: np.zeros(0, bool))
    training_start: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    training_duration: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    training_intensity: np.ndarray = eqx.field(default_factory=lambda: _EMPTY.copy())
    amount_unit: str = eqx.field(default="mg", static=True)
    label: str = eqx.field(default="", static=True)

    def __check_init__(self):
        self._check_dtypes()
        nd, ns = self._check_lengths()
        self._check_values()
        self._check_codes(nd, ns)
        self._check_doses()
        if ns:
            self._check_sessions()
        self._check_training()

    def _check_dtypes(self):
        for name in ("dose_route", "session_pattern"):
            arr = np.asarray(getattr(self, name))
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name} must hold integer codes, got dtype {arr.dtype} ({arr[:5]})")
        for name in ("dose_ss", "session_seizure"):
            arr = np.asarray(getattr(self, name))
            if arr.size and arr.dtype != np.bool_:
                raise ValueError(f"{name} must be boolean, got dtype {arr.dtype}")
        if self.amount_unit not in AMOUNT_UNITS:
            raise ValueError(f"amount_unit={self.amount_unit!r} is not known; valid: {sorted(AMOUNT_UNITS)}")

    def _check_lengths(self) -> tuple[int, int]:
        """Every dose array as long as ``dose_time``, every session array as ``session_start``."""
        nd = np.shape(self.dose_time)[0] if np.ndim(self.dose_time) == 1 else -1
        for name in ("dose_time", "dose_amount", "dose_route", "dose_duration", "dose_ss", "dose_ii"):
            arr = getattr(self, name)
            if np.ndim(arr) != 1 or np.shape(arr)[0] != nd:
                raise ValueError(
                    f"length mismatch: {name} has shape {np.shape(arr)}, dose_time has {np.shape(self.dose_time)}"
                )
        ns = np.shape(self.session_start)[0] if np.ndim(self.session_start) == 1 else -1
        for name in (
            "session_start",
            "session_duration",
            "session_pulses",
            "session_frequency_hz",
            "session_intensity",
            "session_pattern",
            "session_seizure",
        ):
            arr = getattr(self, name)
            if np.ndim(arr) != 1 or np.shape(arr)[0] != ns:
                raise ValueError(
                    f"length mismatch: {name} has shape {np.shape(arr)}, session_start has {np.shape(self.session_start)}"
                )
        return nd, ns

    def _check_values(self):
        """Times, amounts and session settings finite and >= 0 (durations > 0), starts sorted."""
        for name in (
            "dose_time",
            "dose_amount",
            "dose_duration",
            "dose_ii",
            "session_start",
            "session_duration",
            "session_pulses",
            "session_frequency_hz",
            "session_intensity",
        ):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            strict = name == "session_duration"  # a session lasts > 0 h
            bad = ~np.isfinite(arr) | ((arr <= 0) if strict else (arr < 0))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{name}[{i}]={float(arr[i])!r} is invalid: must be finite and {'>' if strict else '>='} 0"
                )
        if np.any(np.diff(self.dose_time) < 0):
            i = int(np.argmax(np.diff(self.dose_time) < 0)) + 1
            raise ValueError(
                f"dose_time is not sorted (dose_time[{i}]={float(self.dose_time[i])!r} < "
                f"dose_time[{i - 1}]={float(self.dose_time[i - 1])!r}); give non-decreasing times or "
                "use the Schedule builders, which sort stably"
            )
        if np.any(np.diff(self.session_start) < 0):
            i = int(np.argmax(np.diff(self.session_start) < 0)) + 1
            raise ValueError(
                f"session_start is not sorted (session_start[{i}]={float(self.session_start[i])!r} < "
                f"session_start[{i - 1}]={float(self.session_start[i - 1])!r}); give non-decreasing "
                "starts or use the Schedule builders, which sort stably"
            )

    def _check_codes(self, nd: int, ns: int):
        if nd and (np.any(self.dose_route < 0) or np.any(self.dose_route >= len(ROUTES))):
            raise ValueError(f"dose_route codes must be in 0..{len(ROUTES) - 1} ({ROUTES}), got {self.dose_route}")
        if ns and (np.any(self.session_pattern < 0) or np.any(self.session_pattern >= len(PATTERNS))):
            raise ValueError(
                f"session_pattern codes must be in 0..{len(PATTERNS) - 1} ({PATTERNS}), got {self.session_pattern}"
            )

    def _check_doses(self):
        """Durations only for infusions; steady-state doses with an interval longer than the infusion."""
        infusion = self.dose_route == ROUTES.index("infusion")
        if np.any(infusion & (self.dose_duration <= 0)):
            i = int(np.argmax(infusion & (self.dose_duration <= 0)))
            raise ValueError(f"dose_duration[{i}]={float(self.dose_duration[i])!r} must be > 0 (hours) for an infusion")
        if np.any(~infusion & (self.dose_duration != 0)):
            i = int(np.argmax(~infusion & (self.dose_duration != 0)))
            raise ValueError(
                f"dose_duration[{i}]={float(self.dose_duration[i])!r} must be 0 for route "
                f"{ROUTES[self.dose_route[i]]!r}; only 'infusion' doses have a duration"
            )
        if np.any(self.dose_ss & (self.dose_ii <= 0)):
            i = int(np.argmax(self.dose_ss & (self.dose_ii <= 0)))
            raise ValueError(
                f"dose_ii[{i}]={float(self.dose_ii[i])!r} must be > 0 (hours) for a steady-state (ss) dose"
            )
        if np.any(self.dose_ss & (self.dose_duration > self.dose_ii)):
            i = int(np.argmax(self.dose_ss & (self.dose_duration > self.dose_ii)))
            raise ValueError(
                f"dose_duration[{i}]={float(self.dose_duration[i])!r} h of a steady-state infusion must be "
                f"<= its dosing interval dose_ii[{i}]={float(self.dose_ii[i])!r} h"
            )

    def _check_sessions(self):
        """Sessions last > 0 h and do not overlap."""
        if np.any(self.session_duration <= 0):
            i = int(np.argmax(self.session_duration <= 0))
            raise ValueError(f"session_duration[{i}]={float(self.session_duration[i])!r} must be > 0 (hours)")
        end = self.session_start + self.session_duration
        overlap = self.session_start[1:] < end[:-1] - 1e-12
        if overlap.any():
            i = int(np.argmax(overlap)) + 1
            raise ValueError(
                f"sessions overlap: session_start[{i}]={float(self.session_start[i])!r} h is before "
                f"session {i - 1} ends at {float(end[i - 1])!r} h; each session must start at or "
                "after the end of the previous one"
            )

    def _check_training(self):
        """Training arrays of one length, finite, starts sorted, durations > 0, no overlap."""
        names = ("training_start", "training_duration", "training_intensity")
        n = np.shape(self.training_start)
        for name in names:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1 or arr.shape != n:
                raise ValueError(f"length mismatch: {name} has shape {arr.shape}, training_start has {n}")
            strict = name == "training_duration"
            bad = ~np.isfinite(arr) | ((arr <= 0) if strict else (arr < 0))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{name}[{i}]={float(arr[i])!r} is invalid: must be finite and {'>' if strict else '>='} 0"
                )
        start = np.asarray(self.training_start, dtype=np.float64)
        end = start + np.asarray(self.training_duration, dtype=np.float64)
        if np.any(np.diff(start) < 0):
            i = int(np.argmax(np.diff(start) < 0)) + 1
            raise ValueError(f"training_start is not sorted (training_start[{i}]={float(start[i])!r} h)")
        overlap = start[1:] < end[:-1] - 1e-12
        if overlap.any():
            i = int(np.argmax(overlap)) + 1
            raise ValueError(
                f"training sessions overlap: training_start[{i}]={float(start[i])!r} h is before "
                f"training session {i - 1} ends at {float(end[i - 1])!r} h"
            )

    # ------------------------------------------------------------------ info
    @property
    def n_doses(self) -> int:
        return int(self.dose_time.shape[0])

    @property
    def n_sessions(self) -> int:
        return int(self.session_start.shape[0])

    @property
    def n_training(self) -> int:
        return int(self.training_start.shape[0])

    @property
    def end_time(self) -> float:
        """Time (h) at which the last dose or device session ends (training sessions, which do not
        enter the ODE, are not counted: see ``training_end``)."""
        ends = [0.0]
        if self.n_doses:
            ends.append(float(np.max(self.dose_time + self.dose_duration)))
        if self.n_sessions:
            ends.append(float(np.max(self.session_start + self.session_duration)))
        return max(ends)

    @property
    def training_end(self) -> float:
        """Time (h) at which the last training session ends (0 without training)."""
        return float(np.max(self.training_start + self.training_duration)) if self.n_training else 0.0

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        training = f", {self.n_training} training sessions" if self.n_training else ""
        return (
            f"Schedule{label}({self.n_doses} doses [{self.amount_unit}], {self.n_sessions} sessions{training}, "
            f"ends at {self.end_time:g} h)"
        )

    def to_pandas(self):
        """One row per event: kind, time_h, amount/route/duration or session fields."""
        import pandas as pd

        rows = [
            dict(
                kind="dose",
                time_h=t,
                amount=a,
                amount_unit=self.amount_unit,
                route=ROUTES[r],
                duration_h=d,
                ss=bool(s),
                ii_h=ii,
            )
            for t, a, r, d, s, ii in zip(
                self.dose_time, self.dose_amount, self.dose_route, self.dose_duration, self.dose_ss, self.dose_ii
            )
        ]
        rows += [
            dict(
                kind="session",
                time_h=t,
                duration_h=d,
                pulses=p,
                frequency_hz=f,
                intensity=i,
                pattern=PATTERNS[c],
                seizure=bool(z),
            )
            for t, d, p, f, i, c, z in zip(
                self.session_start,
                self.session_duration,
                self.session_pulses,
                self.session_frequency_hz,
                self.session_intensity,
                self.session_pattern,
                self.session_seizure,
            )
        ]
        rows += [
            dict(kind="training", time_h=t, duration_h=d, intensity=i)
            for t, d, i in zip(self.training_start, self.training_duration, self.training_intensity)
        ]
        return pd.DataFrame(rows).sort_values("time_h", kind="stable").reset_index(drop=True)

    # -------------------------------------------------------------- builders
    @classmethod
    def doses(
        cls,
        times,
        amounts,
        route="oral",
        *,
        duration=0.0,
        unit: str = "mg",
        time_unit: str = "h",
        ss=False,
        ii=0.0,
        label: str = "",
    ) -> "Schedule":
        """An explicit list of doses. ``times``/``duration``/``ii`` in ``time_unit``; sorted stably by time.

        ``route`` and ``duration`` may be scalars or one entry per dose; infusions need
        ``route="infusion"`` and ``duration > 0``.
        """
        h = hours_per(time_unit)
        t = _as_1d("times", times) * h
        n = t.shape[0]
        a = _broadcast("amounts", amounts, n)
        r = _codes("route", route, ROUTES, n)
        if r.shape[0] != n:
            raise ValueError(
                f"length mismatch: route has {r.shape[0]} entries but times has {n}; "
                f"give {n} routes or a single route for all"
            )
        d = _broadcast("duration", duration, n) * h
        s = _broadcast("ss", ss, n, dtype=bool)
        i = _broadcast("ii", ii, n) * h
        order = np.argsort(t, kind="stable")
        return cls(
            dose_time=t[order],
            dose_amount=a[order],
            dose_route=r[order],
            dose_duration=d[order],
            dose_ss=s[order],
            dose_ii=i[order],
            amount_unit=unit,
            label=label,
        )

    @classmethod
    def single_dose(
        cls, amount, route="oral", *, at=0.0, duration=0.0, unit="mg", time_unit="h", label=""
    ) -> "Schedule":
        """One dose at time ``at`` (``time_unit``)."""
        return cls.doses([at], [amount], route, duration=duration, unit=unit, time_unit=time_unit, label=label)

    @classmethod
    def infusion(cls, amount, duration, *, at=0.0, unit="mg", time_unit="h", label="") -> "Schedule":
        """A zero-order infusion of ``amount`` over ``duration`` starting at ``at`` (both ``time_unit``)."""
        return cls.doses([at], [amount], "infusion", duration=duration, unit=unit, time_unit=time_unit, label=label)

    @classmethod
    def repeated(
        cls, amount, every, n, *, start=0.0, route="oral", duration=0.0, unit="mg", time_unit="h", ss=False, label=""
    ) -> "Schedule":
        """``n`` doses every ``every`` (NONMEM II; ``n`` = ADDL + 1) from ``start``.

        With ``ss=True`` the first dose is a steady-state dose (NONMEM SS=1): the system is at the
        steady state of dosing every ``every`` just before it.
        """
        n = _whole("n", n)
        every = check_finite("every", every, lo=0.0, lo_open=n > 1 or ss)
        start = check_finite("start", start, lo=0.0)
        times = start + every * np.arange(n)
        ss_flags = np.zeros(n, bool)
        ss_flags[0] = bool(ss)
        return cls.doses(
            times, amount, route, duration=duration, unit=unit, time_unit=time_unit, ss=ss_flags, ii=every, label=label
        )

    @classmethod
    def daily(cls, amount, days, *, loading_dose=None, route="oral", unit="mg", label="") -> "Schedule":
        """Once-daily dosing for ``days`` days, the first dose at time 0. An optional
        ``loading_dose`` replaces the first dose."""
        days = _whole("days", days)
        amounts = np.full(days, check_finite("amount", amount, lo=0.0))
        if loading_dose is not None:
            amounts[0] = check_finite("loading_dose", loading_dose, lo=0.0)
        return cls.doses(np.arange(days) * 24.0, amounts, route, unit=unit, label=label)

    @classmethod
    def sessions(
        cls,
        *,
        per_day=1,
        days_per_week=5,
        weeks=1,
        gap=50.0,
        gap_unit="min",
        duration=3.0,
        duration_unit="min",
        pulses=600,
        frequency_hz=0.0,
        pattern="itbs",
        intensity=1.2,
        seizure=None,
        n=None,
        label="",
    ) -> "Schedule":
        """Device sessions: ``per_day`` sessions a day, ``gap`` between the starts of same-day
        sessions, on ``days_per_week`` days a week for ``weeks`` weeks; ``n`` caps the total. Five or
        more days a week are consecutive (Mon-Fri); fewer are spread (3/week: Mon, Wed, Fri).

        ``pattern`` is one of :data:`PATTERNS`; ``seizure`` defaults to True for ECT and MST.
        """
        per_day = _whole("per_day", per_day)
        days_per_week = _whole("days_per_week", days_per_week)
        if days_per_week > 7:
            raise ValueError(f"days_per_week={days_per_week} must be <= 7")
        weeks = _whole("weeks", weeks)
        gap_h = check_finite("gap", gap, lo=0.0) * hours_per(gap_unit, field="gap_unit")
        dur_h = check_finite("duration", duration, lo=0.0, lo_open=True) * hours_per(
            duration_unit, field="duration_unit"
        )
        if per_day > 1 and gap_h < dur_h:
            raise ValueError(
                f"gap={gap} {gap_unit} is shorter than the session duration={duration} {duration_unit}: "
                "sessions would overlap; the gap between same-day session starts must be >= the duration"
            )
        if per_day > 1 and (per_day - 1) * gap_h + dur_h > 24.0:
            raise ValueError(
                f"per_day={per_day} sessions with gap={gap} {gap_unit} do not fit in one day; "
                "(per_day - 1) * gap + duration must be <= 24 h"
            )
        # 5/week -> Mon-Fri (consecutive weekdays, as clinical rTMS); fewer than 5 are spread over the
        # week (3/week -> Mon, Wed, Fri; 2/week -> Mon, Thu); 6-7/week -> consecutive days.
        if days_per_week in (1, 2, 3, 4):
            weekdays = np.floor(np.arange(days_per_week) * 7.0 / days_per_week)
        else:
            weekdays = np.arange(days_per_week, dtype=float)
        day_idx = (np.arange(weeks)[:, None] * 7 + weekdays[None, :]).ravel()
        starts = (day_idx[:, None] * 24.0 + np.arange(per_day)[None, :] * gap_h).ravel()
        if n is not None:
            n = _whole("n", n)
            if n > starts.shape[0]:
                raise ValueError(
                    f"n={n} sessions requested but the schedule holds only {starts.shape[0]} "
                    f"({per_day}/day x {days_per_week} days/week x {weeks} weeks)"
                )
            starts = starts[:n]
        return cls.session_list(
            starts,
            duration=dur_h,
            pulses=pulses,
            frequency_hz=frequency_hz,
            pattern=pattern,
            intensity=intensity,
            seizure=seizure,
            label=label,
        )

    @classmethod
    def session_list(
        cls,
        starts,
        *,
        duration,
        pulses=0,
        frequency_hz=0.0,
        pattern="itbs",
        intensity=1.2,
        seizure=None,
        time_unit="h",
        label="",
    ) -> "Schedule":
        """An explicit list of sessions starting at ``starts`` with ``duration`` (both ``time_unit``)."""
        h = hours_per(time_unit)
        t = _as_1d("starts", starts) * h
        n = t.shape[0]
        pat = _codes("pattern", pattern, PATTERNS, n)
        if pat.shape[0] != n:
            raise ValueError(
                f"length mismatch: pattern has {pat.shape[0]} entries but starts has {n}; "
                f"give {n} patterns or a single pattern for all"
            )
        if seizure is None:
            seizure = np.isin(pat, [PATTERNS.index("ect"), PATTERNS.index("mst")])
        order = np.argsort(t, kind="stable")
        fields = dict(
            session_start=t,
            session_duration=_broadcast("duration", duration, n, ref="starts") * h,
            session_pulses=_broadcast("pulses", pulses, n, ref="starts"),
            session_frequency_hz=_broadcast("frequency_hz", frequency_hz, n, ref="starts"),
            session_intensity=_broadcast("intensity", intensity, n, ref="starts"),
            session_pattern=pat,
            session_seizure=_broadcast("seizure", seizure, n, dtype=bool, ref="starts"),
        )
        return cls(**{k: v[order] for k, v in fields.items()}, label=label)

    @classmethod
    def training(cls, starts, *, duration=1.0, intensity=1.0, time_unit="h", duration_unit="h", label="") -> "Schedule":
        """Training or therapy sessions starting at ``starts`` (``time_unit``), each lasting
        ``duration`` (``duration_unit``, > 0) at ``intensity`` (>= 0; 1 = a standard session).
        Combine with a treatment by ``+`` (e.g. ``pkpd.protocol("psilocybin") +
        Schedule.training([24.0])``); :func:`pkpd.protocol` builds the named combinations."""
        t = _as_1d("starts", starts) * hours_per(time_unit)
        n = t.shape[0]
        dur = _broadcast("duration", duration, n, ref="starts") * hours_per(duration_unit, field="duration_unit")
        inten = _broadcast("intensity", intensity, n, ref="starts")
        order = np.argsort(t, kind="stable")
        return cls(training_start=t[order], training_duration=dur[order], training_intensity=inten[order], label=label)

    @classmethod
    def training_course(
        cls, sessions, *, first_at, interval, duration=1.0, intensity=1.0, time_unit="h", label=""
    ) -> "Schedule":
        """``sessions`` training sessions, the first at ``first_at`` and then every ``interval``
        (``first_at``, ``interval`` and ``duration`` in ``time_unit``; ``interval`` >= ``duration``)."""
        n = _whole("sessions", sessions)
        first = check_finite("first_at", first_at, lo=0.0)
        step = check_finite("interval", interval, lo=0.0)
        dur = check_finite("duration", duration, lo=0.0, lo_open=True)
        if n > 1 and step < dur:
            raise ValueError(
                f"interval={interval} {time_unit} is shorter than duration={duration} {time_unit}: "
                "training sessions would overlap"
            )
        starts = first + step * np.arange(n)
        return cls.training(
            starts, duration=dur, intensity=intensity, time_unit=time_unit, duration_unit=time_unit, label=label
        )

    # ----------------------------------------------------------- combinators
    def __add__(self, other: "Schedule") -> "Schedule":
        """Merge two schedules (doses and sessions); both must use the same ``amount_unit``."""
        if not isinstance(other, Schedule):
            return NotImplemented
        if self.n_doses and other.n_doses and self.amount_unit != other.amount_unit:
            raise ValueError(
                f"cannot merge schedules in amount_unit={self.amount_unit!r} and amount_unit="
                f"{other.amount_unit!r}; both must use the same amount_unit (build both in one unit)"
            )
        unit = self.amount_unit if self.n_doses else other.amount_unit
        od = np.argsort(np.concatenate([self.dose_time, other.dose_time]), kind="stable")
        os_ = np.argsort(np.concatenate([self.session_start, other.session_start]), kind="stable")
        ot = np.argsort(np.concatenate([self.training_start, other.training_start]), kind="stable")
        cat = lambda name, order: np.concatenate([getattr(self, name), getattr(other, name)])[order]  # noqa: E731
        return Schedule(
            **{
                n: cat(n, od) for n in ("dose_time", "dose_amount", "dose_route", "dose_duration", "dose_ss", "dose_ii")
            },
            **{
                n: cat(n, os_)
                for n in (
                    "session_start",
                    "session_duration",
                    "session_pulses",
                    "session_frequency_hz",
                    "session_intensity",
                    "session_pattern",
                    "session_seizure",
                )
            },
            **{n: cat(n, ot) for n in ("training_start", "training_duration", "training_intensity")},
            amount_unit=unit,
            label=" + ".join(x for x in (self.label, other.label) if x),
        )

    def shift(self, dt: float, *, time_unit: str = "h") -> "Schedule":
        """The same schedule ``dt`` later (``dt`` >= -first event time)."""
        dt_h = check_finite("dt", dt) * hours_per(time_unit)
        firsts = [float(a.min()) for a in (self.dose_time, self.session_start, self.training_start) if a.size]
        first = min(firsts, default=0.0)
        if first + dt_h < 0:
            raise ValueError(f"shift dt={dt} {time_unit} would move the first event ({first:g} h) before time 0")
        return dataclasses.replace(
            self,
            dose_time=self.dose_time + dt_h,
            session_start=self.session_start + dt_h,
            training_start=self.training_start + dt_h,
        )

    def scale(self, factor: float) -> "Schedule":
        """All dose amounts multiplied by ``factor`` (>= 0)."""
        f = check_finite("factor", factor, lo=0.0)
        return dataclasses.replace(self, dose_amount=self.dose_amount * f)


def concatenate(schedules: Sequence[Schedule]) -> Schedule:
    """Merge several schedules into one."""
    out = Schedule()
    for s in schedules:
        out = out + s
    return out
