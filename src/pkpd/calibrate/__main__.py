"""``python -m pkpd.calibrate``: reproduce the shipped calibration (joint MAP + Laplace, written to
``models/calibration/posterior.json``) or run the hierarchical NUTS (``--nuts``, netCDF)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._paths import models_dir
from ._laplace import calibrate
from ._metric import NUTS_METRIC, metric_from_posterior
from ._nuts import ADAPT_MASS, NUTS_SOLVE, NUTS_STARTS, nuts, nuts_summary, widen_xla_pool
from ._problem import TAU_STUDY
from ._store import CALIBRATION, N_DRAWS


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pkpd.calibrate",
        description="Joint calibration of all modalities on the curated published curves.",
    )
    ap.add_argument("--modalities", nargs="*", default=None, help="subset (default: every modality with usable data)")
    ap.add_argument("--out", default=None, help=f"output JSON (default: models/{CALIBRATION})")
    ap.add_argument("--draws", type=int, default=N_DRAWS)
    ap.add_argument("--tau", type=float, default=TAU_STUDY)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--nuts",
        action="store_true",
        help="hierarchical NUTS (tau estimated) from the shipped MAP instead of MAP + Laplace; "
        "writes netCDF to --out (default calibration_nuts.nc) and prints R-hat/ESS",
    )
    ap.add_argument("--chains", type=int, default=2, help="NUTS chains (with --nuts)")
    ap.add_argument("--warmup", type=int, default=200, help="NUTS warmup per chain (with --nuts)")
    ap.add_argument("--max-tree-depth", type=int, default=6, help="NUTS tree depth cap (with --nuts)")
    ap.add_argument(
        "--start",
        choices=NUTS_STARTS,
        default="mode",
        help="NUTS start: marginal mode + Hessian mass (default) or the shipped MAP + Laplace mass",
    )
    ap.add_argument(
        "--adapt-mass",
        choices=ADAPT_MASS,
        default=None,
        help="what warmup adapts in the start's whitened coordinates: nothing but the step size "
        "(default with --start mode), one variance per direction, or a dense covariance "
        "(default with --start map)",
    )
    ap.add_argument(
        "--no-grid-marginals",
        action="store_true",
        help="(with --nuts) whiten every parameter, including those the Laplace check refused, "
        "instead of sampling those through their slice-grid transform",
    )
    ap.add_argument(
        "--no-flip-flop",
        action="store_true",
        help="(with --nuts) sample one-compartment oral PK (psilocybin, LSD) without symmetrising "
        "the prior under the ka <-> ke swap and without folding the draws onto ka >= ke",
    )
    ap.add_argument(
        "--fit-solve",
        action="store_true",
        help="(with --nuts) solve every modality with the MAP's ODE settings (pkpd.fit.FIT_SOLVE) "
        "instead of the per-modality NUTS_SOLVE",
    )
    ap.add_argument(
        "--metric",
        default="shipped",
        help="(with --nuts) posterior-sample metric that corrects the Hessian mass: 'shipped' "
        f"(models/{NUTS_METRIC}, default), 'none', or the path of a saved metric",
    )
    ap.add_argument(
        "--save-metric",
        default=None,
        help="(with --nuts) after the run, write its metric (metric_from_posterior) to this JSON path",
    )
    return ap


def main(argv=None) -> int:
    """``python -m pkpd.calibrate``: the joint MAP + Laplace calibration (default) or, with
    ``--nuts``, the hierarchical NUTS; ``--help`` lists the options."""
    args = _parser().parse_args(argv)
    return _run_nuts(args) if args.nuts else _run_map(args)


def _run_nuts(args) -> int:
    import pandas as pd

    widen_xla_pool()
    idata = nuts(
        args.modalities,
        chains=args.chains,
        warmup=args.warmup,
        draws=args.draws,
        seed=args.seed,
        max_tree_depth=args.max_tree_depth,
        start=args.start,
        adapt_mass=args.adapt_mass,
        grid_marginals=not args.no_grid_marginals,
        flip_flop=not args.no_flip_flop,
        solve=None if args.fit_solve else NUTS_SOLVE,
        metric=None if args.metric == "none" else args.metric,
    )
    out = Path(args.out or "calibration_nuts.nc")
    idata.to_netcdf(str(out))
    if args.save_metric:
        with open(args.save_metric, "w") as f:
            json.dump(metric_from_posterior(idata), f)
        print(f"written {args.save_metric} (metric from this run's draws)")
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(
            nuts_summary(idata)[["name", "mean", "sd", "ess_bulk", "ess_tail", "r_hat", "sd_ratio"]].to_string(
                index=False
            )
        )
    print(f"written {out} ({idata.posterior.attrs['sampling_seconds']:.0f} s sampling)")
    return 0


def _run_map(args) -> int:
    import pandas as pd

    cal = calibrate(args.modalities, tau=args.tau, draws=args.draws, seed=args.seed)
    out = Path(args.out) if args.out else models_dir() / CALIBRATION
    cal.save(out)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_rows", 200):
        print(cal.summary().drop(columns=["modalities"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written {out} ({cal.info['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
