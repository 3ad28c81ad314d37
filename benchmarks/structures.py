"""Candidate model structures compared on the whole data library: PSIS-LOO and leave-one-paper-out.

    python benchmarks/structures.py --json benchmarks/structures.json [--items clinical ssri ...]
        [--folds 6] [--lopo-draws 100] [--keep DIR [--reuse]]

For the reference structure (every item at its first candidate, ``pkpd.structures.IMPLEMENTED``)
and for each item's alternatives (that item switched, the others at the reference), the joint
calibration is redone (``pkpd.calibrate.calibrate(structure=...)``: MAP + Laplace, 200 draws) and
scored on the same rows:

- PSIS-LOO (``pkpd.validate.loo.psis_loo``: ``arviz.loo`` leaving out one study arm at a time, its
  effect integrated out) with ``p_loo``, the largest Pareto k and the number of arms above 0.7, the
  row-level LOO given the study effects, plus the
  Pareto k of the Laplace draws against the posterior (``laplace_khat``) and the
  importance-corrected ``elpd_loo_is``; ``arviz.compare`` gives the difference to the reference
  and its standard error;
- leave-one-paper-out (``pkpd.validate.run.leave_one_paper_out``) over the papers whose rows the
  item can change (:data:`ITEM_ROWS`), dealt into ``--folds`` folds: the fraction of the held-out
  rows inside their 50 % and 90 % predictive intervals.

The rule for what ships: the alternative only where it beats the reference by more than two
standard errors of the elpd difference; otherwise the simpler reference. The JSON is rewritten
after every calibration (``"complete": false`` until the end); ``--keep DIR`` saves each
calibration there (``--reuse`` loads them back instead of recalibrating).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "pkpd-jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import numpy as np  # noqa: E402

#: Which rows an item's candidates can change: a readout set or a modality family set.
ITEM_ROWS = {
    "post_course": dict(readouts=("hippocampal_volume", "neurogenesis")),
    "tbs": dict(families=("stimulation",)),
    "ssri": dict(families=("ssri",)),
    "clinical": dict(readouts=("response", "remission", "clinical_score")),
}


def item_mask(rows, item: str) -> np.ndarray:
    """Rows (of a :class:`pkpd.validate.run.Setup` table) that ``item``'s structure can change."""
    from pkpd.modalities import MODALITIES

    spec = ITEM_ROWS[item]
    if "readouts" in spec:
        return rows["readout"].isin(spec["readouts"]).to_numpy()
    fam = rows["modality"].map(lambda m: MODALITIES[m].family)
    return fam.isin(spec["families"]).to_numpy()


def score(structure: dict, label: str, args, keep: Path | None, items) -> dict:
    """Calibrate in ``structure``, then PSIS-LOO and leave-one-paper-out for ``items``; returns
    the record, the LOO pieces, the LOPO records and each item's study-arm mask. The calibration's
    compiled problems are dropped before returning (every candidate compiles its own; kept, they
    exhaust the memory of a 24 GB machine by the third candidate)."""
    import gc

    import jax

    from pkpd import structures
    from pkpd.calibrate import calibrate, load
    from pkpd.validate.loo import psis_loo
    from pkpd.validate.run import Setup

    t0 = time.perf_counter()
    saved = keep / f"{label}.json" if keep is not None else None
    if saved is not None and args.reuse and saved.exists():
        cal = load(saved)
    else:
        cal = calibrate(structure=structure, progress=True)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            cal.save(saved)
    setup = Setup(cal, progress=False)
    loo = psis_loo(setup, seed=args.seed)
    rec = dict(
        label=label,
        structure=structures.describe(cal.structure),
        parameters=len(cal.keys),
        objective=cal.info["objective"],
        converged=cal.info["converged"],
        calibrate_s=cal.info["seconds"],
        **{
            k: loo[k]
            for k in (
                "unit",
                "elpd_loo",
                "se",
                "p_loo",
                "pareto_k_max",
                "pareto_k_above_0_7",
                "rows_elpd_loo",
                "rows_p_loo",
                "rows_pareto_k_max",
                "draws",
                "dropped",
            )
        },
        laplace_khat=loo.get("laplace_khat"),
        elpd_loo_is=loo.get("elpd_loo_is"),
    )
    masks = {}
    for item in items:
        touched = {setup.jp.studies[j] for j in setup.study[item_mask(setup.rows, item)]}
        masks[item] = np.array([s in touched for s in loo["studies"]])
    lopos = {item: lopo(setup, item, args) for item in items}
    rec["seconds"] = time.perf_counter() - t0
    print(
        f"[structures] {label}: elpd_loo {rec['elpd_loo']:.1f} (se {rec['se']:.1f}), p_loo {rec['p_loo']:.1f}, "
        f"max k {rec['pareto_k_max']:.2f}, {rec['seconds']:.0f} s",
        flush=True,
    )
    keep_loo = {k: loo[k] for k in ("pointwise_elpd", "idata", "studies")}
    del setup, loo, cal
    jax.clear_caches()
    gc.collect()
    return dict(record=rec, loo=keep_loo, lopo=lopos, masks=masks)


