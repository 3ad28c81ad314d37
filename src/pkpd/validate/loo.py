"""PSIS-LOO of a calibration on the data library, with Pareto-k diagnostics, and a check of the
Laplace draws themselves.

The unit left out is a **study arm** (the rows of one arm of one paper, which share one study
effect): ``log p(y_s | z_d)`` with the arm's effect ``b_s ~ Normal(0, tau)`` integrated out on
Gauss-Hermite nodes centred on its conditional posterior (:func:`study_log_likelihood`), so the
posterior draws are the parameters ``z_d`` alone. ``arviz.loo`` on that matrix gives
``elpd_loo``, its ``se``, ``p_loo`` and the Pareto k per arm. A row-level LOO is reported beside
it: ``log Normal(y_i | pred_i(z_d) exp(b_ds), sd_i)`` with ``b_ds`` drawn from its conditional
posterior given the draw and all of the arm's rows (:func:`pointwise`); rows of an arm with few
rows are then very influential and their Pareto k large, which is why the arm is the unit.

The stored draws ``z_d`` come from the Laplace approximation, not from the posterior;
:func:`laplace_log_weights` gives the importance ratios ``p(z_d | y) / q(z_d)`` (``p``: prior
times the study-integrated likelihood, ``q``: the stored Laplace normal), ``laplace_khat`` is
their Pareto k and ``elpd_loo_is`` the study-level LOO corrected by them (PSIS on
``log w_d - log p(y_s | z_d)``). Where ``laplace_khat`` > 0.7 the Laplace draws are far from the
posterior and neither LOO is reliable.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .predictive import study_effect_conditional

#: Gauss-Hermite nodes integrating each study effect in the marginal likelihood.
NODES = 24


def _normal_logpdf(y, mu, sd):
    return -0.5 * ((y - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2.0 * np.pi)


def pointwise(setup, draws_z=None, *, seed: int = 0, bar=None) -> dict:
    """``log_lik`` (draws, rows), the draws used, their predictions and the study effects' conditional
    ``centre``/``scale`` (draws, studies); draws with a failed solve for any row are dropped
    (``dropped`` counts them)."""
    Z = np.asarray(setup.draws_z if draws_z is None else draws_z)
    pred = setup.predictions(Z, bar=bar)
    ok = np.all(np.isfinite(pred), axis=1)
    Z, pred = Z[ok], pred[ok]
    centre, scale = study_effect_conditional(pred, setup.value, setup.sd, setup.study, setup.jp.S, setup.tau)
    rng = np.random.default_rng(seed)
    b = centre + scale * rng.standard_normal(centre.shape)
    mu = pred * np.exp(b[:, setup.study])
    ll = _normal_logpdf(setup.value[None, :], mu, setup.sd[None, :])
    return dict(log_lik=ll, draws_z=Z, pred=pred, centre=centre, scale=scale, dropped=int((~ok).sum()))


def marginal_log_likelihood(setup, pred, centre, scale) -> np.ndarray:
    """``log p(y | z_d)`` per draw with every study effect integrated out (the sum of
    :func:`study_log_likelihood` over studies)."""
    return study_log_likelihood(setup, pred, centre, scale).sum(axis=1)


def study_log_likelihood(setup, pred, centre, scale) -> np.ndarray:
    """``log p(y_s | z_d)`` (draws, studies): each study's rows with its effect integrated out,
    Gauss-Hermite on the effect's conditional normal (importance form, exact for a Gaussian
    integrand)."""
    x, w = np.polynomial.hermite_e.hermegauss(NODES)
    logw = np.log(w / np.sqrt(2.0 * np.pi))
    out = np.zeros((pred.shape[0], setup.jp.S))
    for s in range(setup.jp.S):
        rows = setup.study == s
        b = centre[:, s, None] + scale[:, s, None] * x[None, :]  # (draws, nodes)
        mu = pred[:, rows, None] * np.exp(b[:, None, :])
        ll = _normal_logpdf(setup.value[rows][None, :, None], mu, setup.sd[rows][None, :, None]).sum(axis=1)
        prior = _normal_logpdf(b, 0.0, setup.tau)
        proposal = _normal_logpdf(b, centre[:, s, None], scale[:, s, None])
        out[:, s] = logsumexp(ll + prior - proposal + logw[None, :], axis=1)
    return out


def laplace_log_weights(setup, draws_z, pred, centre, scale) -> np.ndarray | None:
    """``log p(z_d | y) - log q(z_d)`` (up to a constant) for the Laplace draws, or ``None`` when the
    calibration stores no Laplace covariance or some draws come from slice grids."""
    cov = setup.cal.info.get("laplace_cov_z")
    if cov is None or setup.grid:
        return None
    cols = [setup.cal.keys.index(k) for k in setup.jp.keys]
    cov = np.asarray(cov)[np.ix_(cols, cols)]
    jp = setup.jp
    mu, sig = jp.mu[: jp.K], jp.sigma[: jp.K]
    prior = -0.5 * np.sum(((draws_z - mu) / sig) ** 2, axis=1)
    dz = draws_z - setup.map_z
    q = -0.5 * np.einsum("di,ij,dj->d", dz, np.linalg.inv(cov), dz)
    return marginal_log_likelihood(setup, pred, centre, scale) + prior - q


def _psis_loo_weighted(log_lik, log_w):
    """Importance-corrected PSIS-LOO: per row, PSIS of ``log_w - log_lik``; returns the pointwise
    elpd and Pareto k."""
    import arviz as az

    lr = (log_w[:, None] - log_lik).T  # arviz smooths along the last axis: (rows, draws)
    lr = lr - lr.max(axis=1, keepdims=True)
    smoothed, k = az.psislw(lr, reff=1.0)
    smoothed = np.asarray(smoothed)
    elpd = logsumexp(smoothed + log_lik.T, axis=1) - logsumexp(smoothed, axis=1)
    return elpd, np.asarray(k)


def psis_loo(setup, draws_z=None, *, seed: int = 0, bar=None) -> dict:
    """PSIS-LOO of the calibration behind ``setup`` (see the module docstring), leaving out one
    study arm at a time (its rows together, its effect integrated out): ``elpd_loo``, ``se``,
    ``p_loo``, ``pareto_k`` and ``pointwise_elpd`` (per study arm, ``studies``) and
    ``pareto_k_max`` from ``arviz.loo``; the row-level LOO given the study effects
    (``rows_elpd_loo``, ``rows_p_loo``, ``rows_pareto_k_max``); ``laplace_khat`` and
    ``elpd_loo_is`` (the study-level LOO corrected by the Laplace importance ratios), the number
    of draws used and dropped, and ``log_lik`` (draws, study arms) for ``arviz.compare``."""
    import arviz as az

    pw = pointwise(setup, draws_z, seed=seed, bar=bar)
    ll = study_log_likelihood(setup, pw["pred"], pw["centre"], pw["scale"])
    has_rows = np.bincount(setup.study, minlength=setup.jp.S) > 0
    ll = ll[:, has_rows]
    idata = az.from_dict(posterior={"z": pw["draws_z"][None]}, log_likelihood={"y": ll[None]})
    res = az.loo(idata, pointwise=True)
    rows = az.loo(
        az.from_dict(posterior={"z": pw["draws_z"][None]}, log_likelihood={"y": pw["log_lik"][None]}), pointwise=True
    )
    k = np.asarray(res.pareto_k)
    out = dict(
        unit="study arm",
        elpd_loo=float(res.elpd_loo),
        se=float(res.se),
        p_loo=float(res.p_loo),
        pareto_k=k,
        pointwise_elpd=np.asarray(res.loo_i),
        pareto_k_max=float(np.max(k)),
        pareto_k_above_0_7=int(np.sum(k > 0.7)),
        studies=[s for s, keep in zip(setup.jp.studies, has_rows, strict=True) if keep],
        rows_elpd_loo=float(rows.elpd_loo),
        rows_p_loo=float(rows.p_loo),
        rows_pareto_k_max=float(np.max(np.asarray(rows.pareto_k))),
        draws=int(ll.shape[0]),
        dropped=pw["dropped"],
        log_lik=ll,
        idata=idata,
    )
    log_w = laplace_log_weights(setup, pw["draws_z"], pw["pred"], pw["centre"], pw["scale"])
    if log_w is not None:
        _, khat = az.psislw(log_w - log_w.max(), reff=1.0)
        elpd_i, _ = _psis_loo_weighted(ll, log_w)
        out.update(laplace_khat=float(khat), elpd_loo_is=float(np.sum(elpd_i)))
    return out


__all__ = ["marginal_log_likelihood", "pointwise", "psis_loo"]
