"""Gradient-based optimisation of a modality's standard schedule (:func:`optimise_schedule`,
method in :mod:`pkpd.design`)."""

from __future__ import annotations

import itertools
import math
import time
import warnings

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..modalities import build, get_modality
from ..protocols import COMBINATIONS
from ..schedule import ROUTES, Schedule
from ..simulate import as_arrays, segment_table, solve, stack
from ._readouts import DESIGN_SOLVE, OPT_METRICS, _check_readout, _readout, opt_metric
from ._result import DesignResult
from ._space import (
    CONTINUOUS,
    DISCRETE,
    _combos,
    _Space,
    _with,
    apply_constraints,
    check_vary,
    search_box,
    start_design,
)
from ._traced import _Link, _traced_table
from ._windows import optimise_training


def _combination(name, a: dict):
    """:func:`optimise_schedule` on a combination protocol (``a``: its arguments; the training course is varied)."""
    if a["constraints"] or a["metric"] != "value" or a["model"] is not None:
        raise ValueError(
            f"combination {name!r}: constraints, metric and model are not supported (vary the training course)"
        )
    keys = ("readout", "at_h", "vary", "bounds", "objective", "species", "protocol_options")
    return optimise_training(name, draws=a["draws"] or 0, **{k: a[k] for k in keys})


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
    """Optimise the schedule of ``modality``'s standard protocol, or the training course of a
    combination protocol, for a readout metric.

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

    - ``draws``: a list of models of this modality (posterior draws,
      ``pkpd.calibrate.load().models(modality, n)``, or :func:`prior_draws`): the posterior-mean metric is optimised and
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

    **Combination protocols** (``"psilocybin+therapy"``, ...): readout ``"learning"`` or
    ``"learning_gain"``, vary ``training_delay_h`` / ``training_interval_h``; see :mod:`pkpd.design._windows`.

    **Method.** Gradient-based: projected Adam (optax) on the continuous variables scaled to
    [0, 1], exact gradients by ``jax.jacfwd`` through a segment table whose boundaries are traced
    functions of the design (module docstring), started from the best of the screening points.
    Discrete variables by enumeration around the continuous optimum. The start (the standard
    protocol, projected into the bounds) is always a candidate, so the result is never worse.
    """
    t_start = time.perf_counter()
    if modality in COMBINATIONS:
        return _combination(modality, dict(locals()))
    get_modality(modality)
    at_h = _check_objective(objective, metric, target, at_h)
    base_model = build(modality, species)[0] if model is None else model
    _check_readout(base_model, readout)
    if metric != "value" and target is not None and not math.isfinite(float(target)):
        raise ValueError(f"target={target!r} must be finite")
    space = _Space(modality, species, dict(protocol_options or {}))
    vary = check_vary(vary, space, modality)
    box = search_box(vary, bounds)
    constraints = dict(constraints or {})
    total = apply_constraints(space, constraints, box, vary, modality)
    x_std, start = start_design(space, box, vary, constraints, total, modality)
    times = _time_grid(at_h, metric, constraints, grid_step_h)
    solve_opts = {**DESIGN_SOLVE, **(solve_options or {})}
    models, batched, n_draws = _stacked_models(base_model, draws)
    cmax_cap = _cmax_cap(constraints, base_model, space, solve_opts)
    spec = _Spec(
        readout=readout,
        metric=metric,
        at_index=int(times.shape[0] - 1),
        target=None if target is None else float(target),
        cmax=cmax_cap is not None,
        batched=batched,
        solve_opts=tuple(sorted(solve_opts.items())),
    )
    search = _Search(space, base_model, models, spec, times, vary, box, constraints, total, cmax_cap, objective)
    found = search.run(x_std, start, steps=steps, learning_rate=learning_rate, n_init=n_init)
    if batched:
        found["draws"] = search.per_draw(found["dd_best"], found["m_best"], found["m_std"], n_draws, draw_grid)
    return search.result(found, x_std, at_h, t_start)


