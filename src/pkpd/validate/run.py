"""The checks themselves: in-sample posterior predictive coverage and leave-one-paper-out."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .predictive import Predictive, study_effect_conditional
from .refit import laplace_draws, refit

#: Columns of the data library carried into the row tables.
ROW_COLUMNS = ("modality", "study_id", "species", "readout", "statistic", "time_h", "value", "unit", "se", "citation")


def paper_of(rows):
    """The paper of each row: its DOI, or its citation where the DOI is blank."""
    doi = rows["doi"].fillna("").astype(str).str.strip()
    return doi.where(doi != "", rows["citation"].astype(str))


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"[pkpd validate] {desc}", file=sys.stderr, leave=True, dynamic_ncols=True)


class Setup:
    """The joint problem of the modalities checked, the calibration's draws in its parameter
    order, one compiled prediction per modality, and the usable rows as one table (in
    :meth:`pkpd.calibrate.JointProblem.linearise` order)."""

    def __init__(self, cal, modalities=None, *, progress: bool = True):
        import equinox as eqx
        import pandas as pd

        from ..calibrate import JointProblem

        self.cal = cal
        self.tau = float(cal.info.get("tau_study", 0.3))
        self.jp = jp = JointProblem(modalities, tau=self.tau, progress=progress, structure=cal.structure)
        missing = [k for k in jp.keys if k not in cal.keys]
        if missing:
            raise ValueError(
                f"the calibration has no parameters {missing} (the cards or the data changed since it was made); "
                "rerun `python -m pkpd.calibrate`"
            )
        cols = [cal.keys.index(k) for k in jp.keys]
        self.draws_z = np.asarray(cal.draws_z)[:, cols]
        self.map_z = np.asarray(cal.map_z)[cols]
        self.stale = [
            k
            for k in jp.keys
            if not np.isclose(cal.parameters[cal.keys.index(k)]["prior_mu"], jp.meta[k]["prior_mu"])
            or not np.isclose(cal.parameters[cal.keys.index(k)]["prior_sigma"], jp.meta[k]["prior_sigma"])
        ]
        self.grid = {
            jp.keys.index(p["key"]): p
            for p in cal.parameters
            if p.get("marginal") == "slice grid" and p["key"] in jp.keys
        }
        self.predict = {m: eqx.filter_jit(pb.predict) for m, pb in jp.problems.items()}
        tables, sds, studies = [], [], []
        for m, pb in jp.problems.items():
            t = pb.obs.rows.reset_index(drop=True)
            t = t.assign(paper=paper_of(t), doi=t["doi"].fillna("").astype(str))
            tables.append(t[[*ROW_COLUMNS, "doi", "paper"]])
            sds.append(pb.sd())
            studies.append(jp.study_index[m])
        self.rows = pd.concat(tables, ignore_index=True)
        self.sd = np.concatenate(sds)
        self.study = np.concatenate(studies)
        self.value = self.rows["value"].to_numpy(float)
        self.slices, n0 = {}, 0
        for m, pb in jp.problems.items():
            self.slices[m] = slice(n0, n0 + pb.obs.n)
            n0 += pb.obs.n

    def predictions(self, draws_z, modalities=None, *, bar=None) -> np.ndarray:
        """``(draws, rows)`` predictions (no study effect) of the rows of ``modalities`` (default
        all, in row order), one compiled solve per modality and draw; the modalities run in
        parallel threads (the compiled solves release the GIL)."""
        mods = list(modalities or self.jp.problems)
        draws_z = np.atleast_2d(draws_z)

        def run(m):
            idx = self.jp.index[m]
            out = np.full((len(draws_z), self.jp.problems[m].obs.n), np.nan)
            for d, z in enumerate(draws_z):
                try:
                    out[d] = np.asarray(self.predict[m](z[idx]))
                except Exception:  # noqa: BLE001 -- a failed solve: that draw carries no weight
                    pass
                if bar is not None:
                    bar.update(1)
            return out

        workers = max(1, min(len(mods), os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pkpd-validate") as pool:
            parts = dict(zip(mods, pool.map(run, mods)))
        return np.concatenate([parts[m] for m in mods], axis=1)

    def row_index(self, modalities) -> np.ndarray:
        return np.concatenate([np.arange(self.slices[m].start, self.slices[m].stop) for m in modalities])

    def excluded(self):
        """Rows of the checked modalities that the likelihood does not use, with the reason."""
        import pandas as pd

        from ..data import datasets

        parts = []
        for m, pb in self.jp.problems.items():
            if len(pb.obs.excluded):
                parts.append(pb.obs.excluded.assign(modality=m))
        for m, why in self.jp.skipped.items():
            parts.append(datasets(m).assign(reason=f"modality skipped: {why}"))
        if not parts:
            return pd.DataFrame(columns=["modality", "study_id", "readout", "statistic", "paper", "reason"])
        df = pd.concat(parts, ignore_index=True)
        df = df.assign(paper=paper_of(df))
        return df[["modality", "study_id", "readout", "statistic", "time_h", "value", "unit", "paper", "reason"]]


def _table(setup: Setup, idx, pred: Predictive, extra: dict | None = None):
    rows = setup.rows.iloc[idx].reset_index(drop=True)
    desc = pred.describe(setup.value[idx])
    rows = rows.assign(sd_obs=setup.sd[idx], n_draws=pred.n_draws, **desc, **(extra or {}))
    return rows


def in_sample(setup: Setup, n_draws: int | None = None, *, progress: bool = True):
    """Posterior predictive of every usable row from the calibration's draws: parameter draws,
    each study's effect from its conditional posterior given the draw and the study's rows, and
    the observation noise. Returns the row table (:meth:`Predictive.describe` columns)."""
    Z = setup.draws_z if n_draws is None else setup.draws_z[: int(n_draws)]
    bar = _progress(len(Z) * len(setup.jp.problems), f"in-sample, {len(Z)} draws", progress)
    pred = setup.predictions(Z, bar=bar)
    if bar is not None:
        bar.close()
    b, s = study_effect_conditional(pred, setup.value, setup.sd, setup.study, setup.jp.S, setup.tau)
    mix = Predictive(pred, b[:, setup.study], s[:, setup.study], setup.sd)
    return _table(setup, np.arange(len(setup.value)), mix)


def make_folds(rows, folds: int | None) -> list[list[str]]:
    """Papers per fold: one paper per fold (``folds=None``), or ``folds`` folds dealt round-robin
    from the papers sorted by (modality of their first row, paper), so that a fold spreads over
    modalities instead of removing one."""
    order = rows.drop_duplicates("paper").sort_values(["modality", "paper"])["paper"].tolist()
    if folds is None or int(folds) >= len(order):
        return [[p] for p in order]
    k = int(folds)
    if k < 1:
        raise ValueError(f"folds={folds!r} must be a positive integer (or None: one paper per fold)")
    return [order[i::k] for i in range(k)]


def _fold_draws(setup: Setup, fit, held_modalities, n: int, rng) -> np.ndarray:
    """The fold's Laplace draws; a parameter whose shipped draws come from a slice-grid marginal
    (the Laplace refused there) keeps that marginal's spread, recentred on the fold's MAP, unless
    the fold leaves out rows of a modality that informs it (its marginal is then unknown: Laplace)."""
    jp = setup.jp
    Z = laplace_draws(fit, jp.K, n, rng)
    for i, p in setup.grid.items():
        if not set(p["modalities"]) & set(held_modalities):
            shipped = setup.draws_z[rng.choice(len(setup.draws_z), n), i]
            Z[:, i] = shipped - setup.map_z[i] + fit.x[i]
    return Z


def leave_one_paper_out(
    setup: Setup,
    *,
    folds: int | None = None,
    n_draws: int = 100,
    seed: int = 0,
    progress=True,
    papers=None,
):
    """Each fold of papers left out, the calibration refitted without it (:func:`refit`, warm
    start at the shipped MAP), its rows predicted from the fold's posterior, a new study's effect
    ``Normal(0, tau)`` for each left-out study, and the observation noise. ``papers``: leave out
    only these papers (default every paper), dealt into ``folds`` as :func:`make_folds` does.
    Returns the row table (with ``fold``) and one record per fold (papers, rows, refit
    iterations, seconds)."""
    import pandas as pd

    jp = setup.jp
    rng = np.random.default_rng(seed)
    b0 = [setup.cal.info.get("study_effects", {}).get(s, {}).get("b", 0.0) for s in jp.studies]
    x0 = np.concatenate([setup.map_z, b0])
    rows = setup.rows if papers is None else setup.rows[setup.rows["paper"].isin(list(papers))]
    if not len(rows):
        raise ValueError(f"papers={papers!r}: none of them has a usable row")
    plan = make_folds(rows, folds)
    bar = _progress(len(plan), f"leave-one-paper-out, {len(plan)} folds", progress)
    tables, records = [], []
    for f, papers in enumerate(plan):
        t0 = time.perf_counter()
        held = setup.rows["paper"].isin(papers).to_numpy()
        fit = refit(jp, x0, ~held)
        mods = [m for m in jp.problems if held[setup.slices[m]].any()]
        Z = _fold_draws(setup, fit, mods, n_draws, rng)
        idx_all = setup.row_index(mods)
        pred = setup.predictions(Z, mods)[:, held[idx_all]]
        idx = idx_all[held[idx_all]]
        st = setup.study[idx]
        centre = fit.x[jp.K + st]
        scale = np.sqrt(np.diag(fit.cov)[jp.K + st])
        mix = Predictive(pred, centre, scale, setup.sd[idx])
        tables.append(_table(setup, idx, mix, dict(fold=np.full(idx.size, f))))
        records.append(
            dict(
                fold=f,
                papers=list(papers),
                rows=int(idx.size),
                modalities=mods,
                iterations=fit.iterations,
                converged=fit.converged,
                objective=fit.objective,
                refit_seconds=fit.seconds,
                seconds=time.perf_counter() - t0,
            )
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"last refit {fit.seconds:.0f} s, {fit.iterations} iterations")
    if bar is not None:
        bar.close()
    return pd.concat(tables, ignore_index=True), records
