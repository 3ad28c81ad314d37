"""Which model-card parameters a time-scale metric depends on (:func:`sensitivity`): local
normalised derivatives by ``jax.jacfwd``, or Sobol indices over the cards' priors."""

from __future__ import annotations

import math
import time

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..modalities import build, get_modality
from ..protocols import protocol
from ..schedule import Schedule
from ..simulate import as_arrays, segment_table, solve
from ._priors import _candidates, _ppf, _sd_log, _set, screening_rows
from ._readouts import DESIGN_SOLVE, SENS_METRICS, SOBOL_SOLVE, _check_readout, _readout, sens_metric
from ._sobol import saltelli_sample, sobol_estimates
from ._traced import SAVE_SLOTS


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
    times, at_index, horizon_h = _sens_grid(sched, metric, at_h, horizon_h, n_grid)
    cands = _candidates(modality, species, base)
    parameters = _check_parameters(parameters, cands, modality)
    if method == "sobol" and int(n) < 2:
        raise ValueError(f"n={n!r} must be >= 2 (base samples; a power of two is best)")
    model = as_arrays(base)
    table = segment_table(model, sched, times, save_slots=SAVE_SLOTS)
    out: dict = {"readout": readout, "metric": metric, "method": method, "horizon_h": horizon_h}
    names_all = list(cands) if parameters is None else parameters
    theta0 = np.log(np.array([cands[p].value for p in names_all]))
    sd = np.array([_sd_log(cands[p]) for p in names_all])
    solve = {**(DESIGN_SOLVE if method == "local" else SOBOL_SOLVE), **(solve_options or {})}
    spec = _SensSpec(
        readout=readout,
        metric=metric,
        at_index=at_index,
        names=tuple(names_all),
        solve_opts=tuple(sorted(solve.items())),
        forward=method == "local",
    )
    if method == "local":
        out.update(_local(spec, theta0, sd, model, table, jnp.asarray(times)))
    else:
        # One compiled, vmapped batch function over every candidate parameter (the ones not
        # sampled stay at their card values) serves both the screening and the Saltelli samples.
        batches = _Batches(spec, model, table, jnp.asarray(times), int(batch_size), progress, modality, t_start)
        screen = parameters is None and len(names_all) > max_parameters
        names = _screen(batches, theta0, sd, out, int(max_parameters)) if screen else list(names_all)
        out.update(_sobol(batches, cands, names, theta0, int(n), seed, bootstrap, truncate_sd, out))
    out["elapsed_s"] = time.perf_counter() - t_start
    return out


def _sens_grid(sched: Schedule, metric: str, at_h, horizon_h, n_grid) -> tuple[np.ndarray, int | None, float]:
    """``(times, index of at_h or None, horizon)``: the uniform grid of :func:`sensitivity` (h)."""
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
    return times, at_index, horizon_h


def _check_parameters(parameters, cands: dict, modality: str) -> list[str] | None:
    if parameters is None:
        return None
    parameters = [parameters] if isinstance(parameters, str) else list(parameters)
    for p in parameters:
        if p not in cands:
            raise ValueError(
                f"parameters: {p!r} is not a parameter with a usable prior in the {modality!r} "
                f"model; valid: {sorted(cands)}"
            )
    return parameters


def _undefined(metric: str, readout: str) -> ValueError:
    return ValueError(
        f"metric {metric!r} of {readout!r} is undefined at the card values (e.g. the readout "
        "does not change, or the simulation failed)"
    )


def _local(spec: _SensSpec, theta0, sd, model, table, t_j) -> dict:
    """Normalised local sensitivities at the card values and their linearised variance shares."""
    names_all = list(spec.names)
    m0, jac = _sens_local(spec, jnp.asarray(theta0), model, table, t_j)
    m0, jac = float(m0), np.asarray(jac)
    if not np.isfinite(m0):
        raise _undefined(spec.metric, spec.readout)
    var = (jac * sd) ** 2
    shares = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    return {
        "local": dict(zip(names_all, (jac / m0).tolist())),
        "nominal": m0,
        "first_order": dict(zip(names_all, shares.tolist())),
        "total": dict(zip(names_all, shares.tolist())),
        "parameters": names_all,
        "n_simulations": 1,
        "n_failed": 0,
    }


