"""Schedule design: gradient-based schedule optimisation and sensitivity analysis (issue 8).

``pkpd.optimise_schedule(modality, readout=..., at_h=..., vary=[...], bounds={...})`` searches the
schedule of a modality's standard protocol for the design that maximises (or minimises) a readout
metric; ``pkpd.sensitivity(modality, readout=..., metric=...)`` says which model-card parameters a
time-scale metric depends on, locally (normalised derivatives) or globally (Sobol indices over
the cards' priors).

How the gradient reaches the schedule
-------------------------------------
:func:`pkpd.simulate.segment_table` cuts the time axis at every event in numpy, so a schedule's
times are not traced. Here the table is built once in numpy **at the current design point** (which
fixes its structure: which event opens and closes each segment, in which segment each dose lands)
and its ``t0``/``t1``/``save_ts`` columns and bolus/infusion amounts are then replaced by traced
functions of the design variables: every segment boundary is looked up in a traced vector of event
times (session starts and ends, dose arrivals, infusion ends, save times). ``jax.jacfwd`` (with
``diffrax.ForwardMode``) then differentiates the simulated readout through the segment boundaries
exactly (discretise-then-differentiate, as for any other parameter). The structure is rebuilt at
every optimiser step, so the gradient is the one-sided derivative of the schedule family whose
event order is that of the current point; where the order changes (sessions running into the next
day, a session crossing ``at_h``) the objective may have a kink, which the projected optimiser
and the best-of-history bookkeeping tolerate. A self-check compares the traced table with the
numpy one at every evaluation.

Why not finite differences: the traced table gives exact derivatives of the numerical solution in
one forward-mode pass per design variable. They converge to the true derivative as the tolerance
tightens; the stimulation models' BCM switch (LTP/LTD branch) makes them noisier than the values:
d(efficacy at day 5)/d(gap) of accelerated iTBS was measured within 3 % (gap 1.2 h) and 6 %
(0.6 h) of converged central differences at rtol 1e-7 (:data:`DESIGN_SOLVE`), but 60 % off at
0.6 h with rtol 1e-6. The sign is reliable, which is what projected Adam needs; every candidate is
judged by its simulated value, not by the gradient.

Design variables
----------------
Continuous (gradient, projected Adam in the box of ``bounds``):

- ``gap_h`` -- start-to-start gap between same-day device sessions (h);
- ``dose_mg`` -- the maintenance dose of a drug (in the protocol's amount unit: mg, ug, ...);
- ``loading_dose_mg`` -- the first dose (defaults to the maintenance dose).

Discrete (enumerated: every value in ``bounds`` at the continuous optimum of the standard discrete
setting; the continuous variables are then re-optimised for the best two):

- ``sessions_per_day``, ``sessions_per_week`` (device sessions; <5/week are spread over the week as
  in :meth:`pkpd.Schedule.sessions`), ``days`` (treatment days for devices, number of doses for
  drugs).

Constraints (``constraints={...}``): ``max_sessions_per_day``, ``min_gap_h`` (h), ``max_daily_dose_mg``,
``total_sessions`` or ``total_pulses`` (devices: the number of sessions is fixed, days follow from
sessions per day), ``cmax`` (a ceiling on the drug ``concentration`` in mg/L, or ``"steady_state"``
for the steady-state Cmax of the standard regimen). Bounds and the first four act on the search
box; ``cmax`` is a path constraint handled by a quadratic penalty, and the returned design is
always checked on the time grid (an infeasible end point is pulled back towards the start by
bisection).

Metrics (``metric=``): ``"value"`` (the readout at ``at_h``, default), ``"time_to"`` (first time
the readout reaches ``target``, linear interpolation on the grid; not reached within ``at_h``:
``at_h`` times one plus the remaining fraction of the way, so that the metric stays continuous and
still ranks designs), ``"auc"`` (integral of the change from baseline over [0, ``at_h``], h),
``"peak"`` (largest change, as a readout value), ``"mean"`` (mean over [0, ``at_h``]).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import time
import warnings
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import params
from .modalities import build, get_modality
from .protocols import PROTOCOLS, protocol
from .schedule import ROUTES, Schedule
from .simulate import as_arrays, default_solver, segment_table, solve

#: Solver settings for design and sensitivity runs: tolerances matched to the questions asked (a
#: few significant digits), Tsit5 (measured 5-30x faster than the stiff default on these models).
DESIGN_SOLVE = dict(solver=dfx.Tsit5(), rtol=1e-7, atol=1e-10, max_steps=16_384)
#: Sobol runs sample parameters over wide priors, where some draws are stiff: the explicit Tsit5
#: then crawls (and in a vmapped batch every lane waits for the slowest); the stiff default
#: (Kvaerno5) at looser tolerances was measured 5x faster on fluoxetine prior draws, metric values
#: agreeing to ~1e-5 relative. Sobol indices only need a few digits.
SOBOL_SOLVE = dict(solver=default_solver(), rtol=1e-4, atol=1e-7, max_steps=4096)
CONTINUOUS = ("gap_h", "dose_mg", "loading_dose_mg")
DISCRETE = ("sessions_per_day", "sessions_per_week", "days")
CONSTRAINTS = ("max_sessions_per_day", "min_gap_h", "max_daily_dose_mg", "total_sessions", "total_pulses", "cmax")
OPT_METRICS = ("value", "time_to", "auc", "peak", "mean")
SENS_METRICS = ("t50", "tmax", "onset", "peak", "auc", "value")
SAVE_SLOTS = 32


# ---------------------------------------------------------------------------------------- helpers
def _readout_names(model) -> list[str]:
    y0 = model.initial_state()
    return list(model.state_names) + [k for k in model.outputs(y0) if k not in model.state_names]


def _check_readout(model, readout: str) -> None:
    names = _readout_names(model)
    if not isinstance(readout, str) or readout not in names:
        raise ValueError(
            f"readout={readout!r} is not a state or output of the {getattr(model, 'modality', '')!r} "
            f"model; valid: {names}"
        )


def _readout(model, ys, readout):
    if readout in model.state_names:
        return ys[..., list(model.state_names).index(readout)]
    return model.outputs(ys)[readout]


def _crossing(t, f):
    """First time at which f (on grid t) becomes >= 0, by linear interpolation; (time, reached)."""
    hit = f >= 0
    reached = jnp.any(hit)
    i = jnp.argmax(hit)
    im = jnp.maximum(i - 1, 0)
    denom = f[i] - f[im]
    frac = jnp.where(jnp.abs(denom) > 0, -f[im] / jnp.where(jnp.abs(denom) > 0, denom, 1.0), 0.0)
    tc = jnp.where(i == 0, t[0], t[im] + frac * (t[i] - t[im]))
    return tc, reached


def opt_metric(t, y, metric: str, *, at_index: int, target=None):
    """Objective metric of a readout ``y`` on the grid ``t`` (see the module docstring)."""
    t = jnp.asarray(t)
    if metric == "value":
        return y[at_index]
    t, y = t[: at_index + 1], y[: at_index + 1]
    c = y - y[0]
    if metric == "auc":
        return jnp.sum(0.5 * (c[1:] + c[:-1]) * jnp.diff(t))
    if metric == "mean":
        return jnp.sum(0.5 * (y[1:] + y[:-1]) * jnp.diff(t)) / (t[-1] - t[0])
    if metric == "peak":
        return y[jnp.argmax(jnp.abs(c))]
    if metric == "time_to":
        s = jnp.sign(target - y[0])
        f = s * (y - target)
        tc, reached = _crossing(t, f)
        best = jnp.max(f)  # <= 0 if not reached: the remaining way, relative to the whole way
        short = -best / jnp.abs(target - y[0])
        return jnp.where(reached, tc, t[-1] * (1.0 + short))
    raise ValueError(f"metric={metric!r} is not known; valid: {list(OPT_METRICS)}")


def sens_metric(t, y, metric: str, *, at_index: int | None = None):
    """Time-scale metric of a readout ``y`` on a uniform grid ``t`` (see :func:`sensitivity`)."""
    t = jnp.asarray(t)
    c = y - y[0]
    i = jnp.argmax(jnp.abs(c))
    peak = c[i]
    if metric == "value":
        return y[at_index]
    if metric == "peak":
        return y[0] + peak
    if metric == "auc":
        return jnp.sum(0.5 * (c[1:] + c[:-1]) * jnp.diff(t))
    if metric == "tmax":  # parabola through the three grid points around the largest change
        ii = jnp.clip(i, 1, t.shape[0] - 2)
        a, b, d = jnp.abs(c[ii - 1]), jnp.abs(c[ii]), jnp.abs(c[ii + 1])
        den = a - 2 * b + d
        off = jnp.where(den < 0, 0.5 * (a - d) / jnp.where(den < 0, den, -1.0), 0.0)
        return t[ii] + jnp.clip(off, -0.5, 0.5) * 0.5 * (t[ii + 1] - t[ii - 1])
    if metric in ("t50", "onset"):
        level = 0.5 if metric == "t50" else 0.1
        rel = c / jnp.where(jnp.abs(peak) > 0, peak, 1.0)
        tc, _ = _crossing(t, rel - level)
        return jnp.where(jnp.abs(peak) > 1e-12, tc, jnp.nan)
    raise ValueError(f"metric={metric!r} is not known; valid: {list(SENS_METRICS)}")


# --------------------------------------------------------------- traced schedule -> segment table
def _events(aux, x):
    """Traced event times and amounts: session starts ``s_base + s_k * gap``, dose amounts
    ``a_base + a_dose * dose + a_load * loading dose`` (coefficient arrays in ``aux``)."""
    out = {}
    if "s_base" in aux:
        out["session_start"] = aux["s_base"] + aux["s_k"] * x.get("gap_h", aux["gap"])
    if "d_time" in aux:
        amt = aux["a_base"]
        if "dose_mg" in x:
            amt = amt + aux["a_dose"] * x["dose_mg"]
        if "loading_dose_mg" in x:
            amt = amt + aux["a_load"] * x["loading_dose_mg"]
        out["dose_time"], out["dose_amount"] = aux["d_time"], amt
    return out


def _event_vector(aux, ev, xp):
    parts = []
    if "d_time" in ev:
        parts += [ev["dose_time"] + aux["d_lag"], ev["dose_time"] + aux["d_dur"]]
    if "session_start" in ev:
        parts += [ev["session_start"], ev["session_start"] + aux["s_dur"]]
    parts.append(aux["times"])
    return xp.concatenate([xp.asarray(p, dtype=float) for p in parts])


def _traced_table(aux, x):
    """The segment table of ``aux`` (see :class:`_Link`) with times and amounts traced from ``x``."""
    ev = _events(aux, x)
    e = _event_vector(aux, ev, jnp)
    tb = aux["table"]
    repl = dict(t0=e[aux["i_t0"]], t1=e[aux["i_t1"]], save_ts=e[aux["i_save"]])
    if "d_time" in aux:
        amt = ev["dose_amount"] * aux["scale"]
        repl["bolus"] = jnp.zeros_like(tb.bolus).at[aux["b_rows"], aux["b_routes"]].add(amt[aux["b_doses"]])
        repl["rate"] = (
            jnp.zeros_like(tb.rate).at[aux["r_rows"], aux["r_routes"]].add((amt / aux["d_rate_dur"])[aux["r_doses"]])
        )
    return dataclasses.replace(tb, **repl)


class _Link:
    """A segment table built in numpy at a concrete design, with its times and amounts re-expressed
    as traced functions of the design (see the module docstring). ``aux`` holds every array the
    traced table needs, so that one compiled function serves every design of the same shapes."""

    def __init__(self, model, schedule: Schedule, times: np.ndarray, coeffs: dict, x0: dict):
        from ._units import amount_factor

        tb = segment_table(model, schedule, times, save_slots=SAVE_SLOTS)
        s = schedule
        t_last = float(np.asarray(times)[-1])
        aux = {k: np.asarray(v, float) for k, v in coeffs.items()}
        aux["times"] = np.asarray(times, float)
        if s.n_doses:
            inf = np.array([ROUTES[r] == "infusion" for r in s.dose_route], bool)
            aux["d_lag"] = np.array([model.lag(ROUTES[r]) for r in s.dose_route], float)
            aux["d_dur"] = np.asarray(s.dose_duration, float)
            aux["d_rate_dur"] = np.where(inf, s.dose_duration, 1.0)
            aux["scale"] = np.asarray(amount_factor(s.amount_unit, model.dose_unit))
        if s.n_sessions:
            aux["s_dur"] = np.asarray(s.session_duration, float)
        e0 = np.asarray(_event_vector(aux, {k: np.asarray(v) for k, v in _events(aux, x0).items()}, np))
        n_ev = e0.shape[0] - aux["times"].shape[0]

        def match(values, prefer_events):
            out = np.empty(values.shape, np.int64)
            for j, v in np.ndenumerate(values):
                d = np.abs(e0 - v)
                tol = 1e-9 * max(1.0, abs(v))
                ev_hit = np.nonzero(d[:n_ev] <= tol)[0]
                t_hit = n_ev + np.nonzero(d[n_ev:] <= tol)[0]
                cand = np.concatenate([ev_hit, t_hit] if prefer_events else [t_hit, ev_hit])
                if not cand.size:
                    raise RuntimeError(f"internal: segment boundary {v} h matches no schedule event")
                out[j] = cand[0]
            return out

        t0, t1 = np.asarray(tb.t0), np.asarray(tb.t1)
        aux["i_t0"], aux["i_t1"] = match(t0, True), match(t1, True)
        aux["i_save"] = match(np.asarray(tb.save_ts), False)
        if s.n_doses:
            # Bolus doses land in the first row starting at their arrival; infusions in the rows they cover.
            b_rows, b_routes, b_doses, r_rows, r_routes, r_doses = [], [], [], [], [], []
            for i in range(s.n_doses):
                if s.dose_ss[i]:
                    raise ValueError("schedules with steady-state (ss) doses cannot be designed")
                if inf[i]:
                    start, end = s.dose_time[i], s.dose_time[i] + s.dose_duration[i]
                    if start > t_last:
                        continue
                    rows = np.nonzero((t0 >= start - 1e-12) & (t1 <= end + 1e-12) & (t1 > t0))[0]
                    r_rows += rows.tolist()
                    r_routes += [int(s.dose_route[i])] * rows.size
                    r_doses += [i] * rows.size
                else:
                    arr = s.dose_time[i] + aux["d_lag"][i]
                    if arr > t_last:
                        continue
                    b_rows.append(int(np.argmax(np.abs(t0 - arr) <= 1e-9 * max(1.0, arr))))
                    b_routes.append(int(s.dose_route[i]))
                    b_doses.append(i)
            for name, val in (
                ("b_rows", b_rows),
                ("b_routes", b_routes),
                ("b_doses", b_doses),
                ("r_rows", r_rows),
                ("r_routes", r_routes),
                ("r_doses", r_doses),
            ):
                aux[name] = np.asarray(val, np.int64)
        aux = {k: jnp.asarray(v) for k, v in aux.items()}
        aux["table"] = tb
        self.aux, self.table, self.schedule = aux, tb, schedule
        # Self-check: the traced table at x0 reproduces the numpy one.
        chk = _traced_table(aux, {k: jnp.asarray(v) for k, v in x0.items()})
        for name in ("t0", "t1", "save_ts", "bolus", "rate"):
            a, b = np.asarray(getattr(chk, name)), np.asarray(getattr(tb, name))
            if not np.allclose(a, b, rtol=1e-9, atol=1e-9):
                raise RuntimeError(f"internal: traced segment table differs from the numpy one in {name}")


# ------------------------------------------------------------------------------- design spaces
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
            from .schedule import PATTERNS

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


# ---------------------------------------------------------------------------------------- result
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


# ------------------------------------------------------------------------------------- optimiser
class _Spec(eqx.Module):
    """Static description of what one evaluation computes (hashable: one compile per spec and shapes)."""

    readout: str = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    at_index: int = eqx.field(static=True)
    target: float | None = eqx.field(static=True)
    cmax: bool = eqx.field(static=True)
    batched: bool = eqx.field(static=True)
    solve_opts: tuple = eqx.field(static=True)


def _value(spec: _Spec, x, aux, model):
    tb = _traced_table(aux, x)
    ys, status, _ = solve(model, tb, adjoint=dfx.ForwardMode(), **dict(spec.solve_opts))
    y = _readout(model, ys, spec.readout)
    m = opt_metric(aux["times"], y, spec.metric, at_index=spec.at_index, target=spec.target)
    m = jnp.where(status == 0, m, jnp.nan)
    cmax = jnp.max(model.outputs(ys)["concentration"][: spec.at_index + 1]) if spec.cmax else jnp.asarray(0.0)
    return m, cmax


@eqx.filter_jit
def _val(spec, x, aux, models):
    f = lambda mm: _value(spec, x, aux, mm)
    return eqx.filter_vmap(f)(models) if spec.batched else f(models)


@eqx.filter_jit
def _val_jac(spec, x, aux, models):
    def f(xx):
        g = lambda mm: _value(spec, xx, aux, mm)
        m, c = eqx.filter_vmap(g)(models) if spec.batched else g(models)
        return jnp.stack([jnp.mean(m), jnp.max(c)]), (m, c)

    jac, (m, c) = jax.jacfwd(f, has_aux=True)(x)
    return m, c, jac


def prior_draws(
    modality: str, n: int, *, parameters=None, sd_scale: float = 1.0, species: str = "human", seed: int = 0
) -> list:
    """``n`` models with ``parameters`` (default: every parameter with a prior that the model uses
    and that can vary, see :func:`sensitivity`) drawn from the model cards' priors, their spread
    scaled by ``sd_scale`` (truncated to ±3 SD and each parameter's domain). A stand-in for
    posterior draws until calibrated ones ship (``optimise_schedule(..., draws=...)``)."""
    model = build(modality, species)[0]
    cands = _candidates(modality, species, model)
    names = list(cands) if parameters is None else list(parameters)
    for p in names:
        if p not in cands:
            raise ValueError(f"parameters: {p!r} has no usable prior in the {modality!r} model; valid: {list(cands)}")
    u = np.random.default_rng(seed).uniform(size=(int(n), len(names)))
    theta = _ppf(cands, names, u, sd_scale=sd_scale)
    return [_set(as_arrays(model), names, row) for row in theta]


def optimise_schedule(
    modality: str,
    *,
    readout: str,
    at_h: float,
    vary,
    bounds: dict,
    constraints: dict | None = None,
    objective: str = "max",
    metric: str = "value",
    target: float | None = None,
    species: str = "human",
    model=None,
    draws=None,
    protocol_options: dict | None = None,
    steps: int = 20,
    learning_rate: float = 0.1,
    n_init: int = 4,
    grid_step_h: float | None = None,
    draw_grid: int = 9,
    solve_options: dict | None = None,
) -> DesignResult:
    """Optimise the schedule of ``modality``'s standard protocol for a readout metric.

    **Main arguments**

    - ``readout``: a state or output of the model (``"synaptic_efficacy"``, ``"spine_density"``,
      ``"occupancy"``, ``"hippocampal_volume"``, ...).
    - ``at_h``: the time (h) at which ``metric="value"`` reads the readout; for the other metrics
      the horizon [0, ``at_h``].
    - ``vary``: design variables (module docstring): ``gap_h``, ``dose_mg``, ``loading_dose_mg``
      (continuous); ``sessions_per_day``, ``sessions_per_week``, ``days`` (discrete).
    - ``bounds``: ``{name: (low, high)}`` for every varied name (whole numbers for discrete ones).
      ``gap_h`` is further limited to designs that fit: at least the session duration (and
      ``min_gap_h``), and all of a day's sessions within 24 h.
    - ``constraints``: see the module docstring (``max_sessions_per_day``, ``min_gap_h``,
      ``max_daily_dose_mg``, ``total_sessions``, ``total_pulses``, ``cmax``).
    - ``objective``: ``"max"`` or ``"min"``; ``metric``: ``"value"`` (default), ``"time_to"``
      (needs ``target``, a readout level; minimise it), ``"auc"``, ``"peak"``, ``"mean"``.

    **Other arguments**

    - ``draws``: a list of models of this modality (posterior draws, e.g. from a future
      ``pkpd.calibration``, or :func:`prior_draws`): the posterior-mean metric is optimised and
      ``result.draws`` holds each draw's metric at the optimum and at the standard, each draw's
      own optimum (``"x"``: discrete variables by enumeration, continuous ones on a
      ``draw_grid``-point grid over their feasible range, one variable at a time with the others
      at the posterior-mean optimum) and its ``"spread"`` (mean, sd, 5/50/95 %).
    - ``model``: a model replacing the card model (e.g. a fitted one); ``protocol_options``:
      options of the standard protocol, ``pkpd.protocol(modality, **protocol_options)``.
    - ``steps``, ``learning_rate`` (fraction of the box per step, cosine-decayed), ``n_init``
      (evenly spaced screening points per continuous variable, besides the start),
      ``grid_step_h`` (grid of the time-course metrics and of Cmax; default 1 h up to 60 days),
      ``solve_options`` (default :data:`DESIGN_SOLVE`).

    **Method.** Gradient-based: projected Adam (optax) on the continuous variables scaled to
    [0, 1], exact gradients by ``jax.jacfwd`` through a segment table whose boundaries are traced
    functions of the design (module docstring), started from the best of the screening points.
    Discrete variables by enumeration around the continuous optimum. The start (the standard
    protocol, projected into the bounds) is always a candidate, so the result is never worse.
    """
    t_start = time.perf_counter()
    get_modality(modality)
    if objective not in ("max", "min"):
        raise ValueError(f"objective={objective!r} is not known; valid: 'max', 'min'")
    if metric not in OPT_METRICS:
        raise ValueError(f"metric={metric!r} is not known; valid: {list(OPT_METRICS)}")
    if metric == "time_to" and target is None:
        raise ValueError("metric='time_to' needs target=<readout level to reach>, e.g. target=1.02 for +2 %")
    try:
        at_h = float(at_h)
    except (TypeError, ValueError):
        raise ValueError(f"at_h={at_h!r} must be a time in hours > 0") from None
    if not (math.isfinite(at_h) and at_h > 0):
        raise ValueError(f"at_h={at_h!r} must be a finite time in hours > 0")
    base_model = build(modality, species)[0] if model is None else model
    _check_readout(base_model, readout)
    if metric != "value" and target is not None and not math.isfinite(float(target)):
        raise ValueError(f"target={target!r} must be finite")
    space = _Space(modality, species, dict(protocol_options or {}))
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
    constraints = dict(constraints or {})
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

    cont = [v for v in vary if v in CONTINUOUS]
    disc = [v for v in vary if v in DISCRETE]
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
            stacklevel=2,
        )

    # Time grid: [0, at_h] (dense unless only the value at at_h is needed).
    if metric != "value" or "cmax" in constraints:
        step = float(grid_step_h) if grid_step_h else (1.0 if at_h <= 24 * 60 else at_h / 1440)
        times = np.unique(np.append(np.arange(0.0, at_h, step), at_h))
    else:
        times = np.array([0.0, at_h])
    solve_opts = {**DESIGN_SOLVE, **(solve_options or {})}
    if draws is None:
        models, batched = as_arrays(base_model), False
    else:
        draws = list(draws)
        if not draws:
            raise ValueError("draws is empty: give a list of models (posterior draws) or None")
        from .simulate import stack

        models, batched = stack([as_arrays(d) for d in draws]), True

    cmax_cap = None
    if "cmax" in constraints:
        c = constraints["cmax"]
        if isinstance(c, str):
            if c != "steady_state":
                raise ValueError(f"constraints['cmax']={c!r} must be a concentration (mg/L) or 'steady_state'")
            cmax_cap = _ss_cmax(base_model, space, solve_opts)
        else:
            try:
                cmax_cap = float(c)
            except (TypeError, ValueError):
                raise ValueError(
                    f"constraints['cmax']={c!r} must be a concentration (mg/L) or 'steady_state'"
                ) from None
            if not cmax_cap > 0:
                raise ValueError(f"constraints['cmax']={c!r} must be > 0 (mg/L)")

    spec = _Spec(
        readout=readout,
        metric=metric,
        at_index=int(times.shape[0] - 1),
        target=None if target is None else float(target),
        cmax=cmax_cap is not None,
        batched=batched,
        solve_opts=tuple(sorted(solve_opts.items())),
    )
    sign = -1.0 if objective == "max" else 1.0
    history: list[dict] = []
    scale: list = [None]
    tot = total if space.device else None

    def gap_box(dd):
        lo, hi = box.get("gap_h", (dd["gap_h"], dd["gap_h"]))
        lo = max(lo, space.dur_h, float(constraints.get("min_gap_h", 0.0)))
        if dd["sessions_per_day"] > 1:
            hi = min(hi, (24.0 - space.dur_h) / (dd["sessions_per_day"] - 1))
        return lo, hi

    def cont_box(dd):
        return {v: (gap_box(dd) if v == "gap_h" else box[v]) for v in cont}

    def evaluate(dd, stage, grad=False):
        sched = space.schedule(dd, tot)
        link = _Link(base_model, sched, times, space.coeffs(dd, cont, tot), {k: dd[k] for k in cont})
        x = {k: jnp.asarray(float(dd[k])) for k in cont}
        if grad:
            m, c, jac = _val_jac(spec, x, link.aux, models)
        else:
            (m, c), jac = _val(spec, x, link.aux, models), None
        m, c = np.atleast_1d(np.asarray(m)), np.atleast_1d(np.asarray(c))
        mval = float(np.mean(m))
        cm = float(np.max(c)) if cmax_cap is not None else None
        feasible = bool(np.isfinite(mval)) and (cmax_cap is None or cm <= cmax_cap * (1 + 1e-9))
        if scale[0] is None and np.isfinite(mval):
            scale[0] = max(abs(mval), 1e-12)
        sc = scale[0] or 1.0
        excess = max(cm / cmax_cap - 1.0, 0.0) if cmax_cap is not None else 0.0
        J = sign * mval / sc + 1e3 * excess**2 if np.isfinite(mval) else np.inf
        row = dict(
            stage=stage,
            **{k: (int(dd[k]) if k in DISCRETE else float(dd[k])) for k in vary},
            value=mval,
            objective=J,
            feasible=feasible,
        )
        if cmax_cap is not None:
            row["cmax"] = cm
        if batched:
            row["value_sd"] = float(np.std(m))
        history.append(row)
        g = None
        if jac is not None:
            g = {
                k: sign * float(jac[k][0]) / sc + (2e3 * excess * float(jac[k][1]) / cmax_cap if excess else 0.0)
                for k in cont
            }
        return J, mval, feasible, g, sched, m

    def run_continuous(dd0, stage):
        """Projected Adam over the continuous variables from dd0 (discrete fixed); best (J, design)."""
        if not cont or (cont == ["gap_h"] and dd0["sessions_per_day"] == 1):
            J, _, feas, _, _, _ = evaluate(dd0, stage)
            return (J if feas else np.inf), dd0
        lh = cont_box(dd0)
        if any(lo > hi for lo, hi in lh.values()):
            return np.inf, dd0
        width = np.array([lh[v][1] - lh[v][0] for v in cont])
        to_u = lambda dd: np.clip([(dd[v] - lh[v][0]) / max(w, 1e-300) for v, w in zip(cont, width)], 0, 1)
        from_u = lambda u: {**dd0, **{v: lh[v][0] + float(np.clip(u[i], 0, 1)) * width[i] for i, v in enumerate(cont)}}
        cands = [to_u(dd0)]
        if n_init > 0:
            grid = list(itertools.product(*[np.linspace(0.0, 1.0, n_init)] * len(cont)))
            if len(grid) > 16:
                grid = list(np.random.default_rng(0).uniform(size=(16, len(cont))))
            cands += [np.asarray(g, float) for g in grid]
        best = (np.inf, dd0)
        for u in cands:
            dd = from_u(u)
            J, _, feas, _, _, _ = evaluate(dd, stage + ":screen")
            if feas and J < best[0]:
                best = (J, dd)
        if not np.isfinite(best[0]) or steps <= 0:
            return best
        u = to_u(best[1])
        opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05))
        state = opt.init(jnp.asarray(u))
        still = 0
        for _ in range(steps):
            dd = from_u(u)
            J, _, feas, g, _, _ = evaluate(dd, stage + ":adam", grad=True)
            if feas and J < best[0]:
                best = (J, dd)
            gu = np.array([g[v] for v in cont]) * width
            if not np.all(np.isfinite(gu)):
                break
            upd, state = opt.update(jnp.asarray(gu), state)
            u_new = np.clip(u + np.asarray(upd), 0.0, 1.0)
            still = still + 1 if np.max(np.abs(u_new - u)) < 1e-3 else 0
            u = u_new
            if still >= 3:  # converged (or pinned at a bound)
                break
        dd = from_u(u)
        J, _, feas, _, _, _ = evaluate(dd, stage + ":adam")
        if feas and J < best[0]:
            best = (J, dd)
        elif not feas and cmax_cap is not None:  # pull an infeasible end point back towards the best feasible
            ub, lo_a, hi_a = to_u(best[1]), 0.0, 1.0
            for _ in range(10):
                a = 0.5 * (lo_a + hi_a)
                dd = from_u(ub + a * (u - ub))
                J, _, feas, _, _, _ = evaluate(dd, stage + ":bisect")
                if feas:
                    lo_a = a
                    if J < best[0]:
                        best = (J, dd)
                else:
                    hi_a = a
        return best

    fits = lambda dd: (
        not space.device
        or dd["sessions_per_day"] == 1
        or (dd["gap_h"] >= space.dur_h and (dd["sessions_per_day"] - 1) * dd["gap_h"] + space.dur_h <= 24.0)
    )
    if fits(x_std):
        J_std, v_std, feas_std, _, sched_std, m_std = evaluate(x_std, "standard")
        if not feas_std:
            warnings.warn(f"the standard protocol of {modality!r} violates the constraints {constraints}", stacklevel=2)
    else:
        v_std, sched_std, m_std = float("nan"), space.standard_schedule, None
    if start == x_std and fits(x_std):
        J0, feas0 = J_std, feas_std
    else:
        J0, _, feas0, _, _, _ = evaluate(start, "start")
    J0 = J0 if feas0 else np.inf
    best = (J0, dict(start))
    # 1) continuous optimum at the (projected) standard discrete setting
    r = run_continuous(dict(start), "continuous")
    best = r if r[0] < best[0] else best
    # 2) enumerate the discrete variables at that continuous optimum; 3) re-optimise the best two
    combos = _combos(disc, box)
    if disc:
        scored = []
        for combo in combos:
            dd = _with(best[1], disc, combo, space, total)
            if "gap_h" in cont and not fits(dd):
                lo, hi = gap_box(dd)
                if lo > hi:
                    continue
                dd["gap_h"] = min(max(dd["gap_h"], lo), hi)
            if not fits(dd):
                continue
            J, _, feas, _, _, _ = evaluate(dd, "enumerate")
            scored.append((J if feas else np.inf, dd))
        scored.sort(key=lambda t: t[0])
        if scored and scored[0][0] < best[0]:
            best = scored[0]
        if cont:
            for _, dd in scored[:2]:
                r = run_continuous(dict(dd), "refine")
                best = r if r[0] < best[0] else best
    J_best, dd_best = best
    if not np.isfinite(J_best):
        raise RuntimeError(
            f"no feasible design found for {modality!r} (not even the start); check bounds and constraints"
        )
    improved = bool(J_best < J0)
    _, v_best, _, _, sched_best, m_best = evaluate(dd_best, "optimum")

    def out(dd):
        o = {k: (int(dd[k]) if k in DISCRETE else float(dd[k])) for k in x_std}
        if space.device:
            o["sessions"] = space.n_sessions(dd, total) if total is not None or dd is not x_std else space.standard_n
        return o

    draws_out = None
    if batched:
        draws_out = {"value_at_optimum": m_best, "value_at_standard": m_std}
        per = {}
        for v in disc:  # each draw's best discrete value (others at the optimum)
            vals = []
            grid = list(range(int(box[v][0]), int(box[v][1]) + 1))
            for g in grid:
                dd = _with(dd_best, [v], (g,), space, total)
                vals.append(evaluate(dd, "draws")[5] if fits(dd) else np.full(len(draws), np.nan))
            vals = np.where(np.isfinite(vals), np.asarray(vals), -sign * np.inf)
            per[v] = np.asarray(grid)[(np.argmax if objective == "max" else np.argmin)(vals, axis=0)]
        for v in cont:  # each draw's best continuous value on a grid over its feasible box
            lo, hi = cont_box(dd_best)[v]
            grid = np.linspace(lo, hi, max(int(draw_grid), 3))
            vals = np.asarray([evaluate({**dd_best, v: g}, "draws")[5] for g in grid])
            vals = np.where(np.isfinite(vals), vals, -sign * np.inf)
            per[v] = grid[(np.argmax if objective == "max" else np.argmin)(vals, axis=0)]
        import pandas as pd

        draws_out["x"] = pd.DataFrame(per)
        draws_out["spread"] = draws_out["x"].describe(percentiles=[0.05, 0.5, 0.95]).T if per else None
    import pandas as pd

    n_grad = sum(1 for h in history if h["stage"].endswith("adam"))
    msg = (
        f"{'improved on' if improved else 'no improvement on'} the start; {len(history)} evaluations, "
        f"{n_grad} with gradients, {time.perf_counter() - t_start:.1f} s"
    )
    return DesignResult(
        schedule=sched_best,
        value=v_best,
        standard_value=v_std,
        standard_schedule=sched_std,
        x=out(dd_best),
        x_standard=out(x_std),
        history=pd.DataFrame(history),
        readout=readout,
        metric=metric,
        objective=objective,
        at_h=at_h,
        improved=improved,
        message=msg,
        constraints=constraints,
        draws=draws_out,
        elapsed_s=time.perf_counter() - t_start,
    )


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


def _ss_cmax(model, space, solve_opts) -> float:
    """Steady-state Cmax (mg/L) of the standard maintenance regimen (an SS=1 dose, 0.05-h grid)."""
    s = Schedule.doses(
        [0.0],
        [space.standard["dose_mg"]],
        ROUTES[space.route],
        duration=space.duration,
        unit=space.standard_schedule.amount_unit,
        ss=True,
        ii=space.interval,
    )
    tb = segment_table(model, s, np.linspace(0.0, space.interval, int(space.interval / 0.05) + 1))
    ys, _, _ = jax.jit(lambda m, t: solve(m, t, **solve_opts))(as_arrays(model), tb)
    return float(np.max(np.asarray(model.outputs(ys)["concentration"])))


# ----------------------------------------------------------------------------- sensitivity analysis
#: Domains that the priors' support does not enforce (sampling truncates the prior to them).
DOMAINS: dict[str, tuple[float, float]] = {
    "spine_capacity": (1.01, math.inf),
    "efficacy_max": (1.01, math.inf),
    "efficacy_min": (1e-6, 0.99),
    "hill": (1.0, math.inf),
    "emax": (1e-6, 1.0),
    "f": (1e-6, 1.0),
    "fm": (1e-6, 1.0 - 1e-6),
    "duty_itbs": (1e-6, 1.0),
}


def _log_domain(names) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ln p for each parameter name (from :data:`DOMAINS`; else unbounded)."""
    lo = np.array([DOMAINS.get(p, (0.0, math.inf))[0] for p in names], dtype=float)
    hi = np.array([DOMAINS.get(p, (0.0, math.inf))[1] for p in names], dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(lo), np.log(hi)


def screening_rows(theta0, names, h: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ln-parameters for the finite-difference screening: the card values, then for each
    parameter i the values with ln p_i moved up and down by ``h``, never past its domain
    (:data:`DOMAINS`; one-sided at a bound). Returns ``(rows (2k + 1, k), up - down per parameter)``."""
    theta0 = np.asarray(theta0, dtype=float)
    lo, hi = _log_domain(names)
    up, down = np.minimum(theta0 + h, hi), np.maximum(theta0 - h, lo)
    rows = np.repeat(theta0[None, :], 2 * len(names) + 1, axis=0)
    for i in range(len(names)):
        rows[1 + 2 * i, i] = up[i]
        rows[2 + 2 * i, i] = down[i]
    return rows, up - down


def _candidates(modality, species, model) -> dict:
    """Parameters with a usable prior that the model runs on: name -> cards.Parameter."""
    out = {}
    for p in build(modality, species)[1]:
        if p.name == "lag" or p.prior.get("dist") not in ("lognormal", "beta", "normal"):
            continue  # lag times are static (they place events); halfnormal priors have no log scale
        if not params.has(model, p.name) or not p.value > 0:
            continue
        out[p.name] = p
    return out


def _get(model, name):
    return params.get(model, name)


def _dist(p, sd_scale=1.0):
    from scipy import stats

    pr = p.prior
    if pr["dist"] == "lognormal":
        return stats.lognorm(s=float(pr["sigma"]) * sd_scale, scale=float(pr["median"]))
    if pr["dist"] == "beta":
        m, c = float(pr["mean"]), float(pr["concentration"])
        c = (c + 1.0) / sd_scale**2 - 1.0 if sd_scale != 1.0 else c
        return stats.beta(m * c, (1 - m) * c)
    return stats.norm(float(pr["mean"]), float(pr["sd"]) * sd_scale)


def _ppf(cands, names, u, *, sd_scale=1.0, truncate_sd=3.0) -> np.ndarray:
    """Map unit-cube samples ``u`` (rows) to parameter values: each prior truncated to ±truncate_sd
    (in probability: the normal's Φ(±truncate_sd)) and to :data:`DOMAINS`."""
    from scipy import stats

    u = np.asarray(u, float)
    out = np.empty_like(u)
    q_lo, q_hi = stats.norm.cdf(-truncate_sd), stats.norm.cdf(truncate_sd)
    for j, name in enumerate(names):
        d = _dist(cands[name], sd_scale)
        lo, hi = DOMAINS.get(name, (-math.inf, math.inf))
        a = max(q_lo, float(d.cdf(lo)) if math.isfinite(lo) else 0.0)
        b = min(q_hi, float(d.cdf(hi)) if math.isfinite(hi) else 1.0)
        if not a < b:
            raise ValueError(f"parameter {name!r}: its prior has no mass inside its domain {DOMAINS.get(name)}")
        out[:, j] = d.ppf(a + np.clip(u[:, j], 1e-12, 1 - 1e-12) * (b - a))
    return out


def _sd_log(p) -> float:
    """Prior spread on the log scale (half the log distance between the 16th and 84th percentiles)."""
    d = _dist(p)
    lo, hi = DOMAINS.get(p.name, (0.0, math.inf))
    q16, q84 = (max(float(d.ppf(q)), lo if lo > 0 else 1e-300) for q in (0.158655, 0.841345))
    q84 = min(q84, hi) if math.isfinite(hi) else q84
    return 0.5 * abs(math.log(q84) - math.log(q16))


def _set(model, names, values):
    return params.replace(model, names, values)


def saltelli_sample(n: int, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent (n, k) unit-cube matrices A and B for Saltelli's scheme: the columns of one
    scrambled Sobol sequence in 2k dimensions (scipy.stats.qmc); ``n`` should be a power of two."""
    from scipy.stats import qmc

    n, k = int(n), int(k)
    if n < 2 or k < 1:
        raise ValueError(f"n={n} must be >= 2 and k={k} >= 1")
    eng = qmc.Sobol(d=2 * k, scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance warning for n not a power of two
        x = eng.random(n)
    return x[:, :k], x[:, k:]


def sobol_estimates(f_a, f_b, f_ab, *, bootstrap: int = 0, seed: int = 0) -> dict:
    """First-order (Saltelli 2010) and total (Jansen 1999) Sobol indices from model outputs.

    ``f_a``, ``f_b``: outputs at the rows of A and B (n,); ``f_ab``: (k, n) outputs at A with
    column i taken from B. Rows where any output is non-finite are dropped (counted in
    ``"n_dropped"``). S_i = mean(f_B (f_ABi - f_A)) / V, ST_i = mean((f_A - f_ABi)^2) / (2 V),
    V = var([f_A, f_B]). ``bootstrap`` > 0 adds 95 % percentile intervals over resampled rows.
    """
    f_a, f_b, f_ab = np.asarray(f_a, float), np.asarray(f_b, float), np.asarray(f_ab, float)
    ok = np.isfinite(f_a) & np.isfinite(f_b) & np.all(np.isfinite(f_ab), axis=0)

    def est(idx):
        a, b, ab = f_a[idx], f_b[idx], f_ab[:, idx]
        v = np.var(np.concatenate([a, b]))
        v = v if v > 0 else np.nan
        return np.mean(b * (ab - a), axis=1) / v, 0.5 * np.mean((a - ab) ** 2, axis=1) / v

    idx = np.nonzero(ok)[0]
    if idx.size < 2:
        raise ValueError("fewer than two usable sample rows: every model output was non-finite")
    s1, st = est(idx)
    out = {
        "first_order": s1,
        "total": st,
        "n_dropped": int((~ok).sum()),
        "variance": float(np.var(np.concatenate([f_a[idx], f_b[idx]]))),
    }
    if bootstrap:
        rng = np.random.default_rng(seed)
        bs = [est(rng.choice(idx, idx.size)) for _ in range(int(bootstrap))]
        out["first_order_ci"] = np.percentile([b[0] for b in bs], [2.5, 97.5], axis=0).T
        out["total_ci"] = np.percentile([b[1] for b in bs], [2.5, 97.5], axis=0).T
    return out


def sobol(func, k: int, n: int, *, seed: int = 0, bootstrap: int = 0) -> dict:
    """Sobol indices of ``func`` (maps an (m, k) array of unit-cube points to (m,) outputs) with
    n (k + 2) evaluations (Saltelli sampling, :func:`sobol_estimates`). E.g. the Ishigami test:
    ``sobol(lambda u: ishigami(np.pi * (2 * u - 1)), 3, 2**13)``."""
    a, b = saltelli_sample(n, k, seed=seed)
    ab = np.stack([np.where(np.arange(k)[None, :] == i, b, a) for i in range(k)])  # (k, n, k)
    x = np.concatenate([a, b, ab.reshape(-1, k)])
    f = np.asarray(func(x), float)
    n = a.shape[0]
    return sobol_estimates(f[:n], f[n : 2 * n], f[2 * n :].reshape(k, n), bootstrap=bootstrap, seed=seed)


def ishigami(x, a: float = 7.0, b: float = 0.1):
    """The Ishigami function on [-pi, pi]^3 (analytic S1 = 0.3139, 0.4424, 0; ST = 0.5576, 0.4424, 0.2437)."""
    x = np.asarray(x, float)
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])


class _SensSpec(eqx.Module):
    readout: str = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    at_index: int | None = eqx.field(static=True)
    names: tuple = eqx.field(static=True)
    solve_opts: tuple = eqx.field(static=True)
    forward: bool = eqx.field(static=True)


def _sens_metric_fn(spec: _SensSpec, log_theta, model, table, times):
    m = _set(model, spec.names, tuple(jnp.exp(log_theta[i]) for i in range(len(spec.names))))
    ys, status, _ = solve(m, table, adjoint=dfx.ForwardMode() if spec.forward else None, **dict(spec.solve_opts))
    val = sens_metric(times, _readout(m, ys, spec.readout), spec.metric, at_index=spec.at_index)
    return jnp.where(status == 0, val, jnp.nan)


@eqx.filter_jit
def _sens_local(spec, log_theta, model, table, times):
    f = lambda lt: _sens_metric_fn(spec, lt, model, table, times)
    return f(log_theta), jax.jacfwd(f)(log_theta)


@eqx.filter_jit
def _sens_batch(spec, log_thetas, model, table, times):
    return jax.vmap(lambda lt: _sens_metric_fn(spec, lt, model, table, times))(log_thetas)


def sensitivity(
    modality: str,
    *,
    readout: str,
    metric: str = "t50",
    method: str = "local",
    n: int = 256,
    parameters=None,
    max_parameters: int = 8,
    at_h: float | None = None,
    horizon_h: float | None = None,
    n_grid: int = 481,
    schedule: Schedule | None = None,
    species: str = "human",
    model=None,
    seed: int = 0,
    batch_size: int = 256,
    bootstrap: int = 100,
    truncate_sd: float = 3.0,
    solve_options: dict | None = None,
    progress: bool = True,
) -> dict:
    """Which model-card parameters a time-scale metric of ``readout`` depends on.

    **Metrics** (of the readout's change from baseline on a uniform grid of ``n_grid`` points over
    [0, ``horizon_h``]; default horizon: the schedule's end + 7 days, at least 28 days):
    ``"t50"`` -- first time the change reaches half of its largest value (linear interpolation);
    ``"onset"`` -- the same at 10 %; ``"tmax"`` -- time of the largest change (parabolic
    refinement); ``"peak"`` -- the readout at its largest change; ``"auc"`` -- integral of the change
    (h); ``"value"`` -- the readout at ``at_h``. All are differentiable in the parameters (the grid
    index that brackets a crossing is fixed locally).

    **Methods**

    - ``"local"``: normalised local sensitivities d ln(metric) / d ln(parameter) by ``jax.jacfwd``
      (``diffrax.ForwardMode``) at the card values, in ``"local"``. ``"first_order"`` and
      ``"total"`` hold their linearised variance shares under the priors,
      (dM/d ln p_i · sd_i)^2 / sum_j (...)^2 with sd_i the prior's spread of ln p_i (equal, as
      for any linear model).
    - ``"sobol"``: first-order (Saltelli 2010) and total (Jansen) Sobol indices with ``n`` base
      samples (``n (k + 2)`` simulations, vmapped in batches of ``batch_size``); parameters drawn
      from the cards' priors (truncated to ±``truncate_sd`` SD and to :data:`DOMAINS`) by a
      scrambled Sobol sequence; 95 % bootstrap intervals in ``"first_order_ci"``/``"total_ci"``.

    **Parameters.** The candidates are the parameters with a lognormal, beta or normal prior in the
    model cards that the model runs on (lag times excluded: they place events). By default the
    ``max_parameters`` with the largest linearised variance share are kept (a local screening
    pass, returned as ``"local"``); ``parameters=[...]`` chooses them. Parameters outside the Sobol
    set stay at their card values. Screening steps stay inside each parameter's domain
    (:func:`screening_rows`). ``progress`` prints one line per vmapped batch of simulations.

    Returns a dict: ``"first_order"``, ``"total"`` ({parameter: index}), ``"local"`` (when
    computed), ``"nominal"`` (the metric at the card values), ``"parameters"``, ``"n_simulations"``,
    ``"n_failed"`` (draws whose simulation failed or whose metric is undefined, e.g. no change).
    """
    t_start = time.perf_counter()
    get_modality(modality)
    if method not in ("local", "sobol"):
        raise ValueError(f"method={method!r} is not known; valid: 'local', 'sobol'")
    if metric not in SENS_METRICS:
        raise ValueError(f"metric={metric!r} is not known; valid: {list(SENS_METRICS)}")
    base = build(modality, species)[0] if model is None else model
    _check_readout(base, readout)
    sched = protocol(modality, species=species) if schedule is None else schedule
    if not isinstance(sched, Schedule):
        raise TypeError(f"schedule must be a pkpd.Schedule, got {type(sched).__name__}")
    if horizon_h is None:
        horizon_h = 24.0 * math.ceil(max(sched.end_time + 168.0, 672.0) / 24.0)
    horizon_h = float(horizon_h)
    if not (math.isfinite(horizon_h) and horizon_h > 0):
        raise ValueError(f"horizon_h={horizon_h!r} must be a finite time in hours > 0")
    if int(n_grid) < 3:
        raise ValueError(f"n_grid={n_grid!r} must be >= 3")
    times = np.linspace(0.0, horizon_h, int(n_grid))
    at_index = None
    if metric == "value":
        if at_h is None:
            raise ValueError("metric='value' needs at_h=<time in hours>")
        if not 0 <= float(at_h) <= horizon_h:
            raise ValueError(f"at_h={at_h!r} must lie in [0, horizon_h={horizon_h:g}]")
        times = np.unique(np.append(times, float(at_h)))
        at_index = int(np.searchsorted(times, float(at_h)))
    cands = _candidates(modality, species, base)
    if parameters is not None:
        parameters = [parameters] if isinstance(parameters, str) else list(parameters)
        for p in parameters:
            if p not in cands:
                raise ValueError(
                    f"parameters: {p!r} is not a parameter with a usable prior in the {modality!r} "
                    f"model; valid: {sorted(cands)}"
                )
    if method == "sobol" and int(n) < 2:
        raise ValueError(f"n={n!r} must be >= 2 (base samples; a power of two is best)")
    model = as_arrays(base)
    table = segment_table(model, sched, times, save_slots=SAVE_SLOTS)
    t_j = jnp.asarray(times)
    out: dict = {"readout": readout, "metric": metric, "method": method, "horizon_h": horizon_h}
    names_all = list(cands) if parameters is None else parameters
    theta0 = np.log(np.array([cands[p].value for p in names_all]))
    sd = np.array([_sd_log(cands[p]) for p in names_all])

    if method == "local":
        spec = _SensSpec(
            readout=readout,
            metric=metric,
            at_index=at_index,
            names=tuple(names_all),
            solve_opts=tuple(sorted({**DESIGN_SOLVE, **(solve_options or {})}.items())),
            forward=True,
        )
        m0, jac = _sens_local(spec, jnp.asarray(theta0), model, table, t_j)
        m0, jac = float(m0), np.asarray(jac)
        if not np.isfinite(m0):
            raise ValueError(
                f"metric {metric!r} of {readout!r} is undefined at the card values (e.g. the readout "
                "does not change, or the simulation failed)"
            )
        var = (jac * sd) ** 2
        shares = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
        out.update(
            {
                "local": dict(zip(names_all, (jac / m0).tolist())),
                "nominal": m0,
                "first_order": dict(zip(names_all, shares.tolist())),
                "total": dict(zip(names_all, shares.tolist())),
                "parameters": names_all,
                "n_simulations": 1,
                "n_failed": 0,
                "elapsed_s": time.perf_counter() - t_start,
            }
        )
        return out

    # Sobol. One compiled, vmapped batch function over every candidate parameter (the ones not
    # sampled stay at their card values) serves both the screening and the Saltelli samples.
    spec = _SensSpec(
        readout=readout,
        metric=metric,
        at_index=at_index,
        names=tuple(names_all),
        solve_opts=tuple(sorted({**SOBOL_SOLVE, **(solve_options or {})}.items())),
        forward=False,
    )
    bs = int(batch_size)

    def run(log_thetas, label):
        f = np.empty(log_thetas.shape[0])
        n_batches = -(-log_thetas.shape[0] // bs)
        for i in range(0, log_thetas.shape[0], bs):
            chunk = log_thetas[i : i + bs]
            pad = bs - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            f[i : i + bs - pad] = np.asarray(_sens_batch(spec, jnp.asarray(chunk), model, table, t_j))[: bs - pad]
            if progress:
                print(
                    f"[pkpd.sensitivity sobol {modality}] {label}: batch {i // bs + 1}/{n_batches} "
                    f"({min(i + bs, log_thetas.shape[0])} of {log_thetas.shape[0]} simulations), "
                    f"{time.perf_counter() - t_start:.0f} s",
                    flush=True,
                )
        return f

    n_sims = 0
    if parameters is None and len(names_all) > max_parameters:
        # Screening: central differences (±0.05 in ln p) of the metric -> linearised variance share.
        # A step never leaves the parameter's domain (one-sided at a bound: the Hill coefficient's
        # card value 1 is its lower bound, and hill < 1 makes C^hill non-Lipschitz at C = 0, which
        # stalled the stiff solver at max_steps in every segment).
        rows, step = screening_rows(theta0, names_all)
        f = run(rows, "screening")
        n_sims += rows.shape[0]
        if not np.isfinite(f[0]):
            raise ValueError(
                f"metric {metric!r} of {readout!r} is undefined at the card values (e.g. the readout "
                "does not change, or the simulation failed)"
            )
        grad = np.where(step > 0, (f[1::2] - f[2::2]) / np.where(step > 0, step, 1.0), 0.0)
        var = np.nan_to_num((grad * sd) ** 2)
        out["local"] = dict(zip(names_all, (grad / f[0]).tolist()))
        out["screening_share"] = dict(zip(names_all, (var / max(var.sum(), 1e-300)).tolist()))
        out["nominal"] = float(f[0])
        names = [names_all[i] for i in np.argsort(-var)[: int(max_parameters)]]
    else:
        names = list(names_all)
    k = len(names)
    cols = [names_all.index(p) for p in names]
    a, b = saltelli_sample(int(n), k, seed=seed)
    ab = np.stack([np.where(np.arange(k)[None, :] == i, b, a) for i in range(k)])
    u = np.concatenate([a, b, ab.reshape(-1, k)])
    log_theta = np.repeat(theta0[None, :], u.shape[0], axis=0)
    log_theta[:, cols] = np.log(_ppf(cands, names, u, truncate_sd=truncate_sd))
    f = run(log_theta, "Saltelli sample")
    n_sims += u.shape[0]
    nb = a.shape[0]
    est = sobol_estimates(f[:nb], f[nb : 2 * nb], f[2 * nb :].reshape(k, nb), bootstrap=bootstrap, seed=seed)
    out.update(
        {
            "first_order": dict(zip(names, est["first_order"].tolist())),
            "total": dict(zip(names, est["total"].tolist())),
            "parameters": names,
            "n_simulations": int(n_sims),
            "n_failed": est["n_dropped"],
            "variance": est["variance"],
        }
    )
    if "nominal" not in out:
        out["nominal"] = float(run(theta0[None, :], "card values")[0])
    if bootstrap:
        out["first_order_ci"] = {p: tuple(ci) for p, ci in zip(names, est["first_order_ci"].tolist())}
        out["total_ci"] = {p: tuple(ci) for p, ci in zip(names, est["total_ci"].tolist())}
    out["elapsed_s"] = time.perf_counter() - t_start
    return out
