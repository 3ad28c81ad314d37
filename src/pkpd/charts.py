"""Figures of a comparison (:func:`pkpd.compare`): the headline T50/Tmax chart and the
trajectories faceted by family. They draw a comparison report (a :class:`pkpd.compare.Comparison`
or its JSON) and depend on nothing above the claims and the modality registry, so that
``Comparison.figure`` and :mod:`pkpd.plot` can both use them."""

from __future__ import annotations

import numpy as np

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

    from .claims import TABLE_READOUTS, load_claims

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

    from .claims import TABLE_READOUTS

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
