"""Where the joint (hierarchical) posterior is far from Gaussian: the reason its NUTS trees are deep.

At the marginal mode of the hierarchical model (study effects integrated out, as in
``pkpd.calibrate.nuts``), walk along every eigenvector of the covariance that the NUTS mass
matrix starts from (``--start mode``, the default: the inverse Hessian at the mode;
``--start map``: the Gauss-Newton Laplace covariance of the shipped MAP), to -2, -1, +1 and +2 of its standard deviations, and print how far the log
posterior drops. A Gaussian drops 2, 0.5, 0.5, 2. Much larger drops are cliffs: NUTS must take small
steps there, so every iteration needs many leapfrog steps.

    python benchmarks/joint_geometry.py [--modalities ...] [--start map]      # ~3-4 min on 2 cores

``--profile KEY`` instead scans one parameter (fitted space, e.g. ``stimulation.a_itbs``) over
``--grid LO HI N`` with everything else at the start, and prints the log posterior minus its value
there: a local Hessian cannot see cliffs and plateaus further out (benchmarks/RESULTS.md, session 7).

    python benchmarks/joint_geometry.py --profile stimulation.a_itbs --grid 0.2 1.4 25   # ~3 min
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)


def main(argv=None) -> int:
    from pkpd import calibrate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modalities", nargs="*", default=None)
    ap.add_argument(
        "--start",
        choices=("mode", "map"),
        default="mode",
        help="mass matrix to test: nuts()'s default (Hessian at the marginal mode) or the MAP's Laplace",
    )
    ap.add_argument("--profile", default=None, metavar="KEY", help="scan this parameter instead (fitted space)")
    ap.add_argument(
        "--grid",
        nargs=3,
        type=float,
        default=(-2.0, 2.0, 9.0),
        metavar=("LO", "HI", "N"),
        help="values of the --profile scan (fitted space)",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    jp = calibrate.JointProblem(args.modalities, progress=False)
    host = calibrate._HostLogLikelihood(jp)
    logpost = calibrate.marginal_log_posterior(jp, host)

    # where nuts() starts and the covariance its dense mass matrix starts from
    theta, cov, info = calibrate.nuts_start(jp, host, calibrate.load(), start=args.start)
    if args.start == "map":
        lp, g = logpost(theta)
        for _ in range(6):  # preconditioned ascent from the shipped MAP to the marginal mode
            step = cov @ g
            for a in (1.0, 0.5, 0.25, 0.1):
                lp1, g1 = logpost(theta + a * step)
                if lp1 > lp:
                    theta, lp, g = theta + a * step, lp1, g1
                    break
            else:
                break
    else:
        lp = info["log_density"]
        print(
            f"start: {info['gradient_evaluations']} gradients in {info['seconds']:.0f} s; curvature relative to the "
            f"Gauss-Newton covariance {info['curvature_min']:.3g}-{info['curvature_max']:.3g}, "
            f"{info['clipped']} directions clipped"
        )
    names = jp.keys + ["log_tau"]
    if args.profile is not None:
        if args.profile not in names:
            raise SystemExit(f"--profile {args.profile!r} is not a parameter; valid: {names}")
        i = names.index(args.profile)
        lo, hi, n = args.grid
        print(
            f"{args.profile}: start {theta[i]:.4f}, start sd {np.sqrt(cov[i, i]):.3g}; log posterior minus the start's"
        )
        for v in np.linspace(lo, hi, int(n)):
            t = theta.copy()
            t[i] = v
            print(f"{v:8.3f}  {logpost(t)[0] - lp:9.3f}", flush=True)
        print(f"done in {time.perf_counter() - t0:.0f} s")
        return 0
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    print(f"log posterior at the mode {lp:.3f}; a Gaussian drops 2.0, 0.5, 0.5, 2.0 at -2, -1, +1, +2 sd")
    print(f"{'sd':>8}  {'-2':>7} {'-1':>7} {'+1':>7} {'+2':>7}  largest loadings")
    worst = []
    for j in np.argsort(-w):
        d = V[:, j] * np.sqrt(max(w[j], 0.0))
        drops = [lp - logpost(theta + t * d)[0] for t in (-2.0, -1.0, 1.0, 2.0)]
        top = np.argsort(-np.abs(V[:, j]))[:3]
        load = ", ".join(f"{names[i]} {V[i, j]:+.2f}" for i in top)
        print(f"{np.sqrt(max(w[j], 0)):8.3g}  " + " ".join(f"{x:7.2f}" for x in drops) + f"  {load}", flush=True)
        worst.append((max(drops) / 2.0, load))
    worst.sort(reverse=True)
    print("most non-Gaussian directions (largest drop / 2.0):")
    for r, load in worst[:5]:
        print(f"  {r:6.1f}x  {load}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
