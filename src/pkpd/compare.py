"""The comparison: every modality's clock with uncertainty, the documents' claims, schedule vs biology.

:func:`compare` simulates each modality's standard protocol for 90 days on posterior draws of the
shipped joint calibration (:mod:`pkpd.calibrate`; parameters no usable row informs are drawn
from their card priors on each draw, ``uncalibrated="prior"``), computes the time-scale metrics of :mod:`pkpd.timescales` for each readout, evaluates the
claims in ``models/claims.toml``, runs counterfactual schedules, and splits each modality's spine
T50 into a schedule/PK part and a biology part.

**Claims.** Each claim is evaluated on every posterior draw (draws are joint across modalities:
the same row of the calibration for all of them); its probability is the fraction of draws on
which it holds (for every modality it names). Verdict: ``supported`` (>= 0.9), ``contradicted``
(<= 0.1), else ``uncertain``.

**Data share** (:func:`variance_shares`): how much of the variance of the claim's metric (log of a
time, or the change itself) under the *all-assumed* prior -- every prior-carrying parameter at its
card median with sd :data:`ALL_ASSUMED_SIGMA` = 1.0 in its fitted (log or logit) space, or its
card's sd where that is wider -- is removed by sourced priors and by the fitted data. Variances are
linearised at the joint MAP (forward differences of 0.1 card prior sd, :meth:`Comparer.sensitivities`):
``V0`` under the all-assumed prior, ``V1`` under the cards' priors, ``V2`` under the calibration's
posterior (the covariance of its draws; prior for parameters no row informs; ``V2 <= V1``
enforced; ``variances`` in the JSON also gives ``v2_draws``, the metric's variance over the
posterior draws simulated, which vary only the calibrated parameters, and ``v2_calibrated``, its
linearised counterpart: a check of the linearisation). ``sourced_share`` = the part of ``V0 - V1`` due to ``sourced``/``derived`` parameters,
over ``V0``; ``fitted_share = (V1 - V2) / V0``; ``data_share`` = their sum; ``assumed_share`` = the part
of ``V0 - V1`` that only ``assumed`` cards' narrower priors remove plus the first-order (Sobol)
posterior variance of the ``assumed`` parameters, over ``V0``; ``residual_share`` = the rest of
``V2`` (sourced parameters' remaining spread). The four sum to 1. Per modality, then averaged
over the claim's modalities. Statuses and priors are read from the cards at run time.

**Schedule vs biology.** ``schedule_pk_h`` is how long the schedule and the PK take to bring in
the input: the first time the input rate averaged over the trailing week (target occupancy for
drugs; pulses or seizures delivered for devices) reaches half its maximum
(:func:`pkpd.timescales.input_half_time`). ``biology_h = t50_h - schedule_pk_h`` is what the
downstream biology adds (negative if the readout is half-way before the input is).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import timescales as ts
from ._json import json_safe
from .claims import READOUTS, TABLE_READOUTS, VERDICTS, _verdict, load_claims  # noqa: F401  (re-exported)

METRIC_NAMES = ("onset_h", "t50_h", "tmax_h", "duration_h")
SOLVE = dict(rtol=1e-6, atol=1e-9)
STIFF_SOLVE = dict(rtol=1e-5, atol=1e-8)
#: Segments every compare population is padded to (``simulate_population(n_segments=...)``): the
#: standard courses need at most 128, so a single session, a single dose and a course of one
#: driver share one compiled solver (tracing and compiling the implicit stimulation solver costs
#: ~10 s each time); the trajectory figure's session envelopes (a 1,024-point grid) use 256.
COMPARE_SEGMENTS = 128
ENVELOPE_SEGMENTS = 256


def solve_options(model) -> dict:
    """Solver settings for posterior-draw populations of ``model`` (see Comparer._population)."""
    import diffrax as dfx

    if type(model.driver).__name__ == "StimulationDriver":
        return dict(solver=dfx.Kvaerno3(), **STIFF_SOLVE)
    return dict(solver=dfx.Tsit5(), **SOLVE)


def _anonymous(model):
    """The same model without its (static) modality/species labels, so that structurally
    identical models share one compiled solver."""
    from .plasticity import PlasticityModel

    return PlasticityModel(driver=model.driver, core=model.core)


@dataclass
class _Run:
    changes: dict  # readout -> (draws, times) change from baseline
    ok: np.ndarray  # (draws,) solver succeeded
    input_half: object  # callable() -> (draws,) or (1,) schedule/PK clock (h)
    end_time: float = 0.0  # end of the treatment (h): windows' durations count from it


class Comparer:
    """Simulations on posterior draws, cached by (modality, schedule)."""

    def __init__(
        self,
        *,
        draws: int = 64,
        seed: int = 0,
        calibration=None,
        horizon_h: float = ts.HORIZON_H,
        grid: int = 240,
        progress: bool = True,
        uncalibrated: str = "prior",
    ):
        from . import calibrate

        self.cal = calibration if calibration is not None else calibrate.load()
        self.uncalibrated = uncalibrated
        if not isinstance(draws, (int, np.integer)) or draws < 2:
            raise ValueError(f"draws={draws!r} must be an integer >= 2")
        self.draws, self.seed, self.progress = int(draws), seed, progress
        self.times = ts.time_grid(horizon_h, grid)
        self._runs: dict = {}
        self._models: dict = {}

    def models(self, modality):
        if modality not in self._models:
            self._models[modality] = [
                _anonymous(m)
                for m in self.cal.models(modality, self.draws, seed=self.seed, uncalibrated=self.uncalibrated)
            ]
        return self._models[modality]

    def _population(self, models, schedule):
        from .simulate import simulate_population, stack

        # Stimulation drivers are stiff during sessions on some posterior draws (measured: Tsit5
        # needed 1.9 million steps on one rTMS draw, Kvaerno5 < 7,000): implicit there (Kvaerno3
        # at rtol 1e-5: 3.4x faster than Kvaerno5 at 1e-6 on 32 rTMS draws, T50 within 6e-5),
        # explicit elsewhere (Tsit5 agrees with Kvaerno5 to ~1e-6 on the drug and seizure models).
        return simulate_population(
            stack(models), schedule, self.times, throw=False, n_segments=COMPARE_SEGMENTS, **solve_options(models[0])
        )

    def run(self, modality: str, options: dict | None = None, *, schedule=None, label: str | None = None) -> _Run:
        from .protocols import protocol

        key = (modality, label or json.dumps(options or {}, sort_keys=True))
        if key in self._runs:
            return self._runs[key]
        t0 = time.perf_counter()
        sched = schedule if schedule is not None else protocol(modality, **(options or {}))
        tr = self._population(self.models(modality), sched)
        ok = np.asarray(tr.status) == 0
        changes = {r: np.asarray(tr[out]) - 1.0 for r, out in READOUTS.items()}
        changes["protein"] = np.asarray(tr["protein"]) - 1.0  # the spine_formation window signal
        for r in changes:
            changes[r][~ok] = np.nan
        input_half = self._input_half(tr, sched)
        self._runs[key] = _Run(changes, ok, input_half, sched.end_time)
        if self.progress:
            print(
                f"[pkpd compare] {modality} {key[1]}: {ok.sum()}/{ok.size} draws ok, {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return self._runs[key]

    # ---- plasticity windows ---------------------------------------------------------------
    def window_params(self, *, prior: bool = False) -> list:
        """One window parameter set per posterior draw: Laplace draws of the shipped window fit
        (``prior``: from the window card's priors), in draw order."""
        key = ("window_params", prior)
        if key not in self._runs:
            from .windows import load

            if "window_fit" not in self._runs:
                self._runs["window_fit"] = load()
            self._runs[key] = self._runs["window_fit"].draws(self.draws, seed=self.seed + 1, prior=prior)
        return self._runs[key]

    def window_signal(self) -> str:
        """The core state (a key of a run's ``changes``) that drives the chosen window candidate."""
        return self.window_params()[0].signal

    def _input_half(self, tr, sched):
        """Schedule/PK clock of every draw (:func:`pkpd.timescales.input_half_time`)."""
        t = self.times
        if "occupancy" in tr.names:
            occ = np.asarray(tr["occupancy"])
            cum = np.concatenate(
                [np.zeros((occ.shape[0], 1)), np.cumsum(0.5 * (occ[:, 1:] + occ[:, :-1]) * np.diff(t), axis=1)], axis=1
            )
        else:
            starts = np.asarray(sched.session_start, dtype=float)
            weights = np.asarray(sched.session_pulses, dtype=float)
            weights = np.where(weights > 0, weights, 1.0)  # ECT/MST: one seizure per session
            fine = np.unique(np.concatenate([t, starts, np.nextafter(starts, -np.inf)]))
            cum_fine = np.array([weights[starts <= x].sum() for x in fine])
            return lambda: ts.input_half_time(fine, cum_fine[None, :])
        return lambda: ts.input_half_time(t, cum)

    # ---- perturbations for the data share ---------------------------------------------------
    def sensitivities(self, modality: str, options: dict | None, readout: str, metric_fn) -> list[dict]:
        """Per prior-carrying parameter of ``modality``: ``key``, card ``status``, prior sd
        ``sigma`` in the fitted space and ``d``, the derivative of ``metric_fn(times, change)``
        there at the joint MAP (forward difference of 0.1 ``sigma``; 0 where the metric is not
        finite at the MAP or the perturbed point)."""
        key = ("sens", modality, json.dumps(options or {}, sort_keys=True))
        if key not in self._runs:
            self._runs[key] = self._perturbed(modality, options)
        params, changes = self._runs[key]
        vals = np.asarray(metric_fn(self.times, changes[readout]), dtype=float)
        base, pert = vals[0], vals[1 : 1 + len(params)]
        out = []
        for p, v in zip(params, pert):
            d = (v - base) / p["h"] if np.isfinite(v) and np.isfinite(base) else 0.0
            out.append(dict(p, d=float(d)))
        return out

    def posterior_covariance(self, keys: list[str], prior_sd) -> np.ndarray:
        """Posterior covariance of the parameters ``keys`` in the fitted space: the covariance of the
        calibration's draws for calibrated keys, ``prior_sd**2`` on the diagonal for the others."""
        cal_keys = self.cal.keys
        cov = np.diag(np.asarray(prior_sd, dtype=float) ** 2)
        idx = [(i, cal_keys.index(k)) for i, k in enumerate(keys) if k in cal_keys]
        if idx:
            mine, theirs = (np.asarray(x) for x in zip(*idx))
            draws = np.asarray(self.cal.draws_z)[:, theirs]
            cov[np.ix_(mine, mine)] = np.atleast_2d(np.cov(draws, rowvar=False))
        return cov

    def _prior_parameters(self, modality):
        """The model of ``modality`` at the joint MAP and its prior-carrying parameters: ``key``,
        card ``status``, ``transform``, card prior ``mu`` and ``sigma`` in the fitted space, the
        getter ``where`` and ``z0``, the value at the MAP (the card value if uncalibrated)."""
        from .fit import PK_TARGET, FitError, _prior_z, _where
        from .modalities import build

        _, used = build(modality, "human", structure=self.cal.structure)
        base = self.cal.model(modality)
        map_z = dict(zip(self.cal.keys, self.cal.map_z))
        params = []
        for p in used:
            try:
                transform, mu, sigma = _prior_z(p)
            except FitError:
                continue
            where = _where(base, p.name)
            if where is None:
                continue
            k = (
                p.name
                if p.card == "core"
                else f"{p.card}.{p.name}" + (f"@{p.species}" if p.name in PK_TARGET and p.species != "all" else "")
            )
            if k in map_z:
                z0 = float(map_z[k])
            else:
                x = float(where(base))
                if transform == "log":
                    z0 = np.log(max(x, 1e-300))
                elif transform == "logit":
                    x = min(max(x, 1e-6), 1 - 1e-6)  # a card value on the boundary (e.g. emax = 1)
                    z0 = np.log(x / (1 - x))
                else:
                    z0 = x
            params.append(
                dict(key=k, status=p.status, transform=transform, mu=float(mu), sigma=float(sigma), where=where, z0=z0)
            )
        return base, params

    @staticmethod
    def _set(base, params, z):
        import equinox as eqx
        import jax.numpy as jnp

        from .fit import _to_natural

        m = base
        for p, v in zip(params, z):
            m = eqx.tree_at(p["where"], m, jnp.asarray(_to_natural(p["transform"], float(v)), dtype=jnp.float64))
        return _anonymous(m)

    def _changes(self, models, sched) -> dict:
        """Readout changes of ``models`` (any number) in batches of the draw count."""
        n = self.draws
        chunks = []
        for i in range(0, len(models), n):
            part = models[i : i + n]
            part = part + [part[-1]] * (n - len(part))  # same batch size as the draws: no recompilation
            tr = self._population(part, sched)
            ok = np.asarray(tr.status) == 0
            c = {r: np.asarray(tr[out]) - 1.0 for r, out in READOUTS.items()}
            for r in c:
                c[r][~ok] = np.nan
            chunks.append(c)
        return {r: np.concatenate([c[r] for c in chunks])[: len(models)] for r in READOUTS}

    def prior_monte_carlo(
        self, modality, options, readout, metric_fn, *, n: int = 64, widen: bool = False, seed: int = 0
    ) -> np.ndarray:
        """``metric_fn(times, change)`` on ``n`` models whose prior-carrying parameters are drawn
        from the cards' priors (``widen``: the all-assumed prior, sd ``max(ALL_ASSUMED_SIGMA,
        sigma)`` around the card median) -- a Monte Carlo check of the linearised ``V1`` (``V0``)."""
        from .protocols import protocol

        base, params = self._prior_parameters(modality)
        mu = np.array([p["mu"] for p in params])
        sd = np.array([p["sigma"] for p in params])
        if widen:
            sd = np.maximum(ALL_ASSUMED_SIGMA, sd)
        z = mu + sd * np.random.default_rng(seed).standard_normal((int(n), mu.size))
        changes = self._changes([self._set(base, params, zi) for zi in z], protocol(modality, **(options or {})))
        return np.asarray(metric_fn(self.times, changes[readout]), dtype=float)

    #: Forward-difference step of :meth:`sensitivities`, in prior sds of each parameter.
    step_sd = 0.1

    def _perturbed(self, modality, options):
        from .protocols import protocol

        base, params = self._prior_parameters(modality)
        models = [_anonymous(base)]
        for p in params:
            models.append(self._set(base, [p], [p["z0"] + self.step_sd * p["sigma"]]))
        params = [dict(key=p["key"], status=p["status"], sigma=p["sigma"], h=self.step_sd * p["sigma"]) for p in params]
        changes = self._changes(models, protocol(modality, **(options or {})))
        if self.progress:
            print(
                f"[pkpd compare] {modality} {json.dumps(options or {}, sort_keys=True)}: sensitivities to "
                f"{len(params)} parameters",
                file=sys.stderr,
                flush=True,
            )
        return params, changes


def _metric_values(claim, times, change):
    m = claim["metric"]
    if m == "change_at":
        return ts.change_at(times, change, float(claim["at_h"]))
    if m == "change_ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            return ts.change_at(times, change, float(claim["at_h"])) / ts.change_at(
                times, change, float(claim["ref_h"])
            )
    horizon = claim.get("horizon_h")
    return np.asarray(ts.metrics(times, change, horizon_h=horizon)[m], dtype=float)


