"""Diagnostics of a FOCE-I fit: PRED, IPRED, residuals (RES, IWRES, CWRES), goodness-of-fit
plots, and simulation-based visual predictive checks (VPC and prediction-corrected pcVPC).

- PRED: the prediction at eta = 0; IPRED: at the subject's EBE.
- IWRES = (DV - IPRED) / sqrt(R(EBE)).
- CWRES (Hooker, Staatz and Karlsson 2007, as NONMEM computes them for FOCE-I): per subject, the
  model linearised in eta around the EBE, ``E[y] = f(EBE) - G EBE``, ``Cov[y] = G OMEGA G' +
  diag(R(EBE))``; CWRES = ``Cov^-1/2 (y - E[y])`` with the symmetric inverse square root
  (on pheno these equal the CWRES of NONMEM's table ``pheno.tab`` to 1e-4).
- VPC: ``n`` replicates of the dataset simulated from the estimates (new etas from OMEGA,
  residuals from SIGMA, the error model as written); observations binned by time (equal-count
  bins); per bin the 5th, 50th and 95th percentiles of the observations against the 90 %
  intervals (over replicates) of the same percentiles of the simulations. pcVPC (Bergstrand et
  al. 2011): observations and simulations multiplied by ``median(PRED in bin) / PRED``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .likelihood import _first_order


def _subject_diagnostics(model, theta, omega_m, sigma_m, eta, subj, interaction=True):
    f, r, res, m, g_f, _ = _first_order(model, theta, sigma_m, eta, subj, interaction)
    pred, _ = model.subject_predictions(theta, sigma_m, jnp.zeros_like(eta), subj)
    shape = f.shape
    g = g_f.reshape((-1, eta.shape[0]))
    mv = m.reshape(-1)
    cov = g @ omega_m @ g.T + jnp.diag(r.reshape(-1))
    cov = jnp.where(mv[:, None] & mv[None, :], cov, jnp.eye(mv.size))
    e = jnp.where(mv, subj["obs_dv"].reshape(-1) - f.reshape(-1) + g @ eta, 0.0)
    w, v = jnp.linalg.eigh(cov)
    cw = v @ ((v.T @ e) / jnp.sqrt(w))  # symmetric inverse square root, as NONMEM
    return pred, f, res / jnp.sqrt(r), cw.reshape(shape)


def residuals(result):
    """A DataFrame per observation: ID, TIME, DV, PRED, IPRED, RES, IWRES, CWRES."""
    model = result.model
    pr = model.params
    key = ("diagnostics", result.interaction, tuple(sorted(model._flags.items())))
    if key not in model._cache:
        model._cache[key] = jax.jit(
            lambda th, om, sg, eta, arrays: jax.vmap(
                lambda e, subj: _subject_diagnostics(model, th, om, sg, e, subj, result.interaction)
            )(eta, arrays)
        )
    om_m, sg_m = pr.omega.matrix(result._omega), pr.sigma.matrix(result._sigma)
    pred, ipred, iwres, cwres = (
        np.asarray(a)
        for a in model._cache[key](jnp.asarray(result._theta), om_m, sg_m, jnp.asarray(result.eta), model._arrays)
    )
    rec = model.records
    mask = rec.obs_mask & rec.part_mask[:, :, None]
    df = rec.observations()
    df["PRED"], df["IPRED"] = pred[mask], ipred[mask]
    df["RES"] = df["DV"] - df["PRED"]
    df["IWRES"], df["CWRES"] = iwres[mask], cwres[mask]
    return df


def simulate(result, n: int, *, seed: int = 0):
    """``n`` replicates of the dataset's DV simulated from the estimates: array (n, S, P, J)."""
    model = result.model
    pr = model.params
    key = ("simulate", tuple(sorted(model._flags.items())))
    if key not in model._cache:

        def one(k, th, om_l, sg_l, arrays):
            s_, p_, j_ = arrays["obs_time"].shape
            k1, k2 = jax.random.split(k)
            eta = jax.random.normal(k1, (s_, om_l.shape[0])) @ om_l.T
            eps = jax.random.normal(k2, (s_, p_, j_, sg_l.shape[0])) @ sg_l.T
            return jax.vmap(
                lambda e, ep, subj: jax.vmap(lambda ep_p, part: model.part_simulate(th, e, ep_p, part))(
                    ep, {k: v for k, v in subj.items() if k != "part_mask"}
                )
            )(eta, eps, arrays)

        model._cache[key] = jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))
    om_l = jnp.linalg.cholesky(pr.omega.matrix(result._omega) + 1e-300 * jnp.eye(pr.omega.dim))
    sg_l = jnp.linalg.cholesky(pr.sigma.matrix(result._sigma))
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return np.asarray(model._cache[key](keys, jnp.asarray(result._theta), om_l, sg_l, model._arrays))


