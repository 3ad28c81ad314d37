"""Exact, event-aware, differentiable simulation of a model under a schedule.

How it works
------------
The schedule and the save times are turned (in numpy, outside any trace) into a
:class:`SegmentTable`: the time axis is cut at every event -- bolus arrival (dose time plus the
model's absorption lag), infusion start and end, device-session start and end, steady-state
reset -- so that every input is constant inside a segment. ``lax.scan`` runs over segments; at
each segment's start the bolus jumps, session-onset jumps and steady-state resets are applied,
then one ``diffrax.diffeqsolve`` integrates to the segment's end, saving the requested times that
fall inside it. Short inputs are therefore never stepped over, whatever the step-size controller
does. Segments with more than ``save_slots`` save times are split at save times; the table is
padded with zero-length, input-free segments to a bucketed length so that schedules of different
lengths share one compiled function and one ``vmap``.

Conventions
-----------
- Times are hours. The state at the first time is the model's baseline (``initial_state``).
- An observation at exactly an event time reports the state **after** the event (trajectories
  are right-continuous): a dose at t = 24 h shows in ``traj`` at t = 24 h. For a pre-dose
  trough, ask for a time just before the dose.
- Events after the last requested time are ignored.
- Gradients: reverse mode through ``diffrax.RecursiveCheckpointAdjoint`` (the default
  ``adjoint``); pass ``adjoint=diffrax.ForwardMode()`` for ``jax.jacfwd``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._units import amount_factor
from .model import N_ROUTES, N_SESSION_FEATURES, SESSION_FEATURES, Model
from .schedule import PATTERNS, ROUTES, Schedule
from .solvers import default_solver as default_solver
from .trajectory import Trajectory

#: Save slots per segment (segments with more save times are split).
SAVE_SLOTS = 16


class SolverError(RuntimeError):
    """The ODE solver failed (maximum steps reached or a non-finite state)."""


class SegmentTable(eqx.Module):
    """A schedule and save times cut into segments with constant inputs (padded; all arrays).

    Shapes: ``S`` segments, ``K`` save slots per segment, ``R`` routes, ``F`` session features,
    ``N`` save times.
    """

    t0: Float[Array, " S"]
    t1: Float[Array, " S"]
    bolus: Float[Array, "S R"]
    rate: Float[Array, "S R"]
    session: Float[Array, "S F"]
    onset: Float[Array, "S F"]
    ss: Float[Array, " S"]
    ss_bolus: Float[Array, "S R"]
    ss_rate: Float[Array, "S R"]
    ss_duration: Float[Array, " S"]
    ss_ii: Float[Array, " S"]
    ss_lag: Float[Array, " S"]
    save_ts: Float[Array, "S K"]
    save_index: Int[Array, " N"]
    has_ss: bool = eqx.field(static=True, default=False)
    has_sessions: bool = eqx.field(static=True, default=False)

    @property
    def n_segments(self) -> int:
        return int(self.t0.shape[-1])


def check_times(times) -> np.ndarray:
    """Validate save times: 1-D, non-empty, finite, non-decreasing (hours)."""
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"times must be an array of numbers (hours), got {type(times).__name__}") from None
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1:
        raise ValueError(f"times must be one-dimensional, got shape {t.shape}")
    if t.size == 0:
        raise ValueError("times is empty: give at least one time (hours) to save the state at")
    if not np.all(np.isfinite(t)):
        i = int(np.argmax(~np.isfinite(t)))
        raise ValueError(f"times[{i}]={float(t[i])} is not finite: every save time must be a finite number of hours")
    if np.any(np.diff(t) < 0):
        i = int(np.argmax(np.diff(t) < 0)) + 1
        raise ValueError(f"times must be non-decreasing: times[{i}]={float(t[i])} < times[{i - 1}]={float(t[i - 1])}")
    return t


def _bucket(n: int) -> int:
    """Next size bucket >= n (powers of two, at least 8) so that shapes repeat across calls."""
    b = 8
    while b < n:
        b *= 2
    return b


def _session_features(s: Schedule, i: int) -> np.ndarray:
    feat = np.zeros(N_SESSION_FEATURES)
    feat[SESSION_FEATURES.index("active")] = 1.0
    feat[SESSION_FEATURES.index("pulses")] = s.session_pulses[i]
    feat[SESSION_FEATURES.index("frequency_hz")] = s.session_frequency_hz[i]
    feat[SESSION_FEATURES.index("intensity")] = s.session_intensity[i]
    feat[SESSION_FEATURES.index("duration_h")] = s.session_duration[i]
    feat[SESSION_FEATURES.index("seizure")] = float(s.session_seizure[i])
    feat[SESSION_FEATURES.index(f"pattern_{PATTERNS[s.session_pattern[i]]}")] = 1.0
    return feat


def segment_table(
    model: Model, schedule: Schedule, times, *, n_segments: int | None = None, save_slots: int = SAVE_SLOTS
) -> SegmentTable:
    """Cut ``schedule`` and save ``times`` (hours) into a padded :class:`SegmentTable` for ``model``.

    ``n_segments`` forces the padded length (it must be at least the number needed); by default
    the next bucket is used.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a pkpd.Schedule, got {type(schedule).__name__}")
    t = check_times(times)
    _check_routes(model, schedule)
    scale = amount_factor(schedule.amount_unit, model.dose_unit) if schedule.n_doses else 1.0
    ev = _schedule_events(model, schedule, scale)
    t = _snap_to_events(t, ev)
    t_last = float(t[-1])
    event_times = (
        [b[0] for b in ev["bolus"]]
        + [r[0] for r in ev["rate"]]
        + [r[1] for r in ev["rate"]]
        + [s[0] for s in ev["ss"]]
        + [s[0] for s in ev["sessions"]]
        + [s[1] for s in ev["sessions"]]
    )
    t_begin = min([float(t[0])] + event_times)
    bounds = np.unique(np.array([t_begin] + [e for e in event_times if e <= t_last], dtype=np.float64))
    ends = np.append(bounds[1:], t_last)
    inputs = _segment_inputs(schedule, ev, bounds, t_last, scale)
    rows = _split_at_saves(t, bounds, ends, save_slots)
    n_needed = len(rows)
    size = _bucket(n_needed) if n_segments is None else int(n_segments)
    if size < n_needed:
        raise ValueError(f"n_segments={n_segments} is too small: this schedule and time grid need {n_needed}")
    t0, t1, save_ts, save_index = _save_layout(t, rows, size, save_slots, t_last)
    persist = ("rate", "session")  # inputs persist over every sub-segment of an event segment
    fills = {"ss_ii": 1.0}
    return SegmentTable(
        t0=jnp.asarray(t0),
        t1=jnp.asarray(t1),
        **{k: jnp.asarray(_expand(v, rows, size, fills.get(k, 0.0), k in persist)) for k, v in inputs.items()},
        save_ts=jnp.asarray(save_ts),
        save_index=jnp.asarray(save_index),
        has_ss=bool(inputs["ss"].any()),
        has_sessions=bool(len(ev["sessions"])),
    )


def _check_routes(model: Model, schedule: Schedule) -> None:
    for r in np.unique(schedule.dose_route):
        if not model.accepts_route(ROUTES[r]):
            raise ValueError(
                f"{type(model).__name__} cannot take route {ROUTES[r]!r} (e.g. an oral dose needs "
                "an absorption rate ka); valid routes for it: "
                f"{[x for x in ROUTES if model.accepts_route(x)]}"
            )


def _schedule_events(model: Model, schedule: Schedule, scale: float) -> dict[str, list]:
    """The schedule's events for ``model``: ``bolus`` (arrival time, route, amount in the model's
    unit), ``rate`` (start, end, route, rate), ``ss`` (time, dose index, lag) and ``sessions``
    (start, end, session index)."""
    bolus_ev: list[tuple[float, int, float]] = []
    rate_ev: list[tuple[float, float, int, float]] = []
    ss_ev: list[tuple[float, int, float]] = []
    for i in range(schedule.n_doses):
        route = ROUTES[schedule.dose_route[i]]
        amt = float(schedule.dose_amount[i]) * scale
        t_dose = float(schedule.dose_time[i])
        lag = float(model.lag(route))
        if schedule.dose_ss[i]:
            if lag >= schedule.dose_ii[i]:
                raise ValueError(
                    f"dose {i}: lag time {lag} h must be shorter than the steady-state interval ii={schedule.dose_ii[i]} h"
                )
            ss_ev.append((t_dose, i, lag))
        if route == "infusion":
            d = float(schedule.dose_duration[i])
            rate_ev.append((t_dose, t_dose + d, schedule.dose_route[i], amt / d))
        else:
            bolus_ev.append((t_dose + lag, schedule.dose_route[i], amt))
    sess = [
        (float(schedule.session_start[i]), float(schedule.session_start[i] + schedule.session_duration[i]), i)
        for i in range(schedule.n_sessions)
    ]
    return {"bolus": bolus_ev, "rate": rate_ev, "ss": ss_ev, "sessions": sess}


