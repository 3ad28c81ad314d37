"""pkpd benchmark suite (GitHub issue 6): everything measured in ONE run, as ratios against baselines
timed in the same run (absolute times do not carry over between machines; ratios mostly do).

    python benchmarks/run.py [--quick] [--json PATH]

Sections (a readable table is printed as it goes):

- ``single``: one subject on the standard models (fluoxetine 20 mg daily for 12 weeks, 10 Hz rTMS
  5/week for 6 weeks, psilocybin 25 mg once), 100 save times. Compile time (first call minus a
  compiled call), time after compilation for the default call (Kvaerno5, rtol 1e-8) and for the
  fit settings (Tsit5, rtol 1e-6, atol 1e-9); ``scipy.integrate.solve_ivp`` LSODA and BDF on the
  same segments and tolerances (RHS and Jacobian jitted by JAX, jumps applied between segments),
  with the error of every solution against a tight reference (Tsit5, rtol 1e-11) and the max
  relative difference between pkpd and scipy.
- ``population``: fluoxetine, 12 weeks, 100 save times, CL, V, ka, EC50 lognormal (30 % CV), Tsit5
  rtol 1e-6; N = 1,000, 10,000, 100,000 in a subprocess per N (peak RSS = ``ru_maxrss`` of that
  subprocess, which includes the JAX runtime and compiler), sharded over two host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, one per core); against a scipy LSODA
  loop over >= 100 subjects (subjects/s extrapolated linearly).
- ``gradient``: reverse-mode gradient of a least-squares loss (all states at the save times)
  w.r.t. every parameter of the fluoxetine model, over one forward evaluation of the same loss.
- ``fit``: psilocybin MAP (optimistix Levenberg-Marquardt, one start) and NUTS (one chain, dense
  mass), time per effective sample (minimum bulk ESS over parameters).
- ``chi``: chi-drm (myokit/CVODES) on a one-compartment oral schedule (84 daily doses), skipped
  with a note if chi cannot be imported.

``--quick`` uses small settings (< 5 minutes on 2 cores): populations at N = 1,000 and 2,048
only, N = 10,000 / 100,000 extrapolated (named and noted as such), 100 scipy subjects, tiny NUTS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS: list[dict] = []
T_START = time.perf_counter()

#: Fit settings (pkpd.fit.FIT_SOLVE) used for the speed comparisons; scipy gets the same tolerances.
RTOL, ATOL = 1e-6, 1e-9
REF_RTOL, REF_ATOL = 1e-11, 1e-14
MODELS = {  # name: (protocol options, horizon in days)
    "fluoxetine": (dict(weeks=12), 84.0),
    "rtms_10hz": ({}, 42.0),
    "psilocybin": ({}, 28.0),
}


def record(name, value, unit, baseline=None, ratio=None, note=None):
    r = {
        "name": name,
        "value": float(value),
        "unit": unit,
        "baseline": baseline,
        "ratio": None if ratio is None else float(ratio),
    }
    if note:
        r["note"] = note
    RESULTS.append(r)
    rat = f"  {ratio:8.3g}x vs {baseline}" if ratio is not None else (f"  (baseline {baseline})" if baseline else "")
    print(f"{name:<44} {value:12.4g} {unit:<10}{rat}{'  # ' + note if note else ''}", flush=True)
    return r


def elapsed():
    return time.perf_counter() - T_START


def best_of(fn, repeats=3):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def rel_diff(a, b):
    """max |a - b| / max(|b|, 1e-3 * max_t |b|) over times and states: relative, with a floor per
    state so that states near zero (drug amounts before the first dose) do not dominate."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(b), 1e-3 * np.max(np.abs(b), axis=-2, keepdims=True))
    scale = np.where(scale > 0, scale, 1.0)
    return float(np.max(np.abs(a - b) / scale))


def setup(name):
    import pkpd

    opts, days = MODELS[name]
    m = pkpd.model(name)
    s = pkpd.protocol(name, **opts)
    times = np.linspace(0.0, 24.0 * days, 100)
    return m, s, times