def _holds(claim, v):
    op, thr = claim["op"], claim.get("threshold")
    with np.errstate(invalid="ignore"):
        if op == "<":
            ok = v < thr
        elif op == "<=":
            ok = v <= thr
        elif op == ">":
            ok = v > thr
        elif op == ">=":
            ok = v >= thr
        else:
            lo, hi = thr
            ok = (v >= lo) & (v <= hi)
    return ok & np.isfinite(v)


#: sd, in every parameter's fitted (log or logit) space, of the all-assumed reference prior.
ALL_ASSUMED_SIGMA = 1.0
#: Card statuses whose prior counts as information from sources.
SOURCED = ("sourced", "derived")
#: The data-share fields of a claim (:func:`variance_shares`).
SHARES = ("data_share", "sourced_share", "fitted_share", "assumed_share", "residual_share")


def variance_shares(d, prior_sd, sourced, post_cov, *, assumed_sigma: float = ALL_ASSUMED_SIGMA) -> dict:
    """Where the variance of a linearised metric ``f = f0 + d . z`` goes (module docstring).

    ``d``: derivatives in the fitted space; ``prior_sd``: the cards' prior sds there; ``sourced``:
    whether each parameter is ``sourced``/``derived`` (else ``assumed``); ``post_cov``: the
    posterior covariance. ``V0 = sum d_i^2 max(assumed_sigma, prior_sd_i)^2``,
    ``V1 = sum d_i^2 prior_sd_i^2``, ``V2 = min(d' post_cov d, V1)``; the first-order posterior
    variance of the assumed group ``A`` is ``c_A' post_cov_AA^-1 c_A`` with ``c = post_cov d``
    (exact for a linear metric of Gaussian parameters). Returns ``v0, v1, v2`` and the shares of
    :data:`SHARES` (each in [0, 1]; sourced + fitted + assumed + residual = 1; all 0 and
    ``residual_share`` 1 for a metric no parameter moves)."""
    d, sd = np.asarray(d, dtype=float), np.asarray(prior_sd, dtype=float)
    src, cov = np.asarray(sourced, dtype=bool), np.asarray(post_cov, dtype=float)
    n = d.size
    if not (sd.shape == src.shape == (n,) and cov.shape == (n, n)):
        raise ValueError(f"d {d.shape}, prior_sd {sd.shape}, sourced {src.shape}, post_cov {cov.shape}: sizes differ")
    if not (np.all(np.isfinite(sd)) and np.all(sd > 0)):
        raise ValueError("prior_sd must be positive and finite")
    d = np.where(np.isfinite(d), d, 0.0)
    removed = d**2 * (np.maximum(assumed_sigma, sd) ** 2 - sd**2)
    v1 = float(np.sum(d**2 * sd**2))
    v0 = v1 + float(removed.sum())
    if v0 <= 0.0:
        return dict(v0=0.0, v1=0.0, v2=0.0, **{k: 0.0 for k in SHARES}) | dict(residual_share=1.0)
    v2_raw = float(d @ cov @ d)
    v2 = min(max(v2_raw, 0.0), v1)
    A = ~src
    v2_a = 0.0
    if A.any() and v2_raw > 0:
        c = (cov @ d)[A]
        v2_a = float(c @ np.linalg.lstsq(cov[np.ix_(A, A)], c, rcond=None)[0])
        v2_a = min(max(v2_a, 0.0), v2_raw) * v2 / v2_raw
    out = dict(
        v0=v0,
        v1=v1,
        v2=v2,
        sourced_share=float(removed[src].sum()) / v0,
        fitted_share=(v1 - v2) / v0,
        assumed_share=(float(removed[A].sum()) + v2_a) / v0,
        residual_share=(v2 - v2_a) / v0,
    )
    out["data_share"] = out["sourced_share"] + out["fitted_share"]
    return out


