"""Plots and diagnostic tables for trajectories and fits (matplotlib; every axis labelled with units).

- :func:`plot_trajectory`: readouts of one simulation (or the median and 50 %/90 % bands of a
  population) against time.
- :func:`plot_fit`: each data row's published value with its standard deviation against the MAP
  prediction, and the standardised residuals.
- :func:`plot_bands`: a modality's readout on posterior draws of the joint calibration (median,
  50 % and 90 % bands, in % change from baseline) with the curated published values.
- :func:`plot_prior_posterior`: prior and posterior draws per parameter from NUTS InferenceData.
- :func:`diagnostics`: R-hat and effective sample sizes per parameter (arviz).
"""

from __future__ import annotations

import numpy as np

_TIME = {"h": 1.0, "d": 24.0, "week": 168.0}


def _axes(ax, n=1, figsize=None):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, np.atleast_1d(ax)
    fig, axes = plt.subplots(1, n, figsize=figsize or (5.0 * n, 3.6), squeeze=False)
    return fig, axes[0]


def plot_trajectory(traj, readouts=("spine_density",), *, time_unit: str = "d", ax=None, label=None, log_time=False):
    """Readouts of a :class:`pkpd.Trajectory` against time (median and 50 %/90 % bands for a population)."""
    if time_unit not in _TIME:
        raise ValueError(f"time_unit={time_unit!r} is not known; valid: {list(_TIME)}")
    if isinstance(readouts, str):
        readouts = (readouts,)
    for r in readouts:
        traj[r]  # KeyError naming an unknown readout
    fig, axes = _axes(ax)
    a = axes[0]
    t = np.asarray(traj.times) / _TIME[time_unit]
    for r in readouts:
        y = np.asarray(traj[r])
        name = f"{label}: {r}" if label else r
        if y.ndim == 2:
            q = np.nanquantile(y, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
            a.fill_between(t, q[0], q[4], alpha=0.15)
            a.fill_between(t, q[1], q[3], alpha=0.3)
            a.plot(t, q[2], label=f"{name} (median, 50 % and 90 % bands)")
        else:
            a.plot(t, y, label=name)
    if log_time:
        a.set_xscale("log")
    a.set_xlabel(f"time since first dose or session ({time_unit})")
    units = {traj.units.get(r, "") for r in readouts}
    unit = units.pop() if len(units) == 1 else ""
    a.set_ylabel((readouts[0] if len(readouts) == 1 else "readout") + (f" ({unit})" if unit else ""))
    a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bands(
    modality: str,
    readout: str = "spine_density",
    *,
    calibration=None,
    draws: int = 64,
    days: float = 90.0,
    species: str = "human",
    protocol_options=None,
    data: bool = True,
    ax=None,
    log_time: bool = True,
):
    """``readout`` of ``modality`` under its standard protocol on ``draws`` posterior draws of the
    calibration (default: the shipped one): median, 50 % and 90 % bands of the % change from
    baseline, and the curated ``percent_change`` rows of this modality and readout (mean +- se;
    rows with protocol options are shown hollow, since they ran another schedule; rows without a
    time are end-of-course values, drawn one day after the last dose or session as the fit
    evaluates them)."""
    from . import calibrate
    from .compare import solve_options
    from .data import datasets
    from .protocols import protocol
    from .simulate import simulate_population, stack
    from .timescales import time_grid

    cal = calibration if calibration is not None else calibrate.load()
    models = cal.models(modality, draws, species=species, seed=0)
    t = time_grid(24.0 * days, 200)
    sched = protocol(modality, species=species, **(protocol_options or {}))
    tr = simulate_population(stack(models), sched, t, throw=False, **solve_options(models[0]))
    y = 100.0 * (np.asarray(tr[readout]) - 1.0)
    y = y[np.asarray(tr.status) == 0]
    fig, axes = _axes(ax, figsize=(6.5, 4))
    a = axes[0]
    td = t / 24.0
    q = np.nanquantile(y, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    a.fill_between(td[1:], q[0][1:], q[4][1:], alpha=0.15, color="C0", label="90 % band")
    a.fill_between(td[1:], q[1][1:], q[3][1:], alpha=0.3, color="C0", label="50 % band")
    a.plot(td[1:], q[2][1:], color="C0", label=f"median of {y.shape[0]} posterior draws")
    if data:
        df = datasets(modality, readout=readout, species=species)
        df = df[df["statistic"] == "percent_change"].copy()
        # rows without a time are end-of-course values: one day after the last dose or session
        last = max([float(np.max(x)) for x in (sched.dose_time, sched.session_start) if len(x)] or [0.0])
        df["time_h"] = df["time_h"].where(np.isfinite(df["time_h"]), last + 24.0)
        for standard, marker in ((True, "o"), (False, "o")):
            rows = df[(df["protocol"].astype(str) == modality) == standard]
            if len(rows):
                a.errorbar(
                    rows["time_h"] / 24.0,
                    rows["value"],
                    yerr=rows["se"].fillna(0.0),
                    fmt=marker,
                    color="k",
                    mfc="k" if standard else "none",
                    capsize=2,
                    label="published (standard protocol)" if standard else "published (other schedule)",
                )
    if log_time:
        a.set_xscale("log")
    a.set_xlabel("time since the first dose or session (days)")
    a.set_ylabel(f"{readout.replace('_', ' ')}: change from baseline (%)")
    a.set_title(f"{modality} ({species}), standard protocol")
    a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_fit(fit, *, ax=None):
    """Published values (points, +-1 sd of the likelihood) against MAP predictions, and residuals."""
    df = fit.residuals()
    fig, axes = _axes(ax, n=2, figsize=(11, 4))
    a, b = axes[0], axes[1]
    for readout, g in df.groupby("readout"):
        a.errorbar(g["prediction"], g["value"], yerr=g["sd"], fmt="o", label=readout, capsize=2)
    lo = float(np.nanmin([df["value"].min(), df["prediction"].min()]))
    hi = float(np.nanmax([df["value"].max(), df["prediction"].max()]))
    a.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
    a.set_xlabel("model prediction (row's unit)")
    a.set_ylabel("published value (row's unit)")
    a.set_title(f"{fit.modality}: MAP fit to {len(df)} published values")
    a.legend(fontsize=8)
    b.bar(np.arange(len(df)), df["z_residual"])
    b.axhline(0, color="k", lw=1)
    b.set_xticks(np.arange(len(df)))
    b.set_xticklabels(df["study_id"], rotation=90, fontsize=7)
    b.set_ylabel("standardised residual (value - prediction) / sd")
    b.set_title("residuals")
    fig.tight_layout()
    return fig


def _params(idata):
    import json

    names = json.loads(idata.posterior.attrs.get("parameters", "[]"))
    return names or [v for v in idata.posterior.data_vars if not v.startswith("z_") and v != "prediction"]


def plot_prior_posterior(idata, parameters=None):
    """Histograms of prior and posterior draws per fitted parameter (natural units)."""
    names = list(parameters or _params(idata))
    fig, axes = _axes(None, n=len(names), figsize=(3.6 * len(names), 3.2))
    for a, n in zip(axes, names):
        post = np.asarray(idata.posterior[n]).ravel()
        prior = np.asarray(idata.prior[n]).ravel() if hasattr(idata, "prior") and n in idata.prior else None
        bins = (
            np.geomspace(
                max(min(post.min(), prior.min() if prior is not None else post.min()), 1e-300),
                max(post.max(), prior.max() if prior is not None else post.max()),
                30,
            )
            if post.min() > 0 and (prior is None or prior.min() > 0)
            else 30
        )
        if prior is not None:
            a.hist(prior, bins=bins, density=True, alpha=0.4, label="prior")
        a.hist(post, bins=bins, density=True, alpha=0.6, label="posterior")
        if isinstance(bins, np.ndarray):
            a.set_xscale("log")
        a.set_xlabel(n)
        a.set_ylabel("density")
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def diagnostics(idata, parameters=None):
    """R-hat, bulk and tail ESS per parameter (arviz ``summary``); needs >= 2 chains for R-hat."""
    import arviz as az

    return az.summary(idata, var_names=list(parameters or _params(idata)))


# the comparison's charts (pkpd compare --figure) live below compare, in pkpd.charts
from .charts import timescale_chart as timescale_chart, trajectory_chart as trajectory_chart  # noqa: E402