# --------------------------------------------------------------------------------------------
# scipy baseline: the same segment table, jumps between segments, solve_ivp inside segments.
# --------------------------------------------------------------------------------------------
class ScipyModel:
    def __init__(self, model, schedule, times):
        import equinox as eqx
        import jax
        from jax.flatten_util import ravel_pytree

        import pkpd
        from pkpd.simulate import as_arrays

        self.table = tb = pkpd.segment_table(model, schedule, times)
        m = as_arrays(model)
        self.cols = {
            k: np.asarray(getattr(tb, k)) for k in ("t0", "t1", "bolus", "rate", "session", "onset", "save_ts")
        }
        self.save_index = np.asarray(tb.save_index)
        self.k = self.cols["save_ts"].shape[1]
        # Parameters as one flat vector and ahead-of-time compiled RHS / Jacobian / jumps: the
        # cheapest way to call a JAX model from scipy (~4x less call overhead than passing the model).
        params, self._static = eqx.partition(m, eqx.is_inexact_array)
        self.p, self._unravel = ravel_pytree(params)
        mk = lambda p: eqx.combine(self._unravel(p), self._static)  # noqa: E731
        self.y0 = np.asarray(m.initial_state())
        self.n = self.y0.shape[0]
        r0, s0, t0 = self.cols["rate"][0], self.cols["session"][0], np.float64(0.0)
        f = lambda p, t, y, r, s: mk(p).vector_field(t, y, r, s)  # noqa: E731
        self._rhs = jax.jit(f).lower(self.p, t0, self.y0, r0, s0).compile()
        self._jac = jax.jit(jax.jacfwd(f, argnums=2)).lower(self.p, t0, self.y0, r0, s0).compile()
        self._jump = (
            jax.jit(lambda p, y, b, o: mk(p).session_onset(mk(p).dose(y, b), o))
            .lower(self.p, self.y0, self.cols["bolus"][0], self.cols["onset"][0])
            .compile()
        )
        self._ravel = lambda model: ravel_pytree(eqx.filter(as_arrays(model), eqx.is_inexact_array))[0]  # noqa: E731

    def with_model(self, model):
        self.p = self._ravel(model)
        return self

    def solve(self, method, rtol=RTOL, atol=ATOL):
        from scipy.integrate import solve_ivp

        c, p = self.cols, self.p
        y = self.y0.copy()
        n_seg = c["t0"].shape[0]
        out = np.zeros((n_seg, self.k, self.n))
        for i in range(n_seg):
            t0, t1 = float(c["t0"][i]), float(c["t1"][i])
            if c["bolus"][i].any() or c["onset"][i].any():
                y = np.asarray(self._jump(p, y, c["bolus"][i], c["onset"][i]))
            if t1 <= t0:
                out[i] = y
                continue
            r, s = c["rate"][i], c["session"][i]
            fun = lambda t, yy: np.asarray(self._rhs(p, np.float64(t), yy, r, s))  # noqa: E731
            jac = lambda t, yy: np.asarray(self._jac(p, np.float64(t), yy, r, s))  # noqa: E731
            ts = c["save_ts"][i]
            sol = solve_ivp(
                fun, (t0, t1), y, method=method, t_eval=np.unique(np.append(ts, t1)), rtol=rtol, atol=atol, jac=jac
            )
            if sol.status != 0:
                raise RuntimeError(f"scipy {method} failed: {sol.message}")
            ys = sol.y.T
            out[i] = ys[np.searchsorted(sol.t, ts)]
            y = ys[-1]
        return out.reshape(-1, self.n)[self.save_index]


