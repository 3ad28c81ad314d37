"""The validation report: coverage summaries, the JSON, the printed table and the figure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .predictive import LEVELS, coverage

#: Rows listed as the worst misses (largest |standardised residual|).
WORST = 5
#: Per-observation fields of the JSON's ``rows`` and ``loo_rows``.
ROW_FIELDS = (
    "modality",
    "readout",
    "statistic",
    "study_id",
    "paper",
    "fold",
    "time_h",
    "value",
    "unit",
    "sd_obs",
    "median",
    "lo_0.9",
    "lo_0.5",
    "hi_0.5",
    "hi_0.9",
    "mean",
    "sd",
    "pit",
    "z",
    "inside_0.5",
    "inside_0.9",
    "n_draws",
)
FLOAT_FIELDS = ("time_h", "value", "sd_obs", "median", "lo_0.9", "lo_0.5", "hi_0.5", "hi_0.9", "mean", "sd", "pit", "z")


def worst_misses(rows, n: int = WORST) -> list[dict]:
    """The ``n`` rows with the largest ``|z|`` (standardised residual against the predictive mean
    and sd), with the observation, the predictive median and 90 % interval and the PIT."""
    if not len(rows):
        return []
    top = rows.reindex(rows["z"].abs().sort_values(ascending=False).index[:n])
    out = []
    for _, r in top.iterrows():
        out.append(
            dict(
                modality=r["modality"],
                readout=r["readout"],
                statistic=r["statistic"],
                study_id=r["study_id"],
                paper=r["paper"],
                time_h=r["time_h"],
                value=r["value"],
                unit=r["unit"],
                median=r["median"],
                interval_90=[r["lo_0.9"], r["hi_0.9"]],
                pit=r["pit"],
                z=r["z"],
            )
        )
    return out


def coverage_report(rows) -> dict:
    """``{"overall", "by_modality", "by_readout", "by_modality_readout"}`` coverage dicts."""
    return dict(
        overall=coverage(rows),
        by_modality=coverage(rows, "modality"),
        by_readout=coverage(rows, "readout"),
        by_modality_readout=coverage(rows.assign(mr=rows["modality"] + "/" + rows["readout"]), "mr"),
        worst=worst_misses(rows),
    )


def loo_report(rows, folds: list[dict]) -> dict:
    """``coverage_90`` (and ``coverage_50``) over every left-out row, per paper, per modality,
    the worst misses and the folds."""
    papers = []
    for paper, df in rows.groupby("paper", sort=True):
        papers.append(
            dict(
                paper=paper,
                citation=str(df["citation"].iloc[0]),
                modalities=sorted(set(df["modality"])),
                fold=int(df["fold"].iloc[0]),
                n=int(len(df)),
                inside_90=float(df["inside_0.9"].mean()),
                inside_50=float(df["inside_0.5"].mean()),
                max_abs_z=float(df["z"].abs().max()),
            )
        )
    cov = coverage(rows)
    return dict(
        coverage_90=cov["0.9"],
        coverage_50=cov["0.5"],
        n=cov["n"],
        by_modality=coverage(rows, "modality"),
        papers=papers,
        worst=worst_misses(rows),
        folds=folds,
    )


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    return x


@dataclass
class Validation:
    """Result of :func:`pkpd.validate`.

    ``coverage``: in-sample coverage (``coverage["overall"]["0.9"]``, ``["by_modality"][name]``,
    ``["by_readout"]``, ``["by_modality_readout"]``, ``["worst"]``); ``loo``: leave-one-paper-out
    (``loo["coverage_90"]``, ``["papers"]``, ``["worst"]``, ``["folds"]``; empty without LOO);
    ``excluded``: rows the likelihood does not use, with the reason; ``rows`` / ``loo_rows``: one
    row per observation with its predictive median, intervals, PIT and standardised residual."""

    coverage: dict
    loo: dict
    excluded: dict
    rows: object = field(repr=False)
    loo_rows: object = field(repr=False)
    info: dict = field(default_factory=dict)
    setup: object = field(default=None, repr=False)

    def to_json(self) -> dict:
        """The report; ``rows`` and ``loo_rows`` hold every observation's predictive summary."""

        def records(df):
            return [] if df is None else df[[c for c in ROW_FIELDS if c in df.columns]].to_dict(orient="records")

        return _clean(
            dict(
                coverage=self.coverage,
                loo=self.loo,
                excluded=self.excluded,
                info=self.info,
                rows=records(self.rows),
                loo_rows=records(self.loo_rows),
            )
        )

    @classmethod
    def from_json(cls, d: dict) -> "Validation":
        """A report read back from :meth:`to_json` (e.g. to redraw :meth:`figure`)."""
        import pandas as pd

        for k in ("coverage", "loo", "excluded", "rows"):
            if k not in d:
                raise ValueError(f"not a pkpd validate report: missing {k!r}")

        def frame(recs):
            return pd.DataFrame(recs).astype({c: float for c in FLOAT_FIELDS if recs and c in recs[0]})

        return cls(
            coverage=d["coverage"],
            loo=d["loo"],
            excluded=d["excluded"],
            rows=frame(d["rows"]),
            loo_rows=frame(d.get("loo_rows", [])) if d.get("loo_rows") else None,
            info=d.get("info", {}),
        )

    def save(self, path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    def table(self) -> str:
        """Coverage per modality and readout (in-sample and leave-one-paper-out), the worst misses
        and the excluded rows, as text."""
        loo_by = self.loo.get("by_modality", {})

        def cell(d):
            return " ".join(f"{d.get(f'{lv:g}', np.nan):5.2f}" for lv in LEVELS)

        head = f"{'':<28} {'n':>4} {'50 %':>5} {'90 %':>5} | {'LOO n':>5} {'50 %':>5} {'90 %':>5}"
        lines = ["posterior predictive coverage (fraction of rows inside the central interval)", head]
        empty = {"n": 0}
        ov, lo = self.coverage["overall"], self.loo
        lines.append(
            f"{'overall':<28} {ov['n']:>4} {cell(ov)} | {lo.get('n', 0):>5} "
            f"{lo.get('coverage_50', np.nan):5.2f} {lo.get('coverage_90', np.nan):5.2f}"
        )
        for m, d in self.coverage["by_modality"].items():
            dl = loo_by.get(m, empty)
            lines.append(f"{m:<28} {d['n']:>4} {cell(d)} | {dl['n']:>5} {cell(dl)}")
        lines += ["", f"{'readout':<28} {'n':>4} {'50 %':>5} {'90 %':>5}"]
        for r, d in self.coverage["by_readout"].items():
            lines.append(f"{r:<28} {d['n']:>4} {cell(d)}")
        for title, worst in (("in-sample", self.coverage["worst"]), ("leave-one-paper-out", self.loo.get("worst", []))):
            if not worst:
                continue
            lines += ["", f"worst misses, {title} (z = (observed - predictive mean) / predictive sd)"]
            for w in worst:
                lo90, hi90 = w["interval_90"]
                lines.append(
                    f"  {w['modality'] + '/' + w['readout']:<32} {w['study_id']:<28} observed {w['value']:9.4g} "
                    f"predicted {w['median']:9.4g} [{lo90:.3g}, {hi90:.3g}] {w['unit']:<6} z {w['z']:+6.2f}"
                )
        lines += ["", f"rows not in the likelihood: {self.excluded['n']}"]
        for reason, n in self.excluded["by_reason"].items():
            lines.append(f"  {n:>3}  {reason}")
        return "\n".join(lines)

    def figure(self, path=None):
        """Observed against predicted (median, 90 % interval) for every row, one panel per readout:
        in-sample (filled) and leave-one-paper-out (open, offset); log axes for concentrations."""
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        readouts = sorted(set(self.rows["readout"]))
        ncol = min(3, len(readouts))
        nrow = -(-len(readouts) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 4.2 * nrow), squeeze=False)
        mods = sorted(set(self.rows["modality"]))
        cmap = plt.get_cmap("tab20")
        colour = {m: cmap((2 * i) % 20 + (2 * i) // 20) for i, m in enumerate(mods)}  # dark shades first
        loo = self.loo_rows
        for ax, r in zip(axes.flat, readouts):
            for df, filled, shift in ((self.rows, True, 0.985), (loo, False, 1.015)):
                if df is None or not len(df):
                    continue
                d = df[df["readout"] == r]
                span = np.ptp(self.rows.loc[self.rows["readout"] == r, "value"].to_numpy(float)) or 1.0
                for m, g in d.groupby("modality"):
                    x = g["value"].to_numpy(float)
                    # in-sample and left-out markers side by side: a ratio on log axes, a shift on linear ones
                    x = x * shift if r == "concentration" else x + (shift - 1.0) * span
                    y = g["median"].to_numpy(float)
                    err = np.vstack([y - g["lo_0.9"].to_numpy(float), g["hi_0.9"].to_numpy(float) - y])
                    ax.errorbar(
                        x,
                        y,
                        yerr=np.maximum(err, 0.0),
                        fmt="o",
                        ms=4,
                        color=colour[m],
                        mfc=colour[m] if filled else "white",
                        elinewidth=0.8,
                        capsize=2,
                        alpha=0.9 if filled else 0.7,
                        label=m if filled else None,
                    )
            if r == "concentration":
                ax.set_xscale("log")
                ax.set_yscale("log")
            lims = np.array([*ax.get_xlim(), *ax.get_ylim()])
            lo, hi = lims.min(), lims.max()
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.7, ls="--")
            ax.set_title(r.replace("_", " "))
            ax.set_xlabel("observed (row's unit)")
            ax.set_ylabel("predicted: median, 90 % interval")
            handles, _ = ax.get_legend_handles_labels()
            handles += [
                Line2D([], [], marker="o", ls="", color="k", label="in-sample"),
                Line2D([], [], marker="o", ls="", color="k", mfc="white", label="left out (its paper)"),
            ]
            ax.legend(handles=handles, fontsize=6, frameon=False, loc="upper left")
            ax.grid(alpha=0.3, lw=0.4)
        for ax in list(axes.flat)[len(readouts) :]:
            ax.set_visible(False)
        ov = self.coverage["overall"]
        title = f"Posterior predictive check\nin-sample 90 % coverage {ov['0.9']:.2f} (n = {ov['n']})"
        if self.loo.get("n"):
            title += f", leave-one-paper-out {self.loo['coverage_90']:.2f} (n = {self.loo['n']})"
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig
