"""The hierarchical NUTS of the joint model (:func:`nuts`): between-study sd estimated, study
effects integrated out (:mod:`._marginal`), started at the marginal mode (:func:`nuts_start`) in
coordinates that whiten its covariance, corrected by the shipped metric (:mod:`._metric`)."""

from __future__ import annotations

import contextlib
import json
import os
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

from .. import flipflop, params
from ..fit import describe_solve
from ._grid import GridTransform
from ._laplace import laplace_at_mode
from ._marginal import TAU_PRIOR_SIGMA, _HostLogLikelihood, _joint_loglik, marginal_log_posterior, theta_prior
from ._metric import _resolve_metric, corrected_covariance
from ._problem import TAU_STUDY, JointProblem
from ._store import Calibration, load

#: Per-modality ODE solver settings of :func:`nuts` (overrides of :data:`pkpd.fit.FIT_SOLVE`,
#: Tsit5 rtol 1e-6), chosen by the cost and accuracy of each modality's forward-mode Jacobian over
#: the shipped MAP and 25 shipped draws against Tsit5 at rtol 1e-9 (``python
#: benchmarks/nuts_solve.py``; the measured costs and errors are in benchmarks/RESULTS.md). Looser
#: (Bosh3) where the expensive daily-dosing / daily-session solves stay accurate; tighter (Tsit5
#: rtol 1e-8) where a single session's after-effect is stiff and the fit setting's prediction error
#: is largest (iTBS, 1 Hz rTMS, cTBS). The log-likelihood moves far less than the posterior's width
#: (:data:`NUTS_SOLVE_BUDGET`, checked by tests/test_calibrate.py). Modalities not listed keep
#: FIT_SOLVE (their PK rows are solved exactly, or looser settings gain nothing). The stiff rows get
#: max_steps 262,144: at extreme iTBS and 1 Hz points (a_itbs and eta 2.5-3 prior sds up) a solve
#: needs more than 65,536 steps, which would refuse the evaluation (a divergence); at the MAP the
#: cost is the same.
NUTS_SOLVE: dict[str, dict] = {
    "escitalopram": dict(solver=dfx.Bosh3(), rtol=1e-3, atol=1e-6),
    "rtms_10hz": dict(solver=dfx.Bosh3(), rtol=1e-4, atol=1e-7),
    "accelerated_itbs": dict(solver=dfx.Bosh3(), rtol=1e-4, atol=1e-7),
    "ect": dict(solver=dfx.Bosh3(), rtol=1e-4, atol=1e-7),
    "mst": dict(solver=dfx.Bosh3(), rtol=1e-4, atol=1e-7),
    "itbs": dict(solver=dfx.Tsit5(), rtol=1e-8, atol=1e-11, max_steps=262_144),
    "rtms_1hz": dict(solver=dfx.Tsit5(), rtol=1e-8, atol=1e-11, max_steps=262_144),
    "ctbs": dict(solver=dfx.Tsit5(), rtol=1e-8, atol=1e-11, max_steps=262_144),
}


#: What :data:`NUTS_SOLVE` promises at the shipped MAP against Tsit5 at rtol 1e-9, in units of
#: each row's sd: the largest prediction error and the largest error of d prediction / d z
#: (tests/test_calibrate.py checks it per entry).
NUTS_SOLVE_BUDGET = {"prediction": 5e-2, "jacobian": 1.0}


#: Starting points :func:`nuts` offers: the marginal mode with its finite-difference Hessian, or the
#: shipped MAP with its Gauss-Newton (Laplace) covariance.
NUTS_STARTS = ("mode", "map")


