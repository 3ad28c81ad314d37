"""The flip-flop symmetry of one-compartment oral PK (pkpd.flipflop) and its use in the joint NUTS."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pkpd import calibrate, flipflop
from pkpd.model import N_ROUTES, route_index
from pkpd.pk import OneCompartment

TRIPLE = (0, 1, 2)


@pytest.fixture(scope="module")
def shipped():
    return calibrate.load()


def _curve(z, t):
    """Closed-form 1-compartment oral concentration (dose 1, F = 1) at log-parameters z."""
    ka, cl, v = np.exp(z[..., 0]), np.exp(z[..., 1]), np.exp(z[..., 2])
    ke = cl / v
    return ka / (v * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t))


def test_reflection_swaps_the_rates_keeps_clearance_and_the_curve():
    z = np.log([0.5958, 100.8, 242.8])  # the psilocybin card's (ka, cl, v)
    m = flipflop.reflect(z, TRIPLE)
    ka, cl, v = np.exp(m)
    assert ka == pytest.approx(100.8 / 242.8) and cl == pytest.approx(100.8)
    assert cl / v == pytest.approx(0.5958)  # ke <- ka
    assert flipflop.log_ratio(m, TRIPLE) == pytest.approx(-flipflop.log_ratio(z, TRIPLE))
    np.testing.assert_allclose(flipflop.reflect(m, TRIPLE), z, rtol=0, atol=1e-14)  # an involution
    t = np.linspace(0.1, 24, 50)
    np.testing.assert_allclose(_curve(m, t), _curve(z, t), rtol=1e-10)  # same plasma curve
    jac = jax.jacfwd(lambda x: flipflop.reflect(x, TRIPLE))(jnp.asarray(z))
    assert abs(np.linalg.det(np.asarray(jac))) == pytest.approx(1.0)  # measure-preserving
    np.testing.assert_allclose(np.asarray(flipflop.reflect(jnp.asarray(z), TRIPLE)), m, rtol=1e-14)


def test_one_compartment_model_concentration_is_invariant_under_the_swap():
    """pkpd's own OneCompartment (the ODE the models run on), not only the closed form."""
    z = np.log([0.5958, 100.8, 242.8])
    ka, cl, v = np.exp(z)
    kb, _, w = np.exp(flipflop.reflect(z, TRIPLE))
    oral = jnp.zeros(N_ROUTES).at[route_index("oral")].set(25.0)

    def curve(pk):
        y0 = pk.dose(jnp.zeros(2), oral)
        return np.asarray(
            [
                pk.outputs(pk.propagate(y0, jnp.zeros(N_ROUTES), dt))["concentration"]
                for dt in np.linspace(0.25, 12.0, 24)
            ]
        )

    a = curve(OneCompartment(cl=cl, v=v, ka=ka, f=0.53))
    b = curve(OneCompartment(cl=cl, v=w, ka=kb, f=0.53))
    assert a.max() > 0.01
    np.testing.assert_allclose(b, a, rtol=1e-9)


def test_fold_puts_every_draw_on_ka_ge_ke_and_leaves_those_alone():
    rng = np.random.default_rng(0)
    z = rng.normal(np.log([0.6, 100.0, 240.0, 2.0]), 0.5, size=(2000, 4))
    f = flipflop.fold(z, [TRIPLE])
    assert np.all(flipflop.log_ratio(f, TRIPLE) >= 0)
    keep = flipflop.log_ratio(z, TRIPLE) >= 0
    np.testing.assert_array_equal(f[keep], z[keep])
    np.testing.assert_allclose(f[~keep], flipflop.reflect(z[~keep], TRIPLE))
    np.testing.assert_array_equal(f[:, 3], z[:, 3])  # other parameters untouched
    np.testing.assert_allclose(f[:, 1], z[:, 1])  # clearance never changes
    # the traced version (inside the NUTS models) folds one vector at a time, identically
    fj = jax.jit(jax.vmap(lambda x: flipflop.fold_jax(x, [TRIPLE])))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(fj), f, rtol=1e-14, atol=1e-14)


def test_symmetrised_prior_is_the_mirror_average():
    mu = jnp.asarray(np.log([0.5958, 100.8, 242.8, 3.0]))
    sig = jnp.asarray([0.5, 0.5, 0.5, 0.7])
    z = jnp.asarray(np.log([0.45, 110.0, 200.0, 2.5]))
    lp = float(flipflop.log_prior(z, mu, sig, [TRIPLE]))
    p = lambda x: np.prod(stats.norm.pdf(np.asarray(x[:3]), np.asarray(mu[:3]), np.asarray(sig[:3])))  # noqa: E731
    rest = stats.norm.logpdf(float(z[3]), float(mu[3]), float(sig[3]))
    assert lp == pytest.approx(np.log(0.5 * (p(z) + p(flipflop.reflect(np.asarray(z), TRIPLE)))) + rest, rel=1e-12)
    assert float(flipflop.log_prior(flipflop.reflect(z, TRIPLE), mu, sig, [TRIPLE])) == pytest.approx(lp, rel=1e-12)
    plain = float(jnp.sum(jax.scipy.stats.norm.logpdf(z, mu, sig)))
    assert float(flipflop.log_prior(z, mu, sig, [])) == pytest.approx(plain, rel=1e-12)
    # far from the mirror (ka >> ke, as for LSD) the symmetrised prior is the plain one minus log 2
    far = jnp.asarray(np.log([5.0, 100.8, 2000.0, 3.0]))
    mu_far = far
    assert float(flipflop.log_prior(far, mu_far, sig, [TRIPLE])) == pytest.approx(
        float(jnp.sum(jax.scipy.stats.norm.logpdf(far, mu_far, sig))) - np.log(2), abs=1e-9
    )
    g = jax.grad(lambda x: flipflop.log_prior(x, mu, sig, [TRIPLE]))(z)
    assert np.all(np.isfinite(np.asarray(g)))