def _snap_to_events(t: np.ndarray, ev: dict) -> np.ndarray:
    """Save times within 1e-9 h of an event moved onto it: unit conversions leave round-off
    (0.1 d -> 2.4000000000000004 h), and a save time at an event reports the post-event state."""
    ev_all = np.array(
        [b[0] for b in ev["bolus"]]
        + [r[0] for r in ev["rate"]]
        + [s_[0] for s_ in ev["ss"]]
        + [s_[0] for s_ in ev["sessions"]],
        dtype=np.float64,
    )
    if ev_all.size:
        evs = np.unique(ev_all)  # unique: coincident doses must not hide a neighbour 1e-16 h away
        j = np.clip(np.searchsorted(evs, t), 1, evs.size) - 1
        for cand in (j, np.clip(j + 1, 0, evs.size - 1)):
            close = np.abs(evs[cand] - t) <= 1e-9
            t = np.where(close, evs[cand], t)
    return t


def _segment_inputs(schedule: Schedule, ev: dict, bounds: np.ndarray, t_last: float, scale: float) -> dict:
    """Per event segment (starting at ``bounds``): bolus amounts, infusion rates, session features,
    session-onset features and the steady-state reset of a dose (SS=1) starting there."""
    m = bounds.shape[0]
    out = dict(
        bolus=np.zeros((m, N_ROUTES)),
        rate=np.zeros((m, N_ROUTES)),
        session=np.zeros((m, N_SESSION_FEATURES)),
        onset=np.zeros((m, N_SESSION_FEATURES)),
    )
    seg_of = lambda time: int(np.searchsorted(bounds, time, side="right") - 1)  # noqa: E731
    for time, r, amt in ev["bolus"]:
        if time <= t_last:
            out["bolus"][seg_of(time), r] += amt
    for start, end, r, rr in ev["rate"]:
        if start > t_last:
            continue
        for k in range(seg_of(start), m):
            if bounds[k] >= end:
                break
            out["rate"][k, r] += rr
    for start, end, i in ev["sessions"]:
        if start > t_last:
            continue
        feat = _session_features(schedule, i)
        k0 = seg_of(start)
        out["onset"][k0] = feat
        for k in range(k0, m):
            if bounds[k] >= end:
                break
            out["session"][k] = feat
    out.update(_steady_state_inputs(schedule, ev["ss"], seg_of, m, t_last, scale))
    return out


def _steady_state_inputs(schedule: Schedule, ss_ev, seg_of, m: int, t_last: float, scale: float) -> dict:
    ss = np.zeros(m)
    ss_bolus = np.zeros((m, N_ROUTES))
    ss_rate = np.zeros((m, N_ROUTES))
    ss_duration = np.zeros(m)
    ss_ii = np.ones(m)
    ss_lag = np.zeros(m)
    for time, i, lag in ss_ev:
        if time > t_last:
            continue
        k = seg_of(time)
        if ss[k]:
            raise ValueError(f"two steady-state doses at the same time {time} h are not supported")
        ss[k] = 1.0
        route = schedule.dose_route[i]
        amt = float(schedule.dose_amount[i]) * scale
        if ROUTES[route] == "infusion":
            ss_rate[k, route] = amt / float(schedule.dose_duration[i])
            ss_duration[k] = float(schedule.dose_duration[i])
        else:
            ss_bolus[k, route] = amt
        ss_ii[k] = float(schedule.dose_ii[i])
        ss_lag[k] = lag
    return dict(ss=ss, ss_bolus=ss_bolus, ss_rate=ss_rate, ss_duration=ss_duration, ss_ii=ss_ii, ss_lag=ss_lag)


def _split_at_saves(t: np.ndarray, bounds: np.ndarray, ends: np.ndarray, save_slots: int) -> list:
    """Rows ``(event segment, t0, t1, save positions)``: save times assigned to segments
    (right-continuous), a segment with more than ``save_slots`` of them split at save times."""
    m = bounds.shape[0]
    seg_idx = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, m - 1)
    rows: list[tuple[int, float, float, np.ndarray]] = []
    for k in range(m):
        pos = np.nonzero(seg_idx == k)[0]
        chunks = [pos[j : j + save_slots] for j in range(0, max(len(pos), 1), save_slots)]
        for j, chunk in enumerate(chunks):
            start = bounds[k] if j == 0 else float(t[chunk[0]])
            end = ends[k] if j == len(chunks) - 1 else float(t[chunks[j + 1][0]])
            rows.append((k, start, end, chunk))
    return rows


def _expand(arr: np.ndarray, rows: list, size: int, fill: float = 0.0, persist: bool = False) -> np.ndarray:
    """Per-event-segment values laid out over the ``size`` padded rows: inputs that ``persist``
    (rates, active session) on every sub-segment of their event segment; jumps and resets only
    on its first sub-segment."""
    out = np.full((size,) + arr.shape[1:], fill, dtype=np.float64)
    for row, (k, *_rest) in enumerate(rows):
        if persist or row == 0 or rows[row - 1][0] != k:
            out[row] = arr[k]
    return out