def nuts_start(
    jp: JointProblem, host: _HostLogLikelihood, init: Calibration, *, start: str = "mode", progress: bool = False
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Where :func:`nuts` starts and its initial dense inverse mass matrix, for ``theta = (z, log tau)``.

    ``start="map"``: the shipped MAP (``init``, tau at :data:`TAU_STUDY`) and the z block of the
    Gauss-Newton inverse information of ``(z, b)`` there (the study effects integrated out), with
    ``log tau`` independent at sd ``TAU_PRIOR_SIGMA / 2``. ``start="mode"`` (default): from there,
    :func:`laplace_at_mode` on the log posterior NUTS samples (prior + :class:`_HostLogLikelihood`),
    i.e. the mode of the marginal posterior and the inverse of its finite-difference Hessian; it
    costs ``2 (K + 1)`` + ~20 gradients. The Gauss-Newton covariance
    ignores the curvature of the prior-dominated and non-linear directions and guesses ``log tau``;
    the Hessian measures them (benchmarks/RESULTS.md, joint geometry)."""
    if start not in NUTS_STARTS:
        raise ValueError(f"start={start!r}; valid: {list(NUTS_STARTS)}")
    K, S = jp.K, jp.S
    z0 = jp.mu[:K].copy()
    sd0 = jp.sigma[:K].copy()
    cal_keys = init.keys
    for i, k in enumerate(jp.keys):
        if k in cal_keys:
            j = cal_keys.index(k)
            z0[i] = init.map_z[j]
            sd0[i] = init.parameters[j]["sd_z"]
    b0 = np.zeros(S)
    for j, st in enumerate(jp.studies):
        eff = init.info.get("study_effects", {}).get(st)
        if eff is not None:
            b0[j] = eff["b"]
    cov = np.diag(np.concatenate([sd0**2, [TAU_PRIOR_SIGMA**2 / 4]]))
    try:
        _, J = jp.linearise(np.concatenate([z0, b0]))
        c = np.linalg.inv(J.T @ J)
        cov[:K, :K] = 0.5 * (c[:K, :K] + c[:K, :K].T)
    except (np.linalg.LinAlgError, FloatingPointError):
        pass
    theta0 = np.concatenate([z0, [np.log(TAU_STUDY)]])
    info = {"start": start}
    if start == "map":
        return theta0, cov, info
    t = time.perf_counter()
    theta, cov, more = laplace_at_mode(marginal_log_posterior(jp, host), theta0, cov)
    info.update(more, seconds=time.perf_counter() - t)
    if progress:
        print(
            f"[pkpd.calibrate nuts] start at the marginal mode: log posterior {more['log_density']:.3f}, "
            f"{more['gradient_evaluations']} gradients in {info['seconds']:.0f} s, curvature relative to the "
            f"Gauss-Newton covariance {more['curvature_min']:.3g}-{more['curvature_max']:.3g} "
            f"({more['clipped']} directions clipped)",
            flush=True,
        )
    return theta, cov, info


#: What :func:`nuts`'s warmup adapts in the whitened coordinates: one variance per principal direction
#: of the start covariance, a dense covariance, or nothing (step size only).
ADAPT_MASS = ("scale", "dense", "none")


def _adapted_scales(mcmc, n: int):
    """Each chain's adapted diagonal inverse mass matrix (``adapt_mass="scale"``), as lists, or None."""
    try:
        imm = mcmc.last_state.adapt_state.inverse_mass_matrix
        v = np.asarray(next(iter(imm.values())) if isinstance(imm, dict) else imm, dtype=float)
        return v.reshape(-1, n).tolist()
    except (AttributeError, StopIteration, ValueError, TypeError):
        return None


def _reflected_share(mcmc, mirrored, chains: int) -> list[list[float]]:
    """Per flip-flop triple, per chain: the share of draws the sampler took with ``ka < ke``
    (reported folded onto ``ka >= ke``); ~0.5 when a chain crosses freely, 0 or 1 when it stays
    in one mode (either is a correct sample of the folded posterior)."""
    if not mirrored:
        return []
    theta = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])
    return [[float(np.mean(flipflop.log_ratio(theta[c], t) < 0)) for c in range(chains)] for t in mirrored]


def widen_xla_pool() -> str:
    """Give XLA's CPU worker pool one thread more than there are cores (unless ``NPROC`` is set).

    :func:`nuts` evaluates the per-modality compiled solves from inside a ``pure_callback``, i.e.
    from a computation that holds one of XLA's CPU workers (one per core) while it waits. The inner
    solves then share the remaining workers: on 2 cores, one. XLA sizes that pool from the ``NPROC``
    environment variable (an XLA internal meant for CI CPU reservations); with one worker more, the
    inner solves use every core (the speed-up is in benchmarks/RESULTS.md). Effective only before
    JAX starts its CPU backend: ``python -m pkpd.calibrate --nuts`` calls it first; from a notebook,
    set ``NPROC`` before starting Python. Returns the value in effect."""
    return os.environ.setdefault("NPROC", str((os.cpu_count() or 1) + 1))