def test_triples_find_one_compartment_oral_drugs_only():
    keys = [
        "psilocybin.ka@human",
        "psilocybin.cl@human",
        "psilocybin.v@human",
        "k_spine_form",
        "fluoxetine.ka@human",
        "fluoxetine.cl@human",
        "fluoxetine.v@human",
        "lsd.ka@human",
        "lsd.cl@human",
        "lsd.v@human",
        "escitalopram.ec50@human",
    ]
    structure = {
        "psilocybin": "oral_one_compartment",
        "lsd": "oral_one_compartment",
        "fluoxetine": "oral_one_compartment_metabolite",
    }.get
    assert flipflop.triples(keys, structure, lambda k: "log") == [(0, 1, 2), (7, 8, 9)]
    assert flipflop.triples(keys, structure, lambda k: "identity" if k == "lsd.v@human" else "log") == [(0, 1, 2)]
    assert flipflop.triples(keys[:2], structure, lambda k: "log") == []  # v not fitted
    assert flipflop.pk_structure("psilocybin") == "oral_one_compartment"
    assert flipflop.pk_structure("fluoxetine") == "oral_one_compartment_metabolite"


@pytest.mark.parametrize("drug", ["psilocybin", "lsd"])
def test_library_likelihood_is_invariant_under_the_swap(drug):
    """The assumption the symmetrised NUTS rests on: every curated row of the modality (PK,
    occupancy, subjective effect, spines, clinical) predicts the same at (ka, cl, v) and at
    (ke, cl, v ke / ka), study effects integrated out. Would fail if a readout depended on the
    absorption compartment itself."""
    jp = calibrate.JointProblem([drug], progress=False)
    host = calibrate._HostLogLikelihood(jp)
    (t,) = flipflop.triples(jp.keys, flipflop.pk_structure, lambda k: jp.meta[k]["transform"])
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.3):
        theta = np.concatenate([jp.mu[: jp.K] + shift * rng.standard_normal(jp.K), [np.log(0.3)]])
        ll, _ = host(theta)
        ll_m, _ = host(flipflop.reflect(theta, t))
        assert np.isfinite(ll) and ll_m == pytest.approx(ll, abs=1e-6 * max(1.0, abs(ll)))


@pytest.mark.slow  # NUTS runs: 25-50 s each on 2 cores (python -m pytest -m slow)
def test_hierarchical_nuts_reports_psilocybin_folded(shipped):
    """The joint NUTS symmetrises psilocybin's prior and reports ka >= ke; theta stays unfolded."""
    idata = calibrate.nuts(
        ["psilocybin"],
        chains=1,
        warmup=12,
        draws=10,
        progress=False,
        max_tree_depth=3,
        study_effect_draws=0,
        init=shipped,
        start="map",
    )
    post = idata.posterior
    keys = list(post.coords["parameter"].values)
    t = tuple(keys.index(f"psilocybin.{n}@human") for n in ("ka", "cl", "v"))
    assert json.loads(post.attrs["flip_flop"]) == [[keys[i] for i in t]]
    theta = np.asarray(post["theta"])[0][:, : len(keys)]
    z = np.asarray(post["parameters"])[0]
    np.testing.assert_allclose(z, flipflop.fold(theta, [t]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(post["natural"])[0], np.exp(z), rtol=1e-12)  # all log-fitted here
    (share,) = json.loads(post.attrs["flip_flop_reflected"])
    assert share == [pytest.approx(np.mean(flipflop.log_ratio(theta, t) < 0))]


@pytest.mark.slow  # NUTS runs: 25-50 s each on 2 cores (python -m pytest -m slow)
def test_per_modality_nuts_reports_ka_ge_ke_and_symmetrises_the_prior():
    """pkpd.fit(..., method="nuts") on psilocybin's curated plasma rows (cmax, half-life, tmax)
    with ka, cl and v free: named draws satisfy ka >= cl / v, and equal the folded z_ sites."""
    import pkpd

    rows = pkpd.datasets("psilocybin")
    rows = rows[rows["readout"] == "concentration"]
    names = ["ka@human", "cl@human", "v@human"]
    idata = pkpd.fit(
        "psilocybin",
        data=rows,
        method="nuts",
        parameters=names,
        chains=1,
        warmup=10,
        draws=10,
        seed=0,
        progress=False,
        nuts_options={"max_tree_depth": 3},
    )
    post = idata.posterior
    assert json.loads(post.attrs["flip_flop"]) == [names]
    z = np.stack([np.asarray(post[f"z_{n}"])[0] for n in names], axis=1)
    shown = np.stack([np.asarray(post[n])[0] for n in names], axis=1)
    np.testing.assert_allclose(np.log(shown), flipflop.fold(z, [TRIPLE]), rtol=1e-10)
    assert np.all(shown[:, 0] >= shown[:, 1] / shown[:, 2] * (1 - 1e-12))
