"""Command-line interface.

``pkpd compare``: the main job -- every modality's time scales on posterior draws of the shipped
calibration, the documents' claims with probabilities and verdicts, counterfactual schedules and
the schedule-vs-biology split (:mod:`pkpd.compare`); ``--json`` writes the report, ``--figure
f.png`` the headline T50/Tmax chart to ``f.png`` and the trajectories to ``f_trajectories.png``.

``pkpd validate``: how well the shipped calibration predicts the data library -- in-sample
posterior predictive coverage (50 % and 90 % intervals) per modality and readout, and
leave-one-paper-out refits (:mod:`pkpd.validate`); ``--json`` and ``--figure`` write the report,
``--quick`` runs the tests' small configuration.

``pkpd demo``: simulate every modality's standard protocol for 90 days and print how spine density
and BDNF change (relative to baseline) at 1, 7, 28 and 90 days, on the model-card values.
"""

from __future__ import annotations

import argparse
import sys
import time

DAYS = (1, 7, 28, 90)


def _demo(args) -> int:
    import numpy as np

    import pkpd

    names = args.modalities or pkpd.modalities()
    unknown = [n for n in names if n not in pkpd.modalities()]
    if unknown:
        print(f"pkpd demo: unknown modalities {unknown}; valid: {pkpd.modalities()}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    times = np.concatenate([np.linspace(0.0, 48.0, 97), np.linspace(49.0, 24.0 * max(DAYS), 400)])
    readouts = ("spine_density", "bdnf")
    rows = []
    for name in names:
        traj = pkpd.simulate(pkpd.model(name), pkpd.protocol(name), times)
        vals = {r: [100 * (float(np.interp(24.0 * d, times, np.asarray(traj[r]))) - 1) for d in DAYS] for r in readouts}
        rows.append((name, pkpd.protocols()[name], vals))
    print(
        f"pkpd {pkpd.__version__}: change from baseline (%) under each standard protocol "
        "(model-card values, not yet fitted)"
    )
    head = " ".join(f"{'d' + str(d):>7}" for d in DAYS)
    print(f"{'modality':<17} {'spine density':^31} | {'BDNF':^31}")
    print(f"{'':<17} {head} | {head}")
    for name, _desc, vals in rows:
        fmt = lambda xs: " ".join(f"{x:7.2f}" for x in xs)  # noqa: E731
        print(f"{name:<17} {fmt(vals['spine_density'])} | {fmt(vals['bdnf'])}")
    print(
        f"\n{len(rows)} modalities simulated over {max(DAYS)} days in {time.perf_counter() - t0:.1f} s. "
        "Protocols: pkpd.protocols(); sources: pkpd.citation(pkpd.model(name))."
    )
    if args.figure:
        _figure(rows, args.figure)
    return 0


def _figure(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, _d, vals in rows:
        ax.plot(DAYS, vals["spine_density"], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("time since first dose or session (days, log scale)")
    ax.set_ylabel("spine density change from baseline (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure written to {path}")


def _compare(args) -> int:
    import pkpd
    from pkpd.compare import compare

    unknown = [n for n in (args.modalities or []) if n not in pkpd.modalities()]
    if unknown:
        print(f"pkpd compare: unknown modalities {unknown}; valid: {pkpd.modalities()}", file=sys.stderr)
        return 2
    if args.draws < 2:
        print(f"pkpd compare: --draws {args.draws} must be >= 2", file=sys.stderr)
        return 2
    try:
        res = compare(
            args.modalities,
            draws=args.draws,
            quick=args.quick,
            seed=args.seed,
            claims=args.claims,
            progress=not args.no_progress,
            uncalibrated=args.uncalibrated,
        )
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"pkpd compare: {e}", file=sys.stderr)
        return 2
    print(
        f"pkpd {pkpd.__version__} compare: standard protocols, 90 days, {res.info['draws']} posterior draws of the "
        f"joint calibration ({res.info['calibration']['method']}); median [90 % interval]\n"
    )
    print(res.table())
    n = {v: sum(c["verdict"] == v for c in res.claims) for v in ("supported", "uncertain", "contradicted")}
    print(
        f"\nclaims: {n['supported']} supported, {n['uncertain']} uncertain, {n['contradicted']} contradicted "
        f"(data share = the part of the metric's all-assumed-prior variance that sourced priors and fitted data "
        f"remove, split into sourced and fitted; assumed = the part resting on assumed parameters)"
    )
    if args.json:
        res.save(args.json)
        print(f"JSON report written to {args.json}")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from pkpd.compare import trajectories_path

        res.figure(args.figure)
        print(f"figures written to {args.figure} (T50/Tmax) and {trajectories_path(args.figure)} (trajectories)")
    print(f"done in {res.seconds:.0f} s")
    return 0


def _validate(args) -> int:
    import pkpd
    from pkpd.validate import validate

    unknown = [n for n in (args.modalities or []) if n not in pkpd.modalities()]
    if unknown:
        print(f"pkpd validate: unknown modalities {unknown}; valid: {pkpd.modalities()}", file=sys.stderr)
        return 2
    if args.from_json:
        import json
        from pathlib import Path

        from pkpd.validate import Validation

        try:
            res = Validation.from_json(json.loads(Path(args.from_json).read_text()))
        except (OSError, ValueError) as e:
            print(f"pkpd validate: --from-json {args.from_json}: {e}", file=sys.stderr)
            return 2
        print(res.table())
        if args.figure:
            import matplotlib

            matplotlib.use("Agg")
            res.figure(args.figure)
            print(f"figure written to {args.figure}")
        return 0
    try:
        res = validate(
            args.quick,
            modalities=args.modalities,
            draws=args.draws,
            loo=not args.no_loo,
            folds=args.folds,
            loo_draws=args.loo_draws,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"pkpd validate: {e}", file=sys.stderr)
        return 2
    print(
        f"pkpd {pkpd.__version__} validate: {res.info['draws']} posterior draws of the joint calibration "
        f"({res.info['calibration']['method']})\n"
    )
    print(res.table())
    if res.info["stale_priors"]:
        print(
            f"\nwarning: the cards' priors differ from the calibration's for {res.info['stale_priors']}; "
            "rerun `python -m pkpd.calibrate`"
        )
    if args.json:
        res.save(args.json)
        print(f"JSON report written to {args.json}")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        res.figure(args.figure)
        print(f"figure written to {args.figure}")
    print(f"done in {res.info['seconds']['total']:.0f} s")
    return 0


def use_every_core() -> int:
    """One XLA CPU device per core, so that :func:`pkpd.simulate_population` shards the subjects
    (posterior draws) over every core instead of running them on one.

    Only possible before JAX starts its CPU backend, and only if ``XLA_FLAGS`` does not already set
    ``--xla_force_host_platform_device_count`` (the user's choice wins); otherwise nothing changes.
    Sharded and unsharded populations give identical results. Returns the CPU devices in effect."""
    import os

    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", max(1, os.cpu_count() or 1))
        except RuntimeError:  # the backend is already running (e.g. called from a notebook)
            pass
    return len(jax.devices("cpu"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="pkpd", description="Pharmacodynamic time-course models of synaptic plasticity."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate every modality's standard protocol and print a summary")
    demo.add_argument("--modalities", nargs="*", default=None, help="subset of modalities (default: all)")
    demo.add_argument("--figure", default=None, help="write a PNG of spine-density change here")
    demo.set_defaults(func=_demo)
    cmp = sub.add_parser("compare", help="time scales with uncertainty, the documents' claims, schedule vs biology")
    cmp.add_argument("--json", default=None, metavar="PATH", help="write the JSON report here")
    cmp.add_argument(
        "--figure",
        default=None,
        metavar="PATH",
        help="write the T50/Tmax chart here (PNG) and the trajectories beside it (<name>_trajectories.png)",
    )
    cmp.add_argument("--modalities", nargs="*", default=None, help="subset of modalities (default: all)")
    cmp.add_argument("--draws", type=int, default=32, help="posterior draws per modality (default 32)")
    cmp.add_argument("--seed", type=int, default=0, help="which posterior draws (default 0)")
    cmp.add_argument("--quick", action="store_true", help="16 draws and a coarser time grid")
    cmp.add_argument("--claims", default=None, metavar="TOML", help="claims file (default: models/claims.toml)")
    cmp.add_argument("--no-progress", action="store_true", help="no per-simulation progress lines")
    cmp.add_argument(
        "--uncalibrated",
        choices=("prior", "card"),
        default="prior",
        help="parameters no data informs: drawn from their card priors (default) or fixed at their card values",
    )
    cmp.set_defaults(func=_compare)
    val = sub.add_parser(
        "validate", help="posterior predictive coverage of the data library and leave-one-paper-out refits"
    )
    val.add_argument("--json", default=None, metavar="PATH", help="write the JSON report here")
    val.add_argument("--figure", default=None, metavar="PATH", help="write observed vs predicted (PNG) here")
    val.add_argument("--quick", action="store_true", help="LSD and DMT rows only, 40 draws, 2 folds (tests)")
    val.add_argument("--modalities", nargs="*", default=None, help="subset of modalities (default: all with data)")
    val.add_argument("--draws", type=int, default=None, help="calibration draws for the in-sample check (default all)")
    val.add_argument("--folds", type=int, default=None, help="folds of papers (default: one paper per fold)")
    val.add_argument("--loo-draws", type=int, default=None, help="Laplace draws per fold (default 100)")
    val.add_argument("--no-loo", action="store_true", help="in-sample coverage only")
    val.add_argument("--seed", type=int, default=0, help="seed of the folds' Laplace draws (default 0)")
    val.add_argument("--no-progress", action="store_true", help="no progress bars")
    val.add_argument(
        "--from-json", default=None, metavar="PATH", help="print and draw a saved report instead of computing one"
    )
    val.set_defaults(func=_validate)
    args = parser.parse_args(argv)
    return args.func(args)


def run() -> int:
    """The ``pkpd`` command (and ``python -m pkpd.cli``): :func:`main` on every core
    (:func:`use_every_core`). :func:`main` itself leaves JAX's devices alone, so that calling it
    from Python changes nothing else."""
    use_every_core()
    return main()


if __name__ == "__main__":
    sys.exit(run())
