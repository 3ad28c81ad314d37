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


# ---- the comparison's charts (pkpd compare --figure) -------------------------------------------

#: Family order of the comparison's charts, with display names.
FAMILIES = {
    "psychedelic": "psychedelics",
    "ketamine": "ketamine",
    "ssri": "SSRIs",
    "stimulation": "rTMS / TBS",
    "seizure": "ECT / MST",
}
READOUT_LABELS = {
    "spine_density": "spine density",
    "bdnf": "BDNF",
    "neurogenesis": "neurogenesis",
    "hippocampal_volume": "hippocampal volume",
    "synaptic_efficacy": "synaptic efficacy",
    "clinical": "clinical (symptom score)",
}
VERDICT_COLOURS = {"supported": "#2ca02c", "uncertain": "#f0a202", "contradicted": "#d62728"}
VERDICT_MARKS = {"supported": "\u2713", "uncertain": "?", "contradicted": "\u2717"}
#: Time marks of the log-time axis (h) and the spans named on it.
TIME_TICKS = {
    0.1: "6 min",
    1: "1 h",
    6: "6 h",
    24: "1 d",
    72: "3 d",
    168: "1 wk",
    720: "1 mo",
    2160: "3 mo",
}
_FEW_TICKS = {1: "1 h", 24: "1 d", 168: "1 wk", 720: "1 mo"}
TIME_SPANS = (("minutes", 0.0, 1.0), ("hours", 1.0, 24.0), ("days", 24.0, 168.0), ("weeks", 168.0, 720.0))
_SUBROW = {"onset_h": 0.3, "t50_h": 0.1, "tmax_h": -0.2}  # offsets of a row's marks


def _report(result) -> dict:
    return result.to_json() if hasattr(result, "to_json") else result


def _family_rows(names):
    """Modalities grouped by family in :data:`FAMILIES` order -> ([(family, [names])], {name: y})."""
    from .modalities import MODALITIES

    groups = [(f, [n for n in names if MODALITIES[n].family == f]) for f in FAMILIES]
    groups = [(f, ns) for f, ns in groups if ns]
    ys, y = {}, 0.0
    for _f, ns in groups:
        y += 0.9  # room for the family's header
        for n in ns:
            ys[n] = y
            y += 1.0
        y += 0.3
    return groups, ys


def _time_axis(ax, lo=0.02, hi=2160.0 * 1.25, spans=True, labels=True, ticks=TIME_TICKS, fontsize=7):
    """A log-time axis (h) marked 6 min ... 3 mo, with the minutes/hours/days/weeks/months spans."""
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xticks(list(ticks), list(ticks.values()) if labels else [])
    ax.minorticks_off()
    ax.grid(axis="x", color="0.8", lw=0.5)
    if not spans:
        return
    bounds = (*TIME_SPANS, ("months", 720.0, hi))
    for i, (name, a, b) in enumerate(bounds):
        ax.axvspan(max(a, lo), b, color="0.93" if i % 2 else "white", zorder=0, lw=0)
        mid = np.sqrt(max(a, lo) * b)
        ax.text(
            mid, 1.005, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7, color="0.35"
        )


def _claim_bands(claims, report):
    """Drawable claims: ``(number, claim, result)``; number is the 1-based position in the report."""
    spec = {c["id"]: c for c in claims}
    out = []
    for i, res in enumerate(report["claims"], start=1):
        c = spec.get(res["id"])
        if c is not None:
            out.append((i, c, res))
    return out


def _band_x(c, lo, hi):
    op, thr = c["op"], c.get("threshold")
    if op == "between":
        return float(thr[0]), float(thr[1])
    if op in ("<", "<="):
        return lo, float(thr)
    return float(thr), hi