def _save_layout(t: np.ndarray, rows: list, size: int, save_slots: int, t_last: float):
    """``(t0, t1, save_ts, save_index)`` of the padded table (padding: zero-length rows at ``t_last``)."""
    t0 = np.full(size, t_last)
    t1 = np.full(size, t_last)
    save_ts = np.full((size, save_slots), t_last)
    save_index = np.zeros(t.shape[0], dtype=np.int64)
    for row, (_k, start, end, chunk) in enumerate(rows):
        t0[row], t1[row] = start, end
        save_ts[row, :] = end
        save_ts[row, : len(chunk)] = t[chunk]
        save_index[chunk] = row * save_slots + np.arange(len(chunk))
    return t0, t1, save_ts, save_index


#: Status codes returned by :func:`solve`.
STATUS = {0: "ok", 1: "maximum number of solver steps reached", 2: "solver failure or non-finite state"}


def _exact_path(model: Model, method: str) -> bool:
    """Whether :func:`solve` propagates ``model`` by matrix exponentials (no ODE solver) under ``method``."""
    return hasattr(model, "propagate") and method != "ode"


def solve(
    model: Model,
    table: SegmentTable,
    *,
    solver: dfx.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    max_steps: int = 100_000,
    adjoint: dfx.AbstractAdjoint | None = None,
    dtmax: float | None = None,
    method: str = "auto",
) -> tuple[Float[Array, "N states"], Int[Array, ""], Int[Array, ""]]:
    """Integrate ``model`` over a :class:`SegmentTable`. Pure: ``jit``, ``vmap`` and ``grad`` pass through.

    ``method="auto"`` propagates linear models (those with a ``propagate`` method, e.g. every
    :mod:`pkpd.pk` model) exactly by matrix exponentials and integrates the others with diffrax;
    ``"ode"`` forces diffrax; ``"exact"`` requires the exact path.

    Returns ``(states at the save times, status code (see STATUS), total accepted steps)``.
    Never raises on solver failure: check the status (``simulate`` does).
    """
    if method not in ("auto", "ode", "exact"):
        raise ValueError(f"method={method!r} is not known; valid: 'auto', 'ode', 'exact'")
    exact = _exact_path(model, method)
    if method == "exact" and not exact:
        raise ValueError(
            f"method='exact' needs a linear model with a propagate method; {type(model).__name__} has none"
        )
    solver = model.default_solver() if solver is None else solver
    adjoint = dfx.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    controller = dfx.PIDController(rtol=rtol, atol=atol, dtmax=dtmax)
    # args[2]: an earlier segment already failed. Its results are void (the status says so), so the
    # remaining segments integrate a zero field, which takes a few steps each: a failed solve then
    # costs at most max_steps once instead of once per segment (under vmap, every lane waits for
    # the slowest, so one stalled lane used to hold a whole batch for max_steps x segments).
    term = dfx.ODETerm(lambda t, y, args: jnp.where(args[2], 0.0, model.vector_field(t, y, args[0], args[1])))

    def step(carry, seg):
        y, status = carry
        y = _segment_jumps(model, table, y, seg)
        if exact:
            dts = jnp.concatenate([seg["save_ts"], seg["t1"][None]]) - seg["t0"]
            ys = jax.vmap(lambda dt: model.propagate(y, seg["rate"], dt))(dts)
            code = jnp.where(jnp.all(jnp.isfinite(ys)), 0, 2)
            return (ys[-1], jnp.maximum(status, code)), (ys[:-1], jnp.asarray(0))
        sol = dfx.diffeqsolve(
            term,
            solver,
            seg["t0"],
            seg["t1"],
            None,
            y,
            args=(seg["rate"], seg["session"], status != 0),
            saveat=dfx.SaveAt(subs=[dfx.SubSaveAt(ts=seg["save_ts"]), dfx.SubSaveAt(t1=True)]),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=adjoint,
        )
        ys, y_end = sol.ys
        y_end = y_end[0]
        return (y_end, jnp.maximum(status, _status_code(sol, ys, y_end))), (ys, sol.stats["num_accepted_steps"])

    segs = {name: getattr(table, name) for name in _SEGMENT_FIELDS}
    y0 = model.initial_state()
    (_, status), (ys, steps) = jax.lax.scan(step, (y0, jnp.asarray(0)), segs)
    ys = ys.reshape((-1, y0.shape[0]))[table.save_index]
    return ys, status, jnp.sum(steps)


#: The per-segment fields of a :class:`SegmentTable` that :func:`solve` scans over.
_SEGMENT_FIELDS = (
    "t0",
    "t1",
    "bolus",
    "rate",
    "session",
    "onset",
    "ss",
    "ss_bolus",
    "ss_rate",
    "ss_duration",
    "ss_ii",
    "ss_lag",
    "save_ts",
)