# --------------------------------------------------------------------------------------------
def bench_single(quick):
    import diffrax as dfx
    import jax

    import pkpd

    print("\n== single subject (100 save times; fit settings: Tsit5 rtol 1e-6 atol 1e-9) ==", flush=True)
    compile_default, ratios, fast_err = {}, {}, {}
    for name in MODELS:
        m, s, times = setup(name)

        def run(**kw):
            return lambda: jax.block_until_ready(pkpd.simulate(m, s, times, **kw).states)

        fit_kw = dict(solver=dfx.Tsit5(), rtol=RTOL, atol=ATOL)
        t0 = time.perf_counter()
        run()()
        first = time.perf_counter() - t0
        t_default = best_of(run(), 2 if quick else 3)
        compile_default[name] = max(first - t_default, 0.0)
        t0 = time.perf_counter()
        run(**fit_kw)()
        first_fit = time.perf_counter() - t0
        t_fit = best_of(run(**fit_kw), 3 if quick else 5)
        ref = np.asarray(
            pkpd.simulate(m, s, times, solver=dfx.Tsit5(), rtol=REF_RTOL, atol=REF_ATOL, max_steps=1_000_000).states
        )
        y_fit = np.asarray(pkpd.simulate(m, s, times, **fit_kw).states)
        y_def = np.asarray(pkpd.simulate(m, s, times).states)
        record(f"single_{name}_compile_default_s", compile_default[name], "s", note="first call minus compiled call")
        record(f"single_{name}_compile_tsit5_s", max(first_fit - t_fit, 0.0), "s")
        record(f"single_{name}_default_kvaerno5_s", t_default, "s", note=f"rtol 1e-8; err {rel_diff(y_def, ref):.1e}")
        record(f"single_{name}_tsit5_s", t_fit, "s", note=f"err vs reference {rel_diff(y_fit, ref):.1e}")
        fast_err[name] = rel_diff(y_fit, ref)
        sp = ScipyModel(m, s, times)
        for method in ("LSODA", "BDF") if not quick or name == "psilocybin" else ("LSODA",):
            y_sp = sp.solve(method)
            t_sp = best_of(lambda: sp.solve(method), 1 if quick else 2)
            record(
                f"single_{name}_scipy_{method.lower()}_s",
                t_sp,
                "s",
                note=f"err vs reference {rel_diff(y_sp, ref):.1e}; max rel diff vs pkpd {rel_diff(y_fit, y_sp):.1e}",
            )
            record(
                f"single_{name}_vs_scipy_{method.lower()}",
                t_sp / t_fit,
                "x",
                baseline=f"scipy {method}",
                ratio=t_sp / t_fit,
            )
            if method == "LSODA":
                ratios[name] = (t_sp / t_fit, rel_diff(y_fit, y_sp))
    worst = max(compile_default, key=compile_default.get)
    record("compile_s", compile_default[worst], "s", note=f"worst model ({worst}), default simulate call")
    r, d = ratios["fluoxetine"]
    record(
        "single_subject_vs_scipy",
        r,
        "x",
        baseline="scipy LSODA (fluoxetine 12 weeks)",
        ratio=r,
        note=f"same tolerances; max rel diff {d:.1e}",
    )
    record("single_subject_max_rel_diff", d, "1", baseline="scipy LSODA")
    bad = max(fast_err, key=fast_err.get)
    record(
        "fast_path_max_rel_error",
        fast_err[bad],
        "1",
        baseline=f"Tsit5 rtol {REF_RTOL:g}",
        note=f"the fit/population settings (Tsit5 rtol {RTOL:g}) against the tight reference, every state, "
        f"worst model {bad}: " + ", ".join(f"{k} {v:.1e}" for k, v in fast_err.items()),
    )


# --------------------------------------------------------------------------------------------
POP_WORKER = r"""
import json, resource, sys, time
import numpy as np, jax, jax.numpy as jnp, equinox as eqx, diffrax as dfx
import pkpd
from pkpd.simulate import as_arrays
ns, devices = json.loads(sys.argv[1]), int(sys.argv[2])
m = as_arrays(pkpd.model("fluoxetine")); s = pkpd.protocol("fluoxetine", weeks=12)
times = np.linspace(0.0, 24.0 * 84, 100)
def population(n, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda x: jnp.asarray(float(x) * np.exp(0.3 * rng.standard_normal(n)))
    base = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + x.shape) if eqx.is_array(x) else x, m)
    return eqx.tree_at(lambda q: (q.driver.pk.cl, q.driver.pk.v, q.driver.pk.ka, q.driver.ec50), base,
                       (f(m.driver.pk.cl), f(m.driver.pk.v), f(m.driver.pk.ka), f(m.driver.ec50)))
opts = dict(solver=dfx.Tsit5(), rtol=1e-6, atol=1e-9, max_steps=16384, devices=devices)
out = []
for n in ns:
    pop = population(n)
    t0 = time.perf_counter()
    tr = pkpd.simulate_population(pop, s, times, **opts); jax.block_until_ready(tr.states)
    first = time.perf_counter() - t0
    rec = dict(n=n, first_s=first, shape=list(tr.states.shape), status=int(np.max(np.asarray(tr.status))),
               steps_median=float(np.median(np.asarray(tr.num_steps))), steps_max=float(np.max(np.asarray(tr.num_steps))))
    del tr
    t0 = time.perf_counter()
    tr = pkpd.simulate_population(pop, s, times, **opts); jax.block_until_ready(tr.states)
    rec["run_s"] = time.perf_counter() - t0
    rec["states_gib"] = tr.states.size * 8 / 2**30
    del tr
    rec["maxrss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    out.append(rec)
    print("POP " + json.dumps(rec), flush=True)
"""

