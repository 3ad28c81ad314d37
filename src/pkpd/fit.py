"""Fitting modality models to published curves: MAP (optimistix) and full Bayesian (NumPyro NUTS).

Parameters are fitted in an unconstrained space with the model cards' priors: lognormal priors
are Normal in log space; beta priors are used through their logit-normal moment match
(sd = 1 / sqrt(mean (1 - mean) (concentration + 1))); normal priors as they are. PK and target
parameters are species-specific (``cl@human``); core and driver parameters are shared across
species (an assumption of the model). By default the fitted parameters are those the usable data
rows can inform (:data:`INFORMS`); pass ``parameters=[...]`` to choose.

``pkpd.fit(modality, data=None, method="map")`` returns a :class:`MapFit`;
``method="nuts"`` returns arviz ``InferenceData`` with posterior, prior, observed_data,
posterior_predictive and log_likelihood groups (save with ``.to_netcdf``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import cards, flipflop, params, structures
from .modalities import build, get_modality
from .observe import ClinicalLink, ErrorModel, ObservationSet, predict, prepare

#: The rates and gains every clinical readout informs (with the structures' clinical and SSRI rates).
CLINICAL_RATES = (
    "g_spine",
    "g_efficacy",
    "k_clinical",
    "k_consolidated",
    "k_adapt",
    "clinical_rate_ratio",
    "k_transcription",
)
#: Which parameters each readout informs (filtered to those the model has).
INFORMS: dict[str, tuple[str, ...]] = {
    "concentration": ("ka", "cl", "v", "v1", "v2", "q", "cl_m", "v_m", "fm"),
    "occupancy": ("ec50",),
    # a readout informs the rates that shape its own time course and the gains that set its size;
    # the driver gains e_glu/e_mtor (psychedelic, ketamine) set how far their drive moves spines
    "spine_density": ("k_spine_form", "k_spine_elim", "k_protein", "spine_capacity", "e_glu", "e_mtor"),
    "hippocampal_volume": ("g_vegf", "k_volume", "k_vegf", "g_neuro", "k_volume_transient"),
    "neurogenesis": ("e_neuro", "k_mature", "k_prolif"),
    "synaptic_efficacy": (
        "eta",
        "a_itbs",
        "a_ctbs",
        "a_rtms_max",
        "k_early",
        "efficacy_max",
        "efficacy_min",
        "k_theta_up",
        "k_theta_down",
        "w_theta_slow",
        "k_theta_slow",
    ),
    "response": CLINICAL_RATES + ("clinical_spread",),
    "remission": CLINICAL_RATES + ("clinical_spread", "remission_improvement"),
    "clinical_score": CLINICAL_RATES,
}
PK_TARGET = ("ka", "cl", "v", "v1", "v2", "q", "cl_m", "v_m", "fm", "f", "ec50", "ec50_m", "emax", "hill")
CLINICAL = ("clinical_spread", "remission_improvement")
#: Solver settings used in fits: tolerances matched to data noise (a few %), not to 1e-8; Tsit5
#: (measured ~2x faster than Kvaerno5 here, same optimum); a bounded max_steps keeps the
#: checkpointed reverse pass small.
FIT_SOLVE = dict(rtol=1e-6, atol=1e-9, solver=dfx.Tsit5(), max_steps=16_384)
#: Keys a :class:`Problem`'s ``solve`` may override in :data:`FIT_SOLVE`.
SOLVE_KEYS = ("solver", "rtol", "atol", "max_steps", "dtmax")


def solve_settings(solve: dict | None = None) -> dict:
    """:data:`FIT_SOLVE` with the given overrides, validated (unknown keys, non-positive
    tolerances, max_steps < 1 and non-diffrax solvers are refused)."""
    out = dict(FIT_SOLVE)
    if solve is None:
        return out
    if not isinstance(solve, dict):
        raise FitError(f"solve={solve!r} must be a dict with keys among {SOLVE_KEYS}")
    unknown = sorted(set(solve) - set(SOLVE_KEYS))
    if unknown:
        raise FitError(f"solve: unknown keys {unknown}; valid: {list(SOLVE_KEYS)}")
    for k in ("rtol", "atol"):
        if k in solve and not (np.isfinite(solve[k]) and solve[k] > 0):
            raise FitError(f"solve: {k}={solve[k]!r} must be a positive finite number")
    if "max_steps" in solve and not (isinstance(solve["max_steps"], (int, np.integer)) and solve["max_steps"] >= 1):
        raise FitError(f"solve: max_steps={solve['max_steps']!r} must be an integer >= 1")
    if "solver" in solve and not isinstance(solve["solver"], dfx.AbstractSolver):
        raise FitError(f"solve: solver={solve['solver']!r} is not a diffrax solver")
    out.update(solve)
    return out


def describe_solve(solve: dict) -> str:
    """``"Tsit5 rtol=1e-06 atol=1e-09"``: a solve setting in words (for attributes and notes)."""
    return f"{type(solve['solver']).__name__} rtol={solve['rtol']:g} atol={solve['atol']:g}"


class FitError(ValueError):
    """A fit that cannot be set up (no usable data, unknown parameter, bad settings)."""


@dataclass
class ParamSpec:
    name: str  # e.g. "cl@human" or "k_spine_form"
    base: str  # e.g. "cl"
    species: str | None  # None: shared
    transform: str  # log | logit | identity
    mu: float
    sigma: float
    unit: str
    status: str


def _prior_z(p: cards.Parameter) -> tuple[str, float, float]:
    """``(transform, mean, sd)`` of a card parameter's prior in the fitted space
    (:func:`pkpd.params.prior_transform`); :class:`FitError` for a prior that cannot be fitted."""
    try:
        return params.prior_transform(p.card, p.name, p.prior)
    except ValueError as e:
        raise FitError(str(e)) from None


# Kept for callers of the former private helpers; the public versions live in pkpd.params.
_to_natural = params.to_natural
_where = params.where


class Problem:
    """A modality, its data, the models per species, and the fitted parameter specifications."""

    def __init__(
        self,
        modality: str,
        data=None,
        *,
        parameters=None,
        error: ErrorModel | None = None,
        solve: dict | None = None,
        structure=None,
    ):
        get_modality(modality)
        #: the candidate structures of the models (:mod:`pkpd.structures`)
        self.structure = structures.resolve(structure)
        #: ODE solver settings of :meth:`predict`: :data:`FIT_SOLVE` with ``solve``'s overrides
        self.solve = solve_settings(solve)
        self.modality = modality
        self.models: dict = {}
        self.used: dict = {}
        self.obs: ObservationSet = self._observations(data)
        core = cards.load("core", "core")
        self.clinical = ClinicalLink(**{n: core.get(n, "all").value for n in CLINICAL})
        self._clinical_cards = {n: core.get(n, "all") for n in CLINICAL}
        self.error = error or ErrorModel()
        self.specs: list[ParamSpec] = []
        auto = parameters is None
        if auto:
            parameters = self._informed_parameters()
        for name in parameters:
            self._add_parameter(name, auto)
        if not self.specs:
            raise FitError(f"none of the parameters {parameters} can be informed by the usable data of {modality!r}")
        self.mu = np.array([s.mu for s in self.specs])
        self.sigma = np.array([s.sigma for s in self.specs])

    def _model_for(self, species):
        """The card model of ``species`` (built once), recording the card parameters it runs on."""
        if species not in self.models:
            self.models[species], used = build(self.modality, species, structure=self.structure)
            self.used[species] = {p.name: p for p in used}
        return self.models[species]

    def _observations(self, data) -> ObservationSet:
        """The usable rows of ``data`` (default: the curated library's rows for the modality)."""
        from .data import datasets, load_curves

        df = datasets(self.modality) if data is None else load_curves(data)
        obs = prepare(self.modality, df, self._model_for)
        if obs.n == 0:
            reasons = "; ".join(sorted(set(obs.excluded.get("reason", [])))) or "no rows for this modality"
            raise FitError(f"no usable data for {self.modality!r}: {reasons}")
        return obs

    def _informed_parameters(self) -> list[str]:
        """The parameters the usable rows' readouts inform (:data:`INFORMS`), in row order."""
        # readouts in row order, not a set's: a set of strings iterates in an order that changes
        # with PYTHONHASHSEED, and with it the parameter order and the calibration's draws
        readouts = dict.fromkeys(self.obs.rows["readout"])
        return list(dict.fromkeys(n for r in readouts for n in INFORMS.get(r, ())))

    def _add_parameter(self, name: str, auto: bool) -> None:
        """Add the specification(s) of parameter ``name`` (``"cl@human"``: one species; PK and target
        parameters without a species: one per species in the data). With ``auto``, parameters the
        model does not have are skipped instead of refused."""
        base, _, sp = name.partition("@")
        if base in CLINICAL:
            self._add(name, base, None, self._clinical_cards[base])
            return
        species_list = [sp] if sp else (self.obs.species if base in PK_TARGET else [None])
        for s in species_list:
            m = self.models.get(s or self.obs.species[0])
            if m is None:
                raise FitError(f"parameter {name!r}: no data for species {s!r}")
            if not params.has(m, base):
                if auto:
                    continue
                raise FitError(f"parameter {base!r} is not a parameter of the {self.modality} model")
            if base in PK_TARGET and s is not None and not self._pk_informed(base, s):
                continue
            p = self.used[s or self.obs.species[0]].get(base)
            if p is None:
                raise FitError(f"parameter {base!r} has no model-card entry")
            self._add(f"{base}@{s}" if base in PK_TARGET else base, base, s if base in PK_TARGET else None, p)

    def _pk_informed(self, base, species):
        rows = self.obs.rows[self.obs.rows["species"] == species]
        return any(base in INFORMS.get(r, ()) for r in set(rows["readout"]))

    def _add(self, name, base, species, p: cards.Parameter):
        if any(s.name == name for s in self.specs):
            return
        transform, mu, sigma = _prior_z(p)
        self.specs.append(ParamSpec(name, base, species, transform, mu, sigma, p.unit, p.status))

    def card_of(self, spec: ParamSpec) -> str:
        """The model card a fitted parameter comes from (``"core"`` for the clinical link)."""
        if spec.base in CLINICAL:
            return "core"
        return self.used[spec.species or self.obs.species[0]][spec.base].card

    def flip_flop_triples(self) -> list[tuple[int, int, int]]:
        """Indices ``(ka, cl, v)`` of the fitted parameters with the flip-flop symmetry
        (:mod:`pkpd.flipflop`): one-compartment oral PK with all three fitted on the log scale."""
        keys = [f"{self.card_of(s)}.{s.name}" for s in self.specs]
        return flipflop.triples(keys, flipflop.pk_structure, lambda k: self.specs[keys.index(k)].transform)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def natural(self, z) -> dict:
        return {s.name: params.to_natural(s.transform, z[i]) for i, s in enumerate(self.specs)}

    def apply(self, z):
        """Models per species and the clinical link with the parameters ``z`` (unconstrained)."""
        models = dict(self.models)
        clinical = self.clinical
        for i, s in enumerate(self.specs):
            x = params.to_natural(s.transform, z[i])
            if s.base in CLINICAL:
                clinical = eqx.tree_at(lambda c, b=s.base: getattr(c, b), clinical, x)
                continue
            for sp in [s.species] if s.species else list(models):
                models[sp] = params.set(models[sp], s.base, x)
        return models, clinical

    def predict(self, z, *, adjoint=None):
        models, clinical = self.apply(z)
        opts = dict(self.solve)
        if adjoint is not None:
            opts["adjoint"] = adjoint
        return predict(models, clinical, self.obs, solve_options=opts)

    def sd(self):
        return np.asarray(self.error.sd(jnp.asarray(self.obs.value), jnp.asarray(self.obs.se)))


@dataclass
class MapFit:
    """Maximum a posteriori fit: values, Laplace uncertainty and identifiability per parameter."""

    modality: str
    names: list
    z: np.ndarray
    natural: dict
    cov_z: np.ndarray
    prior_sigma: np.ndarray
    converged: bool
    n_steps: int
    objective: float
    seconds: float
    starts: int
    observations: object = field(repr=False, default=None)
    predictions: np.ndarray = field(repr=False, default=None)
    problem: object = field(repr=False, default=None)

    @property
    def sd_ratio(self) -> dict:
        """Posterior / prior standard deviation in the fitted (log/logit) space; > 0.9 means the
        data taught little about that parameter."""
        return {n: float(np.sqrt(max(self.cov_z[i, i], 0.0)) / self.prior_sigma[i]) for i, n in enumerate(self.names)}

    def summary(self):
        import pandas as pd

        rows = []
        for i, n in enumerate(self.names):
            sd = float(np.sqrt(max(self.cov_z[i, i], 0.0)))
            spec = self.problem.specs[i] if self.problem is not None else None
            rows.append(
                dict(
                    parameter=n,
                    map=float(self.natural[n]),
                    unit=spec.unit if spec else "",
                    prior_median=float(params.to_natural(spec.transform, spec.mu)) if spec else np.nan,
                    sd_z=sd,
                    sd_ratio=self.sd_ratio[n],
                    data_taught_little=self.sd_ratio[n] > 0.9,
                    card_status=spec.status if spec else "",
                )
            )
        return pd.DataFrame(rows)

    def residuals(self):
        """Data rows with the MAP prediction and the standardised residual."""
        df = self.observations.rows[
            ["study_id", "species", "readout", "statistic", "time_h", "value", "unit", "se"]
        ].copy()
        df["prediction"] = self.predictions
        df["sd"] = self.problem.sd() if self.problem is not None else np.nan
        df["z_residual"] = (df["value"] - df["prediction"]) / df["sd"]
        return df

    @property
    def model(self):
        """The fitted model of the first species in the data."""
        models, _ = self.problem.apply(jnp.asarray(self.z))
        return models[self.problem.obs.species[0]]

    def to_dict(self) -> dict:
        return dict(
            modality=self.modality,
            names=list(self.names),
            z=np.asarray(self.z).tolist(),
            natural={k: float(v) for k, v in self.natural.items()},
            cov_z=np.asarray(self.cov_z).tolist(),
            prior_sigma=np.asarray(self.prior_sigma).tolist(),
            converged=bool(self.converged),
            n_steps=int(self.n_steps),
            objective=float(self.objective),
            seconds=float(self.seconds),
            starts=int(self.starts),
        )

    def save(self, path) -> None:
        """Write the fit (without the data) as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "MapFit":
        d = json.loads(Path(path).read_text())
        return cls(
            modality=d["modality"],
            names=d["names"],
            z=np.asarray(d["z"]),
            natural=d["natural"],
            cov_z=np.asarray(d["cov_z"]),
            prior_sigma=np.asarray(d["prior_sigma"]),
            converged=d["converged"],
            n_steps=d["n_steps"],
            objective=d["objective"],
            seconds=d["seconds"],
            starts=d["starts"],
        )


def fit_map(problem: Problem, *, starts: int = 3, seed: int = 0, max_steps: int = 200, progress: bool = True) -> MapFit:
    """MAP by Levenberg-Marquardt (optimistix) on standardised data and prior residuals, with
    forward-mode Jacobians; ``starts`` starting points (the prior medians, then prior draws)."""
    import optimistix as optx

    t0 = time.perf_counter()
    value, sd = jnp.asarray(problem.obs.value), jnp.asarray(problem.sd())
    mu, sigma = jnp.asarray(problem.mu), jnp.asarray(problem.sigma)

    def residuals(z, _):
        pred = problem.predict(z, adjoint=dfx.ForwardMode())
        return jnp.concatenate([(pred - value) / sd, (z - mu) / sigma])

    solver = optx.LevenbergMarquardt(rtol=1e-6, atol=1e-6)
    run = eqx.filter_jit(
        lambda z0: optx.least_squares(residuals, solver, z0, options=dict(jac="fwd"), max_steps=max_steps, throw=False)
    )
    resid = eqx.filter_jit(lambda zz: residuals(zz, None))
    rng = np.random.default_rng(seed)
    best = None
    for k in range(starts):
        z0 = problem.mu if k == 0 else problem.mu + problem.sigma * rng.standard_normal(len(problem.mu))
        sol = run(jnp.asarray(z0))
        z = np.asarray(sol.value)
        r = np.asarray(resid(jnp.asarray(z)))
        obj = 0.5 * float(np.sum(r**2)) if np.all(np.isfinite(r)) else np.inf
        ok = bool(sol.result == optx.RESULTS.successful)
        if progress:
            print(
                f"[pkpd.fit map {problem.modality}] start {k + 1}/{starts}: objective {obj:.4g}, "
                f"{int(sol.stats['num_steps'])} steps, {'converged' if ok else 'not converged'}",
                flush=True,
            )
        if best is None or obj < best[1]:
            best = (z, obj, ok, int(sol.stats["num_steps"]))
    z, obj, ok, steps = best
    jac = np.asarray(eqx.filter_jit(jax.jacfwd(lambda zz: residuals(zz, None)))(jnp.asarray(z)))
    cov = np.linalg.pinv(jac.T @ jac)  # Laplace: inverse Fisher information of the residuals
    pred = np.asarray(eqx.filter_jit(problem.predict)(jnp.asarray(z)))
    natural = {k: float(v) for k, v in problem.natural(jnp.asarray(z)).items()}
    return MapFit(
        modality=problem.modality,
        names=problem.names,
        z=z,
        natural=natural,
        cov_z=cov,
        prior_sigma=np.asarray(problem.sigma),
        converged=ok,
        n_steps=steps,
        objective=obj,
        seconds=time.perf_counter() - t0,
        starts=starts,
        observations=problem.obs,
        predictions=pred,
        problem=problem,
    )


def _numpyro_model(problem: Problem, *, forward_mode: bool = False, flip_flop: bool = True):
    import numpyro
    import numpyro.distributions as dist

    value, sd = jnp.asarray(problem.obs.value), jnp.asarray(problem.sd())
    adjoint = dfx.ForwardMode() if forward_mode else None
    mirrored = problem.flip_flop_triples() if flip_flop else []
    mu, sigma = jnp.asarray(problem.mu), jnp.asarray(problem.sigma)

    def model(obs=None):
        z = jnp.stack([numpyro.sample(f"z_{s.name}", dist.Normal(s.mu, s.sigma)) for s in problem.specs])
        shown = z
        if mirrored:
            # prior symmetrised under ka <-> ke (the sites' own normal prior is the plain one), and
            # the named natural-unit values reported with ka >= ke: pkpd.flipflop
            numpyro.factor(
                "flip_flop_prior",
                flipflop.log_prior(z, mu, sigma, mirrored) - jnp.sum(dist.Normal(mu, sigma).log_prob(z)),
            )
            shown = flipflop.fold_jax(z, mirrored)
        for s, x in zip(problem.specs, [params.to_natural(s.transform, shown[i]) for i, s in enumerate(problem.specs)]):
            numpyro.deterministic(s.name, x)
        pred = problem.predict(z, adjoint=adjoint)
        numpyro.deterministic("prediction", pred)
        numpyro.sample("obs", dist.Normal(pred, sd), obs=obs)

    return model, value


NUTS_OPTIONS = ("mass", "max_tree_depth", "target_accept", "forward_mode", "dense_mass", "prior_draws", "flip_flop")


def _check_nuts_options(opts: dict) -> None:
    unknown = sorted(set(opts) - set(NUTS_OPTIONS))
    if unknown:
        raise ValueError(f"nuts_options: unknown option(s) {unknown}; valid: {list(NUTS_OPTIONS)}")
    if "mass" in opts and opts["mass"] not in ("laplace", "identity"):
        raise ValueError(f"mass={opts['mass']!r} is not known; valid: 'laplace', 'identity'")
    d = opts.get("max_tree_depth", 10)
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or not 1 <= d <= 15:
        raise ValueError(f"max_tree_depth={d!r} must be an integer in [1, 15]")
    a = opts.get("target_accept", 0.8)
    if isinstance(a, bool) or not (isinstance(a, (int, float)) and 0.0 < float(a) < 1.0):
        raise ValueError(f"target_accept={a!r} must be a number in (0, 1)")


#: Parameter count up to which NUTS differentiates in forward mode by default (one tangent per
#: parameter through diffrax's ForwardMode is cheaper than a checkpointed reverse pass when the
#: parameters are few; measured 2.7x on a 2-parameter fit, benchmarks/SBC.md).
FORWARD_MODE_MAX_PARAMETERS = 8


def fit_nuts(
    problem: Problem,
    *,
    chains: int = 2,
    warmup: int = 500,
    draws: int = 500,
    seed: int = 0,
    progress: bool = True,
    dense_mass: bool = True,
    init: MapFit | None = None,
    prior_draws: int = 100,
    mass: str = "laplace",
    max_tree_depth: int = 10,
    target_accept: float = 0.8,
    forward_mode: bool | None = None,
    flip_flop: bool = True,
):
    """NUTS (NumPyro) from the MAP; returns arviz InferenceData with posterior, prior,
    observed_data, posterior_predictive and log_likelihood. Chains run sequentially (NOTES.md:
    ``parallel`` fails with diffrax's checkpointed loop).

    ``mass="laplace"`` (default) starts the dense mass-matrix adaptation from the MAP's Laplace
    covariance, so that early warmup does not spend its time on deep trees in a badly scaled
    space; ``"identity"`` is NumPyro's default start. ``max_tree_depth`` caps the leapfrog steps
    per draw at 2**depth - 1; ``target_accept`` is the dual-averaging target. ``forward_mode``:
    gradients by forward-mode sensitivities (default when there are at most
    :data:`FORWARD_MODE_MAX_PARAMETERS` parameters) instead of reverse mode. ``flip_flop``
    (default): where ``ka``, ``cl`` and ``v`` of a one-compartment oral drug are all fitted
    (psilocybin, LSD), their prior is symmetrised under the swap ``(ka, cl, v) -> (ke, cl, v ke/ka)``
    that leaves every prediction unchanged, and the named natural-unit variables (``ka@human``, ...)
    are reported with ``ka >= ke`` (:mod:`pkpd.flipflop`); the sampled ``z_*`` sites stay unfolded.
    Attribute ``flip_flop``: the folded triples' names."""
    import arviz as az
    from numpyro.infer import MCMC, NUTS, Predictive, init_to_value

    _check_nuts_options(dict(mass=mass, max_tree_depth=max_tree_depth, target_accept=target_accept))
    if forward_mode is None:
        forward_mode = len(problem.specs) <= FORWARD_MODE_MAX_PARAMETERS
    model, value = _numpyro_model(problem, forward_mode=bool(forward_mode), flip_flop=bool(flip_flop))
    if init is None:
        init = fit_map(problem, starts=1, progress=progress)
    sites = tuple(f"z_{n}" for n in problem.names)
    inverse_mass = _laplace_inverse_mass(init, sites) if mass == "laplace" and dense_mass else None
    kernel = NUTS(
        model,
        dense_mass=[sites] if dense_mass else False,
        inverse_mass_matrix=inverse_mass,
        max_tree_depth=int(max_tree_depth),
        target_accept_prob=float(target_accept),
        forward_mode_differentiation=bool(forward_mode),
        init_strategy=init_to_value(values={f"z_{n}": float(init.z[i]) for i, n in enumerate(problem.names)}),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=progress,
    )
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), obs=value)
    seconds = time.perf_counter() - t0
    samples = mcmc.get_samples()
    post_pred = Predictive(model, samples, return_sites=["obs"])(jax.random.PRNGKey(seed + 1))
    prior = Predictive(model, num_samples=prior_draws)(jax.random.PRNGKey(seed + 2))
    idata = az.from_numpyro(
        mcmc,
        prior=prior,
        posterior_predictive=post_pred,
        coords={"row": np.arange(problem.obs.n)},
        dims={"obs": ["row"], "prediction": ["row"]},
    )
    extra = mcmc.get_extra_fields()
    n_div = int(np.sum(np.asarray(extra["diverging"]))) if "diverging" in extra else -1
    triples = problem.flip_flop_triples() if flip_flop else []
    idata.posterior.attrs.update(
        modality=problem.modality,
        sampling_seconds=seconds,
        parameters=json.dumps(problem.names),
        pkpd_fit="nuts",
        divergences=n_div,
        mass=mass,
        max_tree_depth=int(max_tree_depth),
        forward_mode=int(bool(forward_mode)),
        flip_flop=json.dumps([[problem.names[i] for i in t] for t in triples]),
    )
    return idata


def _laplace_inverse_mass(init: MapFit, sites: tuple) -> dict | None:
    """The MAP's Laplace covariance as NumPyro's dense inverse mass matrix over ``sites``,
    symmetrised and jittered; None (NumPyro's identity start) unless it is positive definite."""
    cov = np.asarray(init.cov_z, dtype=np.float64)
    cov = 0.5 * (cov + cov.T)
    cov = cov + 1e-9 * np.eye(len(sites))
    if np.all(np.isfinite(cov)) and np.all(np.linalg.eigvalsh(cov) > 0):
        return {sites: jnp.asarray(cov)}
    return None


def fit(
    modality_or_model,
    data=None,
    *,
    method: str = "map",
    parameters=None,
    chains: int = 2,
    warmup: int = 500,
    draws: int = 500,
    seed: int = 0,
    starts: int = 3,
    progress: bool = True,
    error: ErrorModel | None = None,
    nuts_options: dict | None = None,
):
    """Fit a modality's model to published curves.

    **Main arguments**

    - ``modality_or_model``: a modality name (``pkpd.modalities()``) or a model built by
      ``pkpd.model`` (its modality is used; values are re-read from the cards).
    - ``data``: a published-curve DataFrame or CSV path; ``None`` = the curated library's rows
      for this modality.
    - ``method``: ``"map"`` (returns :class:`MapFit`) or ``"nuts"`` (returns arviz InferenceData).

    **Other arguments**

    ``parameters`` (names; ``"cl@human"`` for species-specific PK), ``chains``, ``warmup``,
    ``draws``, ``seed``, ``starts`` (MAP multi-start), ``progress``, ``error`` (:class:`ErrorModel`),
    ``nuts_options`` (keyword arguments of :func:`fit_nuts`: ``mass``, ``max_tree_depth``,
    ``target_accept``, ``forward_mode``, ``dense_mass``, ``prior_draws``, ``flip_flop``).
    """
    from .plasticity import PlasticityModel

    if isinstance(modality_or_model, PlasticityModel):
        modality = modality_or_model.modality
    elif isinstance(modality_or_model, str):
        modality = modality_or_model
    else:
        raise TypeError(f"fit takes a modality name or a pkpd model, got {type(modality_or_model).__name__}")
    if method not in ("map", "nuts"):
        raise ValueError(f"method={method!r} is not known; valid: 'map', 'nuts'")
    for name, v in (("chains", chains), ("warmup", warmup), ("draws", draws), ("starts", starts), ("seed", seed)):
        lo = 0 if name in ("warmup", "seed") else 1
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    if parameters is not None:
        if isinstance(parameters, str):
            raise TypeError(f"parameters={parameters!r} must be a list of parameter names, e.g. [{parameters!r}]")
        parameters = list(parameters)
        bad = [p for p in parameters if not isinstance(p, str)]
        if bad or not parameters:
            raise TypeError(
                f"parameters={parameters!r} must be a non-empty list of parameter names (str), "
                "e.g. ['cl@human', 'k_spine_form']"
            )
    if error is not None and not isinstance(error, ErrorModel):
        raise TypeError(
            f"error={error!r} must be a pkpd.ErrorModel (or None for the default), got {type(error).__name__}"
        )
    if nuts_options is not None and not isinstance(nuts_options, dict):
        raise TypeError(
            f"nuts_options={nuts_options!r} must be a dict of fit_nuts options, e.g. {{'max_tree_depth': 8}}"
        )
    nuts_options = dict(nuts_options or {})
    _check_nuts_options(nuts_options)
    if data is not None:
        from .data import load_curves

        get_modality(modality)
        rows = load_curves(data)
        if not (rows["modality"] == modality).any():
            raise FitError(
                f"data has no rows for modality={modality!r}; its rows are for "
                f"{sorted(set(rows['modality']))}: pass the rows of {modality!r} or fit one of those"
            )
    problem = Problem(modality, data, parameters=parameters, error=error)
    if method == "map":
        return fit_map(problem, starts=starts, seed=seed, progress=progress)
    return fit_nuts(problem, chains=chains, warmup=warmup, draws=draws, seed=seed, progress=progress, **nuts_options)


