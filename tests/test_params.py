"""pkpd.params: getting, setting and transforming a model's parameters by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pkpd
from pkpd import params


@pytest.fixture(scope="module")
def fluoxetine():
    return pkpd.model("fluoxetine")


def test_where_finds_core_driver_and_pk_parameters(fluoxetine):
    m = fluoxetine
    assert params.get(m, "k_spine_form") == m.core.k_spine_form  # core
    assert params.get(m, "k_adapt") == m.driver.k_adapt  # driver
    assert params.get(m, "cl") == m.driver.pk.cl  # driver.pk
    assert params.get(m, "ec50") == m.driver.ec50
    assert params.has(m, "fm") and not params.has(m, "a_itbs")
    assert params.where(m, "no_such_parameter") is None


def test_get_matches_the_card_values(fluoxetine):
    table = pkpd.parameters("fluoxetine")
    for name in ("k_spine_form", "k_adapt", "cl", "v", "ka", "ec50", "fm"):
        assert float(params.get(fluoxetine, name)) == pytest.approx(
            float(table.set_index("parameter").loc[name, "value"])
        )


def test_device_model_has_no_pk():
    m = pkpd.model("itbs")
    assert params.has(m, "a_itbs")
    assert not params.has(m, "cl")  # a device's driver has no .pk: the lookup skips it
    with pytest.raises(KeyError, match="'cl'.*itbs"):
        params.get(m, "cl")


def test_replace_sets_values_and_leaves_the_rest(fluoxetine):
    m2 = params.replace(fluoxetine, ["cl", "k_spine_form"], [3.5, 0.02])
    assert float(params.get(m2, "cl")) == 3.5 and float(params.get(m2, "k_spine_form")) == 0.02
    assert params.get(m2, "cl").dtype == jnp.float64
    assert float(params.get(m2, "v")) == float(params.get(fluoxetine, "v"))
    assert float(params.get(fluoxetine, "cl")) != 3.5  # the original is unchanged (frozen modules)
    m3 = params.set(fluoxetine, "ec50", 7.0)
    assert params.get(m3, "ec50") == 7.0
    with pytest.raises(ValueError, match="2 names"):
        params.replace(fluoxetine, ["cl", "v"], [1.0])
    with pytest.raises(KeyError, match="a_itbs"):
        params.replace(fluoxetine, ["a_itbs"], [1.0])


def test_replace_passes_through_jit_and_grad(fluoxetine):
    # d(1 / cl) / d(log cl) = -1 / cl: the gradient reaches the value set inside the model
    def inv_cl(log_cl):
        m = params.replace(fluoxetine, ["cl"], [jnp.exp(log_cl)])
        return 1.0 / params.get(m, "cl")

    x = jnp.log(2.0)
    assert float(jax.jit(inv_cl)(x)) == pytest.approx(0.5)
    assert float(jax.grad(inv_cl)(x)) == pytest.approx(-0.5)


@pytest.mark.parametrize("transform", params.TRANSFORMS)
def test_transforms_round_trip(transform):
    z = jnp.linspace(-3.0, 3.0, 13)
    x = params.to_natural(transform, z)
    np.testing.assert_allclose(np.asarray(params.to_unconstrained(transform, x)), np.asarray(z), atol=1e-12)


def test_transform_values_and_errors():
    assert float(params.to_natural("log", jnp.log(4.0))) == pytest.approx(4.0)
    assert float(params.to_natural("logit", 0.0)) == 0.5
    assert float(params.to_natural("identity", -2.5)) == -2.5
    with pytest.raises(ValueError, match="transform='sqrt'"):
        params.to_natural("sqrt", 1.0)


def test_prior_transform_closed_forms():
    t, mu, sd = params.prior_transform("core", "k", {"dist": "lognormal", "median": 2.0, "sigma": 0.4})
    assert (t, mu, sd) == ("log", pytest.approx(np.log(2.0)), 0.4)
    # beta(mean 0.2, concentration 24): logit-normal moment match sd = 1 / sqrt(m (1 - m) (c + 1))
    t, mu, sd = params.prior_transform("drug", "f", {"dist": "beta", "mean": 0.2, "concentration": 24.0})
    assert t == "logit" and mu == pytest.approx(np.log(0.25)) and sd == pytest.approx(1.0 / np.sqrt(0.16 * 25))
    assert params.prior_transform("core", "x", {"dist": "normal", "mean": -1.0, "sd": 0.5}) == ("identity", -1.0, 0.5)
    with pytest.raises(ValueError, match="drug.lag: a halfnormal prior cannot be fitted"):
        params.prior_transform("drug", "lag", {"dist": "halfnormal", "sigma": 1.0})


def test_fit_calibrate_and_design_share_the_addressing(fluoxetine):
    from pkpd import design
    from pkpd.fit import _to_natural, _where

    # the former private names still resolve to the public functions
    assert _where is params.where and _to_natural is params.to_natural
    assert float(design._get(fluoxetine, "cl")) == float(params.get(fluoxetine, "cl"))
    cal = pkpd.calibrate.load()
    m = cal.model("fluoxetine")
    i = cal.keys.index("fluoxetine.cl@human")
    expected = float(params.to_natural(cal.parameters[i]["transform"], cal.map_z[i]))
    assert float(params.get(m, "cl")) == pytest.approx(expected, rel=1e-12)