def _assumed_terms(sens: list, d, cov, v0: float) -> dict[str, float]:
    """Each ``assumed`` parameter's own posterior variance contribution ``d_i^2 cov_ii`` over ``V0``:
    which assumed parameters keep a claim's metric prior-driven (``prior_driven_by`` in the JSON)."""
    if v0 <= 0:
        return {}
    return {
        p["key"]: float(d[i] ** 2 * cov[i, i]) / v0
        for i, p in enumerate(sens)
        if p["status"] not in SOURCED and np.isfinite(d[i])
    }


def evaluate_claim(claim: dict, comparer: Comparer) -> dict:
    """Probability, verdict and data share of one claim (see the module docstring)."""
    opts = claim.get("protocol") or {}
    mods = claim["modalities"]
    readout = claim["readout"]
    t = comparer.times
    if claim["op"] == "order":
        metric = dict(claim, metric=claim.get("of", "t50_h"))
        vals = [_metric_values(metric, t, comparer.run(m, opts).changes[readout]) for m in mods]
        ok = np.ones_like(vals[0], dtype=bool)
        for a, b in zip(vals[:-1], vals[1:]):
            with np.errstate(invalid="ignore"):
                ok &= (a < b) & np.isfinite(a) & np.isfinite(b)
        per = {m: ts.summarise(v) for m, v in zip(mods, vals)}
        metric_claim = metric
    else:
        vals = [_metric_values(claim, t, comparer.run(m, opts).changes[readout]) for m in mods]
        ok = np.ones_like(vals[0], dtype=bool)
        for v in vals:
            ok &= _holds(claim, v)
        per = {m: ts.summarise(v) for m, v in zip(mods, vals)}
        metric_claim = claim
    prob = float(np.mean(ok))
    shares = []
    for m in mods:

        def fn(times, change, c=metric_claim):
            v = _metric_values(c, times, change)
            return np.log(v) if c["metric"].endswith("_h") else v

        sens = comparer.sensitivities(m, opts, readout, fn)
        keys = [p["key"] for p in sens]
        sigma, d = np.array([p["sigma"] for p in sens]), np.array([p["d"] for p in sens])
        cov = comparer.posterior_covariance(keys, sigma)
        sh = variance_shares(d, sigma, np.array([p["status"] in SOURCED for p in sens]), cov)
        cal = np.array([k in comparer.cal.keys for k in keys])
        # the linearised variance over the calibrated parameters alone: what the draws simulated vary
        sh["v2_calibrated"] = float(d[cal] @ cov[np.ix_(cal, cal)] @ d[cal]) if cal.any() else 0.0
        sh["assumed_terms"] = _assumed_terms(sens, d, cov, sh["v0"])
        shares.append(sh)
    for sh, v in zip(shares, vals):
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.log(v) if metric_claim["metric"].endswith("_h") else np.asarray(v, dtype=float)
        f = f[np.isfinite(f)]
        sh["v2_draws"] = float(np.var(f, ddof=1)) if f.size > 1 else float("nan")
    split = {k: float(np.mean([sh[k] for sh in shares])) for k in SHARES}
    driven: dict[str, float] = {}
    for sh in shares:
        for key, v in sh["assumed_terms"].items():
            driven[key] = driven.get(key, 0.0) + v / len(shares)
    top = sorted(driven.items(), key=lambda kv: -kv[1])[:3]
    return dict(
        id=claim["id"],
        text=claim["text"],
        probability=prob,
        verdict=_verdict(prob),
        **split,
        variances={
            m: {k: sh[k] for k in ("v0", "v1", "v2", "v2_calibrated", "v2_draws")} for m, sh in zip(mods, shares)
        },
        prior_driven_by=[dict(parameter=k, share=float(v)) for k, v in top if v > 0],
        metric=claim["metric"] if claim["op"] != "order" else f"order of {claim.get('of', 't50_h')}",
        readout=readout,
        per_modality=per,
        required=bool(claim.get("required", False)),
    )