def _bins(t, n_bins):
    edges = np.unique(np.quantile(t, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    return edges, idx


def vpc_table(result, n: int = 200, *, n_bins: int = 8, prediction_corrected: bool = False, seed: int = 0):
    """The VPC numbers as a DataFrame per bin: time (median), observed 5/50/95th percentiles and
    the 5th-95th percentile interval over replicates of each simulated percentile."""
    import pandas as pd

    rec = result.model.records
    mask = rec.obs_mask & rec.part_mask[:, :, None]
    tab = residuals(result)
    sims = simulate(result, n, seed=seed)[:, mask]  # (n, N)
    obs = tab["DV"].to_numpy()
    t = tab["TIME"].to_numpy()
    _, idx = _bins(t, n_bins)
    if prediction_corrected:
        pred = tab["PRED"].to_numpy()
        med = np.array([np.median(pred[idx == b]) for b in range(idx.max() + 1)])
        corr = med[idx] / pred
        obs, sims = obs * corr, sims * corr[None, :]
    rows = []
    for b in range(idx.max() + 1):
        sel = idx == b
        row = dict(bin=b, time=float(np.median(t[sel])), n=int(sel.sum()))
        for q in (5, 50, 95):
            row[f"obs_p{q}"] = float(np.percentile(obs[sel], q))
            sim_q = np.percentile(sims[:, sel], q, axis=1)
            row[f"sim_p{q}_lo"], row[f"sim_p{q}_mid"], row[f"sim_p{q}_hi"] = np.percentile(sim_q, [5, 50, 95])
        rows.append(row)
    return pd.DataFrame(rows)


def vpc(result, n: int = 200, *, n_bins: int = 8, prediction_corrected: bool = False, seed: int = 0, ax=None):
    """A VPC (or pcVPC) figure: observations, observed percentiles (lines) and the 90 % intervals
    of the simulated percentiles (bands). Returns the matplotlib Figure (the numbers:
    :func:`vpc_table`)."""
    import matplotlib.pyplot as plt

    tab = vpc_table(result, n, n_bins=n_bins, prediction_corrected=prediction_corrected, seed=seed)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    res = residuals(result)
    y = res["DV"].to_numpy()
    if prediction_corrected:
        _, idx = _bins(res["TIME"].to_numpy(), n_bins)
        pred = res["PRED"].to_numpy()
        med = np.array([np.median(pred[idx == b]) for b in range(idx.max() + 1)])
        y = y * med[idx] / pred
    ax.plot(res["TIME"], y, ".", color="0.6", ms=3, label="observations")
    for q, c in ((5, "tab:blue"), (50, "tab:red"), (95, "tab:blue")):
        ax.fill_between(tab["time"], tab[f"sim_p{q}_lo"], tab[f"sim_p{q}_hi"], color=c, alpha=0.2)
        ax.plot(tab["time"], tab[f"obs_p{q}"], color=c, lw=1.5, label=f"observed {q}th percentile")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("prediction-corrected DV" if prediction_corrected else "DV")
    ax.set_title(f"{'pcVPC' if prediction_corrected else 'VPC'} ({n} replicates; bands: 90 % intervals)")
    ax.legend(fontsize=7)
    return fig


def gof(result):
    """Goodness-of-fit figure: DV vs PRED, DV vs IPRED (with the identity line), CWRES vs TIME and
    vs PRED (with zero and +-2 lines). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    tab = residuals(result)
    fig, axes = plt.subplots(2, 2, figsize=(8, 7))
    for ax, x in zip(axes[0], ("PRED", "IPRED")):
        ax.plot(tab[x], tab["DV"], ".", ms=4)
        lim = [0, float(max(tab[x].max(), tab["DV"].max())) * 1.05]
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.set_xlabel(x)
        ax.set_ylabel("DV")
    for ax, x in zip(axes[1], ("TIME", "PRED")):
        ax.plot(tab[x], tab["CWRES"], ".", ms=4)
        for h in (0, -2, 2):
            ax.axhline(h, color="k", lw=0.8 if h == 0 else 0.5, ls="-" if h == 0 else "--")
        ax.set_xlabel(x + (" (h)" if x == "TIME" else ""))
        ax.set_ylabel("CWRES")
    fig.tight_layout()
    return fig
