"""The joint problem: every modality's fit problem, parameters pooled by card key, one random
effect per study arm."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import structures
from ..fit import FitError, Problem
from ..modalities import modalities as all_modalities

#: Between-study sd of log effect sizes (assumed: ~30 % between-study heterogeneity of effect sizes
#: and exposures, typical of meta-analyses of these readouts; :mod:`pkpd.calibrate`).
TAU_STUDY = 0.3


def _card_of(problem: Problem, spec) -> str:
    return problem.card_of(spec)


def parameter_key(card: str, name: str) -> str:
    """Key of a parameter in the joint fit: ``name`` for core, ``card.name`` otherwise."""
    return name if card == "core" else f"{card}.{name}"


def _split_key(key: str) -> tuple[str, str, str | None]:
    """``(card, name, species or None)`` of a joint-fit key (inverse of :func:`parameter_key`)."""
    card, _, rest = key.rpartition(".") if "." in key else ("core", "", key)
    base, _, species = rest.partition("@")
    return card, base, species or None


class JointProblem:
    """Every modality's :class:`pkpd.fit.Problem`, with parameters pooled by card key and one
    random effect per study arm. ``solve``: per modality, overrides of the fit's ODE solver
    settings (:func:`pkpd.fit.solve_settings`; e.g. :data:`pkpd.calibrate.NUTS_SOLVE`);
    ``structure``: the candidate structures of every model (:mod:`pkpd.structures`)."""

    def __init__(
        self,
        modalities=None,
        *,
        tau: float = TAU_STUDY,
        error=None,
        progress: bool = True,
        solve: dict | None = None,
        structure=None,
    ):
        if not (np.isfinite(tau) and tau > 0):
            raise ValueError(f"tau={tau!r} must be a positive finite number (between-study sd of log effects)")
        solve = dict(solve or {})
        unknown = sorted(set(solve) - set(all_modalities()))
        if unknown:
            raise ValueError(f"solve: unknown modalities {unknown}; valid: {all_modalities()}")
        self.tau = float(tau)
        self.structure = structures.resolve(structure)
        self.problems: dict[str, Problem] = {}
        self.skipped: dict[str, str] = {}
        for m in modalities or all_modalities():
            self._add_modality(m, error, solve.get(m), progress)
        if not self.problems:
            raise FitError(f"no modality has usable data: {self.skipped}")
        self._pool_parameters()
        self._index_studies()
        self.K, self.S = len(self.keys), len(self.studies)
        self.mu = np.concatenate([[self.meta[k]["prior_mu"] for k in self.keys], np.zeros(self.S)])
        self.sigma = np.concatenate([[self.meta[k]["prior_sigma"] for k in self.keys], np.full(self.S, self.tau)])
        self._jac = {m: self._compile(pb) for m, pb in self.problems.items()}
        self._pool: ThreadPoolExecutor | None = None
        #: seconds of each modality's last Jacobian evaluation
        self.cost: dict[str, float] = {}

    def _add_modality(self, m: str, error, solve: dict | None, progress: bool) -> None:
        """The fit problem of modality ``m``, or the reason it is skipped (no usable data)."""
        try:
            self.problems[m] = Problem(m, error=error, solve=solve, structure=self.structure)
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

    def _pool_parameters(self) -> None:
        """``keys`` (first appearance order), ``meta`` per key and each modality's ``index`` into
        ``keys``: parameters of the same card key are one parameter of the joint fit."""
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

    def _index_studies(self) -> None:
        """``studies`` (``"modality:study_id"``, first appearance order) and each modality's rows'
        ``study_index`` into it: one random effect per study arm."""
        self.studies: list[str] = []
        self.study_index: dict[str, np.ndarray] = {}
        for m, pb in self.problems.items():
            ids = [f"{m}:{s}" for s in pb.obs.rows["study_id"].astype(str)]
            for s in ids:
                if s not in self.studies:
                    self.studies.append(s)
            self.study_index[m] = np.asarray([self.studies.index(s) for s in ids], dtype=int)

    @staticmethod
    def _compile(pb: Problem):
        def f(z):
            p = pb.predict(z, adjoint=dfx.ForwardMode())
            return p, p

        return eqx.filter_jit(jax.jacfwd(f, has_aux=True))

    def _evaluate(self, x: np.ndarray) -> dict:
        """Every modality's (Jacobian, prediction) at ``x``, on a pool of one thread per CPU core:
        the compiled solves release the GIL, so the modalities run in parallel. The costliest (by their last run) are started first."""
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