def _window_values(claim: dict, comparer: Comparer, modality: str, *, prior: bool = False) -> np.ndarray:
    from .windows._claims import openness_draws, window_metric

    opts = {k: v for k, v in (claim.get("protocol") or {}).items() if not k.startswith("training_")}
    run = comparer.run(modality, opts)
    plist = comparer.window_params(prior=prior)
    w = openness_draws(comparer.times, run.changes[comparer.window_signal()], plist)
    w[~run.ok] = np.nan
    return window_metric(claim, comparer.times, w, plist, run.end_time)


def evaluate_window_claim(claim: dict, comparer: Comparer) -> dict:
    """Probability, verdict and data share of a window claim (:mod:`pkpd.windows._claims`)."""
    mods = claim["modalities"]
    post = {m: _window_values(claim, comparer, m) for m in mods + list(claim.get("than", []))}
    ok = np.ones(comparer.draws, dtype=bool)
    for m in mods:
        with np.errstate(invalid="ignore"):
            if "than" in claim:
                for other in claim["than"]:
                    ok &= (post[m] > post[other]) & np.isfinite(post[m]) & np.isfinite(post[other])
            else:
                ok &= _holds(claim, post[m])
    prob = float(np.mean(ok))
    shares, variances = [], {}
    for m in mods:
        prior = _window_values(claim, comparer, m, prior=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp, lq = np.log(post[m]), np.log(prior)
        v2 = float(np.var(lp[np.isfinite(lp)], ddof=1)) if np.isfinite(lp).sum() > 1 else float("nan")
        v0 = float(np.var(lq[np.isfinite(lq)], ddof=1)) if np.isfinite(lq).sum() > 1 else float("nan")
        shares.append(float(np.clip(1.0 - v2 / v0, 0.0, 1.0)) if v0 > 0 and np.isfinite(v2) else 0.0)
        variances[m] = dict(v0=v0, v2=v2)
    ds = float(np.mean(shares))
    return dict(
        id=claim["id"],
        text=claim["text"],
        probability=prob,
        verdict=_verdict(prob),
        data_share=ds,
        sourced_share=0.0,
        fitted_share=ds,
        assumed_share=0.0,
        residual_share=1.0 - ds,
        variances=variances,
        prior_driven_by=[],
        metric=claim["metric"],
        readout="window",
        per_modality={m: ts.summarise(v) for m, v in post.items()},
        required=bool(claim.get("required", False)),
    )


def window_summary(comparer: Comparer, name: str) -> dict:
    """The window of ``name``'s standard protocol on the draws: median and 90 % interval of the
    time it opens (h after the first dose or session), of its duration (h from the end of the
    treatment to closing), of the total time open (h) and of the peak openness; the fraction of
    draws on which it opens, and the fraction still open at the last time point
    (``p_open_at_horizon``): on those draws the duration is censored at the horizon, a lower bound."""
    from .windows._claims import openness_draws

    run = comparer.run(name, {})
    plist = comparer.window_params()
    w = openness_draws(comparer.times, run.changes[comparer.window_signal()], plist)
    w[~run.ok] = np.nan
    from .windows import window_interval

    opens, closes, total = window_interval(comparer.times, w)
    return dict(
        modality=name,
        candidate=plist[0].candidate,
        opens_h=ts.summarise(opens),
        duration_h=ts.summarise(closes - run.end_time),
        open_h=ts.summarise(total),
        peak_openness=ts.summarise(np.nanmax(w, axis=1)),
        p_opens=float(np.mean(np.isfinite(opens))),
        p_open_at_horizon=float(np.mean(w[:, -1] >= 1.0)),
        horizon_h=float(comparer.times[-1]),
    )


def counterfactual_schedules() -> list[tuple[str, str, dict | None, object]]:
    """(modality, description, protocol options or None, explicit schedule or None)."""
    from .schedule import Schedule

    return [
        ("rtms_10hz", "standard: 30 sessions, 5/week for 6 weeks", {}, None),
        (
            "rtms_10hz",
            "accelerated: the same 30 sessions, 6/day 50 min apart on 5 days",
            dict(per_day=6, days_per_week=5, weeks=1, gap_min=50.0),
            None,
        ),
        ("fluoxetine", "standard: 20 mg daily for 12 weeks", {}, None),
        (
            "fluoxetine",
            "at steady state from day 1 (NONMEM SS=1 on the first dose)",
            None,
            Schedule.repeated(20.0, 24.0, 84, route="oral", ss=True, label="fluoxetine SS=1"),
        ),
        ("ect", "standard: 12 sessions, 3/week", {}, None),
        ("ect", "12 sessions, 2/week", dict(per_week=2), None),
        ("psilocybin", "standard: 25 mg once", {}, None),
        ("psilocybin", "25 mg weekly, 12 doses", dict(doses=12, interval_h=168.0), None),
    ]


@dataclass
class Comparison:
    """The result of :func:`compare`: ``to_json()`` gives the report; ``table()`` the printout;
    ``figure(path)`` the headline time-scale chart and the trajectories beside it.

    ``curves``: per modality and table readout, the median, 5 % and 95 % quantiles over draws of
    the change from baseline (%) on ``times`` (h)."""

    modalities: list
    claims: list
    counterfactuals: list
    decomposition: list
    curves: dict = field(repr=False)
    times: np.ndarray = field(repr=False)
    info: dict = field(default_factory=dict)
    windows: list = field(default_factory=list)  # plasticity window per modality (window_summary)
    seconds: float = 0.0  # wall time (not in the JSON, which is reproducible run to run)
    _comparer: object = field(default=None, init=False, repr=False, compare=False)  # for envelopes()
    _envelopes: dict | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict:
        return dict(
            modalities=self.modalities,
            claims=self.claims,
            counterfactuals=self.counterfactuals,
            decomposition=self.decomposition,
            windows=self.windows,
            info=self.info,
        )

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(_clean(self.to_json()), indent=1, sort_keys=False))

    def table(self) -> str:
        def fmt(v):
            med, lo, hi = v
            if not np.isfinite(med):
                return f"{'-':>20}"
            unit, k = ("d", 24.0) if med >= 48 else ("h", 1.0)
            return f"{med / k:6.3g} [{lo / k:.2g}-{hi / k:.2g}] {unit}".rjust(20)

        lines = [f"{'modality':<17} {'readout':<19} {'onset':>20} {'T50':>20} {'Tmax':>20}"]
        for m in self.modalities:
            for r, v in m["readouts"].items():
                lines.append(f"{m['name']:<17} {r:<19} {fmt(v['onset_h'])} {fmt(v['t50_h'])} {fmt(v['tmax_h'])}")
        lines += [
            "",
            f"{'claim':<44} {'P':>5} {'verdict':<13} {'data share':>10} {'sourced':>8} {'fitted':>7} {'assumed':>8}",
        ]
        for c in self.claims:
            lines.append(
                f"{c['id']:<44} {c['probability']:5.2f} {c['verdict']:<13} {c['data_share']:10.2f} "
                f"{c['sourced_share']:8.2f} {c['fitted_share']:7.2f} {c['assumed_share']:8.2f}"
            )
        lines += ["", f"{'counterfactual (spine density T50)':<75} {'T50':>20}"]
        for c in self.counterfactuals:
            lines.append(f"{c['modality'] + ': ' + c['schedule']:<75} {fmt(c['t50_h'])}")
        lines += [
            "",
            f"{'plasticity window':<20} {'opens':>20} {'closes after end':>20} {'open in total':>20} {'P(opens)':>9} "
            f"{'P(open at horizon)':>19}",
        ]
        for wd in self.windows:
            lines.append(
                f"{wd['modality']:<20} {fmt(wd['opens_h'])} {fmt(wd['duration_h'])} {fmt(wd['open_h'])} {wd['p_opens']:9.2f} "
                f"{wd['p_open_at_horizon']:19.2f}"
            )
        if any(wd["p_open_at_horizon"] > 0 for wd in self.windows):
            lines.append("(a window still open at the horizon closes there: its duration is a lower bound)")
        lines += ["", f"{'schedule vs biology (spine density)':<20} {'T50':>20} {'schedule/PK':>20} {'biology':>20}"]
        for d in self.decomposition:
            lines.append(f"{d['modality']:<20} {fmt(d['t50_h'])} {fmt(d['schedule_pk_h'])} {fmt(d['biology_h'])}")
        return "\n".join(lines)

    def figure(self, path=None):
        """The headline chart (:func:`pkpd.plot.timescale_chart`): T50 and Tmax of every modality
        and readout with 90 % intervals on one log-time axis, with each claim's band and verdict.

        With ``path`` (e.g. ``compare.png``) it is written there, and the trajectories
        (:meth:`trajectory_figure`) beside it as ``compare_trajectories.png`` (see
        :func:`trajectories_path`). Returns the headline figure."""
        from .charts import timescale_chart

        fig = timescale_chart(self)
        if path is not None:
            fig.savefig(path, dpi=110)
            self.trajectory_figure(trajectories_path(path))
        return fig

    def trajectory_figure(self, path=None):
        """Change from baseline of every readout over 90 days, faceted by family
        (:func:`pkpd.plot.trajectory_chart`); session-driven modalities are drawn as envelopes
        (:meth:`envelopes`). Written to ``path`` if given."""
        from .charts import trajectory_chart

        fig = trajectory_chart(self)
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig

    def envelopes(self) -> dict:
        """Session envelopes of each session-driven modality, simulated once on demand.

        ``{modality: {"times": (n,) h, "window_h": W, readout: (lower, upper)}}`` where, for each
        posterior draw, ``upper`` is the running maximum and ``lower`` the running minimum of the
        change from baseline (%) over the trailing ``W`` hours (the longest gap between two
        sessions of the protocol), on a grid that holds every session's start and end and 0.5-16 h
        after it; both are medians over draws. Empty without the simulations' source (a
        :class:`Comparison` built by hand)."""
        if self._envelopes is None:
            self._envelopes = {}
            if self._comparer is not None:
                for name in self.curves:
                    env = _session_envelope(self._comparer, name)
                    if env is not None:
                        self._envelopes[name] = env
        return self._envelopes


