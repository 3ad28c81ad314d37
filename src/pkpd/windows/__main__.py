"""``python -m pkpd.windows fit [--out PATH] [--no-loo]``: fit the window card to the window rows
(core at the shipped calibration) and write the fit (default ``models/calibration/windows.json``);
``python -m pkpd.windows show``: the shipped fit's rows, observed vs predicted."""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pkpd.windows", description=__doc__)
    ap.add_argument("command", choices=["fit", "show"])
    ap.add_argument("--out", default=None, help="where to write the fit (JSON)")
    ap.add_argument("--no-loo", action="store_true", help="skip leave-one-row-out (choose by Laplace evidence)")
    args = ap.parse_args(argv)
    from . import fit, load

    if args.command == "fit":
        wf = fit(loo=not args.no_loo)
        wf.save(args.out)
    else:
        wf = load(args.out)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(wf.table().to_string(index=False))
    for c, r in wf.candidates.items():
        loo = f", elpd_loo {r['elpd_loo']:.2f} (se {r['elpd_loo_se']:.2f})" if "elpd_loo" in r else ""
        mark = " (chosen)" if c == wf.chosen else ""
        print(f"{c}{mark}: MAP {r['map']}, log-lik {r['log_likelihood']:.2f}, evidence {r['log_evidence']:.2f}{loo}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
