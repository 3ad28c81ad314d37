"""The NUTS metric: a previous run's posterior covariance (:func:`metric_from_posterior`, shipped as
``models/calibration/nuts_metric.json``) and the correction of the start's covariance where that
sample is significantly wider or narrower than sampling noise allows (:func:`corrected_covariance`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._paths import models_dir

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
    p = Path(path) if path is not None else models_dir() / NUTS_METRIC
    with open(p) as f:
        m = json.load(f)
    cov = np.asarray(m.get("covariance"), dtype=float)
    if "keys" not in m or cov.shape != (len(m["keys"]), len(m["keys"])) or not np.all(np.isfinite(cov)):
        raise ValueError(f"{p}: not a NUTS metric (keys, a square finite covariance over them, n_eff)")
    return m


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