def _segment_jumps(model: Model, table: SegmentTable, y, seg):
    """The state at a segment's start after its steady-state reset, bolus doses and session onset."""
    if table.has_ss:
        on = seg["ss"] > 0
        # Double where: segments without an SS dose evaluate a harmless dummy steady state
        # (ii = 24 h, no dose) so that no NaN can flow back through the unused branch.
        y_ss = model.steady_state(
            y,
            jnp.where(on, seg["ss_bolus"], 0.0),
            jnp.where(on, seg["ss_rate"], 0.0),
            jnp.where(on, seg["ss_duration"], 0.0),
            jnp.where(on, seg["ss_ii"], 24.0),
            jnp.where(on, seg["ss_lag"], 0.0),
        )
        y = jnp.where(on, y_ss, y)
    y = model.dose(y, seg["bolus"])
    if table.has_sessions:
        y = model.session_onset(y, seg["onset"])
    return y


def _status_code(sol, ys, y_end):
    """:data:`STATUS` code of one segment's diffrax solve."""
    code = jnp.where(
        sol.result == dfx.RESULTS.successful, 0, jnp.where(sol.result == dfx.RESULTS.max_steps_reached, 1, 2)
    )
    code = jnp.where((code == 0) & ~jnp.all(jnp.isfinite(ys)), 2, code)
    # NaN is never diffrax's fill for save times a failed solve did not reach (that is inf):
    # a NaN state is the diagnosis even when it also exhausted the steps
    return jnp.where(jnp.any(jnp.isnan(ys)) | jnp.any(jnp.isnan(y_end)), 2, code)


_COMPILED: dict = {}


def _compiled(batched: bool, **options: Any):
    """A jitted (and for populations vmapped) :func:`solve`, cached by options so that repeated
    calls with the same shapes never recompile."""
    key = (batched, tuple(sorted(options.items(), key=lambda kv: kv[0])))
    try:
        return _COMPILED[key]
    except TypeError:  # unhashable option (e.g. a custom solver): compile without caching
        key = None
    except KeyError:
        pass
    fn = functools.partial(solve, **options)
    if batched:
        fn = eqx.filter_vmap(fn, in_axes=(eqx.if_array(0), eqx.if_array(0)))
    fn = eqx.filter_jit(fn)
    if key is not None:
        _COMPILED[key] = fn
    return fn