#: Points of the session-locked grid of :meth:`Comparison.envelopes` (fixed, so that every
#: modality of a driver family reuses one compiled solver).
ENVELOPE_GRID = 1024
_AFTER_SESSION_H = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def trajectories_path(path) -> Path:
    """Where :meth:`Comparison.figure` writes the trajectories beside ``path``:
    ``compare.png`` -> ``compare_trajectories.png``."""
    p = Path(path)
    return p.with_name(f"{p.stem}_trajectories{p.suffix or '.png'}")


def _curves(changes) -> dict:
    """Median, 5 % and 95 % quantiles over draws of each table readout's change (% of baseline)."""
    import warnings

    out = {}
    for r in TABLE_READOUTS:
        y = 100.0 * np.asarray(changes[r])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all draws failed at a time: NaN
            out[r] = np.nanquantile(y, [0.5, 0.05, 0.95], axis=0)
    return out


def _session_grid(times, sched, n: int = ENVELOPE_GRID) -> np.ndarray:
    """``times`` plus each session's start (just before), end and :data:`_AFTER_SESSION_H` after
    it, filled with log-spaced points to ``n`` points (h, strictly increasing)."""
    start = np.asarray(sched.session_start, dtype=float)
    end = start + np.asarray(sched.session_duration, dtype=float)
    extra = [start - 1e-3, end] + [end + d for d in _AFTER_SESSION_H]
    base = np.unique(np.concatenate([times, *extra]))
    base = base[(base >= 0.0) & (base <= times[-1])]
    if base.size < n:
        cand = np.geomspace(times[1], times[-1], 4 * n)
        cand = cand[~np.isin(cand, base)]
        pick = cand[np.linspace(0, cand.size - 1, n - base.size).astype(int)]
        base = np.unique(np.concatenate([base, pick]))
    return base


