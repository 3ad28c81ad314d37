"""Parameters with a usable model-card prior, sampled from those priors (truncated to each
parameter's domain, :data:`DOMAINS`): :func:`prior_draws` and the sensitivity analysis' samples."""

from __future__ import annotations

import math

import numpy as np

from .. import params
from ..modalities import build
from ..simulate import as_arrays


def prior_draws(
    modality: str, n: int, *, parameters=None, sd_scale: float = 1.0, species: str = "human", seed: int = 0
) -> list:
    """``n`` models with ``parameters`` (default: every parameter with a prior that the model uses
    and that can vary, see :func:`sensitivity`) drawn from the model cards' priors, their spread
    scaled by ``sd_scale`` (truncated to ±3 SD and each parameter's domain). Prior
    draws for ``optimise_schedule(..., draws=...)``; the calibrated posterior's are
    ``pkpd.calibrate.load().models(modality, n)``."""
    model = build(modality, species)[0]
    cands = _candidates(modality, species, model)
    names = list(cands) if parameters is None else list(parameters)
    for p in names:
        if p not in cands:
            raise ValueError(f"parameters: {p!r} has no usable prior in the {modality!r} model; valid: {list(cands)}")
    u = np.random.default_rng(seed).uniform(size=(int(n), len(names)))
    theta = _ppf(cands, names, u, sd_scale=sd_scale)
    return [_set(as_arrays(model), names, row) for row in theta]


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