def lopo(setup, item: str, args) -> dict:
    """Leave-one-paper-out over the papers of ``item``'s rows: coverage of the held-out rows."""
    from pkpd.validate.run import leave_one_paper_out

    papers = sorted(set(setup.rows.loc[item_mask(setup.rows, item), "paper"]))
    t0 = time.perf_counter()
    table, folds = leave_one_paper_out(
        setup, folds=args.folds, n_draws=args.lopo_draws, seed=args.seed, progress=False, papers=papers
    )
    return dict(
        lopo_papers=len(papers),
        lopo_folds=len(folds),
        lopo_rows=int(len(table)),
        lopo_coverage_50=float(table["inside_0.5"].mean()),
        lopo_coverage_90=float(table["inside_0.9"].mean()),
        lopo_s=time.perf_counter() - t0,
    )


def compare_item(item: str, ref: dict, alts: dict, args) -> dict:
    """The item's candidates with their diagnostics, the difference to the reference and what ships."""
    import arviz as az

    from pkpd import structures

    names = structures.IMPLEMENTED[item]
    runs = {names[0]: ref, **alts}
    table = az.compare({n: r["loo"]["idata"] for n, r in runs.items()}, ic="loo")
    mask = ref["masks"][item]
    cands = []
    for n, r in runs.items():
        pw = r["loo"]["pointwise_elpd"]
        c = dict(name=n, **{k: v for k, v in r["record"].items() if k not in ("label",)})
        diff = pw - ref["loo"]["pointwise_elpd"]
        c.update(
            delta_elpd=float(diff.sum()),
            delta_se=float(np.sqrt(diff.size * np.var(diff))),
            item_study_arms=int(mask.sum()),
            item_elpd=float(pw[mask].sum()),
            item_delta_elpd=float(diff[mask].sum()),
            arviz_rank=int(table.loc[n, "rank"]),
            arviz_elpd_diff=float(table.loc[n, "elpd_diff"]),
            arviz_dse=float(table.loc[n, "dse"]),
            **r["lopo"][item],
        )
        cands.append(c)
    best = max(cands[1:], key=lambda c: c["delta_elpd"])
    wins = best["delta_elpd"] > 2.0 * best["delta_se"]
    shipped = best["name"] if wins else names[0]
    reason = (
        f"{best['name']} beats {names[0]} by {best['delta_elpd']:.1f} elpd (se {best['delta_se']:.1f}), more than 2 se"
        if wins
        else f"|delta elpd| of {best['name']} is {abs(best['delta_elpd']):.1f} against se {best['delta_se']:.1f}"
        f" ({'worse' if best['delta_elpd'] < 0 else 'not better by 2 se'}): the simpler {names[0]} ships"
    )
    return dict(item=item, candidates=cands, shipped=shipped, reason=reason)


def markdown(out: dict) -> str:
    """The RESULTS.md table of a structures JSON: one line per item and candidate."""
    head = (
        "| item | candidate | elpd_loo (se) | delta elpd (se) | p_loo | max Pareto k (arms > 0.7) | "
        "Laplace k | elpd_loo_is | item arms: delta elpd | LOPO 90 % (50 %), rows | ships |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for it in out["items"]:
        for c in it["candidates"]:
            lines.append(
                f"| {it['item']} | {c['name']} | {c['elpd_loo']:.1f} ({c['se']:.1f}) | "
                f"{c['delta_elpd']:+.1f} ({c['delta_se']:.1f}) | {c['p_loo']:.1f} | "
                f"{c['pareto_k_max']:.2f} ({c['pareto_k_above_0_7']}) | {c['laplace_khat']:.2f} | "
                f"{c['elpd_loo_is']:.1f} | {c['item_delta_elpd']:+.1f} ({c['item_study_arms']} arms) | "
                f"{c['lopo_coverage_90']:.2f} ({c['lopo_coverage_50']:.2f}), {c['lopo_rows']} | "
                f"{'**yes**' if c['name'] == it['shipped'] else ''} |"
            )
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from pkpd import structures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--items", nargs="+", default=list(structures.IMPLEMENTED), choices=list(structures.IMPLEMENTED))
    ap.add_argument(
        "--folds", type=int, default=6, help="leave-one-paper-out folds per item (papers dealt round-robin)"
    )
    ap.add_argument("--lopo-draws", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="folder to save every calibration in")
    ap.add_argument("--reuse", action="store_true", help="load a calibration from --keep where it exists")
    ap.add_argument("--markdown", action="store_true", help="print the table of the existing --json and stop")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.json).read_text())), end="")
        return 0
    keep = Path(args.keep) if args.keep else None
    out = dict(
        command="python benchmarks/structures.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count()),
        rule="the alternative ships where its elpd_loo exceeds the reference's by > 2 se of the pointwise difference",
        items=[],
        complete=False,
    )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference = {item: c[0] for item, c in structures.IMPLEMENTED.items()}
    t0 = time.perf_counter()
    ref = score(reference, "reference", args, keep, args.items)
    out["reference"] = ref["record"]
    for item in args.items:
        alts = {
            cand: score({**reference, item: cand}, f"{item}-{cand}", args, keep, [item])
            for cand in structures.IMPLEMENTED[item][1:]
        }
        out["items"].append(compare_item(item, ref, alts, args))
        out["seconds"] = time.perf_counter() - t0
        path.write_text(json.dumps(out, indent=1))
        print(f"[structures] {item}: {out['items'][-1]['reason']}", flush=True)
    out["complete"] = True
    out["seconds"] = time.perf_counter() - t0
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
