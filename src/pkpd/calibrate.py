"""Joint calibration of every modality on the whole curated library, and the shipped result.

One shared plasticity core means one set of core parameters for all treatments. The joint fit
pools every modality's usable rows (``pkpd.datasets()``) into one posterior:

- parameters are keyed by the card they come from: core parameters (``k_spine_form``) are shared
  by all modalities; driver parameters by the modalities of one family
  (``stimulation.a_itbs``); drug PK/target parameters by drug and species
  (``fluoxetine.cl@human``);
- **study-level random effects**: every study arm ``s`` scales its predictions by ``exp(b_s)``
  with ``b_s ~ Normal(0, tau)``, ``tau`` = :data:`TAU_STUDY` (assumed: ~30 % between-study
  heterogeneity of effect sizes and exposures, typical of meta-analyses of these readouts);
  the fit estimates the ``b_s`` with everything else, so one discrepant study cannot drag the
  shared biology;
- the MAP is found by Levenberg-Marquardt on the joint normal equations, assembled block by
  block: every modality compiles only its own prediction and forward-mode Jacobian (the
  modalities never share one giant compiled function), and the study effects enter in closed
  form;
- the posterior is the Laplace approximation at the MAP (Gauss-Newton information, exact for a
  model linear in the parameters), from which :data:`N_DRAWS` draws are stored, checked parameter
  by parameter (:func:`check_laplace`): where the posterior's slice keeps density far out where
  the Laplace puts none, that parameter's draws come from the slice on a grid
  (:func:`grid_marginal`). On the library this refuses ``stimulation.a_itbs`` only.

The shipped posterior is not a NUTS posterior of the joint model. :func:`nuts` (``python -m
pkpd.calibrate --nuts``) samples the same model with NUTS, the between-study sd estimated and the
study effects integrated out, from the marginal mode with a Hessian mass matrix; each of its
gradients costs all modalities' forward-mode Jacobians (0.20-0.24 s for the whole library on 2
cores with :func:`widen_xla_pool` and the per-modality solver settings :data:`NUTS_SOLVE`; 0.40 s
with the MAP's), its mass matrix is that Hessian corrected by the shipped metric (:data:`NUTS_METRIC`, a previous
run's posterior covariance, kept only where it differs beyond sampling noise:
:func:`corrected_covariance`), and its warmup is one step-size window
(:func:`one_adaptation_window`). ``stimulation.a_itbs`` (a cliff below ~1.45 and a plateau above)
is sampled through its slice-grid transform. The last all-data runs (sessions 11 and 12, 2 x (60 +
220), same settings) took 33 and 43 min of sampling at 17.5 and 21.1 leapfrog steps per draw,
reached bulk ESS 242-729 for every parameter and R-hat <= 1.02-1.04; since the stiff rows may take
262,144 steps, failed solves fell from 4 per run to 0-1, none in sampling (session 12). The issue's
target (< 30 min, R-hat < 1.01) is not met: it needs ~800 effective draws per core parameter,
100-140 min at the measured cost (benchmarks/RESULTS.md, session 12);
per-modality NUTS is ``pkpd.fit(name, method="nuts")``. Parameters no usable row informs (see
``pkpd.fit.INFORMS``) are not in the calibration and stay at their card values.

Run ``python -m pkpd.calibrate`` to reproduce ``models/calibration/posterior.json`` (it prints
the time it took); :func:`load` reads it and :meth:`Calibration.models` gives models with
posterior draws for any modality.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import flipflop, params
from .fit import FitError, Problem, describe_solve

#: Between-study sd of log effect sizes (assumed; see the module docstring).
TAU_STUDY = 0.3
#: Per-modality ODE solver settings of :func:`nuts` (overrides of :data:`pkpd.fit.FIT_SOLVE`,
#: Tsit5 rtol 1e-6). Chosen by the cost and accuracy of each modality's forward-mode Jacobian,
#: measured over the shipped MAP and 25 shipped draws against Tsit5 at rtol 1e-9
#: (``python benchmarks/nuts_solve.py``; benchmarks/RESULTS.md "Session 10"). Looser where the
#: expensive daily-dosing / daily-session solves stay accurate (escitalopram, Bosh3 rtol 1e-3:
#: 49 ms against 194 ms, prediction error 1e-6 sd); tighter where a single session's after-effect
#: is stiff and the fit setting's prediction error was largest (iTBS: 6e-3 sd at rtol 1e-6, 1e-5
#: at rtol 1e-8, for about the same 20 ms). The log-likelihood moves by <= 0.025: a bias far
#: inside the posterior's width, for 1.7x cheaper gradients (0.40 s -> 0.24 s, same run).
#: Modalities not listed keep FIT_SOLVE (their PK rows are solved exactly, or no gain was measured).
#: The stiff rows get max_steps 262,144: in the session-11 run, 3 iTBS evaluations (at a_itbs and eta
#: 2.5-2.9 prior sds up) and 1 at 1 Hz ran out of 65,536 steps and were refused (divergences); at the
#: first such iTBS point the solve needs more than 65,536 steps (3 s) and gives the rtol 1e-9 value.
#: At the MAP the cost is unchanged (3.5-4.0 ms). In session 12's two all-data runs (~13,000 gradients
#: each) one evaluation was refused, an iTBS solve in warmup at an extreme point, even at 262,144 steps.
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
#: Posterior draws stored in the shipped calibration.
N_DRAWS = 200
CALIBRATION = "calibration/posterior.json"


def _card_of(problem: Problem, spec) -> str:
    return problem.card_of(spec)


def parameter_key(card: str, name: str) -> str:
    """Key of a parameter in the joint fit: ``name`` for core, ``card.name`` otherwise."""
    return name if card == "core" else f"{card}.{name}"


def _split_key(key: str) -> tuple[str, str, str | None]:
    card, _, rest = key.rpartition(".") if "." in key else ("core", "", key)
    base, _, species = rest.partition("@")
    return card, base, species or None


class JointProblem:
    """Every modality's :class:`pkpd.fit.Problem`, with parameters pooled by card key and one
    random effect per study arm. ``solve``: per modality, overrides of the fit's ODE solver
    settings (:func:`pkpd.fit.solve_settings`; e.g. :data:`NUTS_SOLVE`)."""

    def __init__(
        self, modalities=None, *, tau: float = TAU_STUDY, error=None, progress: bool = True, solve: dict | None = None
    ):
        from .modalities import modalities as all_modalities

        if not (np.isfinite(tau) and tau > 0):
            raise ValueError(f"tau={tau!r} must be a positive finite number (between-study sd of log effects)")
        solve = dict(solve or {})
        unknown = sorted(set(solve) - set(all_modalities()))
        if unknown:
            raise ValueError(f"solve: unknown modalities {unknown}; valid: {all_modalities()}")
        self.tau = float(tau)
        self.problems: dict[str, Problem] = {}
        self.skipped: dict[str, str] = {}
        for m in modalities or all_modalities():
            try:
                self.problems[m] = Problem(m, error=error, solve=solve.get(m))
            except FitError as e:
                self.skipped[m] = str(e)
            if progress:
                print(
                    f"[pkpd.calibrate] {m}: "
                    + (
                        f"{self.problems[m].obs.n} rows, {len(self.problems[m].specs)} parameters"
                        if m in self.problems
                        else f"skipped ({self.skipped[m]})"
                    ),
                    flush=True,
                )
        if not self.problems:
            raise FitError(f"no modality has usable data: {self.skipped}")
        self.keys: list[str] = []
        self.meta: dict[str, dict] = {}
        self.index: dict[str, np.ndarray] = {}
        for m, pb in self.problems.items():
            idx = []
            for spec in pb.specs:
                key = parameter_key(_card_of(pb, spec), spec.name)
                if key not in self.meta:
                    self.keys.append(key)
                    self.meta[key] = dict(
                        key=key,
                        base=spec.base,
                        species=spec.species,
                        card=_card_of(pb, spec),
                        transform=spec.transform,
                        prior_mu=spec.mu,
                        prior_sigma=spec.sigma,
                        unit=spec.unit,
                        status=spec.status,
                        modalities=[],
                    )
                elif not np.isclose(self.meta[key]["prior_mu"], spec.mu):
                    raise FitError(
                        f"{key}: modalities disagree on its prior ({self.meta[key]['prior_mu']} vs {spec.mu})"
                    )
                self.meta[key]["modalities"].append(m)
                idx.append(self.keys.index(key))
            self.index[m] = np.asarray(idx, dtype=int)
        self.studies: list[str] = []
        self.study_index: dict[str, np.ndarray] = {}
        for m, pb in self.problems.items():
            ids = [f"{m}:{s}" for s in pb.obs.rows["study_id"].astype(str)]
            for s in ids:
                if s not in self.studies:
                    self.studies.append(s)
            self.study_index[m] = np.asarray([self.studies.index(s) for s in ids], dtype=int)
        self.K, self.S = len(self.keys), len(self.studies)
        self.mu = np.concatenate([[self.meta[k]["prior_mu"] for k in self.keys], np.zeros(self.S)])
        self.sigma = np.concatenate([[self.meta[k]["prior_sigma"] for k in self.keys], np.full(self.S, self.tau)])
        self._jac = {m: self._compile(pb) for m, pb in self.problems.items()}
        self._pool: ThreadPoolExecutor | None = None
        #: seconds of each modality's last Jacobian evaluation
        self.cost: dict[str, float] = {}

    @staticmethod
    def _compile(pb: Problem):
        def f(z):
            p = pb.predict(z, adjoint=dfx.ForwardMode())
            return p, p

        return eqx.filter_jit(jax.jacfwd(f, has_aux=True))

    def _evaluate(self, x: np.ndarray) -> dict:
        """Every modality's (Jacobian, prediction) at ``x``, on a pool of one thread per CPU core:
        the compiled solves release the GIL, so the modalities run in parallel (measured 2.1x on
        2 cores). The costliest (by their last run) are started first."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, min(len(self.problems), os.cpu_count() or 1)), thread_name_prefix="pkpd-joint"
            )

        def run(m):
            t = time.perf_counter()
            jac, pred = self._jac[m](jnp.asarray(x[self.index[m]]))
            out = np.asarray(jac), np.asarray(pred)
            self.cost[m] = time.perf_counter() - t
            return out

        order = sorted(self.problems, key=lambda m: -self.cost.get(m, np.inf))
        futures = {m: self._pool.submit(run, m) for m in order}
        return {m: f.result() for m, f in futures.items()}

    def blocks(self, x: np.ndarray):
        """Per modality at ``x``: ``(modality, parameter columns, study-effect columns, standardised
        residuals r, dr/d(parameters), dr/d(own study effect))`` -- the one place the data rows'
        residuals and derivatives are computed (the MAP's normal equations and the NUTS
        log-likelihood both use it)."""
        results = self._evaluate(x)
        for m, pb in self.problems.items():
            idx, sidx = self.index[m], self.K + self.study_index[m]
            jac, pred = results[m]
            with np.errstate(over="ignore", invalid="ignore"):  # far-out trial points: callers check finiteness
                scale = np.exp(x[sidx])
                sd = pb.sd()
                yield (m, idx, sidx, (pred * scale - pb.obs.value) / sd, jac * (scale / sd)[:, None], pred * scale / sd)

    def linearise(self, x: np.ndarray):
        """Standardised residuals (data rows, then prior rows) and their Jacobian at ``x``."""
        rs, js = [], []
        for _m, idx, sidx, r, dr_dz, dr_db in self.blocks(x):
            J = np.zeros((r.shape[0], self.K + self.S))
            J[:, idx] = dr_dz
            J[np.arange(r.shape[0]), sidx] = dr_db
            rs.append(r)
            js.append(J)
        rs.append((x - self.mu) / self.sigma)
        js.append(np.diag(1.0 / self.sigma))
        return np.concatenate(rs), np.concatenate(js)