def _draw_claims(axes, report, claims, ys, lo, hi):
    """Shade each claim's band in its cells (time metrics) or mark its times (change metrics);
    returns the numbers of claims that cannot be drawn on a cell."""
    from matplotlib.patches import Rectangle

    skipped = []
    for num, c, res in _claim_bands(claims, report):
        colour, mark = VERDICT_COLOURS[res["verdict"]], VERDICT_MARKS[res["verdict"]]
        ax = axes.get(c["readout"])
        drawable = ax is not None and not c.get("protocol") and c["op"] != "order"
        drawable = drawable and c["metric"] in (*_SUBROW, "change_at", "change_ratio")
        if not drawable:
            skipped.append(num)
            continue
        for m in c["modalities"]:
            if m not in ys:
                continue
            y = ys[m]
            if c["metric"] in _SUBROW:
                a, b = _band_x(c, lo, hi)
                off = _SUBROW[c["metric"]]
                ax.add_patch(Rectangle((a, y - off - 0.14), b - a, 0.28, color=colour, alpha=0.3, lw=0, zorder=1))
                # between: just right of the band; one-sided: inside it, at its start
                x_text, ha = (b * 1.05, "left") if c["op"] == "between" else (a * 1.1, "left")
                ax.text(x_text, y - off, f"{num}{mark}", color=colour, fontsize=6.5, va="center", ha=ha, zorder=4)
            else:
                for at in (c["at_h"], c.get("ref_h")):
                    if at is not None:
                        ax.plot([at, at], [y - 0.42, y + 0.42], color=colour, lw=1.6, zorder=3)
                ax.text(
                    float(c["at_h"]) / 1.08, y - 0.32, f"{num}{mark}", color=colour, fontsize=6.5, ha="right", zorder=4
                )
    return sorted(set(skipped))