def _running(y, t, window_h: float):
    """Running max and min of ``y`` (draws, times) over the trailing ``window_h`` hours."""
    lo_idx = np.searchsorted(t, t - window_h, side="left")
    upper, lower = np.empty_like(y), np.empty_like(y)
    for i, j in enumerate(lo_idx):
        seg = y[:, j : i + 1]
        upper[:, i], lower[:, i] = np.nanmax(seg, axis=1), np.nanmin(seg, axis=1)
    return lower, upper


def _session_envelope(cmp: Comparer, modality: str):
    """One modality's session envelope (see :meth:`Comparison.envelopes`); None without sessions."""
    from .protocols import protocol
    from .simulate import simulate_population, stack

    sched = protocol(modality)
    starts = np.asarray(sched.session_start, dtype=float)
    if starts.size < 2:
        return None
    grid = _session_grid(cmp.times, sched)
    models = cmp.models(modality)
    tr = simulate_population(
        stack(models), sched, grid, throw=False, n_segments=ENVELOPE_SEGMENTS, **solve_options(models[0])
    )
    ok = np.asarray(tr.status) == 0
    window = float(np.max(np.diff(starts)))
    env = {"times": grid, "window_h": window}
    for r in TABLE_READOUTS:
        y = 100.0 * (np.asarray(tr[READOUTS[r]])[ok] - 1.0)
        lower, upper = _running(y, grid, window)
        env[r] = (np.median(lower, axis=0), np.median(upper, axis=0))
    return env