@dataclass
class Calibration:
    """A calibrated posterior (Laplace at the joint MAP): parameter table and draws in the fitted
    (log/logit) space."""

    parameters: list
    draws_z: np.ndarray  # (draws, parameters)
    map_z: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [p["key"] for p in self.parameters]

    def summary(self):
        """One row per calibrated parameter: MAP, 90 % interval (natural units), prior median,
        posterior/prior sd ratio (> 0.9: the data taught little), where its draws come from
        (``marginal``: ``"laplace"``, or ``"slice grid"`` where :func:`check_laplace` refused the
        Laplace) and the modalities informing it."""
        import pandas as pd

        rows = []
        for i, p in enumerate(self.parameters):
            nat = np.asarray(params.to_natural(p["transform"], jnp.asarray(self.draws_z[:, i])))
            rows.append(
                dict(
                    parameter=p["key"],
                    map=float(params.to_natural(p["transform"], self.map_z[i])),
                    q05=float(np.quantile(nat, 0.05)),
                    q95=float(np.quantile(nat, 0.95)),
                    unit=p["unit"],
                    prior_median=float(params.to_natural(p["transform"], p["prior_mu"])),
                    sd_ratio=p["sd_ratio"],
                    data_taught_little=p["sd_ratio"] > 0.9,
                    marginal=p.get("marginal", "laplace"),
                    card_status=p["status"],
                    modalities=",".join(p["modalities"]),
                )
            )
        return pd.DataFrame(rows)

    def contraction(self) -> dict[str, float]:
        """1 - (posterior sd / prior sd)^2 per parameter key, in [0, 1]."""
        return {p["key"]: float(np.clip(1.0 - p["sd_ratio"] ** 2, 0.0, 1.0)) for p in self.parameters}

    def _setters(self, model, used):
        have = {(p.card, p.name) for p in used}
        out = []
        for i, p in enumerate(self.parameters):
            card, base, species = _split_key(p["key"])
            if species is not None and species != model.species:
                continue
            if card != "core" and (card, base) not in have:
                continue
            where = params.where(model, base)
            if where is not None:
                out.append((i, where, p["transform"]))
        return out

    def models(self, modality: str, n: int | None = None, *, species: str = "human", seed: int | None = None):
        """Models of ``modality`` on ``n`` posterior draws (all stored draws by default; a random
        subset with ``seed``). Uncalibrated parameters keep their card values."""
        from .modalities import build

        base, used = build(modality, species)
        setters = self._setters(base, used)
        draws = self.draws_z
        if n is not None:
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"n={n!r} must be a positive integer (number of posterior draws)")
            if n > len(draws):
                raise ValueError(f"n={n} exceeds the {len(draws)} stored posterior draws")
            rows = np.arange(n) if seed is None else np.random.default_rng(seed).choice(len(draws), n, replace=False)
            draws = draws[rows]
        return [self._apply(base, setters, z) for z in draws]

    def model(self, modality: str, *, species: str = "human"):
        """The model of ``modality`` at the joint MAP."""
        from .modalities import build

        base, used = build(modality, species)
        return self._apply(base, self._setters(base, used), self.map_z)

    @staticmethod
    def _apply(model, setters, z):
        for i, where, transform in setters:
            model = eqx.tree_at(where, model, jnp.asarray(params.to_natural(transform, float(z[i])), dtype=jnp.float64))
        return model

    def to_dict(self) -> dict:
        return dict(
            parameters=self.parameters,
            map_z=np.asarray(self.map_z).tolist(),
            draws_z=np.asarray(self.draws_z).tolist(),
            info=self.info,
        )

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        for k in ("parameters", "map_z", "draws_z"):
            if k not in d:
                raise ValueError(f"not a pkpd calibration: missing {k!r}")
        return cls(
            parameters=d["parameters"],
            map_z=np.asarray(d["map_z"], dtype=float),
            draws_z=np.asarray(d["draws_z"], dtype=float),
            info=d.get("info", {}),
        )


def load(path=None) -> Calibration:
    """The shipped calibration (``models/calibration/posterior.json``) or the one at ``path``."""
    from ._paths import models_dir

    path = Path(path) if path is not None else models_dir() / CALIBRATION
    if not path.exists():
        raise FileNotFoundError(f"no calibration at {path}; run `python -m pkpd.calibrate` to make one")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun `python -m pkpd.calibrate`") from e
    return Calibration.from_dict(d)


def model(name: str, species: str = "human", *, calibrated: bool = False, **overrides):
    """The model of modality ``name`` for ``species`` (human, mouse, rat) with model-card values,
    or with ``calibrated=True`` at the MAP of the shipped joint calibration (parameters no data
    informed keep their card values; posterior draws: ``pkpd.calibrate.load().models(name, n)``).
    This is ``pkpd.model``; ``overrides`` replace card values by parameter name
    (:func:`pkpd.modalities.build`).

    >>> m = pkpd.model("psilocybin", species="human")
    """
    from .modalities import build, get_modality

    if calibrated:
        if overrides:
            raise ValueError(f"calibrated=True takes no parameter overrides (got {sorted(overrides)})")
        get_modality(name)
        return load().model(name, species=species)
    return build(name, species, **overrides)[0]


