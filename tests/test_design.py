"""Schedule design (issue 8): gradient-based schedule optimisation and sensitivity analysis.

The issue's contract runs as written in ``test_contract_optimise`` (``optimise_schedule``) and, marked
slow because it runs 2,000+ simulations, ``test_contract_sensitivity_sobol``; a small Sobol run
checks the same code path in the default suite.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import pkpd
from pkpd import design

ISHIGAMI_S1 = np.array([0.3139, 0.4424, 0.0])
ISHIGAMI_ST = np.array([0.5576, 0.4424, 0.2437])


def test_contract_optimise():
    res = pkpd.optimise_schedule(
        "accelerated_itbs", readout="synaptic_efficacy", at_h=24.0 * 5, vary=["gap_h"], bounds={"gap_h": (0.25, 4.0)}
    )
    res.schedule, res.value  # noqa: B018  (the contract, as written in the issue)
    assert isinstance(res.schedule, pkpd.Schedule)
    assert res.schedule.n_sessions == 50
    assert res.value >= res.standard_value  # never worse than the standard protocol
    assert 0.25 <= res.x["gap_h"] <= 4.0
    # the returned value is the simulated value of the returned schedule
    tr = pkpd.simulate(pkpd.model("accelerated_itbs"), res.schedule, np.array([0.0, 120.0]))
    assert float(tr["synaptic_efficacy"][-1]) == pytest.approx(res.value, rel=1e-4)
    assert {"stage", "gap_h", "value"} <= set(res.history.columns)


def test_gradient_through_segment_boundaries_matches_finite_differences():
    """d(efficacy at day 5)/d(gap) by jacfwd through traced session times vs central differences
    (tight tolerances, where the numerical solution's derivative converges)."""
    sp = design._Space("accelerated_itbs", "human", {})
    m = design.as_arrays(pkpd.model("accelerated_itbs"))
    opts = {**design.DESIGN_SOLVE, "rtol": 1e-9, "atol": 1e-12, "max_steps": 100_000}
    spec = design._Spec(
        readout="synaptic_efficacy",
        metric="value",
        at_index=1,
        target=None,
        cmax=False,
        batched=False,
        solve_opts=tuple(sorted(opts.items())),
    )

    def ev(g, grad):
        dd = {**sp.standard, "gap_h": g}
        link = design._Link(m, sp.schedule(dd), np.array([0.0, 120.0]), sp.coeffs(dd, ["gap_h"]), {"gap_h": g})
        x = {"gap_h": jnp.asarray(g)}
        return design._val_jac(spec, x, link.aux, m) if grad else design._val(spec, x, link.aux, m)

    g = 1.2
    _, _, jac = ev(g, True)
    fd = (float(ev(g + 1e-3, False)[0]) - float(ev(g - 1e-3, False)[0])) / 2e-3
    assert float(jac["gap_h"][0]) == pytest.approx(fd, rel=0.03)


def test_minimise_and_discrete_enumeration_never_worse():
    """ECT: sessions per week for a fixed number of sessions, minimising the time to +2 % volume."""
    res = pkpd.optimise_schedule(
        "ect",
        readout="hippocampal_volume",
        metric="time_to",
        target=1.02,
        at_h=24.0 * 90,
        vary=["sessions_per_week"],
        bounds={"sessions_per_week": (2, 3)},
        constraints={"total_sessions": 12},
        objective="min",
        grid_step_h=6.0,
    )
    assert res.value <= res.standard_value
    assert res.schedule.n_sessions == 12
    assert res.x["sessions_per_week"] in (2, 3)


def test_returns_the_start_when_nothing_improves():
    # bounds pinned at the standard gap: nothing to improve
    g = 50.0 / 60.0
    res = pkpd.optimise_schedule(
        "accelerated_itbs",
        readout="synaptic_efficacy",
        at_h=120.0,
        vary=["gap_h"],
        bounds={"gap_h": (g, g)},
        steps=2,
        n_init=0,
    )
    assert res.x["gap_h"] == pytest.approx(g)
    assert res.value == pytest.approx(res.standard_value)
    assert not res.improved


def test_ishigami_sobol_estimator():
    out = design.sobol(lambda u: design.ishigami(np.pi * (2.0 * u - 1.0)), 3, 2**13, seed=0)
    err_s1 = np.abs(out["first_order"] - ISHIGAMI_S1)
    err_st = np.abs(out["total"] - ISHIGAMI_ST)
    assert err_s1.max() < 0.005, (out["first_order"], err_s1)
    assert err_st.max() < 0.005, (out["total"], err_st)


def test_sobol_estimates_drop_failed_rows():
    rng = np.random.default_rng(0)
    fa, fb, fab = rng.normal(size=64), rng.normal(size=64), rng.normal(size=(2, 64))
    fa[3] = np.nan
    assert design.sobol_estimates(fa, fb, fab)["n_dropped"] == 1


def test_sensitivity_local_and_small_sobol():
    par = ["k_adapt", "k_spine_form", "k_spine_elim", "cl"]
    loc = pkpd.sensitivity(
        "fluoxetine", readout="spine_density", metric="t50", method="local", parameters=par, n_grid=241
    )
    assert set(loc) >= {"local", "first_order", "total"}
    assert sum(loc["first_order"].values()) == pytest.approx(1.0)
    assert loc["nominal"] > 0
    # slower adaptation (smaller k_adapt) delays spine changes: negative normalised sensitivity
    assert loc["local"]["k_adapt"] < 0
    par = par[:3]
    s = pkpd.sensitivity(
        "fluoxetine",
        readout="spine_density",
        metric="t50",
        method="sobol",
        n=16,
        parameters=par,
        n_grid=241,
        bootstrap=0,
        batch_size=80,
    )
    assert set(s["first_order"]) == set(par) and set(s["total"]) == set(par)
    assert s["n_simulations"] == 16 * (len(par) + 2)
    assert all(np.isfinite(v) for v in s["total"].values())


def test_screening_steps_stay_inside_parameter_domains():
    # hill's card value 1 is its lower bound: a step below it (C^hill non-Lipschitz at C = 0)
    # stalled the stiff solver at max_steps in every segment, so the screening never finished
    names = ["hill", "k_adapt", "emax"]
    theta0 = np.log([1.0, 0.02, 0.999])
    rows, step = design.screening_rows(theta0, names, h=0.05)
    assert rows.shape == (7, 3)
    assert np.all(np.exp(rows[:, 0]) >= 1.0) and np.all(np.exp(rows[:, 2]) <= 1.0)
    np.testing.assert_allclose(rows[0], theta0)
    np.testing.assert_allclose(step, [0.05, 0.10, 0.05 + np.log(1.0 / 0.999)])
    # each pair moves one parameter only
    for i in range(3):
        moved = np.flatnonzero(np.any(rows[[1 + 2 * i, 2 + 2 * i]] != theta0, axis=0))
        assert moved.tolist() == [i]


@pytest.mark.slow
def test_contract_sensitivity_sobol():
    s = pkpd.sensitivity("fluoxetine", readout="spine_density", metric="t50", method="sobol", n=256)
    s["first_order"]
    assert len(s["first_order"]) == 8
    assert s["n_failed"] < 0.05 * 256


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs",
                readout="synaptic_efficacy",
                at_h=120.0,
                vary=["gapp_h"],
                bounds={"gapp_h": (0.25, 4.0)},
            ),
            "unknown design variable 'gapp_h'.*valid",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs",
                readout="synaptic_efficacy",
                at_h=120.0,
                vary=["gap_h"],
                bounds={"gap_h": (4.0, 0.25)},
            ),
            r"bounds\['gap_h'\].*inverted",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs",
                readout="synaptic_eficacy",
                at_h=120.0,
                vary=["gap_h"],
                bounds={"gap_h": (0.25, 4.0)},
            ),
            "readout='synaptic_eficacy'.*valid",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs",
                readout="synaptic_efficacy",
                at_h=120.0,
                vary=["dose_mg"],
                bounds={"dose_mg": (1, 2)},
            ),
            "'dose_mg' does not apply.*valid for it",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs", readout="synaptic_efficacy", at_h=120.0, vary=["gap_h"], bounds={}
            ),
            "missing bounds for 'gap_h'",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs",
                readout="synaptic_efficacy",
                at_h=120.0,
                vary=["gap_h"],
                bounds={"gap_h": (0.25, 4.0)},
                constraints={"max_pulses": 3},
            ),
            "unknown constraint 'max_pulses'",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "accelerated_itbs",
                readout="synaptic_efficacy",
                at_h=120.0,
                vary=["gap_h"],
                bounds={"gap_h": (0.25, 4.0)},
                objective="maximise",
            ),
            "objective='maximise'",
        ),
        (
            lambda: pkpd.optimise_schedule(
                "fluoxetine",
                readout="occupancy",
                at_h=120.0,
                metric="time_to",
                vary=["loading_dose_mg"],
                bounds={"loading_dose_mg": (20, 100)},
            ),
            "needs target",
        ),
        (lambda: pkpd.sensitivity("fluoxetine", readout="spines", metric="t50"), "readout='spines'.*valid"),
        (lambda: pkpd.sensitivity("fluoxetine", readout="spine_density", metric="t90"), "metric='t90'.*valid"),
        (lambda: pkpd.sensitivity("fluoxetine", readout="spine_density", method="morris"), "method='morris'"),
        (lambda: pkpd.sensitivity("fluoxetine", readout="spine_density", parameters=["k_nope"]), "'k_nope'.*valid"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