@contextlib.contextmanager
def one_adaptation_window():
    """Within this block NumPyro's HMC/NUTS warmup is one adaptation window (dual averaging of the
    step size over the whole warmup, never restarted).

    NumPyro's Stan-style schedule (75-iteration start buffer, doubling middle windows, 50-iteration
    end buffer; 15 % / 10 % of a short warmup) restarts the step size's dual averaging at the end of
    every middle window, whether or not the mass matrix is adapted. With ``adapt_mass="none"`` that
    wastes the warmup: of 75 iterations only the last 7 set the step size, so runs with the same
    metric end at step sizes several-fold apart (benchmarks/RESULTS.md). Patches
    ``numpyro.infer.hmc_util.build_adaptation_schedule``, which the warmup adapter looks up when a
    chain is initialised, and restores it on exit."""
    from numpyro.infer import hmc_util

    original = hmc_util.build_adaptation_schedule
    hmc_util.build_adaptation_schedule = lambda num_steps: [hmc_util.AdaptWindow(0, int(num_steps) - 1)]
    try:
        yield
    finally:
        hmc_util.build_adaptation_schedule = original


def nuts(
    modalities=None,
    *,
    chains: int = 2,
    warmup: int = 200,
    draws: int = 200,
    seed: int = 0,
    max_tree_depth: int = 6,
    target_accept: float = 0.8,
    init: Calibration | None = None,
    study_effect_draws: int = 100,
    start: str = "mode",
    adapt_mass: str | None = None,
    grid_marginals: bool = True,
    flip_flop: bool = True,
    solve: dict | None = NUTS_SOLVE,
    metric="shipped",
    progress: bool = True,
    error=None,
):
    """Hierarchical NUTS over all (or the given) modalities' curated data -> arviz InferenceData.

    The joint calibration's model with the between-study sd estimated: ``z ~ Normal(prior)`` in the
    fitted space (keyed as in the MAP), ``log tau ~ Normal(log TAU_STUDY, TAU_PRIOR_SIGMA)``,
    ``b_s ~ Normal(0, tau)`` per study and every usable row ``~ Normal(pred * exp(b_study), sd)``;
    the study effects are integrated out, so NUTS samples ``theta = (z, log tau)`` (how, and why:
    "Hierarchical NUTS" in :mod:`pkpd.calibrate`).

    **Arguments**

    - ``start``: ``"mode"`` (default; the marginal mode, mass from the inverse Hessian there) or
      ``"map"`` (``init``, default :func:`load`, with its Laplace covariance): :func:`nuts_start`.
    - ``adapt_mass`` (:data:`ADAPT_MASS`): what warmup adapts in the coordinates ``u`` that whiten the
      start's covariance: ``"none"`` (default with ``start="mode"``) the step size only, in one
      window (:func:`one_adaptation_window`); ``"scale"`` one variance per principal direction;
      ``"dense"`` (default with ``start="map"``) a full covariance.
    - ``grid_marginals`` (default): parameters whose Laplace the calibration's check refused
      (``init.info["laplace_check"]``) are sampled through their :class:`GridTransform`.
    - ``flip_flop`` (default): one-compartment oral PK (psilocybin, LSD) gets the prior symmetrised
      under ``(ka, cl, v) -> (ke, cl, v ke / ka)`` and its reported draws folded onto ``ka >= ke``
      (:mod:`pkpd.flipflop`; ``theta`` and ``u`` stay the sampler's unfolded state).
    - ``solve``: per modality, overrides of the fit's ODE solver settings (default
      :data:`NUTS_SOLVE`; ``None``: :data:`pkpd.fit.FIT_SOLVE` everywhere).
    - ``metric``: a posterior sample's covariance that corrects the start's
      (:func:`corrected_covariance`): ``"shipped"`` (default; :data:`NUTS_METRIC` when its keys are
      this run's), a dict from :func:`metric_from_posterior` or the path of one, or ``None``.
    - ``chains`` (run one after the other), ``warmup``, ``draws``, ``seed``, ``max_tree_depth``,
      ``target_accept``; ``study_effect_draws``: posterior draws (evenly thinned) for which one draw
      of every study effect is taken from its conditional posterior (each costs one more evaluation
      of every modality).

    **Returns** InferenceData with posterior (``parameters`` over dim ``parameter`` in the fitted
    space, ``natural`` in natural units, ``tau``, the sampler's ``theta`` and ``u``), sample_stats
    and ``study_effects`` (dims ``sample``, ``study``). Attributes: seconds, gradient evaluations,
    refused evaluations, divergences, and every setting (``solve``, ``metric``, ``flip_flop``,
    ``flip_flop_reflected``: per triple and chain the share of draws taken with ``ka < ke``, ...).
    """
    adapt = _check_nuts_arguments(study_effect_draws, start, adapt_mass)
    t0 = time.perf_counter()
    cal = load() if init is None else init
    jp = JointProblem(modalities, error=error, progress=progress, solve=solve, structure=cal.structure)
    metric, metric_info = _resolve_metric(metric, jp.keys + ["log_tau"])
    host = _HostLogLikelihood(jp)
    theta0, cov, start_info = nuts_start(jp, host, cal, start=start, progress=progress)
    n = len(theta0)
    grid_index, grid_maps = _grid_parameters(jp, cal) if grid_marginals else ([], [])
    mirrored = flipflop.triples(jp.keys, flipflop.pk_structure, lambda k: jp.meta[k]["transform"]) if flip_flop else []
    rest = np.asarray([i for i in range(n) if i not in grid_index], dtype=int)
    whiten = _whitening(cov, rest, metric, metric_info, progress)
    if progress:
        _report_transforms(jp, mirrored, grid_index)
    model = _sampled_model(jp, host, theta0, whiten, rest, grid_index, grid_maps, mirrored)
    mcmc = _mcmc(model, n, adapt, max_tree_depth, target_accept, warmup, draws, chains, progress)
    t_setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    # with the mass fixed (adapt "none") the Stan windows only restart the step size (see one_adaptation_window)
    with one_adaptation_window() if adapt == "none" else contextlib.nullcontext():
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging", "num_steps"))
    seconds = time.perf_counter() - t1
    idata = _inference_data(mcmc, jp.keys, n)
    t2 = time.perf_counter()
    _add_study_effects(idata, mcmc, host, study_effect_draws, seed)
    timing = dict(sampling_seconds=seconds, setup_seconds=t_setup, study_effect_seconds=time.perf_counter() - t2)
    settings = dict(chains=chains, warmup=warmup, draws=draws, max_tree_depth=max_tree_depth, seed=seed)
    idata.posterior.attrs.update(
        _posterior_attrs(jp, host, mcmc, timing, start_info, adapt, theta0, whiten, rest, grid_index, mirrored)
    )
    idata.posterior.attrs.update(metric=json.dumps(metric_info), **settings, **_problem_attrs(jp))
    if progress:
        print(
            f"[pkpd.calibrate nuts] {chains} chains x ({warmup} + {draws}) in {seconds:.0f} s (+ {t_setup:.0f} s setup, "
            f"{timing['study_effect_seconds']:.0f} s study effects): {host.calls} gradient evaluations, "
            f"{idata.posterior.attrs['divergences']} divergences; evaluations refused: {host.refused or 'none'}",
            flush=True,
        )
    return idata