def calibrate(
    modalities=None,
    *,
    tau: float = TAU_STUDY,
    draws: int = N_DRAWS,
    seed: int = 0,
    max_iter: int = 60,
    progress: bool = True,
    error=None,
    check: bool = True,
) -> Calibration:
    """The joint MAP and Laplace posterior over all (or the given) modalities' curated data.

    ``check`` (default): :func:`check_laplace` on the slices of the posterior with the study effects
    integrated out (``tau`` fixed); a parameter it refuses gets its draws from :func:`grid_marginal`
    of its slice over the MAP +- 3 prior sds instead of the Laplace (``marginal = "slice grid"`` in
    :meth:`Calibration.summary`; independent of the other parameters, an approximation: for
    ``stimulation.a_itbs`` the hierarchical NUTS measured |r| < 0.2 with every other parameter).
    Costs two log-density evaluations per contracted parameter plus ``SLICE_GRID`` per refused one
    (each 0.4-0.7 s for the whole library)."""
    t0 = time.perf_counter()
    jp = JointProblem(modalities, tau=tau, error=error, progress=progress)
    x = jp.mu.copy()
    r, J = jp.linearise(x)
    obj = 0.5 * float(r @ r)
    lam, converged, it = 1e-3, False, 0
    for it in range(1, max_iter + 1):
        A, g = J.T @ J, J.T @ r
        step = -np.linalg.solve(A + lam * np.diag(np.diag(A)), g)
        try:
            r_new, J_new = jp.linearise(x + step)
            obj_new = (
                0.5 * float(r_new @ r_new) if np.all(np.isfinite(r_new)) and np.all(np.isfinite(J_new)) else np.inf
            )
        except Exception:  # noqa: BLE001 — a failed solve at a trial point is a rejected step
            obj_new = np.inf
        if obj_new < obj:
            rel = (obj - obj_new) / max(obj, 1e-12)
            x, r, J, obj = x + step, r_new, J_new, obj_new
            lam = max(lam / 3.0, 1e-9)
            if progress:
                print(
                    f"[pkpd.calibrate] iteration {it}: objective {obj:.6g} (lambda {lam:.1e}, "
                    f"{time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            if rel < 1e-7 or np.max(np.abs(step)) < 1e-5:
                converged = True
                break
        else:
            lam *= 10.0
            if lam > 1e8:
                converged = np.max(np.abs(g)) < 1e-3
                break
    cov = np.linalg.inv(J.T @ J)
    cov = 0.5 * (cov + cov.T)
    K = jp.K
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov[:K, :K] + 1e-12 * np.eye(K))
    draws_z = x[:K] + rng.standard_normal((draws, K)) @ chol.T
    params = []
    for i, key in enumerate(jp.keys):
        p = dict(jp.meta[key])
        p.update(map_z=float(x[i]), sd_z=float(sd[i]), sd_ratio=float(sd[i] / jp.sigma[i]), marginal="laplace")
        params.append(p)
    laplace_check = None
    if check:
        t_check = time.perf_counter()
        host = _HostLogLikelihood(jp)
        mu, sig = jp.mu[:K], jp.sigma[:K]

        def logdens(z):
            ll, _ = host(np.concatenate([z, [np.log(tau)]]))
            return ll - 0.5 * float(np.sum(((z - mu) / sig) ** 2))

        rows = check_laplace(logdens, x[:K], sd[:K], sig)
        laplace_check = {}
        for row in rows:
            i = row.pop("index")
            laplace_check[jp.keys[i]] = row
            if not row["refused"]:
                continue

            def along(v, i=i):
                z = x[:K].copy()
                z[i] = v
                return logdens(z)

            g = grid_marginal(along, x[i] - 3.0 * sig[i], x[i] + 3.0 * sig[i], SLICE_GRID, draws=draws, rng=rng)
            draws_z[:, i] = g["draws"]
            row.update(
                grid_mean=g["mean"],
                grid_sd=g["sd"],
                grid_edge_mass=g["edge_mass"],
                grid=[float(v) for v in g["grid"]],
                grid_logd=[float(v) for v in g["logd"]],
            )
            params[i].update(
                sd_z=g["sd"], sd_ratio=float(g["sd"] / sig[i]), marginal="slice grid", laplace_sd_z=float(sd[i])
            )
            if progress:
                print(
                    f"[pkpd.calibrate] {jp.keys[i]}: the Laplace (sd {sd[i]:.3g}) misses the slice's tails (drop "
                    f"{row['drop_below']:.3g} below, {row['drop_above']:.3g} above at +-{row['offset']:.3g}, Laplace "
                    f"{row['laplace_drop']:.3g}); grid marginal sd {g['sd']:.3g}",
                    flush=True,
                )
        laplace_check = dict(
            parameters=laplace_check,
            seconds=time.perf_counter() - t_check,
            span=SLICE_SPAN,
            drop=SLICE_DROP,
            evaluations=host.calls,
        )
    per_modality, n0 = {}, 0
    for m, pb in jp.problems.items():
        rm = r[n0 : n0 + pb.obs.n]
        per_modality[m] = dict(
            rows=int(pb.obs.n),
            sum_sq_z=float(rm @ rm),
            max_abs_z=float(np.max(np.abs(rm))),
            excluded_rows=int(len(pb.obs.excluded)),
        )
        n0 += pb.obs.n
    effects = {s: dict(b=float(x[K + j]), sd=float(sd[K + j])) for j, s in enumerate(jp.studies)}
    seconds = time.perf_counter() - t0
    refused = [k for k, r in (laplace_check or {}).get("parameters", {}).items() if r["refused"]]
    info = dict(
        method="joint MAP (Levenberg-Marquardt, block-assembled) + Laplace"
        + (f" (slice grid marginals for {', '.join(refused)})" if refused else ""),
        tau_study=tau,
        objective=obj,
        converged=bool(converged),
        iterations=it,
        seconds=seconds,
        seed=seed,
        rows=int(sum(pb.obs.n for pb in jp.problems.values())),
        per_modality=per_modality,
        skipped=jp.skipped,
        study_effects=effects,
        laplace_check=laplace_check,
        command="python -m pkpd.calibrate",
        created=time.strftime("%Y-%m-%d"),
    )
    if progress:
        print(
            f"[pkpd.calibrate] done in {seconds:.0f} s: {K} parameters, {jp.S} study effects, "
            f"{info['rows']} rows, objective {obj:.5g}, {'converged' if converged else 'NOT converged'}",
            flush=True,
        )
    return Calibration(parameters=params, draws_z=draws_z, map_z=x[:K], info=info)


#: Laplace check (:func:`check_laplace`): how far out, in prior sds of each parameter, the slice is
#: looked at, and the log-density drop below which the Laplace is refused there.
SLICE_SPAN = 2.0
SLICE_DROP = 4.5
#: Grid points (over the MAP +- 3 prior sds) of a refused parameter's slice (:func:`grid_marginal`).
SLICE_GRID = 121


def check_laplace(logdens, z_map, sd_z, prior_sd, *, span: float = SLICE_SPAN, drop: float = SLICE_DROP) -> list[dict]:
    """Does the Laplace see the far tails? One dict per parameter.

    ``logdens(z)``: the log posterior (up to a constant) as a function of all parameters. Along
    each axis ``i`` (every other parameter at ``z_map``), the slice is evaluated at
    ``z_map[i] +- span * prior_sd[i]``; the Laplace predicts a drop of at least
    ``0.5 (span prior_sd / sd_z)^2`` there (a slice is never wider than the marginal for a
    Gaussian). The parameter is ``refused`` when the measured drop on either side is below
    ``min(drop, predicted / 4)``: the posterior keeps more than ``exp(-drop)`` of its peak density
    where the Laplace puts almost none -- a plateau or a second mode the local curvature cannot
    see (``stimulation.a_itbs``: benchmarks/RESULTS.md). Only parameters the Laplace says the data
    contracted (predicted drop > ``drop``) are checked: the others cannot be too narrow there.
    Costs ``2`` log-density evaluations per checked parameter plus one."""
    z_map = np.asarray(z_map, dtype=float)
    sd_z, prior_sd = np.asarray(sd_z, dtype=float), np.asarray(prior_sd, dtype=float)
    if not (z_map.shape == sd_z.shape == prior_sd.shape and z_map.ndim == 1):
        raise ValueError(
            f"z_map, sd_z and prior_sd must be 1-d of one length; got {z_map.shape}, {sd_z.shape}, {prior_sd.shape}"
        )
    if not (np.all(sd_z > 0) and np.all(prior_sd > 0)):
        raise ValueError("sd_z and prior_sd must be positive")
    l0 = float(logdens(z_map))
    if not np.isfinite(l0):
        raise ValueError("the log density is not finite at the MAP")
    out = []
    for i in range(z_map.size):
        delta = span * prior_sd[i]
        predicted = 0.5 * (delta / sd_z[i]) ** 2
        row = dict(
            index=i,
            offset=float(delta),
            laplace_drop=float(predicted),
            checked=bool(predicted > drop),
            drop_below=None,
            drop_above=None,
            refused=False,
        )
        if row["checked"]:
            for side, sign in (("drop_below", -1.0), ("drop_above", 1.0)):
                z = z_map.copy()
                z[i] += sign * delta
                lv = float(logdens(z))
                row[side] = float(l0 - lv) if np.isfinite(lv) else float("inf")
            row["refused"] = bool(min(row["drop_below"], row["drop_above"]) < min(drop, predicted / 4.0))
        out.append(row)
    return out


def _exp_cell_moments(s):
    """E[t], E[t^2] for t on [0, 1] with density prop. to exp(s t) (vectorised, stable for any s)."""
    s = np.asarray(s, dtype=float)
    a = np.abs(s)
    small = a < 1e-4
    a_ = np.where(small, 1.0, a)
    e = np.exp(-a_)
    m1 = 1.0 / (1.0 - e) - 1.0 / a_  # for exp(+a t)
    m2 = ((a_**2 - 2.0 * a_ + 2.0) - 2.0 * e) / (a_**2 * (1.0 - e))
    m1 = np.where(small, 0.5 + a / 12.0, m1)
    m2 = np.where(small, 1.0 / 3.0 + a / 12.0, m2)
    # exp(-a t) is exp(+a t) mirrored: t -> 1 - t
    t1 = np.where(s >= 0, m1, 1.0 - m1)
    t2 = np.where(s >= 0, m2, 1.0 - 2.0 * m1 + m2)
    return t1, t2


def _cells(ld, h):
    """Cells of a grid log density ``ld`` (spacing ``h``, linear within each cell): the change
    ``s`` over each cell, its mass ``h int_0^1 exp(a + s t) dt`` (0 where an end is not finite) and
    the cells' left-end values (0 where not finite)."""
    a, b = ld[:-1], ld[1:]
    ok = np.isfinite(a) & np.isfinite(b)
    a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    s = b0 - a0
    small = np.abs(s) < 1e-8
    mass = np.where(
        ok, h * np.where(small, np.exp(a0) * (1.0 + s / 2.0), (np.exp(b0) - np.exp(a0)) / np.where(small, 1.0, s)), 0.0
    )
    return s, mass, np.where(ok, a0, -np.inf)


def _cell_inverse(xp, s, q):
    """Inverse of the within-cell CDF ``(e^{s t} - 1) / (e^s - 1)`` at ``q`` in [0, 1], in a form
    that cannot overflow; ``xp`` is numpy or jax.numpy."""
    a = xp.abs(s)
    a_ = xp.where(a < 1e-8, 1.0, a)
    rising = 1.0 + xp.log(q + (1.0 - q) * xp.exp(-a_)) / a_
    falling = xp.log1p(q * xp.expm1(-a_)) / -a_
    return xp.where(a < 1e-8, q, xp.where(s > 0, rising, falling))


def grid_marginal(logdens_1d, lo: float, hi: float, n: int = SLICE_GRID, *, draws: int, rng) -> dict:
    """Draws and moments of the 1-d density ``exp(logdens_1d(x))`` on ``[lo, hi]``.

    The log density is evaluated at ``n`` equally spaced points and taken as linear within each
    cell, which is sampled exactly (piecewise exponential inverse CDF). Points where it is not
    finite (failed solves) carry no mass. Returns ``draws``, ``grid``, ``logd``, ``mean``, ``sd``
    and ``edge_mass`` (the mass in the two outermost cells: > 0.01 means the grid cuts the density)."""
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"need finite lo < hi; got {lo!r}, {hi!r}")
    if int(n) < 3:
        raise ValueError(f"n={n!r} grid points: need >= 3")
    x = np.linspace(lo, hi, int(n))
    ld = np.array([float(logdens_1d(v)) for v in x])
    finite = np.isfinite(ld)
    if not finite.any():
        raise ValueError("the log density is not finite anywhere on the grid")
    ld = np.where(finite, ld - ld[finite].max(), -np.inf)
    h = x[1] - x[0]
    s, mass, _ = _cells(ld, h)
    p = mass / mass.sum()
    cell = rng.choice(p.size, size=int(draws), p=p)
    u = rng.uniform(size=int(draws))
    out = x[cell] + h * _cell_inverse(np, s[cell], u)
    # exact moments of the piecewise-exponential density: within a cell t = (x - x_k)/h has
    # density prop. to exp(s t) on [0, 1]
    t1, t2 = _exp_cell_moments(s)
    mean = float(p @ (x[:-1] + h * t1))
    second = float(p @ (x[:-1] ** 2 + 2.0 * h * x[:-1] * t1 + h**2 * t2))
    return dict(
        draws=out,
        grid=x,
        logd=ld,
        mean=mean,
        sd=float(np.sqrt(max(second - mean**2, 0.0))),
        edge_mass=float(p[0] + p[-1]),
    )


class GridTransform(eqx.Module):
    """The monotone map ``u -> theta = F^{-1}(Phi(u))`` that takes a standard normal ``u`` to the
    piecewise-exponential density of a :func:`grid_marginal` grid (log density linear in each
    cell), with ``log |d theta / d u| = log phi(u) - log f(theta)``. Pure jnp: ``jit`` and ``grad``
    pass through. :func:`nuts` samples a parameter the Laplace check refused in this ``u``: where the
    grid matches the posterior's marginal, the cliff and the plateau become a unit Gaussian. The map
    is exact as a change of variables whatever the grid, so the posterior sampled is unchanged; only
    its geometry is. Its range is the grid's, which truncates the density to it (edge mass
    reported by :func:`grid_marginal`)."""

    x0: jax.Array
    h: jax.Array
    logd: jax.Array  # normalised log density at each cell's left end (-inf: no mass)
    slope: jax.Array  # log-density change over each cell
    cum: jax.Array  # cumulative mass at the cell boundaries, cum[0] = 0, cum[-1] = 1

    def __init__(self, grid, logd):
        x = np.asarray(grid, dtype=float)
        ld = np.asarray(logd, dtype=float)
        if x.ndim != 1 or x.shape != ld.shape or x.size < 3 or not np.all(np.diff(x) > 0):
            raise ValueError("grid and logd must be 1-d of one length >= 3, grid increasing")
        if not np.allclose(np.diff(x), x[1] - x[0], rtol=1e-9, atol=1e-12):
            raise ValueError("the grid must be equally spaced")
        finite = np.isfinite(ld)
        if not finite.any():
            raise ValueError("logd is not finite anywhere")
        h = x[1] - x[0]
        ld = np.where(finite, ld - ld[finite].max(), -np.inf)
        sl, mass, left = _cells(ld, h)
        total = mass.sum()
        self.x0, self.h = jnp.asarray(x[0]), jnp.asarray(h)
        self.logd = jnp.asarray(left - np.log(total))  # per cell: value at its left end
        self.slope = jnp.asarray(sl)
        self.cum = jnp.asarray(np.concatenate([[0.0], np.cumsum(mass / total)]))

    def __call__(self, u):
        """``(theta, log |d theta / d u|)`` for a scalar ``u``."""
        u = jnp.asarray(u, dtype=float)
        p = jnp.clip(jax.scipy.special.ndtr(u), 1e-300, 1.0 - 1e-16)
        k = jnp.clip(jnp.searchsorted(self.cum, p, side="right") - 1, 0, self.slope.shape[0] - 1)
        m = jnp.maximum(self.cum[k + 1] - self.cum[k], 1e-300)
        q = jnp.clip((p - self.cum[k]) / m, 0.0, 1.0)
        s = self.slope[k]
        t = _cell_inverse(jnp, s, q)
        theta = self.x0 + self.h * (k + t)
        log_f = self.logd[k] + s * t  # normalised density at theta
        return theta, jax.scipy.stats.norm.logpdf(u) - log_f


#: Prior of the between-study sd ``tau`` in the hierarchical NUTS: lognormal with median
#: :data:`TAU_STUDY` and log-sd 0.5 (assumed; 90 % of the prior mass between 0.13 and 0.69).
TAU_PRIOR_SIGMA = 0.5


#: Gauss-Hermite nodes of the adaptive quadrature that integrates out each study effect.
STUDY_NODES = 16