def _clean(x):
    """The report as JSON-safe data, floats to 6 decimals (reproducible run to run)."""
    return json_safe(x, 6)


def _modality_summary(cmp: Comparer, name: str):
    """One modality's standard protocol on the draws: its table row (metrics per readout), its
    curves, and the schedule/PK vs biology split of its spine T50."""
    from .protocols import protocols

    t = cmp.times
    run = cmp.run(name, {})
    readouts = {}
    for r in TABLE_READOUTS:
        met = ts.metrics(t, run.changes[r])
        readouts[r] = {k: ts.summarise(met[k]) for k in METRIC_NAMES}
        readouts[r].update({k: ts.summarise(met[k]) for k in ("peak", *ts.AT_H)})
    met = ts.metrics(t, run.changes["spine_density"])
    sched_half = run.input_half()
    parts = dict(
        modality=name,
        readout="spine_density",
        t50_h=ts.summarise(met["t50_h"]),
        schedule_pk_h=ts.summarise(sched_half),
        biology_h=ts.summarise(met["t50_h"] - sched_half),
    )
    row = dict(name=name, protocol=protocols()[name], draws_ok=int(run.ok.sum()), readouts=readouts)
    return row, _curves(run.changes), parts


def _counterfactual(cmp: Comparer, modality: str, desc: str, opts, sched) -> dict:
    """Spine T50, Tmax and peak of ``modality`` under another schedule."""
    run = cmp.run(modality, opts, schedule=sched, label=desc)
    met = ts.metrics(cmp.times, run.changes["spine_density"])
    return dict(
        modality=modality,
        schedule=desc,
        readout="spine_density",
        t50_h=ts.summarise(met["t50_h"]),
        tmax_h=ts.summarise(met["tmax_h"]),
        peak=ts.summarise(met["peak"]),
    )


