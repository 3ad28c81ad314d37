"""How well the shipped calibration predicts the data library: ``pkpd validate``.

**In-sample coverage.** For every usable row of the data library (``pkpd.datasets()`` rows the
likelihood uses), the posterior predictive distribution from the calibration's draws
(:mod:`pkpd.validate.predictive`): the parameter draws, the study's multiplicative effect from its
conditional posterior given each draw and the study's rows, and the observation noise of the
likelihood (reported standard error and the residual error model). Reported: the fraction of
observed values inside the central 50 % and 90 % predictive intervals, overall, per modality,
per readout and per modality and readout, the worst misses by standardised residual, and the
rows the likelihood does not use with the reason.

**Leave-one-paper-out.** Rows are grouped by paper (DOI, or citation where there is none). Each
paper (or fold of papers, ``folds``) is left out, the joint MAP refitted without it by
Levenberg-Marquardt from the shipped MAP (:mod:`pkpd.validate.refit`), its Laplace drawn, and the
left-out rows predicted with a new study's effect ``Normal(0, tau)`` and the observation noise.
A parameter whose shipped draws come from a slice-grid marginal keeps that spread, recentred on
the fold's MAP, unless the fold removes rows of a modality that informs it.

``pkpd.validate(quick=True)`` checks the LSD and DMT rows only (PK parameters no other modality
shares), with 40 draws and two folds: the tests' configuration. The full run:
``pkpd validate --json v.json --figure v.png``.
"""

from __future__ import annotations

import time

from .predictive import LEVELS as LEVELS, Predictive as Predictive, coverage as coverage
from .report import Validation as Validation, coverage_report, loo_report
from .run import Setup, in_sample, leave_one_paper_out, make_folds as make_folds, paper_of as paper_of

#: The quick configuration (tests): modalities, in-sample draws, folds, draws per fold.
QUICK = dict(modalities=("lsd", "dmt"), draws=40, folds=2, loo_draws=40)
#: Draws per fold of the leave-one-paper-out predictions (full run).
LOO_DRAWS = 100


def _excluded_summary(df) -> dict:
    by_reason = df.groupby("reason").size().sort_values(ascending=False) if len(df) else {}
    return dict(
        n=int(len(df)),
        by_reason={str(k): int(v) for k, v in dict(by_reason).items()},
        by_modality={str(k): int(v) for k, v in df.groupby("modality").size().items()} if len(df) else {},
        rows=df.to_dict(orient="records"),
    )


def validate(
    quick: bool = False,
    *,
    modalities=None,
    draws: int | None = None,
    loo: bool = True,
    folds: int | None = None,
    loo_draws: int | None = None,
    calibration=None,
    seed: int = 0,
    progress: bool = True,
) -> Validation:
    """Posterior predictive coverage and leave-one-paper-out checks of a calibration.

    - ``quick``: the tests' configuration (:data:`QUICK`); explicit arguments override it.
    - ``modalities``: subset (default: every modality with usable data). With a subset the
      refits see only that subset's rows.
    - ``draws``: calibration draws for the in-sample predictive (default all stored).
    - ``loo``: run leave-one-paper-out; ``folds``: number of folds of papers (default one paper
      per fold); ``loo_draws``: Laplace draws per fold (default :data:`LOO_DRAWS`).
    - ``calibration``: a :class:`pkpd.calibrate.Calibration` (default the shipped one).
    """
    from .. import calibrate

    t0 = time.perf_counter()
    if quick:
        modalities = QUICK["modalities"] if modalities is None else modalities
        draws = QUICK["draws"] if draws is None else draws
        folds = QUICK["folds"] if folds is None else folds
        loo_draws = QUICK["loo_draws"] if loo_draws is None else loo_draws
    loo_draws = LOO_DRAWS if loo_draws is None else loo_draws
    for name, v, lo in (("draws", draws, 1), ("folds", folds, 1), ("loo_draws", loo_draws, 2)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
            raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    cal = calibration if calibration is not None else calibrate.load()
    if draws is not None and draws > len(cal.draws_z):
        raise ValueError(f"draws={draws} exceeds the calibration's {len(cal.draws_z)} stored draws")
    setup = Setup(cal, list(modalities) if modalities is not None else None, progress=progress)
    t_setup = time.perf_counter() - t0
    rows = in_sample(setup, draws, progress=progress)
    t_in = time.perf_counter() - t0 - t_setup
    loo_rows, loo_out = None, {}
    if loo:
        loo_rows, records = leave_one_paper_out(setup, folds=folds, n_draws=loo_draws, seed=seed, progress=progress)
        loo_out = loo_report(loo_rows, records)
    excluded = setup.excluded()
    info = dict(
        quick=bool(quick),
        modalities=list(setup.jp.problems),
        draws=int(len(setup.draws_z) if draws is None else draws),
        loo_draws=int(loo_draws) if loo else None,
        folds=len(loo_out.get("folds", [])) if loo else None,
        tau_study=setup.tau,
        calibration={k: cal.info.get(k) for k in ("method", "created", "objective", "converged", "rows")},
        stale_priors=setup.stale,
        seconds=dict(setup=t_setup, in_sample=t_in, total=time.perf_counter() - t0),
        definition="central predictive intervals of the mixture over parameter draws, the study effect and the "
        "observation noise; a row is inside the 50 % (90 %) interval when its PIT lies in [0.25, 0.75] ([0.05, 0.95])",
        command="pkpd validate" + (" --quick" if quick else ""),
    )
    return Validation(
        coverage=coverage_report(rows),
        loo=loo_out,
        excluded=_excluded_summary(excluded),
        rows=rows,
        loo_rows=loo_rows,
        info=info,
        setup=setup,
    )


__all__ = ["LEVELS", "Predictive", "Validation", "coverage", "make_folds", "paper_of", "validate"]