def _study_marginal(pred, log_tau, centre, scale, value, sd, study, n_studies, x, logw):
    """log of prod_s int prod_{i in s} N(y_i | pred_i e^b, sd_i) N(b | 0, tau) db (up to the rows'
    normalising constants), by adaptive Gauss-Hermite quadrature: nodes b = centre_s + sqrt(2)
    scale_s x_k around each study's conditional mode. The nodes are constants here, so the
    gradient is that of the quadrature sum (exact to quadrature accuracy)."""
    b = centre[:, None] + jnp.sqrt(2.0) * scale[:, None] * x[None, :]  # (studies, nodes)
    mu = pred[:, None] * jnp.exp(b[study])  # (rows, nodes)
    rows = -0.5 * ((mu - value[:, None]) / sd[:, None]) ** 2
    lik = jax.ops.segment_sum(rows, study, num_segments=n_studies)
    prior = -0.5 * (b * jnp.exp(-log_tau)) ** 2 - log_tau - 0.5 * jnp.log(2.0 * jnp.pi)
    terms = lik + prior + logw[None, :] + jnp.log(jnp.sqrt(2.0) * scale)[:, None]
    return jnp.sum(jax.scipy.special.logsumexp(terms, axis=1))


#: Value and gradient (in pred, log tau) of :func:`_study_marginal`; compiled once per row/study shape
#: and reused by every modality and every :func:`nuts` call.
_study_marginal_grad = jax.jit(jax.value_and_grad(_study_marginal, argnums=(0, 1)), static_argnums=(7,))


class _HostLogLikelihood:
    """Data log-likelihood of the hierarchical model with every study effect integrated out, as a
    function of ``theta = (z, log tau)``, and its gradient, on the host: the per-modality
    forward-mode Jacobians (:meth:`JointProblem._evaluate`, the modalities never share one
    compiled function) chained with the gradient of the per-study quadrature
    (:func:`_study_marginal`). Wrapped for JAX by :func:`_joint_loglik` as a ``pure_callback``
    with a custom VJP, so that NumPyro's NUTS can use it; ``calls`` counts evaluations.

    Each study effect ``b_s`` enters only its own rows, so ``int ... db_s`` is one-dimensional:
    integrating it out leaves NUTS ``K + 1`` dimensions instead of ``K + 1 + S``, and removes the
    funnel between ``tau`` and effects that the data pin down."""

    def __init__(self, jp: JointProblem, nodes: int = STUDY_NODES):
        self.jp = jp
        self.calls = 0
        #: evaluations refused (log-likelihood -inf, so NUTS sees a divergence), counted by reason,
        #: and the first ``theta`` refused for each reason
        self.refused: dict[str, int] = {}
        self.refused_at: dict[str, list] = {}
        x, w = np.polynomial.hermite.hermgauss(int(nodes))
        self.x, self.logw = jnp.asarray(x), jnp.asarray(np.log(w) + x**2)
        self.local: dict[str, tuple] = {}
        for m, pb in jp.problems.items():
            uniq, study = np.unique(jp.study_index[m], return_inverse=True)
            self.local[m] = (uniq, study, np.asarray(pb.obs.value, dtype=float), pb.sd())

    def centre(self, m: str, pred: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """Conditional mode and Gauss-Newton sd of each study effect of modality ``m`` given its
        predictions and ``tau`` (damped Newton in b, started at 0)."""
        uniq, study, value, sd = self.local[m]
        b = np.zeros(len(uniq))
        h = np.ones(len(uniq))
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(50):
                e = pred * np.exp(b[study])
                a, r = e / sd, (e - value) / sd
                g = -np.bincount(study, a * r, len(uniq)) - b / tau**2
                h = np.bincount(study, a * a, len(uniq)) + 1.0 / tau**2
                step = np.clip(g / h, -1.0, 1.0)
                b = b + step
                if np.all(np.abs(step) < 1e-10):
                    break
        return b, 1.0 / np.sqrt(h)

    def __call__(self, theta):
        jp = self.jp
        self.calls += 1
        theta = np.asarray(theta, dtype=np.float64)
        z, log_tau = theta[: jp.K], float(theta[jp.K])

        def refused(reason):  # NUTS sees a divergence
            self.refused[reason] = self.refused.get(reason, 0) + 1
            self.refused_at.setdefault(reason, theta.tolist())
            return np.float64(-np.inf), np.zeros(jp.K + 1)

        with np.errstate(over="ignore"):
            tau = np.exp(log_tau)
        if not np.isfinite(tau) or tau <= 0:
            return refused("tau overflows")
        ll, g = 0.0, np.zeros(jp.K + 1)
        for m, (jac, pred) in jp._evaluate(z).items():
            if not np.all(np.isfinite(pred)):
                return refused(f"{m}: prediction not finite (failed solve)")
            if not np.all(np.isfinite(jac)):
                return refused(f"{m}: Jacobian not finite")
            uniq, study, value, sd = self.local[m]
            centre, scale = self.centre(m, pred, tau)
            if not (np.all(np.isfinite(centre)) and np.all(np.isfinite(scale))):
                return refused(f"{m}: study-effect mode not finite")
            v, (d_pred, d_tau) = _study_marginal_grad(
                jnp.asarray(pred),
                jnp.asarray(log_tau),
                jnp.asarray(centre),
                jnp.asarray(scale),
                jnp.asarray(value),
                jnp.asarray(sd),
                jnp.asarray(study),
                len(uniq),
                self.x,
                self.logw,
            )
            ll += float(v)
            g[jp.index[m]] += np.asarray(jac).T @ np.asarray(d_pred)
            g[jp.K] += float(d_tau)
        if not (np.isfinite(ll) and np.all(np.isfinite(g))):
            return refused("log-likelihood or gradient not finite")
        return np.float64(ll), g

    def draw_study_effects(self, theta, rng) -> np.ndarray:
        """One draw of every study effect from its conditional posterior given ``theta`` (Laplace:
        Normal at the conditional mode with the Gauss-Newton sd)."""
        jp = self.jp
        theta = np.asarray(theta, dtype=np.float64)
        tau = float(np.exp(theta[jp.K]))
        out = np.full(jp.S, np.nan)
        for m, (_jac, pred) in jp._evaluate(theta[: jp.K]).items():
            centre, scale = self.centre(m, pred, tau)
            out[self.local[m][0]] = centre + scale * rng.standard_normal(len(centre))
        return out


def laplace_at_mode(
    logpost,
    theta0,
    cov0,
    *,
    ascent_steps: int = 8,
    newton_steps: int = 3,
    step: float = 0.01,
    min_curvature: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Mode and Laplace covariance of a log density from its gradient alone.

    ``logpost(theta) -> (value, gradient)``. From ``theta0``, ascend with ``cov0`` as the
    preconditioner (backtracking, at most ``ascent_steps``); then take the Hessian by central
    differences of the gradient along the columns of ``L = chol(cov0)`` (``2 d`` gradients, step
    ``step`` in those whitened units), so ``H_u = L^T H L`` is the curvature relative to ``cov0``;
    then up to ``newton_steps`` Newton steps with it. Eigenvalues of ``-H_u`` below
    ``min_curvature`` (flat or non-concave directions) are raised to it, i.e. no direction gets a
    standard deviation above ``1 / sqrt(min_curvature)`` times that of ``cov0``.

    Returns ``(theta, cov, info)`` with ``cov = L (-H_u)^-1 L^T`` and ``info``: value at the mode,
    gradient evaluations, directions clipped, and the whitened curvature's eigenvalue range. Exact
    (to rounding) for a Gaussian: the gradient is then linear and central differences are exact.
    """
    theta = np.asarray(theta0, dtype=np.float64).copy()
    cov0 = 0.5 * (np.asarray(cov0, dtype=np.float64) + np.asarray(cov0, dtype=np.float64).T)
    d = theta.shape[0]
    if cov0.shape != (d, d):
        raise ValueError(f"cov0 has shape {cov0.shape}; expected ({d}, {d}) for theta0 of length {d}")
    L = np.linalg.cholesky(cov0 + 1e-12 * np.trace(cov0) / d * np.eye(d))
    calls = 0

    def f(t):
        nonlocal calls
        calls += 1
        v, g = logpost(t)
        return float(v), np.asarray(g, dtype=np.float64)

    lp, g = f(theta)
    if not np.isfinite(lp):
        raise ValueError("the log density is not finite at theta0")

    def climb(direction, steps):
        nonlocal theta, lp, g
        for _ in range(steps):
            dx = direction(g)
            for a in (1.0, 0.5, 0.25, 0.1):
                lp1, g1 = f(theta + a * dx)
                if np.isfinite(lp1) and lp1 > lp:
                    theta, lp, g = theta + a * dx, lp1, g1
                    break
            else:
                return

    climb(lambda g: cov0 @ g, ascent_steps)
    Hu = np.empty((d, d))
    for j in range(d):
        _, gp = f(theta + step * L[:, j])
        _, gm = f(theta - step * L[:, j])
        Hu[:, j] = L.T @ (gp - gm) / (2.0 * step)
    if not np.all(np.isfinite(Hu)):
        raise ValueError("the gradient is not finite around the mode; cannot take the Hessian")
    w, V = np.linalg.eigh(-0.5 * (Hu + Hu.T))
    clipped = int(np.sum(w < min_curvature))
    w_used = np.maximum(w, min_curvature)
    Cu = (V / w_used) @ V.T
    cov = L @ Cu @ L.T
    cov = 0.5 * (cov + cov.T)
    climb(lambda g: cov @ g, newton_steps)
    info = dict(
        log_density=lp,
        gradient_evaluations=calls,
        clipped=clipped,
        curvature_min=float(w.min()),
        curvature_max=float(w.max()),
        gradient_norm_whitened=float(np.linalg.norm(L.T @ g)),
    )
    return theta, cov, info


def _joint_loglik(host: _HostLogLikelihood):
    n = host.jp.K + 1
    shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((n,), jnp.float64))

    def both(x):
        return jax.pure_callback(lambda v: tuple(np.asarray(a, dtype=np.float64) for a in host(v)), shapes, x)

    @jax.custom_vjp
    def loglik(x):
        return both(x)[0]

    def fwd(x):
        ll, g = both(x)
        return ll, g

    def bwd(g, ct):
        return (ct * g,)

    loglik.defvjp(fwd, bwd)
    return loglik


def theta_prior(jp: JointProblem) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean and sd of ``theta = (z, log tau)`` in :func:`nuts` (independent normals)."""
    return (np.concatenate([jp.mu[: jp.K], [np.log(TAU_STUDY)]]), np.concatenate([jp.sigma[: jp.K], [TAU_PRIOR_SIGMA]]))


def marginal_log_posterior(jp: JointProblem, host: _HostLogLikelihood):
    """``theta -> (log posterior, gradient)`` that :func:`nuts` samples, up to a constant: the
    prior of :func:`theta_prior` plus the data with the study effects integrated out (``host``)."""
    mu, sig = theta_prior(jp)

    def logpost(theta):
        ll, g = host(theta)
        return ll - 0.5 * np.sum(((theta - mu) / sig) ** 2), g - (theta - mu) / sig**2

    return logpost


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
    costs ``2 (K + 1)`` + ~20 gradients (~35 s for the whole library). The Gauss-Newton covariance
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


#: The shipped NUTS metric (:func:`metric_from_posterior` of a previous all-data run), under ``models/``.
NUTS_METRIC = "calibration/nuts_metric.json"


def corrected_covariance(cov, sample_cov, n_eff: float) -> tuple[np.ndarray, dict]:
    """``cov`` (the start's covariance, e.g. the inverse Hessian at the mode) corrected along the
    directions where a posterior sample says the posterior is significantly wider or narrower.

    Whitened by ``L = chol(cov)``, the sample covariance ``C_w = L^-1 sample_cov L^-T`` would have
    eigenvalues spread over the Marchenko-Pastur bulk ``[(1 - sqrt(g))^2, (1 + sqrt(g))^2]``,
    ``g = d / n_eff``, if ``cov`` were exact: sampling noise of ``n_eff`` effective draws in ``d``
    dimensions. Eigenvalues inside the bulk are set to 1 (``cov`` kept there); those outside are
    kept (a signal the noise cannot produce). Returns ``L V diag(w') V^T L^T`` and an info dict
    (``g``, the edges, the eigenvalues kept)."""
    cov = 0.5 * (np.asarray(cov, dtype=np.float64) + np.asarray(cov, dtype=np.float64).T)
    sample_cov = 0.5 * (np.asarray(sample_cov, dtype=np.float64) + np.asarray(sample_cov, dtype=np.float64).T)
    d = cov.shape[0]
    if cov.shape != (d, d) or sample_cov.shape != (d, d):
        raise ValueError(f"cov {cov.shape} and sample_cov {sample_cov.shape} must both be square of one size")
    if not (np.isfinite(n_eff) and n_eff > d):
        raise ValueError(
            f"n_eff={n_eff!r} must exceed the dimension {d}: fewer effective draws than dimensions "
            "cannot tell signal from noise"
        )
    L = np.linalg.cholesky(cov)
    Li = np.linalg.inv(L)
    w, V = np.linalg.eigh(Li @ sample_cov @ Li.T)
    g = d / float(n_eff)
    lo, hi = (1.0 - np.sqrt(g)) ** 2, (1.0 + np.sqrt(g)) ** 2
    keep = (w < lo) | (w > hi)
    w_used = np.where(keep, np.maximum(w, 1e-12), 1.0)
    out = L @ ((V * w_used) @ V.T) @ L.T
    return 0.5 * (out + out.T), dict(
        g=g,
        edges=[float(lo), float(hi)],
        kept=[float(x) for x in w[keep]],
        eigen_range=[float(w.min()), float(w.max())],
    )


def metric_from_posterior(idata) -> dict:
    """A NUTS metric for :func:`nuts` from the draws of a previous :func:`nuts` run: the parameter
    keys (plus ``log_tau``), the covariance of ``theta`` (the sampler's state, unfolded) over all
    draws, and ``n_eff``, the median bulk ESS of the sampled coordinates ``u`` (the draws are
    autocorrelated; :func:`corrected_covariance` judges noise by it). Save with ``json.dump``;
    ``python -m pkpd.calibrate --nuts --save-metric PATH`` writes it after a run."""
    import arviz as az

    post = idata.posterior
    theta = np.asarray(post["theta"], dtype=np.float64)
    n = theta.shape[-1]
    keys = [str(k) for k in post["parameters"].coords["parameter"].values] + ["log_tau"]
    if len(keys) != n:
        raise ValueError(f"theta has {n} entries but the posterior names {len(keys)} (parameters + log_tau)")
    ess = np.asarray(az.ess(idata, var_names=["u"])["u"], dtype=float)
    attrs = {
        k: (v.item() if hasattr(v, "item") else v)
        for k, v in post.attrs.items()
        if k
        in (
            "created_at",
            "chains",
            "warmup",
            "draws",
            "seed",
            "sampling_seconds",
            "divergences",
            "mean_leapfrog_steps",
            "adapt_mass",
            "start",
        )
    }
    return dict(
        keys=keys,
        covariance=np.cov(theta.reshape(-1, n).T).tolist(),
        n_eff=float(np.median(ess)),
        draws=int(theta.shape[0] * theta.shape[1]),
        source=attrs,
    )


def load_metric(path=None) -> dict:
    """The NUTS metric at ``path`` (default: the shipped :data:`NUTS_METRIC`)."""
    from ._paths import models_dir

    p = Path(path) if path is not None else models_dir() / NUTS_METRIC
    with open(p) as f:
        m = json.load(f)
    cov = np.asarray(m.get("covariance"), dtype=float)
    if "keys" not in m or cov.shape != (len(m["keys"]), len(m["keys"])) or not np.all(np.isfinite(cov)):
        raise ValueError(f"{p}: not a NUTS metric (keys, a square finite covariance over them, n_eff)")
    return m


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
    solves then share the remaining workers: on 2 cores, one (measured: a single busy XLA thread,
    load ~1.0 during the session-7 run). XLA sizes that pool from the ``NPROC`` environment variable
    (an XLA internal meant for CI CPU reservations); with one worker more, the inner solves use
    every core: 2.2x faster warmup iterations on the library (41 in 5 min 43 s against 36 in
    10 min 54 s, same seed; benchmarks/RESULTS.md). Effective only before JAX starts its CPU
    backend: ``python -m pkpd.calibrate --nuts`` calls it first; from a notebook, set
    ``NPROC`` before starting Python. Returns the value in effect."""
    return os.environ.setdefault("NPROC", str((os.cpu_count() or 1) + 1))


@contextlib.contextmanager
def one_adaptation_window():
    """Within this block NumPyro's HMC/NUTS warmup is one adaptation window (dual averaging of the
    step size over the whole warmup, never restarted).

    NumPyro's Stan-style schedule (75-iteration start buffer, doubling middle windows, 50-iteration
    end buffer; 15 % / 10 % of a short warmup) restarts the step size's dual averaging at the end of
    every middle window, whether or not the mass matrix is adapted. With ``adapt_mass="none"`` that
    wastes the warmup: of 75 iterations only the last 7 set the step size, and two all-data runs (80 and 75
    warmup iterations) with the same metric ended at 0.37 (acceptance 0.57) and 0.13 (acceptance 0.95, 31 leapfrog
    steps per draw) (benchmarks/RESULTS.md, session 11). Patches
    ``numpyro.infer.hmc_util.build_adaptation_schedule``, which the warmup adapter looks up when a
    chain is initialised, and restores it on exit."""
    from numpyro.infer import hmc_util

    original = hmc_util.build_adaptation_schedule
    hmc_util.build_adaptation_schedule = lambda num_steps: [hmc_util.AdaptWindow(0, int(num_steps) - 1)]
    try:
        yield
    finally:
        hmc_util.build_adaptation_schedule = original


def _resolve_metric(metric, keys: list[str]) -> tuple[dict | None, dict]:
    """The metric :func:`nuts` applies (or None) and what to record about it."""
    if metric is None:
        return None, {"from": None}
    if isinstance(metric, str) and metric == "shipped":
        try:
            m = load_metric()
        except FileNotFoundError:
            return None, {"from": None, "why": f"no shipped metric ({NUTS_METRIC})"}
        if m["keys"] != keys:
            return None, {"from": None, "why": "the shipped metric is for other parameters (another set of modalities)"}
        return m, {"from": NUTS_METRIC, "n_eff": m.get("n_eff"), "source": m.get("source")}
    if isinstance(metric, (str, Path)):
        m, where = load_metric(metric), str(metric)
    elif isinstance(metric, dict):
        m, where = metric, "the given metric"
    else:
        raise ValueError(f"metric={metric!r} must be 'shipped', None, a metric dict or the path of one")
    if list(m.get("keys", [])) != keys:
        raise ValueError(f"metric: its keys {list(m.get('keys', []))} are not this run's parameters {keys}")
    return m, {"from": where, "n_eff": m.get("n_eff"), "source": m.get("source")}


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

    The model is the joint calibration's, with the between-study sd estimated instead of fixed:
    core/driver/PK parameters ``z ~ Normal(prior)`` in the fitted space (keyed as in the MAP),
    ``log tau ~ Normal(log TAU_STUDY, TAU_PRIOR_SIGMA)``, study effects ``b_s ~ Normal(0, tau)``
    and every usable row ``~ Normal(pred * exp(b_study), sd)``. The study effects are integrated
    out (one-dimensional adaptive Gauss-Hermite quadrature per study, :class:`_HostLogLikelihood`),
    so NUTS samples ``theta = (z, log tau)`` only. It starts (:func:`nuts_start`) at the mode of
    that marginal posterior with its dense mass matrix from the inverse Hessian there
    (``start="mode"``), or at the shipped MAP (``init``, default :func:`load`) with its Laplace
    covariance (``start="map"``). NUTS runs in the coordinates ``u`` that whiten that covariance,
    ``theta = theta_start + V sqrt(S) u`` (``cov = V S V^T``), and ``adapt_mass`` says what warmup
    adapts there (:data:`ADAPT_MASS`): ``"none"`` (default with ``start="mode"``) the step size
    only, keeping the Hessian mass; ``"scale"`` one variance per principal direction, so the start's
    correlations are kept and its scales corrected where the curvature at the mode misjudges the
    posterior's width (``stimulation.a_itbs`` sits at the mode on a narrow ridge, sd 0.03, next to
    a cliff below and a plateau above where the iTBS after-effect saturates; on the library it
    then sampled at step size 0.16 with 23-31 leapfrog steps per draw, benchmarks/RESULTS.md);
    ``"dense"`` (default with ``start="map"``) a full covariance (from warmup's ~75 draws it is
    noisier than the Hessian: one run sampled with 31-63 leapfrog steps per draw after it).
    ``grid_marginals`` (default): a parameter whose Laplace the calibration's check refused
    (``init.info["laplace_check"]``; on the library ``stimulation.a_itbs``) is left out of the
    whitening and sampled through its :class:`GridTransform` instead, ``theta_i = F^{-1}(Phi(u_i))``
    with the Jacobian in the density: an exact change of variables that turns its cliff and plateau
    into a near-unit Gaussian wherever the slice matches its marginal.
    ``flip_flop`` (default): drugs with one-compartment first-order absorption (psilocybin, LSD)
    have two mirror-image modes of equal likelihood, ``(ka, cl, v)`` and ``(ke, cl, v ke / ka)``
    (:mod:`pkpd.flipflop`); their prior is symmetrised under the swap and the reported
    ``parameters``/``natural`` draws are folded onto ``ka >= ke``, which samples the folded
    posterior exactly even when the chains sit in opposite modes (``theta`` and ``u`` stay the
    sampler's unfolded state). Attributes ``flip_flop`` (the triples) and ``flip_flop_reflected``
    (per triple and chain, the share of draws taken with ``ka < ke``).
    ``solve``: per modality, overrides of the fit's ODE solver settings (default
    :data:`NUTS_SOLVE`, chosen per modality by the accuracy and cost of its Jacobian; ``None``: the
    MAP's :data:`pkpd.fit.FIT_SOLVE` everywhere). Attribute ``solve``: the settings each modality used.
    ``metric``: a posterior sample's covariance (:func:`metric_from_posterior`: a dict, or the path of
    one saved as JSON) that corrects the start's covariance where that sample is significantly wider
    or narrower (:func:`corrected_covariance`); the mass matrix is then closer to the posterior's
    than the Hessian at the mode is. Default ``"shipped"``: :data:`NUTS_METRIC` when its keys are
    this run's (all modalities), else none; ``None``: the start's covariance alone. On the library
    the Hessian at the mode underestimates the spread along the clinical link's ridge 12-fold in
    variance and along psilocybin's flip-flop 6-fold (session 10's draws). Any metric samples the
    same posterior; it changes only the cost. Attribute ``metric``: what was applied.
    Gradients come from the per-modality forward-mode Jacobians on the host, evaluated in
    parallel threads (which share all cores only with :func:`widen_xla_pool` in effect); chains
    run one after the other.

    Returned groups: posterior (``parameters`` over dim ``parameter`` in the fitted space,
    ``natural`` in natural units, ``tau``), sample_stats (divergences, tree depth), and
    ``study_effects``: for ``study_effect_draws`` posterior draws (evenly thinned), one draw of
    every study effect from its conditional posterior (dims ``sample``, ``study``; each costs one
    more evaluation of every modality). Attributes: seconds, gradient evaluations, settings.
    """
    import arviz as az
    import numpyro
    import numpyro.distributions as dist
    import xarray as xr
    from numpyro.infer import MCMC, NUTS, init_to_value

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
    t0 = time.perf_counter()
    jp = JointProblem(modalities, error=error, progress=progress, solve=solve)
    K = jp.K
    metric, metric_info = _resolve_metric(metric, jp.keys + ["log_tau"])
    host = _HostLogLikelihood(jp)
    loglik = _joint_loglik(host)
    cal = load() if init is None else init
    theta0, cov, start_info = nuts_start(jp, host, cal, start=start, progress=progress)
    mu, sigma = (jnp.asarray(a) for a in theta_prior(jp))
    transforms = [jp.meta[k]["transform"] for k in jp.keys]
    n = len(theta0)
    grid_index, grid_maps = [], []
    if grid_marginals:
        for key, row in (cal.info.get("laplace_check") or {}).get("parameters", {}).items():
            if row.get("refused") and key in jp.keys and "grid" in row:
                grid_index.append(jp.keys.index(key))
                grid_maps.append(GridTransform(row["grid"], row["grid_logd"]))
    mirrored = flipflop.triples(jp.keys, flipflop.pk_structure, lambda k: jp.meta[k]["transform"]) if flip_flop else []
    rest = np.asarray([i for i in range(n) if i not in grid_index], dtype=int)
    cov_rest = cov[np.ix_(rest, rest)]
    if metric is not None:
        sample = np.asarray(metric["covariance"], dtype=float)[np.ix_(rest, rest)]
        cov_rest, more = corrected_covariance(cov_rest, sample, float(metric["n_eff"]))
        metric_info.update(more)
        if progress:
            print(
                f"[pkpd.calibrate nuts] metric: start covariance corrected by {metric_info['from']} along "
                f"{len(more['kept'])} directions (variance ratios {', '.join(f'{v:.2g}' for v in sorted(more['kept'])[::-1][:6])}"
                f"{', ...' if len(more['kept']) > 6 else ''}; noise bulk {more['edges'][0]:.2f}-{more['edges'][1]:.2f})",
                flush=True,
            )
    S, V = np.linalg.eigh(0.5 * (cov_rest + cov_rest.T))
    whiten = V * np.sqrt(np.maximum(S, 1e-12 * S.max()))
    start_j, whiten_j, rest_j = jnp.asarray(theta0), jnp.asarray(whiten), jnp.asarray(rest)
    if progress and mirrored:
        print(
            f"[pkpd.calibrate nuts] flip-flop symmetric (ka <-> ke), prior symmetrised and draws reported with "
            f"ka >= ke: {', '.join(jp.keys[t[0]].rpartition('.')[0] for t in mirrored)}",
            flush=True,
        )
    if progress and grid_index:
        print(
            f"[pkpd.calibrate nuts] sampled through their slice-grid transforms: "
            f"{', '.join(jp.keys[i] for i in grid_index)}",
            flush=True,
        )

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

    kernel = NUTS(
        model,
        dense_mass=adapt == "dense",
        adapt_mass_matrix=adapt != "none",
        max_tree_depth=int(max_tree_depth),
        target_accept_prob=float(target_accept),
        init_strategy=init_to_value(values={"u": jnp.zeros(n)}),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=progress,
    )
    t_setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    # with the mass fixed (adapt "none") the Stan windows only restart the step size (see one_adaptation_window)
    with one_adaptation_window() if adapt == "none" else contextlib.nullcontext():
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging", "num_steps"))
    seconds = time.perf_counter() - t1
    extra = mcmc.get_extra_fields()
    idata = az.from_numpyro(
        mcmc,
        coords={"parameter": jp.keys, "theta_dim_0": np.arange(n), "direction": np.arange(n)},
        dims={"parameters": ["parameter"], "natural": ["parameter"], "theta": ["theta_dim_0"], "u": ["direction"]},
    )
    # the warmup's variance per direction of u (1 = the start's covariance), per chain
    adapted = _adapted_scales(mcmc, n) if adapt == "scale" else None
    t2 = time.perf_counter()
    thetas = np.asarray(mcmc.get_samples()["theta"])
    n_eff = min(int(study_effect_draws), len(thetas))
    if n_eff:
        pick = np.unique(np.linspace(0, len(thetas) - 1, n_eff).round().astype(int))
        rng = np.random.default_rng(seed)
        effects = np.stack([host.draw_study_effects(thetas[i], rng) for i in pick])
        idata.add_groups(
            {
                "study_effects": xr.Dataset(
                    {"study_effect": (("sample", "study"), effects)},
                    coords={"sample": pick, "study": jp.studies},
                    attrs={
                        "description": "one draw per listed posterior draw (flattened chain-major index) of each "
                        "study effect b from its conditional posterior (Laplace) given that draw"
                    },
                )
            }
        )
    effect_seconds = time.perf_counter() - t2
    idata.posterior.attrs.update(
        pkpd_fit="joint_nuts",
        sampling_seconds=seconds,
        setup_seconds=t_setup,
        study_effect_seconds=effect_seconds,
        start=json.dumps(start_info),
        adapt_mass=adapt,
        adaptation_windows="one (step size only)" if adapt == "none" else "numpyro (Stan-style windows)",
        start_theta=json.dumps(np.asarray(theta0).tolist()),
        whitening=json.dumps(whiten.tolist()),
        whitened_indices=json.dumps(rest.tolist()),
        grid_parameters=json.dumps([jp.keys[i] for i in grid_index]),
        flip_flop=json.dumps([[jp.keys[i] for i in t] for t in mirrored]),
        flip_flop_reflected=json.dumps(_reflected_share(mcmc, mirrored, chains)),
        xla_nproc=os.environ.get("NPROC", "unset"),
        solve=json.dumps({m: describe_solve(pb.solve) for m, pb in jp.problems.items()}),
        metric=json.dumps(metric_info),
        adapted_variance=json.dumps(adapted),
        gradient_evaluations=host.calls,
        refused_evaluations=json.dumps(host.refused),
        refused_at=json.dumps(host.refused_at),
        study_effects=f"integrated out (adaptive Gauss-Hermite, {len(host.x)} nodes per study)",
        divergences=int(np.sum(np.asarray(extra["diverging"]))),
        mean_leapfrog_steps=float(np.mean(np.asarray(extra["num_steps"]))),
        chains=chains,
        warmup=warmup,
        draws=draws,
        max_tree_depth=max_tree_depth,
        seed=seed,
        rows=int(sum(pb.obs.n for pb in jp.problems.values())),
        modalities=json.dumps(list(jp.problems)),
        prior_mu=json.dumps(np.asarray(jp.mu[:K]).tolist()),
        prior_sigma=json.dumps(np.asarray(jp.sigma[:K]).tolist()),
    )
    if progress:
        print(
            f"[pkpd.calibrate nuts] {chains} chains x ({warmup} + {draws}) in {seconds:.0f} s (+ {t_setup:.0f} s setup, "
            f"{effect_seconds:.0f} s study effects): {host.calls} gradient evaluations, "
            f"{idata.posterior.attrs['divergences']} divergences; evaluations refused: {host.refused or 'none'}",
            flush=True,
        )
    return idata


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


