"""Command-line interface: ``pkpd demo`` simulates a schedule and prints a summary."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args) -> int:
    import numpy as np

    import pkpd

    t0 = time.perf_counter()
    model = pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=1.0)
    schedule = pkpd.Schedule.daily(100.0, days=args.days)
    times = np.linspace(0.0, 24.0 * args.days, 24 * args.days + 1)
    traj = pkpd.simulate(model, schedule, times)
    c = np.asarray(traj["concentration"])
    print(f"pkpd {pkpd.__version__} demo: {model.describe()}")
    print(f"schedule: {schedule}")
    print(f"{'time (h)':>9} {'concentration (mg/L)':>22}")
    for t in np.linspace(0.0, 24.0 * args.days, min(args.days, 7) + 1):
        i = int(np.argmin(np.abs(times - t)))
        print(f"{times[i]:9.1f} {c[i]:22.4f}")
    print(f"Cmax {c.max():.4f} mg/L at {times[c.argmax()]:.1f} h; simulated in {time.perf_counter() - t0:.2f} s")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(times / 24.0, c)
        ax.set_xlabel("time (days)")
        ax.set_ylabel("concentration (mg/L)")
        ax.set_title(f"{args.days} daily oral doses of 100 mg")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=120)
        print(f"figure written to {args.figure}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pkpd", description="Pharmacodynamic time-course models of synaptic plasticity.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate daily oral dosing with a one-compartment model")
    demo.add_argument("--days", type=int, default=14, help="number of daily doses (default 14)")
    demo.add_argument("--figure", default=None, help="write a PNG of the concentration curve here")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if getattr(args, "days", 1) < 1:
        parser.error("--days must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
