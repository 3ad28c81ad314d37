"""Reproducibility (issue 7): the same seed gives the same NUTS draws; saved fits round-trip exactly.

Cost (measured on the 2-core CI box): one ``pkpd.fit(..., method="nuts")`` of the tiny problem
below costs ~50 s of CPU whatever the number of draws -- it is dominated by compiling the MAP
start, the sampler, the two predictive passes and the log-likelihood. The netCDF round trip
needs one run (default suite); the same-seed comparison needs a second run and is marked
``slow`` (run with ``-m slow``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pkpd
from pkpd.fit import MapFit, load

ROW = dict(
    species="human",
    modality="psilocybin",
    citation="simulated",
    doi="none",
    quote="simulated",
    n=20.0,
    study_id="tiny",
    readout="concentration",
    analyte="psilocin",
    dispersion_type="se",
)
#: Two summary rows that inform two PK parameters (Holze 2023-like psilocin Cmax and Tmax).
TINY = pd.DataFrame(
    [
        dict(ROW, statistic="cmax", unit="ng/mL", value=17.0, dispersion="1.0"),
        dict(ROW, statistic="tmax", unit="h", value=2.0, dispersion="0.3"),
    ]
)
NUTS = dict(method="nuts", chains=1, warmup=20, draws=20, parameters=["cl@human", "ka@human"], progress=False)


def run_nuts(seed=0):
    return pkpd.fit("psilocybin", data=TINY, seed=seed, **NUTS)


@pytest.fixture(scope="module")
def idata():
    return run_nuts(seed=0)


def _assert_identical(a, b, *, attrs=True):
    """Every group, variable, coordinate (and attribute) of two InferenceData objects equal bit for bit."""
    assert sorted(a.groups()) == sorted(b.groups())
    for group in a.groups():
        da, db = getattr(a, group), getattr(b, group)
        assert sorted(da.data_vars) == sorted(db.data_vars), group
        for name in da.data_vars:
            x, y = da[name].values, db[name].values
            assert x.dtype == y.dtype and x.shape == y.shape, (group, name)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (group, name)
        for c in da.coords:
            assert np.array_equal(da[c].values, db[c].values), (group, c)
        if attrs:
            volatile = ("created_at", "sampling_seconds")
            assert {k: v for k, v in da.attrs.items() if k not in volatile} == {
                k: v for k, v in db.attrs.items() if k not in volatile
            }, group


@pytest.mark.slow  # a NUTS run; in the full suite its XLA compile segfaulted once (2026-11-22), see the note
def test_nuts_netcdf_round_trips_exactly(idata, tmp_path):
    path = tmp_path / "nuts.nc"
    idata.to_netcdf(str(path))
    back = load(path)
    _assert_identical(idata, back)
    assert back.posterior.attrs["sampling_seconds"] == idata.posterior.attrs["sampling_seconds"]
    assert json.loads(back.posterior.attrs["parameters"]) == ["cl@human", "ka@human"]
    assert pkpd.fit.load is load  # the documented spelling ``pkpd.fit.load(path)``


@pytest.mark.slow
def test_nuts_same_seed_gives_identical_draws(idata):
    again = run_nuts(seed=0)
    _assert_identical(idata, again, attrs=False)
    assert again.posterior["cl@human"].shape == (1, 20)
    assert np.unique(again.posterior["cl@human"].values).size > 1  # the chain moved


def _awkward_mapfit() -> MapFit:
    """A MapFit whose floats stress a text round trip (0.1 + 0.2, subnormals, 1e308, -0.0, many digits)."""
    rng = np.random.default_rng(7)
    names = ["cl@human", "k_spine_form", "g_vegf"]
    z = np.array([0.1 + 0.2, -5e-324, np.log(1.3)])
    a = rng.standard_normal((3, 3))
    return MapFit(
        modality="psilocybin",
        names=names,
        z=z,
        natural={n: float(np.exp(v)) for n, v in zip(names, z)},
        cov_z=a @ a.T * 1e-7,
        prior_sigma=np.array([0.5, 1.0, 1e308]),
        converged=True,
        n_steps=17,
        objective=-0.0,
        seconds=1 / 3,
        starts=3,
    )


def test_mapfit_json_round_trips_exactly(tmp_path):
    fit = _awkward_mapfit()
    path = tmp_path / "map.json"
    fit.save(path)
    for back in (MapFit.load(path), load(path)):
        assert isinstance(back, MapFit)
        assert back.to_dict() == fit.to_dict()
        for field in ("z", "cov_z", "prior_sigma"):
            x, y = getattr(back, field), getattr(fit, field)
            assert x.dtype == y.dtype == np.float64 and np.array_equal(x, y), field
            assert np.array_equal(np.signbit(x), np.signbit(y)), field
        assert back.natural == fit.natural and back.sd_ratio == fit.sd_ratio
        assert np.signbit(back.objective)
    # saving the loaded fit gives the same bytes
    again = tmp_path / "again.json"
    load(path).save(again)
    assert again.read_bytes() == path.read_bytes()