def main(argv=None) -> int:
    from ._paths import models_dir

    ap = argparse.ArgumentParser(
        prog="python -m pkpd.calibrate",
        description="Joint calibration of all modalities on the curated published curves.",
    )
    ap.add_argument("--modalities", nargs="*", default=None, help="subset (default: every modality with usable data)")
    ap.add_argument("--out", default=None, help=f"output JSON (default: models/{CALIBRATION})")
    ap.add_argument("--draws", type=int, default=N_DRAWS)
    ap.add_argument("--tau", type=float, default=TAU_STUDY)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--nuts",
        action="store_true",
        help="hierarchical NUTS (tau estimated) from the shipped MAP instead of MAP + Laplace; "
        "writes netCDF to --out (default calibration_nuts.nc) and prints R-hat/ESS",
    )
    ap.add_argument("--chains", type=int, default=2, help="NUTS chains (with --nuts)")
    ap.add_argument("--warmup", type=int, default=200, help="NUTS warmup per chain (with --nuts)")
    ap.add_argument("--max-tree-depth", type=int, default=6, help="NUTS tree depth cap (with --nuts)")
    ap.add_argument(
        "--start",
        choices=NUTS_STARTS,
        default="mode",
        help="NUTS start: marginal mode + Hessian mass (default) or the shipped MAP + Laplace mass",
    )
    ap.add_argument(
        "--adapt-mass",
        choices=ADAPT_MASS,
        default=None,
        help="what warmup adapts in the start's whitened coordinates: nothing but the step size "
        "(default with --start mode), one variance per direction, or a dense covariance "
        "(default with --start map)",
    )
    ap.add_argument(
        "--no-grid-marginals",
        action="store_true",
        help="(with --nuts) whiten every parameter, including those the Laplace check refused, "
        "instead of sampling those through their slice-grid transform",
    )
    ap.add_argument(
        "--no-flip-flop",
        action="store_true",
        help="(with --nuts) sample one-compartment oral PK (psilocybin, LSD) without symmetrising "
        "the prior under the ka <-> ke swap and without folding the draws onto ka >= ke",
    )
    ap.add_argument(
        "--fit-solve",
        action="store_true",
        help="(with --nuts) solve every modality with the MAP's ODE settings (pkpd.fit.FIT_SOLVE) "
        "instead of the per-modality NUTS_SOLVE",
    )
    ap.add_argument(
        "--metric",
        default="shipped",
        help="(with --nuts) posterior-sample metric that corrects the Hessian mass: 'shipped' "
        f"(models/{NUTS_METRIC}, default), 'none', or the path of a saved metric",
    )
    ap.add_argument(
        "--save-metric",
        default=None,
        help="(with --nuts) after the run, write its metric (metric_from_posterior) to this JSON path",
    )
    args = ap.parse_args(argv)
    if args.nuts:
        widen_xla_pool()
        idata = nuts(
            args.modalities,
            chains=args.chains,
            warmup=args.warmup,
            draws=args.draws,
            seed=args.seed,
            max_tree_depth=args.max_tree_depth,
            start=args.start,
            adapt_mass=args.adapt_mass,
            grid_marginals=not args.no_grid_marginals,
            flip_flop=not args.no_flip_flop,
            solve=None if args.fit_solve else NUTS_SOLVE,
            metric=None if args.metric == "none" else args.metric,
        )
        out = Path(args.out or "calibration_nuts.nc")
        idata.to_netcdf(str(out))
        if args.save_metric:
            with open(args.save_metric, "w") as f:
                json.dump(metric_from_posterior(idata), f)
            print(f"written {args.save_metric} (metric from this run's draws)")
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_rows", 200):
            print(
                nuts_summary(idata)[["name", "mean", "sd", "ess_bulk", "ess_tail", "r_hat", "sd_ratio"]].to_string(
                    index=False
                )
            )
        print(f"written {out} ({idata.posterior.attrs['sampling_seconds']:.0f} s sampling)")
        return 0
    cal = calibrate(args.modalities, tau=args.tau, draws=args.draws, seed=args.seed)
    out = Path(args.out) if args.out else models_dir() / CALIBRATION
    cal.save(out)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 200):
        print(cal.summary().drop(columns=["modalities"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written {out} ({cal.info['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