POP_WORKER_ONCE = POP_WORKER.replace(
    """    del tr
    t0 = time.perf_counter()
    tr = pkpd.simulate_population(pop, s, times, **opts); jax.block_until_ready(tr.states)
    rec["run_s"] = time.perf_counter() - t0""",
    """    rec["run_s"] = None""",
)


def run_worker(ns, devices=2, once=False, timeout=3600):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    src = POP_WORKER_ONCE if once else POP_WORKER
    proc = subprocess.run(
        [sys.executable, "-c", src, json.dumps(ns), str(devices)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    recs = [json.loads(x[4:]) for x in proc.stdout.splitlines() if x.startswith("POP ")]
    if proc.returncode != 0 or len(recs) != len(ns):
        raise RuntimeError(f"population worker failed: {proc.stderr[-2000:]}")
    return recs


def bench_population(quick):

    print("\n== population (fluoxetine 12 weeks, 100 save times, Tsit5 rtol 1e-6; 2 host devices) ==", flush=True)
    # scipy LSODA loop over >= 100 subjects with the same parameter distribution.
    m, s, times = setup("fluoxetine")
    rng = np.random.default_rng(0)
    sp = ScipyModel(m, s, times)
    n_sp = 100
    t0 = time.perf_counter()
    import equinox as eqx

    for _ in range(n_sp):
        f = lambda x: float(x) * float(np.exp(0.3 * rng.standard_normal()))  # noqa: E731
        mi = eqx.tree_at(
            lambda q: (q.driver.pk.cl, q.driver.pk.v, q.driver.pk.ka, q.driver.ec50),
            m,
            (f(m.driver.pk.cl), f(m.driver.pk.v), f(m.driver.pk.ka), f(m.driver.ec50)),
        )
        sp.with_model(mi).solve("LSODA")
    scipy_rate = n_sp / (time.perf_counter() - t0)
    record("population_scipy_lsoda_subjects_per_s", scipy_rate, "1/s", note=f"loop over {n_sp} subjects, extrapolated")

    # pkpd: N per subprocess (clean peak RSS); the first call compiles, the second is timed.
    ns = [1000, 2048] if quick else [1000, 10_000]
    recs = {r["n"]: r for r in run_worker(ns)}
    if not quick:
        recs.update({r["n"]: r for r in run_worker([100_000], once=True, timeout=7200)})
    for n, r in sorted(recs.items()):
        t = r["run_s"] if r["run_s"] is not None else r["first_s"]
        note = (
            f"median {r['steps_median']:.0f} / max {r['steps_max']:.0f} steps per subject; peak RSS "
            f"{r['maxrss_gib']:.2f} GiB" + ("" if r["run_s"] is not None else "; one call incl. compile")
        )
        record(
            f"population_{n}_subjects_per_s",
            n / t,
            "1/s",
            baseline="scipy LSODA loop",
            ratio=(n / t) / scipy_rate,
            note=note,
        )
        record(f"population_{n}_peak_rss_gib", r["maxrss_gib"], "GiB", note="ru_maxrss of the worker process")
    big = max(recs)
    if 10_000 in recs:
        rate10k = 10_000 / recs[10_000]["run_s"]
        note10k = "measured at N=10,000"
    else:
        rate10k = big / recs[big]["run_s"]
        note10k = f"EXTRAPOLATED from N={big} (throughput is linear in N beyond ~1,000)"
        record(
            "population_10000_subjects_per_s",
            rate10k,
            "1/s",
            baseline="scipy LSODA loop",
            ratio=rate10k / scipy_rate,
            note=note10k,
        )
    record(
        "population_10000_vs_scipy",
        rate10k / scipy_rate,
        "x",
        baseline="scipy LSODA loop",
        ratio=rate10k / scipy_rate,
        note=note10k,
    )
    if 100_000 in recs:
        record(
            "memory_100000_gib", recs[100_000]["maxrss_gib"], "GiB", note="measured: ru_maxrss, N=100,000 x 100 times"
        )
    else:
        # Peak = fixed part (runtime, compiled code, chunk buffers: constant once N exceeds one chunk)
        # + the returned states (N x 100 x 18 float64), which grow linearly.
        r = recs[big]
        fixed = r["maxrss_gib"] - r["states_gib"]
        est = fixed + r["states_gib"] * 100_000 / big
        record(
            "memory_100000_gib",
            est,
            "GiB",
            note=f"ESTIMATED: peak RSS at N={big} ({r['maxrss_gib']:.2f} GiB) minus its states + 100,000 subjects' "
            "states (100 x 18 float64); population chunks bound the solver buffers",
        )
    if not quick:  # sharding speed-up: same N on one device
        one = run_worker([ns[0]], devices=1)[0]
        two = recs[ns[0]]
        record(
            f"population_{ns[0]}_sharding_speedup",
            one["run_s"] / two["run_s"],
            "x",
            baseline="1 device",
            ratio=one["run_s"] / two["run_s"],
            note="2 host devices (one per core) vs 1",
        )


# --------------------------------------------------------------------------------------------
def bench_gradient(quick):
    import diffrax as dfx
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import pkpd
    from pkpd.simulate import as_arrays, solve

    print("\n== gradient (fluoxetine, all parameters, reverse mode) ==", flush=True)
    m, s, times = setup("fluoxetine")
    m = as_arrays(m)
    table = pkpd.segment_table(m, s, times)
    opts = dict(solver=dfx.Tsit5(), rtol=RTOL, atol=ATOL, max_steps=16_384)
    data = solve(eqx.tree_at(lambda q: q.core.k_spine_form, m, m.core.k_spine_form * 1.2), table, **opts)[0]

    def loss(mm):
        ys = solve(mm, table, **opts)[0]
        return jnp.sum((ys - data) ** 2)

    params, static = eqx.partition(m, eqx.is_inexact_array)
    n_par = sum(x.size for x in jax.tree_util.tree_leaves(params))
    fwd = jax.jit(lambda p: loss(eqx.combine(p, static)))
    grad = jax.jit(jax.grad(lambda p: loss(eqx.combine(p, static))))
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(params))
    c_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = jax.block_until_ready(grad(params))
    c_grad = time.perf_counter() - t0
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))
    t_f = best_of(lambda: jax.block_until_ready(fwd(params)), 3 if quick else 5)
    t_g = best_of(lambda: jax.block_until_ready(grad(params)), 3 if quick else 5)
    record("gradient_forward_s", t_f, "s", note="loss = sum of squares of all states at 100 times")
    record("gradient_s", t_g, "s", note=f"w.r.t. all {n_par} parameters, RecursiveCheckpointAdjoint")
    record("gradient_over_forward", t_g / t_f, "x", baseline="one forward loss", ratio=t_g / t_f)
    record("gradient_compile_s", max(c_grad - t_g, 0.0), "s", note=f"forward loss compile {max(c_fwd - t_f, 0):.1f} s")