def _inference_data(mcmc, keys: list[str], n: int):
    import arviz as az

    return az.from_numpyro(
        mcmc,
        coords={"parameter": keys, "theta_dim_0": np.arange(n), "direction": np.arange(n)},
        dims={"parameters": ["parameter"], "natural": ["parameter"], "theta": ["theta_dim_0"], "u": ["direction"]},
    )


def _posterior_attrs(jp, host, mcmc, timing, start_info, adapt, theta0, whiten, rest, grid_index, mirrored) -> dict:
    """Attributes of a :func:`nuts` posterior: timings, the start and the sampler's coordinates, the
    transforms, the solver settings, and what the sampler met (evaluations, divergences, steps)."""
    extra = mcmc.get_extra_fields()
    n = len(theta0)
    return dict(
        pkpd_fit="joint_nuts",
        **timing,
        start=json.dumps(start_info),
        adapt_mass=adapt,
        adaptation_windows="one (step size only)" if adapt == "none" else "numpyro (Stan-style windows)",
        start_theta=json.dumps(np.asarray(theta0).tolist()),
        whitening=json.dumps(whiten.tolist()),
        whitened_indices=json.dumps(rest.tolist()),
        grid_parameters=json.dumps([jp.keys[i] for i in grid_index]),
        flip_flop=json.dumps([[jp.keys[i] for i in t] for t in mirrored]),
        flip_flop_reflected=json.dumps(_reflected_share(mcmc, mirrored, mcmc.num_chains)),
        xla_nproc=os.environ.get("NPROC", "unset"),
        solve=json.dumps({m: describe_solve(pb.solve) for m, pb in jp.problems.items()}),
        # the warmup's variance per direction of u (1 = the start's covariance), per chain
        adapted_variance=json.dumps(_adapted_scales(mcmc, n) if adapt == "scale" else None),
        gradient_evaluations=host.calls,
        refused_evaluations=json.dumps(host.refused),
        refused_at=json.dumps(host.refused_at),
        study_effects=f"integrated out (adaptive Gauss-Hermite, {len(host.x)} nodes per study)",
        divergences=int(np.sum(np.asarray(extra["diverging"]))),
        mean_leapfrog_steps=float(np.mean(np.asarray(extra["num_steps"]))),
    )