def compare(
    modalities=None,
    *,
    draws: int = 32,
    seed: int = 0,
    quick: bool = False,
    calibration=None,
    claims=None,
    counterfactuals=None,
    progress: bool = True,
    uncalibrated: str = "prior",
) -> Comparison:
    """Time scales, claims and counterfactuals (see the module docstring).

    ``modalities``: subset (default all; claims naming other modalities simulate them too).
    ``draws``: posterior draws per modality (``quick``: 16 and a coarser time grid).
    ``calibration``: a :class:`pkpd.calibrate.Calibration` (default: the shipped one).
    ``claims``: a claims TOML path (default ``models/claims.toml``).
    ``counterfactuals``: ``(modality, description, protocol options, schedule)`` tuples
    (default: those of :func:`counterfactual_schedules` whose modality is compared; give either
    options or a Schedule).
    ``uncalibrated``: ``"prior"`` (default) draws every parameter the calibration does not hold
    from its card prior on each posterior draw, so claim probabilities carry what no data has
    taught; ``"card"`` keeps those parameters at their card values (the calibration's own
    conditioning: probabilities then say what holds *if* the cards' values are right).
    """
    from .modalities import modalities as all_modalities

    t_start = time.perf_counter()
    names = list(modalities) if modalities else all_modalities()
    bad = [m for m in names if m not in all_modalities()]
    if bad:
        raise KeyError(f"unknown modalities {bad}; valid: {all_modalities()}")
    claim_list = load_claims(claims)  # validated before any simulation
    if quick:
        draws = min(draws, 16)
    cmp = Comparer(
        draws=draws,
        seed=seed,
        calibration=calibration,
        grid=120 if quick else 240,
        progress=progress,
        uncalibrated=uncalibrated,
    )
    t = cmp.times
    rows, curves, decomposition = [], {}, []
    for name in names:
        row, curves[name], parts = _modality_summary(cmp, name)
        rows.append(row)
        decomposition.append(parts)
    evaluated = [(evaluate_window_claim if c["readout"] == "window" else evaluate_claim)(c, cmp) for c in claim_list]
    windows = [window_summary(cmp, name) for name in names]
    if counterfactuals is None:  # the standard set, for the modalities asked for
        counterfactuals = [c for c in counterfactual_schedules() if c[0] in names]
    cf_results = [_counterfactual(cmp, *cf) for cf in counterfactuals]
    info = dict(
        draws=cmp.draws,
        seed=seed,
        quick=quick,
        horizon_h=float(t[-1]),
        grid_points=int(t.size),
        calibration=dict((k, cmp.cal.info.get(k)) for k in ("method", "created", "objective", "converged", "rows")),
        uncalibrated=uncalibrated,
        note=(
            "parameters the calibration does not hold are drawn from their card priors"
            if uncalibrated == "prior"
            else "parameters the calibration does not hold are at their card values"
        )
        + "; intervals are 90 % over posterior draws",
    )
    result = Comparison(
        modalities=rows,
        claims=evaluated,
        counterfactuals=cf_results,
        decomposition=decomposition,
        windows=windows,
        curves=curves,
        times=t,
        info=info,
        seconds=time.perf_counter() - t_start,
    )
    result._comparer = cmp  # the simulations' source, for the session envelopes of the figure
    return result