# --------------------------------------------------------------------------------------------
def bench_fit(quick):
    import arviz as az

    from pkpd.fit import Problem, fit_map, fit_nuts

    print("\n== fit (psilocybin, published curves) ==", flush=True)
    t0 = time.perf_counter()
    problem = Problem("psilocybin")
    record(
        "fit_problem_setup_s",
        time.perf_counter() - t0,
        "s",
        note=f"{problem.obs.n} rows, {len(problem.names)} parameters",
    )
    f = fit_map(problem, starts=1, progress=False, max_steps=20 if quick else 200)
    record("fit_map_s", f.seconds, "s", note=f"one start incl. compile; {f.n_steps} LM steps, converged={f.converged}")
    warmup, draws = (20, 20) if quick else (200, 200)
    idata = fit_nuts(problem, chains=1, warmup=warmup, draws=draws, init=f, prior_draws=10, progress=False)
    sec = float(idata.posterior.attrs["sampling_seconds"])
    ess = az.ess(idata.posterior, var_names=[f"z_{n}" for n in problem.names])
    ess_min = float(min(float(ess[v].values) for v in ess.data_vars))
    record("fit_nuts_s", sec, "s", note=f"1 chain, {warmup} warmup + {draws} draws, incl. compile")
    record("fit_nuts_s_per_effective_sample", sec / max(ess_min, 1e-9), "s", note=f"min bulk ESS {ess_min:.0f}")


