"""First speed measurement: one subject, the README's one-compartment oral schedule (84 daily
doses), pkpd's exact and ODE paths against scipy's LSODA on the same segments, all in ONE run
(ratios, not absolute times, are what carries over between machines).

    python benchmarks/simulate_speed.py [--json out.json]

The full benchmark suite (populations, gradients, fits, chi) is issue 6.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def best_of(fn, repeats=5):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(argv=None):
    import diffrax as dfx
    import jax
    from scipy.integrate import solve_ivp

    import pkpd

    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cl, v, ka, days = 10.0, 50.0, 1.0, 84
    model = pkpd.pk.OneCompartment(cl=cl, v=v, ka=ka)
    schedule = pkpd.Schedule.daily(100.0, days=days)
    times = np.linspace(0.0, 24.0 * days, 24 * days + 1)

    def run(**kw):
        return lambda: jax.block_until_ready(pkpd.simulate(model, schedule, times, **kw).states)

    results = {}
    t0 = time.perf_counter()
    run()()
    compile_exact = time.perf_counter() - t0  # first call: compilation + one run
    ref = np.asarray(pkpd.simulate(model, schedule, times)["concentration"])
    results["exact"] = best_of(run())
    results["ode_kvaerno5"] = best_of(run(method="ode"))
    results["ode_tsit5"] = best_of(run(method="ode", solver=dfx.Tsit5()))

    k = cl / v

    def rhs(t, y):
        return [-ka * y[0], ka * y[0] - k * y[1]]

    def scipy_lsoda():
        y = np.zeros(2)
        out = []
        for d in range(days):
            y = y + np.array([100.0, 0.0])
            seg = times[(times >= 24.0 * d) & ((times < 24.0 * (d + 1)) | (d == days - 1))]
            t1 = 24.0 * (d + 1)
            ev = np.append(seg[seg < t1], t1)
            sol = solve_ivp(rhs, (24.0 * d, t1), y, method="LSODA", t_eval=ev, rtol=1e-8, atol=1e-12)
            out.append(sol.y[1][: (seg < t1).sum()] / v if d < days - 1 else sol.y[1] / v)
            y = sol.y[:, -1]
        return np.concatenate(out)

    c_scipy = scipy_lsoda()
    results["scipy_lsoda"] = best_of(scipy_lsoda, repeats=3)
    err = {
        "ode_kvaerno5": np.max(
            np.abs(np.asarray(pkpd.simulate(model, schedule, times, method="ode")["concentration"]) - ref)
            / np.maximum(ref, 1e-12)
        ),
        "scipy_lsoda": np.max(
            np.abs(c_scipy[: ref.size] - ref[: c_scipy.size]) / np.maximum(ref[: c_scipy.size], 1e-12)
        ),
    }
    base = results["scipy_lsoda"]
    report = {
        "machine": {"python": platform.python_version(), "machine": platform.machine(), "jax": jax.__version__},
        "results": [
            {"name": f"single_subject_{k_}_s", "value": v_, "unit": "s", "baseline": "scipy_lsoda", "ratio": base / v_}
            for k_, v_ in results.items()
        ]
        + [{"name": "first_call_exact_s", "value": compile_exact, "unit": "s", "baseline": None, "ratio": None}]
        + [
            {"name": f"max_rel_diff_{k_}", "value": float(e), "unit": "1", "baseline": "exact", "ratio": None}
            for k_, e in err.items()
        ],
    }
    for r in report["results"]:
        ratio = f"  ({r['ratio']:.1f}x faster than {r['baseline']})" if r["ratio"] else ""
        print(f"{r['name']:<36} {r['value']:.4g} {r['unit']}{ratio}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
