"""Write the README's claims table (between ``<!-- claims:begin -->`` and ``<!-- claims:end -->``)
from the shipped calibration, and the comparison's two figures.

    python docs/claims_table.py                      # run pkpd.compare() (32 draws): table + figures
    python docs/claims_table.py --json compare.json  # table only, from a `pkpd compare --json` report

The default runs the same comparison as ``pkpd compare`` (every modality, 32 posterior draws of
``models/calibration/``) and writes ``notebooks/figures/compare.png`` and
``notebooks/figures/compare_trajectories.png``. Rerun it after recalibrating.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"


def table(report: dict) -> str:
    """The claims of a ``pkpd compare`` report as a markdown table, numbered in the report's order
    (the numbers the headline figure labels its bands with)."""
    claims = report["claims"]
    n = {v: sum(c["verdict"] == v for c in claims) for v in ("supported", "uncertain", "contradicted")}
    info = report["info"]
    lines = [
        f"{n['supported']} supported, {n['uncertain']} uncertain, {n['contradicted']} contradicted of "
        f"{len(claims)} claims ({info['draws']} posterior draws; calibration: {info['calibration']['method']}). "
        "P: the fraction of posterior draws on which the claim holds (parameters no data informs drawn from "
        "their card priors). The data share is the fraction of the variance of the claim's metric under an "
        "all-assumed prior (every parameter at its card median with sd 1.0 on the log/logit scale) that sourced "
        "priors and fitted data remove, linearised at the joint MAP; it splits into *sourced* (narrowing by "
        "`sourced`/`derived` cards) and *fitted* (cards' priors to posterior). *Prior-driven by*: the assumed "
        "parameter with the largest share of the posterior variance. For the window claims (readout `window`, "
        "`pkpd.windows`) the data share is the variance of the metric that the window fit removes from the window "
        "card's prior, on the same posterior draws of the core, and is counted as fitted.",
        "",
        "| # | claim | P | verdict | data share | sourced | fitted | prior-driven by |",
        "|---:|---|---:|---|---:|---:|---:|---|",
    ]
    for i, c in enumerate(claims, start=1):
        req = " (required)" if c.get("required") else ""
        text = c["text"].replace("|", "\\|")
        top = c.get("prior_driven_by") or []
        driver = f"`{top[0]['parameter']}` ({top[0]['share']:.2f})" if top else ""
        lines.append(
            f"| {i} | `{c['id']}`{req}: {text} | {c['probability']:.2f} | {c['verdict']} | {c['data_share']:.2f} | "
            f"{c.get('sourced_share', 0.0):.2f} | {c.get('fitted_share', 0.0):.2f} | {driver} |"
        )
    return "\n".join(lines)


def write_readme(report: dict, readme: Path = ROOT / "README.md") -> None:
    """Replace the block between the markers of ``readme`` with :func:`table` of ``report``."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table(report)}\n{END}{tail}", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="PATH", help="read this `pkpd compare --json` report instead of running")
    ap.add_argument("--readme", default=str(ROOT / "README.md"), help="the README to update")
    ap.add_argument("--figure", default=str(ROOT / "notebooks" / "figures" / "compare.png"), help="headline figure")
    args = ap.parse_args(argv)
    if args.json:
        report = json.loads(Path(args.json).read_text())
    else:
        import matplotlib

        matplotlib.use("Agg")
        import pkpd

        res = pkpd.compare()
        with tempfile.TemporaryDirectory() as tmp:
            res.save(Path(tmp) / "compare.json")  # the report exactly as `pkpd compare --json` writes it
            report = json.loads((Path(tmp) / "compare.json").read_text())
        res.figure(args.figure)
        print(f"figures written to {args.figure} and its _trajectories sibling", file=sys.stderr)
    write_readme(report, Path(args.readme))
    print(f"claims table written to {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
