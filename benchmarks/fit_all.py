"""NUTS on all the curated data: by default the hierarchical all-data fit, or MAP and NUTS per modality.

    python benchmarks/fit_all.py [--chains 4] [--warmup 60] [--draws 200] --json PATH
    python benchmarks/fit_all.py --per-modality [--quick] [--modalities ...] [--chains 2] --json PATH

**All data** (default): :func:`pkpd.calibrate.nuts`, the hierarchical NUTS of the joint model over
every modality (study effects integrated out, between-study sd estimated; the same run as ``python
-m pkpd.calibrate --nuts``), ``chains`` chains one after the other with NumPyro's progress bar. The
JSON holds the headline numbers (``wall_s`` from the start of the script to the end of sampling
and the study-effect draws, ``chains``, ``warmup``, ``draws`` per chain, ``max_rhat``,
``min_bulk_ess``, ``min_tail_ess``, ``divergences``, gradient evaluations, mean leapfrog steps per
draw) and one row per parameter (mean, sd, R-hat, bulk/tail ESS, posterior/prior sd ratio);
``--netcdf PATH`` also writes the draws. ``--modalities`` restricts the data.

**Per modality** (``--per-modality``; issue 4: "MAP and NUTS run on every modality's data"). For each modality with usable rows: ``pkpd.fit(name, method="map")`` (one start), then
``pkpd.fit.fit_nuts`` started at that MAP (dense mass initialised from its Laplace covariance,
forward-mode gradients for <= 8 parameters; see :func:`pkpd.fit.fit_nuts`), ``chains`` chains run
sequentially in this process. Reported per modality: rows, parameters, MAP objective and
convergence, MAP and NUTS seconds (compile included), divergences, max R-hat and min bulk/tail
ESS over the parameters, and the parameters whose posterior/prior sd ratio is > 0.9 (the data
taught little). The JSON is rewritten after every modality (``"complete": false`` until the end);
``--markdown`` prints the table.

R-hat needs >= 2 chains. The per-modality defaults are small on purpose (they must finish on 2
cores). What a run reaches, and at what cost, is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

import numpy as np


def fit_one(name: str, chains: int, warmup: int, draws: int, seed: int, max_tree_depth: int) -> dict:
    import arviz as az

    from pkpd.fit import FitError, Problem, fit_map, fit_nuts

    rec: dict = dict(modality=name)
    try:
        t0 = time.perf_counter()
        problem = Problem(name)
    except FitError as e:
        return dict(rec, skipped=str(e))
    rec.update(rows=int(problem.obs.n), parameters=problem.names, setup_s=time.perf_counter() - t0)
    m = fit_map(problem, starts=1, progress=False)
    rec.update(
        map_s=m.seconds,
        map_objective=m.objective,
        map_converged=bool(m.converged),
        map_steps=m.n_steps,
        map_sd_ratio=m.sd_ratio,
    )
    idata = fit_nuts(
        problem,
        chains=chains,
        warmup=warmup,
        draws=draws,
        seed=seed,
        init=m,
        prior_draws=20,
        progress=False,
        max_tree_depth=max_tree_depth,
    )
    post = idata.posterior
    var = [f"z_{n}" for n in problem.names]
    summ = az.summary(idata, var_names=var, kind="diagnostics")
    sd_post = {n: float(np.std(np.asarray(post[f"z_{n}"]))) for n in problem.names}
    sd_ratio = {n: sd_post[n] / float(problem.sigma[i]) for i, n in enumerate(problem.names)}
    rec.update(
        nuts_s=float(post.attrs["sampling_seconds"]),
        divergences=int(post.attrs.get("divergences", -1)),
        r_hat_max=float(summ["r_hat"].max()),
        ess_bulk_min=float(summ["ess_bulk"].min()),
        ess_tail_min=float(summ["ess_tail"].min()),
        r_hat={n: float(summ.loc[f"z_{n}", "r_hat"]) for n in problem.names},
        ess_bulk={n: float(summ.loc[f"z_{n}", "ess_bulk"]) for n in problem.names},
        nuts_sd_ratio=sd_ratio,
        not_constrained=[n for n, r in sd_ratio.items() if r > 0.9],
        posterior_median={n: float(np.median(np.asarray(post[n]))) for n in problem.names},
    )
    return rec


def summary(recs: list[dict], wall_s: float, chains: int, draws: int) -> dict:
    """The run's headline numbers over every fitted modality: ``wall_s``, ``chains``, ``draws``
    (per chain), the worst ``max_rhat`` and ``min_bulk_ess``, the summed ``divergences``. These are
    separate per-modality fits, not the hierarchical all-data fit (``python -m pkpd.calibrate --nuts``)."""
    fitted = [r for r in recs if "r_hat_max" in r]
    return dict(
        scope="per-modality MAP + NUTS fits",
        wall_s=wall_s,
        chains=chains,
        draws=draws,
        fitted=[r["modality"] for r in fitted],
        max_rhat=max((r["r_hat_max"] for r in fitted), default=float("nan")),
        min_bulk_ess=min((r["ess_bulk_min"] for r in fitted), default=float("nan")),
        divergences=sum(r["divergences"] for r in fitted),
    )


def fit_all_data(modalities, chains: int, warmup: int, draws: int, seed: int, max_tree_depth: int):
    """The hierarchical all-data NUTS (:func:`pkpd.calibrate.nuts`, progress bar on) -> (idata, record)."""
    from pkpd.calibrate import nuts, nuts_summary

    idata = nuts(
        modalities, chains=chains, warmup=warmup, draws=draws, seed=seed, max_tree_depth=max_tree_depth, progress=True
    )
    return idata, all_data_record(idata, nuts_summary(idata))


def unrounded_diagnostics(idata, summ):
    """``summ`` with R-hat and ESS recomputed unrounded (arviz's summary rounds to 2 decimals, too
    coarse for an R-hat < 1.01 target)."""
    import arviz as az

    diag = az.summary(idata, var_names=["parameters", "tau"], kind="diagnostics", round_to="none")
    summ = summ.copy()
    for col in ("r_hat", "ess_bulk", "ess_tail"):
        summ[col] = diag[col].to_numpy()
    return summ


def all_data_record(idata, summ) -> dict:
    """Headline numbers and the per-parameter table of an all-data NUTS result (``summ``:
    :func:`pkpd.calibrate.nuts_summary` of ``idata``)."""
    a = idata.posterior.attrs
    summ = unrounded_diagnostics(idata, summ)
    worst = summ.sort_values("r_hat", ascending=False).head(5)
    return dict(
        scope="all-data hierarchical NUTS (pkpd.calibrate.nuts)",
        chains=int(idata.posterior.sizes["chain"]),
        draws=int(idata.posterior.sizes["draw"]),
        warmup=int(a["warmup"]),
        max_tree_depth=int(a["max_tree_depth"]),
        rows=int(a["rows"]),
        modalities=json.loads(a["modalities"]),
        parameters_sampled=int(len(summ)),
        max_rhat=float(summ["r_hat"].max()),
        min_bulk_ess=float(summ["ess_bulk"].min()),
        min_tail_ess=float(summ["ess_tail"].min()),
        worst_rhat={str(r["name"]): float(r["r_hat"]) for _, r in worst.iterrows()},
        divergences=int(a["divergences"]),
        gradient_evaluations=int(a["gradient_evaluations"]),
        mean_leapfrog_steps=float(a["mean_leapfrog_steps"]),
        sampling_s=float(a["sampling_seconds"]),
        setup_s=float(a["setup_seconds"]),
        study_effect_s=float(a["study_effect_seconds"]),
        refused_evaluations=json.loads(a["refused_evaluations"]),
        parameters=[
            {
                k: (str(r[k]) if k == "name" else float(r[k]))
                for k in ("name", "mean", "sd", "r_hat", "ess_bulk", "ess_tail", "sd_ratio")
            }
            for _, r in summ.iterrows()
        ],
    )


def markdown(recs: list[dict]) -> str:
    out = [
        "| modality | rows | params | MAP s | NUTS s | div | max R-hat | min ESS bulk | not constrained (sd ratio > 0.9) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in recs:
        if "skipped" in r or "error" in r:
            out.append(f"| {r['modality']} | - | - | - | - | - | - | - | {r.get('skipped') or r.get('error')} |")
            continue
        out.append(
            f"| {r['modality']} | {r['rows']} | {len(r['parameters'])} | {r['map_s']:.0f} | {r['nuts_s']:.0f} | "
            f"{r['divergences']} | {r['r_hat_max']:.3f} | {r['ess_bulk_min']:.0f} | "
            f"{', '.join(r['not_constrained']) or '-'} |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--per-modality", action="store_true", help="MAP + NUTS per modality instead of the all-data fit")
    ap.add_argument("--quick", action="store_true", help="(per modality) 2 chains x (50 warmup + 50 draws)")
    ap.add_argument("--modalities", nargs="*", default=None)
    ap.add_argument("--chains", type=int, default=None, help="default 4 (all data) or 2 (per modality)")
    ap.add_argument("--warmup", type=int, default=None, help="default 60 (all data: step size only) or 150")
    ap.add_argument("--draws", type=int, default=None, help="per chain; default 200 (all data) or 150")
    ap.add_argument("--max-tree-depth", type=int, default=None, help="default 6 (all data) or 8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--netcdf", default=None, help="(all data) also write the draws to this netCDF path")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    defaults = (2, 150, 150, 8) if args.per_modality else (4, 60, 200, 6)
    for key, value in zip(("chains", "warmup", "draws", "max_tree_depth"), defaults):
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.warmup, args.draws = 50, 50
    return run_per_modality(args) if args.per_modality else run_all_data(args)


def _machine() -> dict:
    import jax

    return dict(
        python=platform.python_version(), cpus=os.cpu_count(), jax=jax.__version__, loadavg_start=list(os.getloadavg())
    )


def run_all_data(args) -> int:
    t0 = time.perf_counter()
    from pkpd.calibrate import widen_xla_pool

    nproc = widen_xla_pool()  # before JAX starts its CPU backend (see its docstring)
    machine = dict(_machine(), xla_nproc=nproc)
    idata, rec = fit_all_data(args.modalities, args.chains, args.warmup, args.draws, args.seed, args.max_tree_depth)
    wall = time.perf_counter() - t0
    if args.netcdf:
        idata.to_netcdf(args.netcdf)
    out = dict(machine=machine, complete=True, wall_s=wall, **rec, netcdf=args.netcdf and os.path.basename(args.netcdf))
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    head = {k: out[k] for k in ("wall_s", "chains", "draws", "max_rhat", "min_bulk_ess", "divergences")}
    print("[fit_all]", json.dumps(head), flush=True)
    print(f"[fit_all] wrote {args.json}")
    return 0


def run_per_modality(args) -> int:
    import jax

    import pkpd

    names = args.modalities or pkpd.modalities()
    settings = dict(
        chains=args.chains, warmup=args.warmup, draws=args.draws, max_tree_depth=args.max_tree_depth, seed=args.seed
    )
    machine = _machine()
    recs: list[dict] = []
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            rec = fit_one(name, args.chains, args.warmup, args.draws, args.seed, args.max_tree_depth)
        except Exception as e:  # noqa: BLE001 -- report and go on to the next modality
            rec = dict(modality=name, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-2000:])
        rec["total_s"] = time.perf_counter() - t0
        recs.append(rec)
        short = {
            k: rec[k]
            for k in (
                "modality",
                "rows",
                "map_s",
                "nuts_s",
                "divergences",
                "r_hat_max",
                "ess_bulk_min",
                "skipped",
                "error",
                "total_s",
            )
            if k in rec
        }
        print("[fit_all]", json.dumps(short), flush=True)
        jax.clear_caches()
        with open(args.json, "w") as f:
            json.dump(dict(machine=machine, settings=settings, complete=False, results=recs), f, indent=1)
    wall = time.perf_counter() - t_all
    with open(args.json, "w") as f:
        json.dump(
            dict(
                machine=machine,
                settings=settings,
                complete=True,
                seconds=wall,
                **summary(recs, wall, args.chains, args.draws),
                results=recs,
            ),
            f,
            indent=1,
        )
    if args.markdown:
        print(markdown(recs))
    print(f"[fit_all] done in {time.perf_counter() - t_all:.0f} s; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