def _check_objective(objective: str, metric: str, target, at_h) -> float:
    """Validate the objective, the metric (and its target) and ``at_h``; returns ``at_h`` in hours."""
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
    return at_h


def _time_grid(at_h: float, metric: str, constraints: dict, grid_step_h) -> np.ndarray:
    """Time grid (h) of an evaluation: [0, at_h], dense unless only the value at ``at_h`` is needed."""
    if metric != "value" or "cmax" in constraints:
        step = float(grid_step_h) if grid_step_h else (1.0 if at_h <= 24 * 60 else at_h / 1440)
        return np.unique(np.append(np.arange(0.0, at_h, step), at_h))
    return np.array([0.0, at_h])


def _stacked_models(base_model, draws):
    """``(models, batched, number of draws)``: the model, or the posterior draws stacked for vmap."""
    if draws is None:
        return as_arrays(base_model), False, 0
    draws = list(draws)
    if not draws:
        raise ValueError("draws is empty: give a list of models (posterior draws) or None")
    return stack([as_arrays(d) for d in draws]), True, len(draws)


def _cmax_cap(constraints: dict, base_model, space: _Space, solve_opts: dict) -> float | None:
    """The ``cmax`` constraint as a concentration (mg/L), or None."""
    if "cmax" not in constraints:
        return None
    c = constraints["cmax"]
    if isinstance(c, str):
        if c != "steady_state":
            raise ValueError(f"constraints['cmax']={c!r} must be a concentration (mg/L) or 'steady_state'")
        return _ss_cmax(base_model, space, solve_opts)
    try:
        cap = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"constraints['cmax']={c!r} must be a concentration (mg/L) or 'steady_state'") from None
    if not cap > 0:
        raise ValueError(f"constraints['cmax']={c!r} must be > 0 (mg/L)")
    return cap


class _UnitBox:
    """The continuous variables of a design scaled to [0, 1] in their box (discrete ones fixed)."""

    def __init__(self, dd0: dict, cont: list[str], lh: dict):
        self.dd0, self.cont, self.lh = dd0, cont, lh
        self.width = np.array([lh[v][1] - lh[v][0] for v in cont])

    def to_u(self, dd) -> np.ndarray:
        lh = self.lh
        return np.clip([(dd[v] - lh[v][0]) / max(w, 1e-300) for v, w in zip(self.cont, self.width)], 0, 1)

    def from_u(self, u) -> dict:
        lh, w = self.lh, self.width
        return {**self.dd0, **{v: lh[v][0] + float(np.clip(u[i], 0, 1)) * w[i] for i, v in enumerate(self.cont)}}