# --------------------------------------------------------------------------------------------
def bench_chi(quick):
    import jax

    import pkpd

    print("\n== chi-drm (myokit / CVODES) on a one-compartment oral schedule ==", flush=True)
    try:
        from chi.library import ModelLibrary
    except Exception as e:  # noqa: BLE001
        record("chi_skipped", 0, "", note=f"chi-drm not importable: {type(e).__name__}: {e}")
        return
    cl, v, ka, days = 10.0, 50.0, 1.0, 84
    times = np.linspace(0.0, 24.0 * days, 24 * days + 1)
    dur = 1e-4  # chi doses are short infusions into the dosing compartment: 0.36 s ~ a bolus
    cm = ModelLibrary().one_compartment_pk_model()
    cm.set_administration("central", direct=False)
    cm.set_dosing_regimen(100.0, start=0.0, duration=dur, period=24.0, num=days)
    cm._simulator.set_tolerance(abs_tol=1e-12, rel_tol=1e-8)  # myokit defaults are 1e-6 / 1e-4
    order = cm.parameters()
    values = {
        "central.drug_amount": 0.0,
        "dose.drug_amount": 0.0,
        "central.size": v,
        "dose.absorption_rate": ka,
        "global.elimination_rate": cl / v,
    }
    par = [values[p] for p in order]
    c_chi = cm.simulate(par, times)[0]
    t_chi = best_of(lambda: cm.simulate(par, times), 3)
    model = pkpd.pk.OneCompartment(cl=cl, v=v, ka=ka)
    sched = pkpd.Schedule.daily(100.0, days=days)
    run = lambda: jax.block_until_ready(pkpd.simulate(model, sched, times).states)  # noqa: E731
    run()
    t_pk = best_of(run, 5)
    c_pk = np.asarray(pkpd.simulate(model, sched, times)["concentration"])
    # Compare away from the 0.36 s infusion windows (chi's bolus approximation).
    mask = (times % 24.0) > 0.01
    d = float(np.max(np.abs(c_chi[mask] - c_pk[mask]) / np.maximum(np.abs(c_pk[mask]), 1e-3 * c_pk.max())))
    record("chi_s", t_chi, "s", note="CVODES, rtol 1e-8 atol 1e-12, 84 doses, 2017 times")
    record("chi_pkpd_exact_s", t_pk, "s", note="pkpd.simulate, exact (matrix exponential) path")
    record("chi_max_rel_diff", d, "1", baseline="pkpd exact")
    record("chi_ratio", t_chi / t_pk, "x", baseline="chi (CVODES)", ratio=t_chi / t_pk)


# --------------------------------------------------------------------------------------------
def markdown(paths) -> str:
    """A markdown table of one or more JSON reports (later files add to / override earlier ones)."""
    rows: dict = {}
    for p in paths:
        with open(p) as fh:
            for r in json.load(fh)["results"]:
                rows[r["name"]] = r
    out = ["| name | value | unit | ratio | baseline | note |", "|---|---:|---|---:|---|---|"]
    for r in rows.values():
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.3g}x"
        out.append(
            f"| `{r['name']}` | {r['value']:.4g} | {r['unit']} | {ratio} | {r.get('baseline') or ''} | "
            f"{r.get('note', '')} |"
        )
    return "\n".join(out)


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--markdown":
        print(markdown(sys.argv[2:]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small settings, < 5 minutes on 2 cores")
    ap.add_argument("--json", default=None, help="write the report here")
    ap.add_argument("--only", default="single,population,gradient,fit,chi", help="comma-separated sections")
    args = ap.parse_args(argv)

    import jax

    import pkpd

    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "pkpd": getattr(pkpd, "__version__", "dev"),
        "quick": args.quick,
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        import diffrax
        import scipy

        machine.update(diffrax=diffrax.__version__, scipy=scipy.__version__)
    except Exception:  # noqa: BLE001
        pass
    print(f"pkpd benchmarks ({'quick' if args.quick else 'full'}): {machine}", flush=True)
    sections = {
        "single": bench_single,
        "population": bench_population,
        "gradient": bench_gradient,
        "fit": bench_fit,
        "chi": bench_chi,
    }
    errors = {}
    for name in args.only.split(","):
        t0 = time.perf_counter()
        try:
            sections[name](args.quick)
        except Exception as e:  # noqa: BLE001 -- one failing section must not lose the others
            errors[name] = f"{type(e).__name__}: {e}"
            print(f"!! section {name} failed: {errors[name]}", flush=True)
        print(f"   [{name}: {time.perf_counter() - t0:.0f} s; total {elapsed():.0f} s]", flush=True)
    machine["loadavg_end"] = list(os.getloadavg())
    machine["total_s"] = elapsed()
    report = {"machine": machine, "results": RESULTS}
    if errors:
        report["errors"] = errors
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
