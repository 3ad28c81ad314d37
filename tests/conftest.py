import os
import tempfile

# One persistent XLA compilation cache for the whole run, shared by pytest-xdist workers and the
# notebook kernels (they inherit the environment): the suite compiles the same solvers in many
# modules and notebooks, and jax.clear_caches() below drops the in-memory copies after each module.
# Executables that contain host callbacks are never written to the cache, so equinox's runtime
# checks (diffrax's saveat/dt0 checks) return NaN here instead of calling back to the host; pkpd
# checks the solver status itself and reports a non-finite result as a SolverError.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pkpd-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("EQX_ON_ERROR", "nan")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pkpd  # noqa: E402, F401  (enables float64 before any test creates arrays)


def one_cmt_oral(t, dose_times, amounts, cl, v, ka, f=1.0, lag=0.0):
    """Closed-form 1-compartment oral concentration by superposition (mg/L)."""
    k = cl / v
    t = np.asarray(t, float)
    out = np.zeros_like(t)
    for td, a in zip(dose_times, amounts):
        dt = t - td - lag
        m = dt >= 0
        out[m] += f * a / v * ka / (ka - k) * (np.exp(-k * dt[m]) - np.exp(-ka * dt[m]))
    return out


def rel_err(x, ref, floor=1e-12):
    x, ref = np.asarray(x), np.asarray(ref)
    return np.abs(x - ref) / np.maximum(np.abs(ref), floor)


@pytest.fixture
def oral_model():
    return pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=1.0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop compiled executables after each test module. One pytest process compiles hundreds of
    solvers; kept alive they exhausted LLVM's memory mappings late in the suite ("LLVM compilation
    error: Cannot allocate memory", and once a segfault inside an XLA compile)."""
    yield
    import gc
    import sys

    import jax

    simulate = sys.modules["pkpd.simulate"]  # the module (pkpd.simulate is the function)
    simulate._COMPILED.clear()
    getattr(simulate, "_POPULATION", {}).clear()
    jax.clear_caches()
    gc.collect()