class _Search:
    """One :func:`optimise_schedule` search: evaluates designs (recording every one in ``history``),
    runs projected Adam over the continuous variables and enumerates the discrete ones."""

    def __init__(self, space, base_model, models, spec, times, vary, box, constraints, total, cmax_cap, objective):
        self.space, self.base_model, self.models, self.spec, self.times = space, base_model, models, spec, times
        self.vary, self.box, self.constraints, self.total = vary, box, constraints, total
        self.cont = [v for v in vary if v in CONTINUOUS]
        self.disc = [v for v in vary if v in DISCRETE]
        self.cmax_cap, self.objective = cmax_cap, objective
        self.sign = -1.0 if objective == "max" else 1.0
        self.history: list[dict] = []
        self.scale = None
        self.tot = total if space.device else None

    def gap_box(self, dd):
        lo, hi = self.box.get("gap_h", (dd["gap_h"], dd["gap_h"]))
        lo = max(lo, self.space.dur_h, float(self.constraints.get("min_gap_h", 0.0)))
        if dd["sessions_per_day"] > 1:
            hi = min(hi, (24.0 - self.space.dur_h) / (dd["sessions_per_day"] - 1))
        return lo, hi

    def cont_box(self, dd):
        return {v: (self.gap_box(dd) if v == "gap_h" else self.box[v]) for v in self.cont}

    def fits(self, dd) -> bool:
        """Whether a day's sessions fit: gaps at least a session long, all within 24 h."""
        space = self.space
        return (
            not space.device
            or dd["sessions_per_day"] == 1
            or (dd["gap_h"] >= space.dur_h and (dd["sessions_per_day"] - 1) * dd["gap_h"] + space.dur_h <= 24.0)
        )

    def evaluate(self, dd, stage, grad=False):
        """``(penalised objective, metric, feasible, gradient or None, schedule, per-draw metric)``."""
        cont, cmax_cap = self.cont, self.cmax_cap
        sched = self.space.schedule(dd, self.tot)
        link = _Link(
            self.base_model, sched, self.times, self.space.coeffs(dd, cont, self.tot), {k: dd[k] for k in cont}
        )
        x = {k: jnp.asarray(float(dd[k])) for k in cont}
        if grad:
            m, c, jac = _val_jac(self.spec, x, link.aux, self.models)
        else:
            (m, c), jac = _val(self.spec, x, link.aux, self.models), None
        m, c = np.atleast_1d(np.asarray(m)), np.atleast_1d(np.asarray(c))
        mval = float(np.mean(m))
        cm = float(np.max(c)) if cmax_cap is not None else None
        feasible = bool(np.isfinite(mval)) and (cmax_cap is None or cm <= cmax_cap * (1 + 1e-9))
        if self.scale is None and np.isfinite(mval):
            self.scale = max(abs(mval), 1e-12)
        sc = self.scale or 1.0
        excess = max(cm / cmax_cap - 1.0, 0.0) if cmax_cap is not None else 0.0
        J = self.sign * mval / sc + 1e3 * excess**2 if np.isfinite(mval) else np.inf
        row = dict(
            stage=stage,
            **{k: (int(dd[k]) if k in DISCRETE else float(dd[k])) for k in self.vary},
            value=mval,
            objective=J,
            feasible=feasible,
        )
        if cmax_cap is not None:
            row["cmax"] = cm
        if self.spec.batched:
            row["value_sd"] = float(np.std(m))
        self.history.append(row)
        g = None
        if jac is not None:
            g = {
                k: self.sign * float(jac[k][0]) / sc + (2e3 * excess * float(jac[k][1]) / cmax_cap if excess else 0.0)
                for k in cont
            }
        return J, mval, feasible, g, sched, m

    def run(self, x_std, start, *, steps: int, learning_rate: float, n_init: int) -> dict:
        """The standard protocol, the start, the continuous optimum at the start's discrete setting,
        then the discrete enumeration, then the optimum: what was found, as a dict."""
        self.steps, self.learning_rate, self.n_init = steps, learning_rate, n_init
        if self.fits(x_std):
            J_std, v_std, feas_std, _, sched_std, m_std = self.evaluate(x_std, "standard")
            if not feas_std:
                warnings.warn(
                    f"the standard protocol of {self.space.modality!r} violates the constraints {self.constraints}",
                    stacklevel=3,
                )
        else:
            v_std, sched_std, m_std = float("nan"), self.space.standard_schedule, None
        if start == x_std and self.fits(x_std):
            J0, feas0 = J_std, feas_std
        else:
            J0, _, feas0, _, _, _ = self.evaluate(start, "start")
        J0 = J0 if feas0 else np.inf
        best = (J0, dict(start))
        # 1) continuous optimum at the (projected) standard discrete setting
        r = self.run_continuous(dict(start), "continuous")
        best = r if r[0] < best[0] else best
        J_best, dd_best = self.enumerate(best)
        if not np.isfinite(J_best):
            raise RuntimeError(
                f"no feasible design found for {self.space.modality!r} (not even the start); "
                "check bounds and constraints"
            )
        _, v_best, _, _, sched_best, m_best = self.evaluate(dd_best, "optimum")
        return dict(
            J0=J0,
            J_best=J_best,
            dd_best=dd_best,
            v_std=v_std,
            sched_std=sched_std,
            m_std=m_std,
            v_best=v_best,
            sched_best=sched_best,
            m_best=m_best,
            draws=None,
        )

    def result(self, found: dict, x_std, at_h: float, t_start: float) -> DesignResult:
        import pandas as pd

        improved = bool(found["J_best"] < found["J0"])
        n_grad = sum(1 for h in self.history if h["stage"].endswith("adam"))
        msg = (
            f"{'improved on' if improved else 'no improvement on'} the start; {len(self.history)} evaluations, "
            f"{n_grad} with gradients, {time.perf_counter() - t_start:.1f} s"
        )
        return DesignResult(
            schedule=found["sched_best"],
            value=found["v_best"],
            standard_value=found["v_std"],
            standard_schedule=found["sched_std"],
            x=self.design_out(found["dd_best"], x_std),
            x_standard=self.design_out(x_std, x_std),
            history=pd.DataFrame(self.history),
            readout=self.spec.readout,
            metric=self.spec.metric,
            objective=self.objective,
            at_h=at_h,
            improved=improved,
            message=msg,
            constraints=self.constraints,
            draws=found["draws"],
            elapsed_s=time.perf_counter() - t_start,
        )

    def enumerate(self, best):
        """2) every discrete combination at the continuous optimum ``best``; 3) the continuous
        variables re-optimised for the best two."""
        combos = _combos(self.disc, self.box)
        if not self.disc:
            return best
        scored = []
        for combo in combos:
            dd = _with(best[1], self.disc, combo, self.space, self.total)
            if "gap_h" in self.cont and not self.fits(dd):
                lo, hi = self.gap_box(dd)
                if lo > hi:
                    continue
                dd["gap_h"] = min(max(dd["gap_h"], lo), hi)
            if not self.fits(dd):
                continue
            J, _, feas, _, _, _ = self.evaluate(dd, "enumerate")
            scored.append((J if feas else np.inf, dd))
        scored.sort(key=lambda t: t[0])
        if scored and scored[0][0] < best[0]:
            best = scored[0]
        if self.cont:
            for _, dd in scored[:2]:
                r = self.run_continuous(dict(dd), "refine")
                best = r if r[0] < best[0] else best
        return best

    def run_continuous(self, dd0, stage):
        """Projected Adam over the continuous variables from dd0 (discrete fixed); best (J, design)."""
        cont = self.cont
        if not cont or (cont == ["gap_h"] and dd0["sessions_per_day"] == 1):
            J, _, feas, _, _, _ = self.evaluate(dd0, stage)
            return (J if feas else np.inf), dd0
        lh = self.cont_box(dd0)
        if any(lo > hi for lo, hi in lh.values()):
            return np.inf, dd0
        box = _UnitBox(dd0, cont, lh)
        best = self._screen(box, dd0, stage)
        if not np.isfinite(best[0]) or self.steps <= 0:
            return best
        best, u = self._adam(box, best, stage)
        return self._finish(box, best, u, stage)

    def _screen(self, box: _UnitBox, dd0, stage):
        """The best feasible of the start and ``n_init`` evenly spaced points per variable."""
        cands = [box.to_u(dd0)]
        if self.n_init > 0:
            grid = list(itertools.product(*[np.linspace(0.0, 1.0, self.n_init)] * len(self.cont)))
            if len(grid) > 16:
                grid = list(np.random.default_rng(0).uniform(size=(16, len(self.cont))))
            cands += [np.asarray(g, float) for g in grid]
        best = (np.inf, dd0)
        for u in cands:
            dd = box.from_u(u)
            J, _, feas, _, _, _ = self.evaluate(dd, stage + ":screen")
            if feas and J < best[0]:
                best = (J, dd)
        return best

    def _adam(self, box: _UnitBox, best, stage):
        """Projected Adam (cosine-decayed learning rate) from ``best``; the best feasible and the last point."""
        u = box.to_u(best[1])
        opt = optax.adam(optax.cosine_decay_schedule(self.learning_rate, self.steps, alpha=0.05))
        state = opt.init(jnp.asarray(u))
        still = 0
        for _ in range(self.steps):
            dd = box.from_u(u)
            J, _, feas, g, _, _ = self.evaluate(dd, stage + ":adam", grad=True)
            if feas and J < best[0]:
                best = (J, dd)
            gu = np.array([g[v] for v in self.cont]) * box.width
            if not np.all(np.isfinite(gu)):
                break
            upd, state = opt.update(jnp.asarray(gu), state)
            u_new = np.clip(u + np.asarray(upd), 0.0, 1.0)
            still = still + 1 if np.max(np.abs(u_new - u)) < 1e-3 else 0
            u = u_new
            if still >= 3:  # converged (or pinned at a bound)
                break
        return best, u

    def _finish(self, box: _UnitBox, best, u, stage):
        """Judge Adam's end point; an infeasible one is pulled back towards the best feasible by bisection."""
        dd = box.from_u(u)
        J, _, feas, _, _, _ = self.evaluate(dd, stage + ":adam")
        if feas and J < best[0]:
            best = (J, dd)
        elif not feas and self.cmax_cap is not None:
            ub, lo_a, hi_a = box.to_u(best[1]), 0.0, 1.0
            for _ in range(10):
                a = 0.5 * (lo_a + hi_a)
                dd = box.from_u(ub + a * (u - ub))
                J, _, feas, _, _, _ = self.evaluate(dd, stage + ":bisect")
                if feas:
                    lo_a = a
                    if J < best[0]:
                        best = (J, dd)
                else:
                    hi_a = a
        return best

    def design_out(self, dd, x_std) -> dict:
        """The design variables of ``dd`` as reported (plus the number of sessions for devices)."""
        o = {k: (int(dd[k]) if k in DISCRETE else float(dd[k])) for k in x_std}
        if self.space.device:
            o["sessions"] = (
                self.space.n_sessions(dd, self.total)
                if self.total is not None or dd is not x_std
                else self.space.standard_n
            )
        return o

    def per_draw(self, dd_best, m_best, m_std, n_draws: int, draw_grid: int) -> dict:
        """Each draw's metric at the optimum and the standard, and each draw's own optimum: discrete
        variables by enumeration, continuous ones on a ``draw_grid``-point grid (others at ``dd_best``)."""
        import pandas as pd

        pick = np.argmax if self.objective == "max" else np.argmin
        out = {"value_at_optimum": m_best, "value_at_standard": m_std}
        per = {}
        for v in self.disc:  # each draw's best discrete value (others at the optimum)
            vals = []
            grid = list(range(int(self.box[v][0]), int(self.box[v][1]) + 1))
            for g in grid:
                dd = _with(dd_best, [v], (g,), self.space, self.total)
                vals.append(self.evaluate(dd, "draws")[5] if self.fits(dd) else np.full(n_draws, np.nan))
            vals = np.where(np.isfinite(vals), np.asarray(vals), -self.sign * np.inf)
            per[v] = np.asarray(grid)[pick(vals, axis=0)]
        for v in self.cont:  # each draw's best continuous value on a grid over its feasible box
            lo, hi = self.cont_box(dd_best)[v]
            grid = np.linspace(lo, hi, max(int(draw_grid), 3))
            vals = np.asarray([self.evaluate({**dd_best, v: g}, "draws")[5] for g in grid])
            vals = np.where(np.isfinite(vals), vals, -self.sign * np.inf)
            per[v] = grid[pick(vals, axis=0)]
        out["x"] = pd.DataFrame(per)
        out["spread"] = out["x"].describe(percentiles=[0.05, 0.5, 0.95]).T if per else None
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
