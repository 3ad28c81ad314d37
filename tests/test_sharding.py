"""Populations sharded across devices (``simulate_population(..., devices=...)``) equal the
unsharded run. Two CPU devices need XLA_FLAGS set before jax is imported, so the check runs in a
subprocess."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import diffrax as dfx
    import jax
    import pkpd

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    n = 10  # not a multiple of the chunk size: exercises padding
    models = pkpd.stack([pkpd.pk.OneCompartment(cl=float(c), v=50.0, ka=1.0)
                         for c in 10.0 * np.exp(0.3 * rng.standard_normal(n))])
    t = np.linspace(0.0, 24.0 * 4, 49)
    shared = pkpd.Schedule.daily(100.0, days=4)
    per_subject = [pkpd.Schedule.daily(100.0, days=1 + i % 4) for i in range(n)]
    opts = dict(method="ode", solver=dfx.Tsit5(), rtol=1e-8, atol=1e-12)
    out = {}
    for name, sched in (("shared", shared), ("per_subject", per_subject)):
        one = pkpd.simulate_population(models, sched, t, devices=1, **opts)
        two = pkpd.simulate_population(models, sched, t, **opts)  # default: all (2) devices
        a = np.asarray(one.states)
        if name == "shared":
            a_shared = a
        out[name] = dict(shape=list(a.shape), two=float(np.max(np.abs(np.asarray(two.states) - a))),
                         status=int(np.max(np.asarray(two.status))),
                         devices=len(two.states.sharding.device_set))
    # Chunked (3 chunks of 4, the last padded) and sharded.
    chunked = pkpd.simulate_population(models, shared, t, devices=2, chunk_size=4, **opts)
    out["shared"]["chunked"] = float(np.max(np.abs(np.asarray(chunked.states) - a_shared)))
    # A PD model with sessions (rTMS) sharded equals unsharded.
    m = pkpd.model("rtms_10hz")
    sched = pkpd.protocol("rtms_10hz", sessions=2)
    pop = pkpd.stack([m] * 2)
    tt = np.linspace(0.0, 48.0, 5)
    a = np.asarray(pkpd.simulate_population(pop, sched, tt, devices=1, solver=dfx.Tsit5(), rtol=1e-6, atol=1e-9).states)
    b = np.asarray(pkpd.simulate_population(pop, sched, tt, devices=2, solver=dfx.Tsit5(), rtol=1e-6, atol=1e-9).states)
    out["rtms"] = dict(shape=list(a.shape), two=float(np.max(np.abs(a - b))), finite=bool(np.all(np.isfinite(a))))
    # An implicit solver is not sharded (lineax fails inside shard_map): by default it runs on one
    # device and gives the unsharded result; asking for two devices is refused with the reason.
    imp = dict(method="ode", solver=dfx.Kvaerno3(), rtol=1e-5, atol=1e-8)
    c = pkpd.simulate_population(models, shared, t, **imp)
    d = np.asarray(pkpd.simulate_population(models, shared, t, devices=1, **imp).states)
    try:
        pkpd.simulate_population(models, shared, t, devices=2, **imp)
        refused = ""
    except ValueError as e:
        refused = str(e)
    # the exact (matrix-exponential) path uses no ODE solver, so it stays sharded whatever the solver
    exact = pkpd.simulate_population(models, shared, t, solver=dfx.Kvaerno3())
    out["exact_devices"] = len(exact.states.sharding.device_set)
    out["implicit"] = dict(devices=len(c.states.sharding.device_set), diff=float(np.max(np.abs(np.asarray(c.states) - d))),
                           status=int(np.max(np.asarray(c.status))), refused=refused)
    print("RESULT " + json.dumps(out))
""")


def test_sharded_population_equals_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    for name in ("shared", "per_subject"):
        r = out[name]
        assert r["shape"] == [10, 49, 2]
        assert r["status"] == 0
        # Each subject's solve is the same computation on either device: identical to round-off.
        assert r["two"] <= 1e-12, r
    assert out["shared"]["devices"] == 2
    assert out["shared"]["chunked"] <= 1e-12
    assert out["rtms"]["finite"] and out["rtms"]["two"] <= 1e-12, out["rtms"]
    assert out["exact_devices"] == 2
    imp = out["implicit"]
    assert imp["devices"] == 1 and imp["status"] == 0 and imp["diff"] == 0.0, imp
    assert "devices=2" in imp["refused"] and "Kvaerno3" in imp["refused"] and "shard_map" in imp["refused"], imp


def test_devices_argument_is_validated():
    import numpy as np
    import pytest

    import pkpd

    m = pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=1.0)
    s = pkpd.Schedule.single_dose(100.0)
    with pytest.raises(ValueError, match="devices"):
        pkpd.simulate_population(pkpd.stack([m, m]), s, np.linspace(0, 24, 5), devices=99)
    with pytest.raises(ValueError, match="chunk_size"):
        pkpd.simulate_population(pkpd.stack([m, m]), s, np.linspace(0, 24, 5), chunk_size=0)