def _check_nuts_arguments(study_effect_draws, start: str, adapt_mass: str | None) -> str:
    """Validate :func:`nuts`'s options; returns what warmup adapts (``adapt_mass`` or its default)."""
    if (
        not isinstance(study_effect_draws, (int, np.integer))
        or isinstance(study_effect_draws, bool)
        or study_effect_draws < 0
    ):
        raise ValueError(f"study_effect_draws={study_effect_draws!r} must be an integer >= 0")
    if start not in NUTS_STARTS:
        raise ValueError(f"start={start!r}; valid: {list(NUTS_STARTS)}")
    adapt = ("none" if start == "mode" else "dense") if adapt_mass is None else adapt_mass
    if adapt not in ADAPT_MASS:
        raise ValueError(f"adapt_mass={adapt_mass!r}; valid: {list(ADAPT_MASS)} (or None)")
    return adapt


def _grid_parameters(jp: JointProblem, cal: Calibration) -> tuple[list[int], list[GridTransform]]:
    """Indices of the parameters the calibration's Laplace check refused, and their slice-grid
    transforms (:class:`GridTransform`)."""
    grid_index, grid_maps = [], []
    for key, row in (cal.info.get("laplace_check") or {}).get("parameters", {}).items():
        if row.get("refused") and key in jp.keys and "grid" in row:
            grid_index.append(jp.keys.index(key))
            grid_maps.append(GridTransform(row["grid"], row["grid_logd"]))
    return grid_index, grid_maps


def _whitening(cov, rest, metric, metric_info: dict, progress: bool) -> np.ndarray:
    """``V sqrt(S)`` of the start covariance of the whitened coordinates ``rest`` (``cov = V S V^T``),
    after the metric's correction (:func:`corrected_covariance`, recorded in ``metric_info``)."""
    cov_rest = cov[np.ix_(rest, rest)]
    if metric is not None:
        sample = np.asarray(metric["covariance"], dtype=float)[np.ix_(rest, rest)]
        cov_rest, more = corrected_covariance(cov_rest, sample, float(metric["n_eff"]))
        metric_info.update(more)
        if progress:
            kept = sorted(more["kept"])[::-1]
            print(
                f"[pkpd.calibrate nuts] metric: start covariance corrected by {metric_info['from']} along "
                f"{len(kept)} directions (variance ratios {', '.join(f'{v:.2g}' for v in kept[:6])}"
                f"{', ...' if len(kept) > 6 else ''}; noise bulk {more['edges'][0]:.2f}-{more['edges'][1]:.2f})",
                flush=True,
            )
    S, V = np.linalg.eigh(0.5 * (cov_rest + cov_rest.T))
    return V * np.sqrt(np.maximum(S, 1e-12 * S.max()))


def _report_transforms(jp: JointProblem, mirrored, grid_index) -> None:
    if mirrored:
        print(
            f"[pkpd.calibrate nuts] flip-flop symmetric (ka <-> ke), prior symmetrised and draws reported with "
            f"ka >= ke: {', '.join(jp.keys[t[0]].rpartition('.')[0] for t in mirrored)}",
            flush=True,
        )
    if grid_index:
        print(
            f"[pkpd.calibrate nuts] sampled through their slice-grid transforms: "
            f"{', '.join(jp.keys[i] for i in grid_index)}",
            flush=True,
        )