def as_arrays(model: Model) -> Model:
    """Model with every float leaf as a float64 array, so that new parameter values reuse the
    compiled function instead of recompiling (``filter_jit`` treats Python floats as static)."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.asarray(x, dtype=jnp.float64)
            if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, bool)
            else x
        ),
        model,
    )


def _raise_on_failure(status, where: str):
    if isinstance(status, jax.core.Tracer):  # inside a user's jit: cannot inspect; check traj.status
        return
    status = np.asarray(status)
    if np.any(status != 0):
        bad = np.nonzero(np.atleast_1d(status))[0]
        code = int(np.atleast_1d(status)[bad[0]])
        who = f" (subjects {bad[:10].tolist()}{'...' if len(bad) > 10 else ''})" if status.ndim else ""
        advice = (
            "increase max_steps, loosen rtol/atol, or use the stiff default solver"
            if code == 1
            else "check the parameters for non-finite or extreme values"
        )
        raise SolverError(
            f"{where}: {STATUS[code]}{who}. Try: {advice}; or pass throw=False to get a "
            "Trajectory with .status set instead of an error."
        )


def _options(solver, rtol, atol, max_steps, adjoint, dtmax, method):
    from ._units import check_finite

    check_finite("rtol", rtol, lo=0.0, lo_open=True)
    check_finite("atol", atol, lo=0.0, lo_open=True)
    if int(max_steps) < 1:
        raise ValueError(f"max_steps={max_steps!r} must be >= 1")
    if method not in ("auto", "ode", "exact"):
        raise ValueError(f"method={method!r} is not known; valid: 'auto', 'ode', 'exact'")
    return dict(
        solver=solver,
        rtol=float(rtol),
        atol=float(atol),
        max_steps=int(max_steps),
        adjoint=adjoint,
        dtmax=None if dtmax is None else float(dtmax),
        method=method,
    )


def simulate(
    model: Model,
    schedule: Schedule,
    times,
    *,
    solver: dfx.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    max_steps: int = 100_000,
    adjoint: dfx.AbstractAdjoint | None = None,
    dtmax: float | None = None,
    method: str = "auto",
    throw: bool = True,
) -> Trajectory:
    """Simulate ``model`` under ``schedule`` and return the states and outputs at ``times``.

    **Main arguments**

    - ``model``: a :class:`pkpd.model.Model` (e.g. ``pkpd.pk.OneCompartment(cl=10, v=50, ka=1)``).
    - ``schedule``: a :class:`pkpd.Schedule` (amounts are converted to ``model.dose_unit``).
    - ``times``: save times in hours, 1-D, non-decreasing.

    **Other arguments**

    - ``method``: ``"auto"`` (default) propagates linear PK models exactly with matrix
      exponentials (machine precision) and integrates every other model with diffrax; ``"ode"``
      forces diffrax.
    - ``solver``: a diffrax solver; default ``model.default_solver()``, which is
      :func:`default_solver` (Kvaerno5, stiff-capable) unless a model documents otherwise.
      ``diffrax.Tsit5()`` is faster for non-stiff models.
    - ``rtol``, ``atol``: step-size controller tolerances (defaults 1e-8, 1e-12).
    - ``max_steps``: per segment; ``dtmax``: largest step (h), ``None`` for unbounded.
    - ``adjoint``: diffrax adjoint for gradients (default ``RecursiveCheckpointAdjoint``).
    - ``throw``: raise :class:`SolverError` on failure (default); with ``False`` the trajectory
      carries ``status`` (0 ok, 1 max steps, 2 failure) and possibly non-finite values.

    See the module docstring for the event conventions (right-continuous at dose times).
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pkpd model (pkpd.model.Model), got {type(model).__name__}")
    table = segment_table(model, schedule, times)
    opts = _options(solver, rtol, atol, max_steps, adjoint, dtmax, method)
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(model))
    if throw and not traced:  # a NaN rate constant would otherwise reject every step until max_steps
        bad = [
            f"{jax.tree_util.keystr(path)} = {np.asarray(x).tolist()}"
            for path, x in jax.tree_util.tree_leaves_with_path(model)
            if isinstance(x, (float, int, np.ndarray, jax.Array))
            and not isinstance(x, bool)
            and np.issubdtype(np.asarray(x).dtype, np.number)
            and not np.all(np.isfinite(np.asarray(x)))
        ]
        if bad:
            raise SolverError(
                f"simulate: non-finite model parameter(s) {', '.join(bad)}; every parameter must be "
                "a finite number: check the parameters (pass throw=False to get a Trajectory with .status instead)"
            )
    if traced:  # inside a user's jit/vmap/grad: stay traceable, no compile cache
        ys, status, steps = solve(model, table, **opts)
    else:
        ys, status, steps = _compiled(False, **opts)(as_arrays(model), table)
    if throw and not traced:
        _raise_on_failure(status, "simulate")
    return Trajectory(times=np.asarray(check_times(times)), states=ys, model=model, status=status, num_steps=steps)


def _population_tables(proto: Model, schedules: list, times, n_segments: int | None = None) -> tuple[list, np.ndarray]:
    """One segment table per distinct schedule object (a shared schedule is cut once), padded to
    one length (at least the bucket of ``n_segments``) and one set of static flags, and each
    subject's table index."""
    first: dict[int, int] = {}
    subject_table = np.empty(len(schedules), dtype=np.int64)
    uniq: list[Schedule] = []
    for i, s in enumerate(schedules):
        j = first.setdefault(id(s), len(uniq))
        if j == len(uniq):
            uniq.append(s)
        subject_table[i] = j
    tables = [segment_table(proto, s, times) for s in uniq]
    size = max([tb.n_segments for tb in tables] + ([_bucket(int(n_segments))] if n_segments else []))
    tables = [
        tb if tb.n_segments == size else segment_table(proto, s, times, n_segments=size) for tb, s in zip(tables, uniq)
    ]
    if len(tables) == 1:
        tables = [_fit_save_slots(proto, uniq[0], times, tables[0])]
    has_ss = any(tb.has_ss for tb in tables)
    has_sessions = any(tb.has_sessions for tb in tables)
    tables = [dataclasses.replace(tb, has_ss=has_ss, has_sessions=has_sessions) for tb in tables]
    return tables, subject_table


def _run_chunks(fn, model, table_all, subject_table, n: int, chunk: int, shared: bool):
    """``fn`` over the subjects ``chunk`` at a time (the last chunk padded with copies of the last
    subject, trimmed after): concatenated ``(states, status, steps)``."""
    outs = []
    for lo in range(0, n, chunk):
        idx = np.arange(lo, lo + chunk)
        idx = np.where(idx < n, idx, n - 1)  # pad the last chunk with copies of the last subject
        whole = lo == 0 and chunk == n
        m_c = model if whole else jax.tree_util.tree_map(lambda x: x[idx] if eqx.is_array(x) else x, model)
        t_c = (
            table_all
            if shared
            else jax.tree_util.tree_map(lambda x: x[subject_table[idx]] if eqx.is_array(x) else x, table_all)
        )
        ys, status, steps = fn(m_c, t_c)
        keep = min(chunk, n - lo)
        if keep < chunk:
            ys, status, steps = ys[:keep], status[:keep], steps[:keep]
        outs.append((ys, status, steps))
    if len(outs) == 1:
        return outs[0]
    return tuple(jnp.concatenate([o[i] for o in outs]) for i in range(3))