def load(path):
    """Load a saved fit: NUTS ``InferenceData`` written with ``idata.to_netcdf(path)`` (netCDF/HDF5)
    or a :class:`MapFit` written with ``fit.save(path)`` (JSON).

    Raises ``FileNotFoundError`` for a missing file and :class:`FitError` (a ``ValueError``) naming
    the file for anything else: a corrupted or truncated netCDF, a netCDF without a posterior,
    invalid JSON, a JSON without the MapFit fields, or an unknown format.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path={str(p)!r}: no such fit file")
    valid = "valid: a NUTS netCDF written by InferenceData.to_netcdf or a MapFit JSON written by MapFit.save"
    raw = p.read_bytes()
    if raw[:4] in (b"\x89HDF", b"CDF\x01", b"CDF\x02"):
        import arviz as az

        try:
            idata = az.from_netcdf(str(p))
        except Exception as e:  # noqa: BLE001 -- h5netcdf/netCDF4/xarray raise many types for corrupted files
            raise FitError(f"path={str(p)!r} is a corrupted netCDF file ({type(e).__name__}: {e}); {valid}") from None
        if "posterior" not in idata.groups():
            raise FitError(
                f"path={str(p)!r} is a netCDF file without a posterior group (groups: {idata.groups()}); {valid}"
            )
        return idata
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FitError(f"path={str(p)!r} is neither netCDF nor valid JSON ({type(e).__name__}: {e}); {valid}") from None
    required = (
        "modality",
        "names",
        "z",
        "natural",
        "cov_z",
        "prior_sigma",
        "converged",
        "n_steps",
        "objective",
        "seconds",
        "starts",
    )
    missing = [k for k in required if not isinstance(d, dict) or k not in d]
    if missing:
        raise FitError(f"path={str(p)!r} is JSON but not a MapFit: missing field(s) {missing}; {valid}")
    n = len(d["names"])
    if np.shape(d["z"]) != (n,) or np.shape(d["cov_z"]) != (n, n) or np.shape(d["prior_sigma"]) != (n,):
        raise FitError(
            f"path={str(p)!r}: MapFit fields have inconsistent shapes (names: {n}, z: {np.shape(d['z'])}, "
            f"cov_z: {np.shape(d['cov_z'])}, prior_sigma: {np.shape(d['prior_sigma'])}); the file is corrupted"
        )
    return MapFit.load(p)


# ``pkpd.fit`` is this module's ``fit`` function (see ``pkpd/__init__.py``); expose ``load`` on it so
# that ``pkpd.fit.load(path)`` works as documented.
fit.load = load
