"""Per-modality ODE settings of the hierarchical NUTS (``pkpd.calibrate.NUTS_SOLVE``) against the
MAP's (``pkpd.fit.FIT_SOLVE``, Tsit5 rtol 1e-6): cost and accuracy of each modality's forward-mode
Jacobian, and the cost of one whole NUTS gradient (``_HostLogLikelihood``), timed in the same run.

Accuracy is measured against Tsit5 at rtol 1e-9 / atol 1e-12 over the shipped MAP and every
``--every``-th shipped Laplace draw, in units of each data row's sd: ``dpred`` the largest
prediction error, ``djac`` the largest error of d prediction / d z.

    python benchmarks/nuts_solve.py --json nuts_solve.json        # ~10 min on 2 cores
    python benchmarks/nuts_solve.py --vjp --json nuts_vjp.json    # + reverse mode, ~15 min

``--vjp`` also times, per modality at the NUTS settings, what a gradient needs from it if the host
asked for ``J^T v`` (one reverse-mode pass, diffrax ``RecursiveCheckpointAdjoint`` with its default
and with 1,000 checkpoints) instead of the forward-mode Jacobian ``J``, and checks that the two agree.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("NPROC", str((os.cpu_count() or 1) + 1))  # as python -m pkpd.calibrate --nuts

import diffrax as dfx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from pkpd import calibrate as C  # noqa: E402
from pkpd.fit import Problem, describe_solve  # noqa: E402

REFERENCE = dict(solver=dfx.Tsit5(), rtol=1e-9, atol=1e-12, max_steps=400_000)


def _time(f, xs, reps):
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        for x in xs:
            jax.block_until_ready(f(x))
        best = min(best, (time.perf_counter() - t) / len(xs))
    return best


def _vjp_row(pb, jac, xs, reps, jacfwd_ms: float) -> dict:
    """Reverse-mode ``J^T v`` (same solve settings) against the forward-mode Jacobian ``jac`` of one
    modality, whose time (``jacfwd_ms``, measured by the caller on the same points) it reports beside."""
    import equinox as eqx

    ct = jnp.asarray(np.random.default_rng(0).standard_normal(pb.obs.n))
    out = {}
    for name, adjoint in (
        ("vjp_ms", dfx.RecursiveCheckpointAdjoint()),
        ("vjp_1000_checkpoints_ms", dfx.RecursiveCheckpointAdjoint(checkpoints=1000)),
    ):

        def jtv(z, adjoint=adjoint):
            pred, back = jax.vjp(lambda z: pb.predict(z, adjoint=adjoint), z)
            return pred, back(ct)[0]

        f = eqx.filter_jit(jtv)
        g = np.asarray(f(xs[0])[1])
        ref = np.asarray(jac(xs[0])[0]).T @ np.asarray(ct)
        out[name] = 1e3 * _time(lambda x, f=f: f(x), xs[:8], reps)
        out[name.replace("_ms", "_relerr")] = float(np.max(np.abs(g - ref)) / max(np.max(np.abs(ref)), 1e-300))
    print(
        f"{'':17s} jacfwd {jacfwd_ms:6.1f} ms | J^T v {out['vjp_ms']:6.1f} ms "
        f"(1,000 checkpoints {out['vjp_1000_checkpoints_ms']:6.1f} ms); rel. diff {out['vjp_relerr']:.0e}",
        flush=True,
    )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=8, help="every n-th shipped draw (default 8: 25 draws)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gradients", type=int, default=20, help="whole NUTS gradients timed per setting and rep")
    ap.add_argument("--modalities", nargs="*", default=None, help="subset (default: all with data)")
    ap.add_argument("--vjp", action="store_true", help="also time reverse-mode J^T v against the forward-mode J")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cal = C.load()
    fit = C.JointProblem(args.modalities, progress=False)
    nuts = C.JointProblem(
        args.modalities, progress=False, solve={m: s for m, s in C.NUTS_SOLVE.items() if m in fit.problems}
    )
    perm = [cal.keys.index(k) for k in fit.keys]
    points = [cal.map_z[perm]] + [cal.draws_z[i][perm] for i in range(0, len(cal.draws_z), args.every)]
    rows = []
    for m in fit.problems:
        sd = fit.problems[m].sd()
        xs = [jnp.asarray(p[fit.index[m]]) for p in points]
        ref = C.JointProblem._compile(Problem(m, solve=REFERENCE))
        out_ref = [tuple(np.asarray(a) for a in ref(x)) for x in xs]
        row = dict(modality=m, rows=int(fit.problems[m].obs.n), parameters=len(fit.index[m]))
        for name, jp in (("fit", fit), ("nuts", nuts)):
            f = jp._jac[m]
            out = [tuple(np.asarray(a) for a in f(x)) for x in xs]
            row[f"{name}_solve"] = describe_solve(jp.problems[m].solve)
            row[f"{name}_ms"] = 1e3 * _time(f, xs[:8], args.reps)
            row[f"{name}_dpred"] = float(max(np.max(np.abs(o[1] - r[1]) / sd) for o, r in zip(out, out_ref)))
            row[f"{name}_djac"] = float(max(np.max(np.abs(o[0] - r[0]) / sd[:, None]) for o, r in zip(out, out_ref)))
            row[f"{name}_djac_map"] = float(np.max(np.abs(out[0][0] - out_ref[0][0]) / sd[:, None]))
        rows.append(row)
        print(
            f"{m:17s} fit {row['fit_ms']:6.1f} ms dpred {row['fit_dpred']:.0e} djac {row['fit_djac']:.0e} | "
            f"nuts {row['nuts_ms']:6.1f} ms dpred {row['nuts_dpred']:.0e} djac {row['nuts_djac']:.0e} "
            f"({row['nuts_solve']})",
            flush=True,
        )
        if args.vjp:  # printed on the line below the modality's
            row.update(_vjp_row(nuts.problems[m], nuts._jac[m], xs, args.reps, row["nuts_ms"]))
    # one whole NUTS gradient: every modality in the thread pool + the study-effect quadrature
    thetas = [np.concatenate([p, [np.log(C.TAU_STUDY)]]) for p in points[: args.gradients]]
    hosts = {"fit": C._HostLogLikelihood(fit), "nuts": C._HostLogLikelihood(nuts)}
    for h in hosts.values():
        h(thetas[0])
        h(thetas[0])
    grad_s = {k: np.inf for k in hosts}
    for _ in range(args.reps):  # interleaved, so that load drifts hit both
        for k, h in hosts.items():
            t = time.perf_counter()
            for th in thetas:
                h(th)
            grad_s[k] = min(grad_s[k], (time.perf_counter() - t) / len(thetas))
    ll = {k: [h(th)[0] for th in thetas] for k, h in hosts.items()}
    report = dict(
        rows=rows,
        gradient_seconds=grad_s,
        gradient_ratio=grad_s["fit"] / grad_s["nuts"],
        max_abs_loglik_difference=float(np.max(np.abs(np.subtract(ll["fit"], ll["nuts"])))),
        points=len(points),
        reference=describe_solve(REFERENCE),
        nproc=os.environ.get("NPROC"),
        load_average=os.getloadavg(),
    )
    print(
        f"one NUTS gradient: FIT_SOLVE {grad_s['fit']:.3f} s, NUTS_SOLVE {grad_s['nuts']:.3f} s "
        f"(ratio {report['gradient_ratio']:.2f}); max |log-lik difference| {report['max_abs_loglik_difference']:.2e}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return report


if __name__ == "__main__":
    main()