def stack(models) -> Model:
    """Stack models of the same type and structure into one batched model (leading axis = subject)."""
    models = list(models)
    if not models:
        raise ValueError("stack needs at least one model")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x, dtype=jnp.float64) for x in xs]), *models)


def _broadcast_model(model: Model, n: int) -> Model:
    """``stack([model] * n)`` without n Python-level copies (float leaves broadcast to (n, ...))."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.broadcast_to(jnp.asarray(x, dtype=jnp.float64), (n,) + jnp.shape(x))
            if eqx.is_array(x) or (isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, bool))
            else x
        ),
        model,
    )


def _fit_save_slots(proto: Model, schedule: Schedule, times, table: SegmentTable) -> SegmentTable:
    """Rebuild ``table`` with as few save slots per segment as its busiest segment needs (a power of
    two <= SAVE_SLOTS). No segment is split differently, so the results are the same; only the
    padded save buffers (memory) shrink, which matters for large populations."""
    k = table.save_ts.shape[-1]
    rows = np.asarray(table.save_index) // k
    needed = int(np.bincount(rows).max()) if rows.size else 1
    slots = 1
    while slots < needed:
        slots *= 2
    if slots >= k:
        return table
    return segment_table(proto, schedule, times, n_segments=table.n_segments, save_slots=slots)


def population_devices(devices=None) -> list:
    """The devices a population is sharded over: ``devices=None`` -> every device of
    ``jax.devices()`` (one device: no sharding); an int -> the first that many; or a list."""
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        avail = jax.devices()
        if not 1 <= int(devices) <= len(avail):
            raise ValueError(
                f"devices={devices} must be between 1 and the {len(avail)} available device(s); "
                "on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax"
            )
        return list(avail[: int(devices)])
    devices = list(devices)
    if not devices:
        raise ValueError("devices is empty")
    return devices


_POPULATION: dict = {}

#: Why implicit solvers are not sharded (lineax's linear solves fail inside ``jax.shard_map``).
IMPLICIT_SHARDING = (
    "implicit solvers (here {solver}) cannot be sharded over devices: lineax's linear solve fails inside "
    "jax.shard_map ('pytree does not match out_structure'; github.com/patrick-kidger/lineax/issues/185)"
)


def _shardable_devices(devs: list, solver, requested) -> list:
    """``devs``, or its first device only when ``solver`` is implicit (:data:`IMPLICIT_SHARDING`): with
    the default ``devices=None`` the population then runs unsharded; an explicit request for more
    than one device is refused with that reason."""
    if len(devs) == 1 or not isinstance(solver, dfx.AbstractImplicitSolver):  # None: the exact (non-ODE) path
        return devs
    if requested is not None:
        raise ValueError(f"devices={requested!r}: " + IMPLICIT_SHARDING.format(solver=type(solver).__name__))
    return devs[:1]


def _population_fn(table_batched: bool, devices: tuple, options: dict):
    """Jitted, vmapped :func:`solve` over subjects, sharded over ``devices`` with ``shard_map`` when
    there is more than one (each device integrates its block of subjects; no communication).
    Cached by (table batched, devices, options)."""
    try:
        key = (table_batched, devices, tuple(sorted(options.items(), key=lambda kv: kv[0])))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _POPULATION:
        return _POPULATION[key]
    vm = eqx.filter_vmap(
        functools.partial(solve, **options), in_axes=(eqx.if_array(0), eqx.if_array(0) if table_batched else None)
    )
    if len(devices) == 1:
        fn = eqx.filter_jit(vm)
    else:
        from jax.sharding import Mesh, PartitionSpec

        mesh = Mesh(np.asarray(devices, dtype=object), ("subjects",))
        rep, sub = PartitionSpec(), PartitionSpec("subjects")

        def run(model, table):
            dyn_m, static_m = eqx.partition(model, eqx.is_array)
            dyn_t, static_t = eqx.partition(table, eqx.is_array)
            specs = (
                jax.tree_util.tree_map(lambda _: sub, dyn_m),
                jax.tree_util.tree_map(lambda _: sub if table_batched else rep, dyn_t),
            )

            def local(dm, dt):
                return vm(eqx.combine(dm, static_m), eqx.combine(dt, static_t))

            # check_vma=False: diffrax's while loops are not annotated for varying-manual-axes checks.
            return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=sub, check_vma=False)(dyn_m, dyn_t)

        fn = eqx.filter_jit(run)
    if key is not None:
        _POPULATION[key] = fn
    return fn


#: Bytes of per-subject solver buffers a population chunk may hold (bounds peak memory).
CHUNK_BYTES = 256 * 2**20


def _auto_chunk(table: SegmentTable, n_states: int, n_dev: int) -> int:
    s, k = table.save_ts.shape[-2:]
    per_subject = 8 * s * (k + 1) * n_states * 2 + 8 * s * (k + 64)  # scan outputs, save buffers, table
    chunk = 256
    while chunk * 2 * per_subject <= CHUNK_BYTES and chunk < 8192:
        chunk *= 2
    return max(n_dev, chunk - chunk % n_dev)


def simulate_population(
    model: Model,
    schedules,
    times,
    *,
    solver: dfx.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-12,
    max_steps: int = 100_000,
    adjoint: dfx.AbstractAdjoint | None = None,
    dtmax: float | None = None,
    method: str = "auto",
    throw: bool = True,
    devices=None,
    chunk_size: int | None = None,
    n_segments: int | None = None,
) -> Trajectory:
    """Simulate many subjects in one compiled, vmapped call.

    ``model``: a batched model (see :func:`stack`; every array leaf has a leading subject axis),
    or an unbatched model shared by all subjects. ``schedules``: one :class:`Schedule` for all, or
    one per subject (different lengths are padded to a common bucket; a schedule shared by many
    subjects is cut into segments once). Returns a :class:`Trajectory` whose states have shape
    (subjects, times, states) and ``status`` per subject.

    **Scale-out**

    - ``devices``: subjects are sharded over these devices (``jax.shard_map`` over a one-axis
      ``Mesh``; each device integrates its own block of subjects, no communication). Default
      ``None``: every device in ``jax.devices()`` -- nothing changes on a machine with one device.
      An int takes the first that many devices; ``1`` turns sharding off. Several CPU "devices"
      need ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before jax is imported.
      Sharded and unsharded results are identical. Implicit solvers (the models' default Kvaerno5)
      are not sharded: with ``devices=None`` they run on one device, and more than one is refused
      (:data:`IMPLICIT_SHARDING`).
    - ``chunk_size``: subjects per compiled call (a multiple of the number of devices); the
      population is run chunk by chunk so that solver buffers stay bounded (the default keeps
      them near ``CHUNK_BYTES``; only the returned states grow with the population).
    - ``n_segments``: pad the segment tables to at least this many segments (rounded up to the
      next power of two), so that calls with different schedules (a single session, a course) of
      one model share one compiled solver instead of tracing and compiling one each. The padding
      is zero-length segments; results are unchanged.
    """
    leaves = [x for x in jax.tree_util.tree_leaves(model) if eqx.is_array(x)]
    n_model = leaves[0].shape[0] if leaves and leaves[0].ndim >= 1 else None
    if isinstance(schedules, Schedule):
        schedules = [schedules] * (n_model or 1)
    schedules = list(schedules)
    n = len(schedules)
    if n_model is not None and n_model != n:
        raise ValueError(f"length mismatch: model is batched over {n_model} subjects but {n} schedules were given")
    if n_model is None:
        model = _broadcast_model(model, n)
    proto = jax.tree_util.tree_map(lambda x: x[0] if eqx.is_array(x) else x, model)
    if n_segments is not None and (
        not isinstance(n_segments, (int, np.integer)) or isinstance(n_segments, bool) or n_segments < 1
    ):
        raise ValueError(f"n_segments={n_segments!r} must be a positive integer")
    tables, subject_table = _population_tables(proto, schedules, times, n_segments)
    shared = len(tables) == 1
    table_all = tables[0] if shared else jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *tables)
    opts = _options(solver, rtol, atol, max_steps, adjoint, dtmax, method)

    solver_used = None if _exact_path(proto, method) else (opts["solver"] or proto.default_solver())
    devs = _shardable_devices(population_devices(devices), solver_used, devices)
    n_dev = len(devs)
    if chunk_size is None:
        chunk = _auto_chunk(tables[0], proto.initial_state().shape[0], n_dev)
    else:
        chunk = int(chunk_size)
        if chunk < 1 or chunk % n_dev:
            raise ValueError(f"chunk_size={chunk_size} must be a positive multiple of the number of devices ({n_dev})")
    fn = _population_fn(not shared, tuple(devs), opts)
    if n <= chunk:  # one call; pad to a multiple of the device count only
        chunk = -(-n // n_dev) * n_dev
    ys, status, steps = _run_chunks(fn, model, table_all, subject_table, n, chunk, shared)
    if throw:
        _raise_on_failure(status, "simulate_population")
    return Trajectory(times=np.asarray(check_times(times)), states=ys, model=model, status=status, num_steps=steps)