class _Batches:
    """The metric of many ln-parameter rows, in vmapped batches of ``size`` (the last padded);
    ``n`` counts the simulations run."""

    def __init__(self, spec, model, table, t_j, size: int, progress: bool, modality: str, t_start: float):
        self.spec, self.model, self.table, self.t_j, self.size = spec, model, table, t_j, size
        self.progress, self.modality, self.t_start = progress, modality, t_start
        self.n = 0

    def __call__(self, log_thetas, label: str) -> np.ndarray:
        bs = self.size
        f = np.empty(log_thetas.shape[0])
        n_batches = -(-log_thetas.shape[0] // bs)
        for i in range(0, log_thetas.shape[0], bs):
            chunk = log_thetas[i : i + bs]
            pad = bs - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            batch = _sens_batch(self.spec, jnp.asarray(chunk), self.model, self.table, self.t_j)
            f[i : i + bs - pad] = np.asarray(batch)[: bs - pad]
            if self.progress:
                print(
                    f"[pkpd.sensitivity sobol {self.modality}] {label}: batch {i // bs + 1}/{n_batches} "
                    f"({min(i + bs, log_thetas.shape[0])} of {log_thetas.shape[0]} simulations), "
                    f"{time.perf_counter() - self.t_start:.0f} s",
                    flush=True,
                )
        return f


def _screen(batches: _Batches, theta0, sd, out: dict, max_parameters: int) -> list[str]:
    """The ``max_parameters`` with the largest linearised variance share, by central differences
    (±0.05 in ln p) of the metric; records ``local``, ``screening_share`` and ``nominal`` in ``out``.

    A step never leaves the parameter's domain (one-sided at a bound: the Hill coefficient's card
    value 1 is its lower bound, and hill < 1 makes C^hill non-Lipschitz at C = 0, which stalls the
    stiff solver at max_steps in every segment)."""
    names_all = list(batches.spec.names)
    rows, step = screening_rows(theta0, names_all)
    f = batches(rows, "screening")
    batches.n += rows.shape[0]
    if not np.isfinite(f[0]):
        raise _undefined(batches.spec.metric, batches.spec.readout)
    grad = np.where(step > 0, (f[1::2] - f[2::2]) / np.where(step > 0, step, 1.0), 0.0)
    var = np.nan_to_num((grad * sd) ** 2)
    out["local"] = dict(zip(names_all, (grad / f[0]).tolist()))
    out["screening_share"] = dict(zip(names_all, (var / max(var.sum(), 1e-300)).tolist()))
    out["nominal"] = float(f[0])
    return [names_all[i] for i in np.argsort(-var)[:max_parameters]]


def _sobol(batches: _Batches, cands, names, theta0, n: int, seed: int, bootstrap: int, truncate_sd, out) -> dict:
    """Sobol indices of ``names`` from a Saltelli sample of their priors (the other candidates at
    their card values), with bootstrap intervals."""
    names_all = list(batches.spec.names)
    k = len(names)
    cols = [names_all.index(p) for p in names]
    a, b = saltelli_sample(n, k, seed=seed)
    ab = np.stack([np.where(np.arange(k)[None, :] == i, b, a) for i in range(k)])
    u = np.concatenate([a, b, ab.reshape(-1, k)])
    log_theta = np.repeat(theta0[None, :], u.shape[0], axis=0)
    log_theta[:, cols] = np.log(_ppf(cands, names, u, truncate_sd=truncate_sd))
    f = batches(log_theta, "Saltelli sample")
    batches.n += u.shape[0]
    nb = a.shape[0]
    est = sobol_estimates(f[:nb], f[nb : 2 * nb], f[2 * nb :].reshape(k, nb), bootstrap=bootstrap, seed=seed)
    res = {
        "first_order": dict(zip(names, est["first_order"].tolist())),
        "total": dict(zip(names, est["total"].tolist())),
        "parameters": names,
        "n_simulations": int(batches.n),
        "n_failed": est["n_dropped"],
        "variance": est["variance"],
    }
    if "nominal" not in out:
        res["nominal"] = float(batches(theta0[None, :], "card values")[0])
    if bootstrap:
        res["first_order_ci"] = {p: tuple(ci) for p, ci in zip(names, est["first_order_ci"].tolist())}
        res["total_ci"] = {p: tuple(ci) for p, ci in zip(names, est["total_ci"].tolist())}
    return res