def _sampled_model(jp: JointProblem, host, theta0, whiten, rest, grid_index, grid_maps, mirrored):
    """The NumPyro model :func:`nuts` samples: ``u`` (improper flat) -> ``theta`` (whitened
    coordinates and slice-grid transforms), the symmetrised prior, the folded ``parameters`` and
    ``natural`` draws, ``tau``, and the data with the study effects integrated out."""
    import numpyro
    import numpyro.distributions as dist

    K, n = jp.K, len(theta0)
    loglik = _joint_loglik(host)
    mu, sigma = (jnp.asarray(a) for a in theta_prior(jp))
    transforms = [jp.meta[k]["transform"] for k in jp.keys]
    start_j, whiten_j, rest_j = jnp.asarray(theta0), jnp.asarray(whiten), jnp.asarray(rest)

    def model():
        u = numpyro.sample("u", dist.ImproperUniform(dist.constraints.real_vector, (), event_shape=(n,)))
        theta = start_j.at[rest_j].add(whiten_j @ u[rest_j])
        log_jac = 0.0
        for i, gmap in zip(grid_index, grid_maps):
            th_i, lj = gmap(u[i])
            theta = theta.at[i].set(th_i)
            log_jac = log_jac + lj
        theta = numpyro.deterministic("theta", theta)
        if grid_index:
            numpyro.factor("grid_jacobian", log_jac)
        numpyro.factor("prior", flipflop.log_prior(theta, mu, sigma, mirrored))
        z = flipflop.fold_jax(theta[:K], mirrored)  # report the ka >= ke labelling (flipflop module docstring)
        numpyro.deterministic("parameters", z)
        numpyro.deterministic("natural", jnp.stack([params.to_natural(t, z[i]) for i, t in enumerate(transforms)]))
        numpyro.deterministic("tau", jnp.exp(theta[K]))
        numpyro.factor("data", loglik(theta))

    return model


def _mcmc(model, n: int, adapt: str, max_tree_depth, target_accept, warmup, draws, chains, progress):
    """NumPyro's NUTS on ``model`` from ``u = 0``, chains one after the other."""
    from numpyro.infer import MCMC, NUTS, init_to_value

    kernel = NUTS(
        model,
        dense_mass=adapt == "dense",
        adapt_mass_matrix=adapt != "none",
        max_tree_depth=int(max_tree_depth),
        target_accept_prob=float(target_accept),
        init_strategy=init_to_value(values={"u": jnp.zeros(n)}),
    )
    return MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=progress,
    )


def _add_study_effects(idata, mcmc, host, study_effect_draws: int, seed: int) -> None:
    """Add the ``study_effects`` group: for ``study_effect_draws`` evenly thinned posterior draws,
    one draw of every study effect from its conditional posterior."""
    import xarray as xr

    thetas = np.asarray(mcmc.get_samples()["theta"])
    n_eff = min(int(study_effect_draws), len(thetas))
    if not n_eff:
        return
    pick = np.unique(np.linspace(0, len(thetas) - 1, n_eff).round().astype(int))
    rng = np.random.default_rng(seed)
    effects = np.stack([host.draw_study_effects(thetas[i], rng) for i in pick])
    idata.add_groups(
        {
            "study_effects": xr.Dataset(
                {"study_effect": (("sample", "study"), effects)},
                coords={"sample": pick, "study": host.jp.studies},
                attrs={
                    "description": "one draw per listed posterior draw (flattened chain-major index) of each "
                    "study effect b from its conditional posterior (Laplace) given that draw"
                },
            )
        }
    )


def _problem_attrs(jp: JointProblem) -> dict:
    """The data and prior a :func:`nuts` run sampled (rows, modalities, prior mean and sd of ``z``)."""
    return dict(
        rows=int(sum(pb.obs.n for pb in jp.problems.values())),
        modalities=json.dumps(list(jp.problems)),
        prior_mu=json.dumps(np.asarray(jp.mu[: jp.K]).tolist()),
        prior_sigma=json.dumps(np.asarray(jp.sigma[: jp.K]).tolist()),
    )


def nuts_summary(idata):
    """R-hat, ESS and posterior/prior sd ratio per parameter of a :func:`nuts` result (plus tau)."""
    import arviz as az
    import pandas as pd

    s = az.summary(idata, var_names=["parameters", "tau"], kind="all")
    keys = list(idata.posterior["parameters"].coords["parameter"].values)
    sig = json.loads(idata.posterior.attrs["prior_sigma"])
    post_sd = np.asarray(idata.posterior["parameters"]).reshape(-1, len(keys)).std(axis=0)
    ratio = list(post_sd / np.asarray(sig)) + [np.nan]
    s = s.reset_index().rename(columns={"index": "name"})
    s["sd_ratio"] = ratio
    s["data_taught_little"] = s["sd_ratio"] > 0.9
    return pd.DataFrame(s)