def timescale_chart(result, claims=None, *, readouts=None):
    """The comparison's headline chart: for every modality (rows, grouped by family) and readout
    (panels), the T50 (time to half the peak change, filled circle) and Tmax (time of the peak,
    open diamond) with their 90 % intervals over posterior draws, on one log-time axis marked
    minutes / hours / days / weeks / months (h), with each claim's band shaded in its verdict's
    colour and labelled with its number in the report (and a tick at the time a change claim
    reads). ``result``: a :class:`pkpd.compare.Comparison` or its ``to_json()`` report (e.g. a
    ``pkpd compare --json`` file read back); ``claims``: the claim definitions (default
    :func:`pkpd.compare.load_claims`). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .compare import TABLE_READOUTS, load_claims

    rep = _report(result)
    names = [m["name"] for m in rep["modalities"]]
    by_name = {m["name"]: m for m in rep["modalities"]}
    readouts = list(readouts or [r for r in TABLE_READOUTS if r in rep["modalities"][0]["readouts"]])
    groups, ys = _family_rows(names)
    ncol = 3 if len(readouts) > 2 else len(readouts)
    nrow = int(np.ceil(len(readouts) / ncol))
    height = max(ys.values()) + 1.0
    fig, axs = plt.subplots(nrow, ncol, figsize=(5.0 * ncol, 0.27 * height * nrow + 1.6), sharey=True, squeeze=False)
    lo, hi = 0.02, 2160.0 * 1.25
    axes = {}
    for k, ax in enumerate(axs.ravel()):
        if k >= len(readouts):
            ax.set_visible(False)
            continue
        r = readouts[k]
        axes[r] = ax
        _time_axis(ax, lo, hi)
        ax.set_title(READOUT_LABELS.get(r, r), fontsize=10, pad=12)
        for n in names:
            v = by_name[n]["readouts"][r]
            y = ys[n]
            _interval(ax, v["t50_h"], y - _SUBROW["t50_h"], lo, hi, "o", "k", 2.2)
            _interval(ax, v["tmax_h"], y - _SUBROW["tmax_h"], lo, hi, "D", "white", 1.0)
            if v["t50_h"][0] is None or not np.isfinite(_num(v["t50_h"][0])):
                ax.text(np.sqrt(lo * hi), y, "no change", fontsize=6.5, color="0.5", ha="center", va="center")
        for f, ns in groups:
            ax.axhline(ys[ns[0]] - 0.75, color="0.6", lw=0.6)
            if k % ncol == 0:
                ax.text(lo * 1.15, ys[ns[0]] - 0.62, FAMILIES[f], fontsize=8, weight="bold", va="center", ha="left")
        if k // ncol == nrow - 1 or k + ncol >= len(readouts):
            ax.set_xlabel("time since the first dose or session (log scale)", fontsize=8)
        ax.tick_params(labelsize=7.5)
    skipped = _draw_claims(axes, rep, claims if claims is not None else load_claims(), ys, lo, hi)
    first = axs.ravel()[0]
    ordered = [n for _f, ns in groups for n in ns]
    first.set_yticks([ys[n] for n in ordered], ordered)
    first.set_ylim(height, -0.1)
    handles = [
        Line2D([], [], color="k", marker="o", lw=2.2, label="T50: half of the peak change (median, 90 % interval)"),
        Line2D([], [], color="k", marker="D", mfc="white", lw=1.0, label="Tmax: time of the peak"),
        *[Patch(color=c, alpha=0.45, label=f"claim {v} ({VERDICT_MARKS[v]})") for v, c in VERDICT_COLOURS.items()],
        Line2D([], [], color="0.3", lw=1.6, label="claim about the change at a time (tick)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    note = f"; not drawn (an order, another schedule or a duration): {', '.join(map(str, skipped))}" if skipped else ""
    fig.suptitle(
        f"How fast each treatment acts: standard protocols on {rep['info'].get('draws')} posterior draws of the joint "
        f"calibration\nbands: claims numbered as in the report (\u2713 supported, ? uncertain, \u2717 contradicted){note}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def _num(x):
    return np.nan if x is None else float(x)


def _interval(ax, v, y, lo, hi, marker, face, lw):
    med, a, b = (_num(x) for x in v)
    if not np.isfinite(med):
        return
    a = a if np.isfinite(a) else med
    b = b if np.isfinite(b) else med
    ax.plot([max(a, lo), min(b, hi)], [y, y], color="k", lw=lw, zorder=3, solid_capstyle="butt")
    ax.plot([min(max(med, lo), hi)], [y], marker=marker, mfc=face, mec="k", ms=4.5, zorder=4, ls="")


def trajectory_chart(result, *, readouts=None):
    """The comparison's trajectories: change from baseline (%) of each readout (rows) over the
    90-day horizon for every modality, one column per family, on the log-time axis of
    :func:`timescale_chart`. Smooth readouts: median and 90 % band over posterior draws.
    Session-driven modalities (device courses): the envelope between the running minimum and
    maximum over the longest gap between sessions, medians over draws
    (:meth:`pkpd.compare.Comparison.envelopes`), instead of every session's spike.
    ``result``: a :class:`pkpd.compare.Comparison`. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    from .compare import TABLE_READOUTS

    names = list(result.curves)
    readouts = list(readouts or TABLE_READOUTS)
    groups, _ = _family_rows(names)
    env = result.envelopes()
    fig, axs = plt.subplots(
        len(readouts), len(groups), figsize=(3.3 * len(groups), 1.9 * len(readouts) + 1.2), squeeze=False
    )
    t = np.asarray(result.times)
    for j, (f, ns) in enumerate(groups):
        for i, r in enumerate(readouts):
            ax = axs[i, j]
            flat = True
            _time_axis(
                ax, 0.2, 2160.0 * 1.25, spans=(i == 0), labels=(i == len(readouts) - 1), ticks=_FEW_TICKS, fontsize=6
            )
            for k, n in enumerate(ns):
                colour = f"C{k}"
                if n in env:
                    lower, upper = env[n][r]
                    te = env[n]["times"]
                    ax.fill_between(te[1:], lower[1:], upper[1:], color=colour, alpha=0.2, lw=0)
                    ax.plot(te[1:], lower[1:], color=colour, lw=1.6, label=n)
                    ax.plot(te[1:], upper[1:], color=colour, lw=0.6)
                    flat &= bool(np.nanmax(np.abs(upper)) < 1e-6)
                else:
                    med, q05, q95 = result.curves[n][r]
                    ax.fill_between(t[1:], q05[1:], q95[1:], color=colour, alpha=0.18, lw=0)
                    ax.plot(t[1:], med[1:], color=colour, lw=1.3, label=n)
                    flat &= bool(np.nanmax(np.abs(q95)) < 1e-6 and np.nanmax(np.abs(q05)) < 1e-6)
            if flat:
                ax.text(
                    0.5, 0.5, "no change", transform=ax.transAxes, ha="center", va="center", color="0.5", fontsize=8
                )
            ax.axhline(0.0, color="0.5", lw=0.5)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(FAMILIES[f], fontsize=10, pad=12)
                ax.legend(fontsize=6.5, frameon=False, loc="upper left")
            if j == 0:
                ax.set_ylabel(f"{READOUT_LABELS.get(r, r)}\n(% change)", fontsize=8)
            if i == len(readouts) - 1:
                ax.set_xlabel("time since the first dose or session", fontsize=8)
    draws = result.info.get("draws")
    fig.suptitle(
        f"Change from baseline under each standard protocol over 90 days ({draws} posterior draws): median and 90 % "
        "band.\nDevice courses (rTMS / TBS, ECT / MST): the level between sessions (thick line) and the session peaks "
        "(band: running min to max over the longest gap between sessions), medians over draws",
        fontsize=9.5,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig
