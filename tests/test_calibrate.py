"""The joint calibration: agreement with the single-modality MAP, the shipped file, draws -> models."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from pkpd import calibrate, cards
from pkpd.fit import Problem, fit_map


def test_joint_fit_of_one_modality_equals_its_map():
    """With one modality and study effects pinned (tau -> 0) the joint Levenberg-Marquardt on the
    block-assembled normal equations must land on fit_map's optimum and Laplace covariance."""
    cal = calibrate.calibrate(["dmt"], tau=1e-6, draws=50, progress=False)
    ref = fit_map(Problem("dmt"), starts=1, progress=False)
    keys = {k.split(".", 1)[1]: i for i, k in enumerate(cal.keys)}
    for j, name in enumerate(ref.names):
        i = keys[name]
        assert cal.map_z[i] == pytest.approx(ref.z[j], abs=2e-3)
        assert cal.parameters[i]["sd_z"] == pytest.approx(np.sqrt(ref.cov_z[j, j]), rel=0.02)
    assert cal.info["converged"]
    assert cal.draws_z.shape == (50, len(cal.keys))
    check = cal.info["laplace_check"]["parameters"]
    assert set(check) == set(cal.keys) and not any(r["refused"] for r in check.values())
    assert all(p["marginal"] == "laplace" for p in cal.parameters)


def test_parameter_order_does_not_depend_on_the_hash_seed():
    """The calibration's parameter order (and so its Laplace draws for a seed) must not change with
    PYTHONHASHSEED: it once followed a set of readout names."""
    import os
    import subprocess
    import sys

    code = "from pkpd.fit import Problem; print(Problem('ketamine').names)"
    out = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(out) == 1


@pytest.fixture(scope="module")
def shipped():
    return calibrate.load()


@pytest.mark.xfail(
    strict=True,
    reason="the shipped MAP stops at the 60-iteration limit: objective 166.90, lowered by 0.013 over the "
    "last 30 iterations (a crawl along a flat direction; benchmarks/RESULTS.md, joint calibration)",
)
def test_shipped_calibration_map_converged(shipped):
    assert shipped.info["converged"]


def test_shipped_calibration_covers_every_modality(shipped):
    import pkpd

    per = shipped.info["per_modality"]
    assert set(per) == set(pkpd.modalities())
    s = shipped.summary()
    assert len(s) == len(shipped.keys) and s["sd_ratio"].between(0, 1.05).all()
    c = shipped.contraction()
    assert all(0.0 <= v <= 1.0 for v in c.values())
    # every parameter the Laplace check refused draws from its slice grid, every other from the Laplace
    checked = shipped.info["laplace_check"]["parameters"]
    marginal = s.set_index("parameter")["marginal"]
    for key, row in checked.items():
        assert marginal[key] == ("slice grid" if row["refused"] else "laplace"), key


def test_draws_become_models_with_shared_core_and_own_pk(shipped):
    i_form = shipped.keys.index("k_spine_form")
    i_cl = shipped.keys.index("fluoxetine.cl@human")
    flx = shipped.models("fluoxetine", 3)
    ect = shipped.models("ect", 3)
    psi = shipped.models("psilocybin", 3)
    for k in range(3):
        z = shipped.draws_z[k]
        assert float(flx[k].core.k_spine_form) == pytest.approx(np.exp(z[i_form]))
        assert float(ect[k].core.k_spine_form) == pytest.approx(np.exp(z[i_form]))  # shared core
        assert float(flx[k].driver.pk.cl) == pytest.approx(np.exp(z[i_cl]))
        assert float(psi[k].driver.pk.cl) != pytest.approx(np.exp(z[i_cl]))  # not fluoxetine's
    m = shipped.model("psilocybin")
    assert float(m.core.k_spine_form) == pytest.approx(np.exp(shipped.map_z[i_form]))


def test_round_trip_and_errors(shipped, tmp_path):
    p = tmp_path / "cal.json"
    shipped.save(p)
    back = calibrate.load(p)
    np.testing.assert_array_equal(back.draws_z, shipped.draws_z)
    np.testing.assert_array_equal(back.map_z, shipped.map_z)
    assert back.parameters == shipped.parameters
    with pytest.raises(ValueError, match="n=0"):
        shipped.models("ect", 0)
    with pytest.raises(ValueError, match="exceeds"):
        shipped.models("ect", 10_000)
    with pytest.raises(FileNotFoundError, match="pkpd.calibrate"):
        calibrate.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        calibrate.load(bad)
    bad.write_text(json.dumps({"parameters": []}))
    with pytest.raises(ValueError, match="missing 'map_z'"):
        calibrate.load(bad)
    with pytest.raises(ValueError, match="tau"):
        calibrate.JointProblem(["lsd"], tau=0.0, progress=False)


def test_model_calibrated_flag(shipped):
    import pkpd

    m = pkpd.model("fluoxetine", calibrated=True)
    i = shipped.keys.index("fluoxetine.cl@human")
    assert float(m.driver.pk.cl) == pytest.approx(np.exp(shipped.map_z[i]))
    assert float(pkpd.model("fluoxetine").driver.pk.cl) != pytest.approx(float(m.driver.pk.cl))
    with pytest.raises(ValueError, match="overrides"):
        pkpd.model("fluoxetine", calibrated=True, k_bdnf=1.0)


@pytest.fixture(scope="module")
def dmt_joint():
    # two modalities, so that their Jacobians run on the thread pool
    return calibrate.JointProblem(["dmt", "sertraline"], progress=False)


def test_parallel_evaluation_equals_one_modality_at_a_time(dmt_joint):
    jp = dmt_joint
    x = np.concatenate([jp.mu[: jp.K] - 0.2, np.zeros(jp.S)])
    par = jp._evaluate(x)
    assert set(par) == set(jp.problems) and set(jp.cost) == set(jp.problems)
    for m in jp.problems:
        jac, pred = jp._jac[m](jnp.asarray(x[jp.index[m]]))
        np.testing.assert_array_equal(par[m][0], np.asarray(jac))
        np.testing.assert_array_equal(par[m][1], np.asarray(pred))


def test_host_log_likelihood_integrates_study_effects_out_and_matches_finite_differences(dmt_joint):
    """The hierarchical NUTS's host log-likelihood is, per study, the integral over its effect b of
    prod N(y | pred e^b, sd) N(b | 0, tau) (here against a dense trapezoid rule), and its gradient
    in (z, log tau) matches central differences."""
    jp = dmt_joint
    host = calibrate._HostLogLikelihood(jp)
    theta = np.concatenate([jp.mu[: jp.K] + 0.1, [np.log(0.2)]])
    ll, g = host(theta)
    grid = np.linspace(-4.0, 4.0, 200_001)
    want = 0.0
    for m, (_jac, pred) in jp._evaluate(theta[: jp.K]).items():
        uniq, study, value, sd = host.local[m]
        for s in range(len(uniq)):
            rows = study == s
            logf = (
                -0.5 * (((pred[rows, None] * np.exp(grid)[None, :]) - value[rows, None]) / sd[rows, None]) ** 2
            ).sum(0)
            logf += -0.5 * (grid / 0.2) ** 2 - np.log(0.2 * np.sqrt(2 * np.pi))
            top = logf.max()
            want += top + np.log(np.trapezoid(np.exp(logf - top), grid))
    assert ll == pytest.approx(want, rel=1e-9, abs=1e-9)
    h = 1e-5
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = h
        fd = (host(theta + e)[0] - host(theta - e)[0]) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-4, abs=1e-6)
    bad = theta.copy()
    bad[jp.K] = 800.0  # tau overflows: the point is refused, not NaN
    assert host(bad)[0] == -np.inf
    assert host.refused == {"tau overflows": 1} and host.refused_at["tau overflows"][jp.K] == 800.0


def _fit_all():
    """benchmarks/fit_all.py as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_all.py"
    spec = importlib.util.spec_from_file_location("fit_all", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hierarchical_nuts_runs_and_reports(tmp_path):
    """A tiny hierarchical NUTS: posterior groups with the named dims, tau > 0, attrs, netCDF."""
    import arviz as az

    idata = calibrate.nuts(
        ["dmt", "sertraline"], chains=2, warmup=25, draws=10, progress=False, max_tree_depth=4, adapt_mass="scale"
    )
    post = idata.posterior
    assert post["parameters"].shape == (2, 10, len(post.coords["parameter"]))
    assert np.all(np.asarray(post["tau"]) > 0)
    assert post.attrs["gradient_evaluations"] > 20
    start = json.loads(post.attrs["start"])  # default start: the marginal mode
    assert start["start"] == "mode" and start["clipped"] >= 0 and post.attrs["adapt_mass"] == "scale"
    assert start["gradient_norm_whitened"] < 1e-3  # at the mode
    # NUTS ran in whitened coordinates u: theta = start + W u, with one adapted variance per direction
    W, t0 = np.asarray(json.loads(post.attrs["whitening"])), np.asarray(json.loads(post.attrs["start_theta"]))
    np.testing.assert_allclose(np.asarray(post["theta"]), t0 + np.asarray(post["u"]) @ W.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(post["theta"])[..., :-1], np.asarray(post["parameters"]), rtol=1e-12)
    var = np.asarray(json.loads(post.attrs["adapted_variance"]))
    assert var.shape == (2, W.shape[0]) and np.all(var > 0) and not np.allclose(var, 1.0)
    s = calibrate.nuts_summary(idata)
    assert {"r_hat", "ess_bulk", "sd_ratio"} <= set(s.columns) and len(s) == len(post.coords["parameter"]) + 1
    # benchmarks/fit_all.py's record of such a run: the contract's headline fields, R-hat unrounded
    rec = _fit_all().all_data_record(idata, s)
    assert (rec["chains"], rec["draws"], rec["warmup"], rec["divergences"]) == (2, 10, 25, post.attrs["divergences"])
    rhat = az.rhat(idata, var_names=["parameters", "tau"])
    worst = max(float(np.max(np.asarray(rhat["parameters"]))), float(rhat["tau"]))
    assert rec["max_rhat"] == pytest.approx(worst, rel=1e-12)
    assert rec["min_bulk_ess"] == pytest.approx(min(p["ess_bulk"] for p in rec["parameters"]), rel=1e-12)
    assert len(rec["parameters"]) == len(s) and rec["gradient_evaluations"] == post.attrs["gradient_evaluations"]
    json.dumps(rec)  # JSON-serialisable as written
    eff = idata.study_effects["study_effect"]
    assert eff.dims == ("sample", "study") and eff.shape[0] == 20  # 2 chains x 10 draws, all of them
    assert {str(st).split(":")[0] for st in eff.coords["study"].values} == {"dmt", "sertraline"}
    assert np.all(np.isfinite(np.asarray(eff)))
    p = tmp_path / "joint.nc"
    idata.to_netcdf(str(p))
    back = az.from_netcdf(str(p))
    np.testing.assert_array_equal(np.asarray(back.posterior["tau"]), np.asarray(post["tau"]))
    # a shipped metric is for all modalities' parameters, so this subset runs on the start's covariance
    used = json.loads(post.attrs["metric"])
    assert used["from"] is None and ("other parameters" in used["why"] or "no shipped metric" in used["why"])
    # a metric from these draws, with n_eff so large that every direction counts as signal: the whitening
    # of the next run is then that sample covariance exactly (the start's covariance replaced)
    metric = calibrate.metric_from_posterior(idata)
    theta = np.asarray(post["theta"]).reshape(-1, W.shape[0])
    np.testing.assert_allclose(metric["covariance"], np.cov(theta.T), rtol=1e-12)
    assert metric["keys"][-1] == "log_tau" and metric["draws"] == 20 and metric["n_eff"] > 0
    with open(tmp_path / "metric.json", "w") as f:
        json.dump(dict(metric, n_eff=1e9), f)
    again = calibrate.nuts(
        ["dmt", "sertraline"],
        chains=1,
        warmup=4,
        draws=2,
        progress=False,
        max_tree_depth=3,
        metric=str(tmp_path / "metric.json"),
        study_effect_draws=0,
    )
    W2 = np.asarray(json.loads(again.posterior.attrs["whitening"]))
    rest = json.loads(again.posterior.attrs["whitened_indices"])
    np.testing.assert_allclose(W2 @ W2.T, np.cov(theta.T)[np.ix_(rest, rest)], rtol=1e-6, atol=1e-12)
    assert json.loads(again.posterior.attrs["metric"])["from"] == str(tmp_path / "metric.json")
    assert again.posterior.attrs["adaptation_windows"] == "one (step size only)"
    assert post.attrs["adaptation_windows"].startswith("numpyro")  # adapt_mass="scale" keeps Stan's windows
    with pytest.raises(ValueError, match="not this run's parameters"):
        calibrate.nuts(["dmt"], metric=metric, progress=False)


def test_one_adaptation_window_is_one_window_and_is_restored():
    """Inside the block the warmup schedule is one window (no restart of the step size's dual
    averaging); outside, NumPyro's own schedule, also after an exception."""
    from numpyro.infer import hmc_util

    stan = hmc_util.build_adaptation_schedule(75)
    assert len(stan) == 3 and stan[-1].start == 68  # the last 7 of 75 iterations set the step size
    with calibrate.one_adaptation_window():
        assert hmc_util.build_adaptation_schedule(75) == [hmc_util.AdaptWindow(0, 74)]
    with pytest.raises(RuntimeError), calibrate.one_adaptation_window():
        raise RuntimeError("inside")
    assert hmc_util.build_adaptation_schedule(75) == stan


def test_corrected_covariance_keeps_the_signal_and_drops_the_noise():
    """Whitened by the start's covariance, a sample covariance has Marchenko-Pastur noise; only
    directions outside that bulk change the start's covariance: a direction 8x wider in variance is
    recovered (value and direction), and draws from the start's covariance itself change nothing."""
    rng = np.random.default_rng(11)
    d, n = 10, 400
    A = rng.normal(size=(d, d))
    cov = A @ A.T + 0.5 * np.eye(d)
    L = np.linalg.cholesky(cov)
    v = rng.normal(size=d)
    v /= np.linalg.norm(v)
    true = L @ (np.eye(d) + 7.0 * np.outer(v, v)) @ L.T  # 8x the variance along L v
    draws = rng.multivariate_normal(np.zeros(d), true, size=n)
    out, info = calibrate.corrected_covariance(cov, np.cov(draws.T), n)
    Li = np.linalg.inv(L)
    w, V = np.linalg.eigh(Li @ out @ Li.T)
    lo, hi = info["edges"]
    assert lo == pytest.approx((1 - np.sqrt(d / n)) ** 2) and hi == pytest.approx((1 + np.sqrt(d / n)) ** 2)
    assert w[-1] == pytest.approx(8.0, rel=0.25) and abs(V[:, -1] @ v) > 0.95
    changed = np.abs(w - 1.0) > 1e-9
    assert np.all((w[changed] < lo) | (w[changed] > hi)) and changed.sum() == len(info["kept"]) <= 3
    noise = rng.multivariate_normal(np.zeros(d), cov, size=n)
    same, info = calibrate.corrected_covariance(cov, np.cov(noise.T), n)
    assert info["kept"] == [] and lo < info["eigen_range"][0] and info["eigen_range"][1] < hi
    np.testing.assert_allclose(same, cov, rtol=1e-10)
    with pytest.raises(ValueError, match="must exceed the dimension"):
        calibrate.corrected_covariance(cov, cov, d)


def test_shipped_metric_is_for_the_shipped_calibration(shipped):
    """A shipped NUTS metric names the all-data run's parameters (else nuts() silently drops it) and
    is a covariance with more effective draws than dimensions; without one (the metric comes from a
    NUTS run on the shipped calibration's parameters), 'shipped' resolves to no metric and says why."""
    keys = shipped.keys + ["log_tau"]
    assert calibrate._resolve_metric(None, keys) == (None, {"from": None})
    try:
        m = calibrate.load_metric()
    except FileNotFoundError:
        got, info = calibrate._resolve_metric("shipped", keys)
        assert got is None and "no shipped metric" in info["why"]
        return
    assert m["keys"] == keys
    c = np.asarray(m["covariance"])
    assert np.all(np.linalg.eigvalsh(c) > 0) and m["n_eff"] > len(m["keys"])
    got, info = calibrate._resolve_metric("shipped", m["keys"])
    assert info["from"] == calibrate.NUTS_METRIC and got["keys"] == m["keys"] and info["n_eff"] == m["n_eff"]


def test_laplace_at_mode_is_exact_for_a_gaussian():
    """On a correlated Gaussian the gradient is linear, so the ascent + Newton steps reach the mean
    and the central-difference Hessian gives the covariance exactly, from a poor start and a wrong
    preconditioner; a flat direction is clipped to at most 1/sqrt(min_curvature) x the start sd."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 5))
    C = A @ A.T + 0.5 * np.eye(5)
    P = np.linalg.inv(C)
    m = rng.normal(size=5)

    def logpost(t):
        r = t - m
        return -0.5 * r @ P @ r, -P @ r

    start_cov = np.eye(5) * np.linalg.eigvalsh(C).max() / 4  # wrong shape and scale, curvature >= 0.25
    theta, cov, info = calibrate.laplace_at_mode(logpost, m + 3.0, start_cov)
    np.testing.assert_allclose(cov, C, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(theta, m, atol=1e-6)
    assert info["clipped"] == 0 and info["gradient_evaluations"] >= 10

    def flat_in_x1(t):  # a Gaussian in x0 only: x1 is not identified
        return -0.5 * (t[0] - 1.0) ** 2 / 0.04, np.array([-(t[0] - 1.0) / 0.04, 0.0])

    theta, cov, info = calibrate.laplace_at_mode(flat_in_x1, np.zeros(2), np.eye(2), min_curvature=0.25)
    assert info["clipped"] == 1
    assert theta[0] == pytest.approx(1.0, abs=1e-8) and cov[0, 0] == pytest.approx(0.04, rel=1e-6)
    assert cov[1, 1] == pytest.approx(4.0, rel=1e-9)
    with pytest.raises(ValueError, match="shape"):
        calibrate.laplace_at_mode(logpost, m, np.eye(3))
    with pytest.raises(ValueError, match="start='laplace'"):
        calibrate.nuts(["dmt"], start="laplace")
    with pytest.raises(ValueError, match="adapt_mass='diagonal'"):
        calibrate.nuts(["dmt"], adapt_mass="diagonal")


def test_check_laplace_passes_a_gaussian_and_refuses_a_cliff_with_a_plateau():
    """A correlated Gaussian whose Laplace is exact passes; a parameter whose density has a cliff
    below the MAP and a plateau above (the a_itbs shape: benchmarks/RESULTS.md) is refused, and the
    check only looks where the Laplace claims contraction."""
    C = np.array([[0.04, 0.01], [0.01, 0.09]])
    P = np.linalg.inv(C)

    def gauss(z):
        return -0.5 * z @ P @ z

    rows = calibrate.check_laplace(gauss, np.zeros(2), np.sqrt(np.diag(C)), np.ones(2))
    assert [r["checked"] for r in rows] == [True, True] and not any(r["refused"] for r in rows)
    # along axis 0 the slice's curvature is P[0, 0]: drop 0.5 P00 (2 prior sd)^2 on both sides
    assert rows[0]["drop_below"] == pytest.approx(0.5 * P[0, 0] * 4.0) == rows[0]["drop_above"]

    def cliff(z):  # z[0]: steep wall below 0, flat up to the prior; z[1]: Gaussian sd 0.1
        return (30.0 * np.tanh(z[0] / 0.02) - 0.5 * (z[0] / 1.0) ** 2) - 0.5 * (z[1] / 0.1) ** 2

    # the Laplace at the ridge sees only the wall's curvature: sd ~0.02 (and 0.1 for z[1])
    rows = calibrate.check_laplace(cliff, np.array([0.05, 0.0]), np.array([0.02, 0.1]), np.array([1.0, 1.0]))
    assert rows[0]["refused"] and rows[0]["drop_below"] > 50 and rows[0]["drop_above"] < 4.5
    assert not rows[1]["refused"]
    wide = calibrate.check_laplace(gauss, np.zeros(2), np.ones(2), np.ones(2))  # Laplace = prior: unchecked
    assert not any(r["checked"] for r in wide)
    with pytest.raises(ValueError, match="positive"):
        calibrate.check_laplace(gauss, np.zeros(2), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="not finite at the MAP"):
        calibrate.check_laplace(lambda z: -np.inf, np.zeros(2), np.ones(2), np.ones(2))


def test_grid_marginal_samples_a_truncated_density_exactly():
    """Draws and moments against quadrature for a smooth cliff on a Gaussian (the grid resolves
    it), the moments exact for a log-linear density on 2 cells, and failed points carry no mass."""
    from scipy import integrate, stats

    def ld(x):
        return -0.5 * x * x + 40.0 * np.log(stats.logistic.cdf((x - 0.3) / 0.1))

    Z = integrate.quad(lambda x: np.exp(ld(x)), -6, 6, points=[0.3], limit=200)[0]
    mean = integrate.quad(lambda x: x * np.exp(ld(x)), -6, 6, points=[0.3], limit=200)[0] / Z
    sd = np.sqrt(integrate.quad(lambda x: (x - mean) ** 2 * np.exp(ld(x)), -6, 6, points=[0.3], limit=200)[0] / Z)

    xs = np.linspace(-6.0, 6.0, 24_001)
    cum = integrate.cumulative_trapezoid(np.exp(ld(xs)), xs, initial=0.0) / Z

    def cdf(v):
        return np.interp(v, xs, cum)

    g = calibrate.grid_marginal(ld, -4.0, 4.0, 161, draws=3000, rng=np.random.default_rng(0))
    assert g["mean"] == pytest.approx(mean, abs=3e-3) and g["sd"] == pytest.approx(sd, rel=1e-2)
    assert g["edge_mass"] < 1e-3 and g["draws"].shape == (3000,)
    assert stats.kstest(g["draws"], cdf).pvalue > 0.01
    steep = calibrate.grid_marginal(lambda x: 800.0 * x, 0.0, 1.0, 3, draws=500, rng=np.random.default_rng(1))
    assert steep["mean"] == pytest.approx(1.0 - 1.0 / 800.0, abs=1e-9) and np.all(steep["draws"] > 0.5)
    holes = calibrate.grid_marginal(
        lambda x: -np.inf if x < 0 else 0.0, -1.0, 1.0, 5, draws=500, rng=np.random.default_rng(2)
    )
    assert np.all(holes["draws"] >= 0.0) and holes["mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not finite anywhere"):
        calibrate.grid_marginal(lambda x: np.nan, 0.0, 1.0, 5, draws=5, rng=np.random.default_rng(0))


def test_grid_transform_maps_a_standard_normal_onto_the_grid_density():
    """u ~ N(0, 1) through GridTransform has the grid_marginal distribution (KS), the log-Jacobian
    is log d theta/du (autodiff), and on a Gaussian grid the map is the affine mu + sd u."""
    import jax
    from scipy import stats

    x = np.linspace(-3.0, 5.0, 161)
    gauss = calibrate.GridTransform(x, -0.5 * ((x - 1.0) / 0.5) ** 2)
    for u in (-2.0, 0.0, 1.3):
        th, lj = gauss(u)
        assert float(th) == pytest.approx(1.0 + 0.5 * u, abs=1e-6) and float(lj) == pytest.approx(
            np.log(0.5), abs=2e-3
        )  # grid: h = 0.05

    def ld(v):
        return -0.5 * v * v + 40.0 * np.log(stats.logistic.cdf((v - 0.3) / 0.1))

    x = np.linspace(-4.0, 4.0, 161)
    cliff = calibrate.GridTransform(x, ld(x))
    u = np.random.default_rng(0).standard_normal(3000)
    th = np.asarray(jax.vmap(lambda v: cliff(v)[0])(jnp.asarray(u)))
    ref = calibrate.grid_marginal(ld, -4.0, 4.0, 161, draws=3000, rng=np.random.default_rng(1))
    assert stats.ks_2samp(th, ref["draws"]).pvalue > 0.01 and th.min() > 0.0
    for v in (-1.5, 0.2, 2.0):
        d = jax.grad(lambda w: cliff(w)[0])(jnp.asarray(v))
        assert float(cliff(v)[1]) == pytest.approx(float(np.log(d)), abs=1e-8)
    with pytest.raises(ValueError, match="equally spaced"):
        calibrate.GridTransform([0.0, 1.0, 3.0], [0.0, 0.0, 0.0])


def _refusing(cal, key, lo, hi, n=121):
    """A copy of ``cal`` whose Laplace check refused ``key``, with a slice density on [lo, hi]
    (log scale) that is a half-Gaussian from a cliff at ``lo`` (what the check stores for a refused
    parameter: its grid and log density)."""
    import copy

    out = copy.deepcopy(cal)
    grid = np.linspace(lo, hi, n)
    row = out.info["laplace_check"]["parameters"][key]
    row.update(refused=True, grid=grid.tolist(), grid_logd=(-0.5 * ((grid - lo) / 0.4) ** 2).tolist())
    return out


def test_hierarchical_nuts_samples_a_refused_parameter_through_its_grid(shipped):
    """With a calibration whose check refused a_itbs, nuts() leaves it out of the whitening and
    maps its u through the GridTransform; the others stay start + W u."""
    init = _refusing(shipped, "stimulation.a_itbs", np.log(1.3), np.log(8.0))
    idata = calibrate.nuts(
        ["itbs"], chains=1, warmup=15, draws=8, progress=False, max_tree_depth=4, study_effect_draws=0, init=init
    )
    post = idata.posterior
    keys = list(post.coords["parameter"].values)
    i = keys.index("stimulation.a_itbs")
    assert json.loads(post.attrs["grid_parameters"]) == ["stimulation.a_itbs"]
    rest = np.asarray(json.loads(post.attrs["whitened_indices"]))
    assert i not in rest and len(rest) == len(keys)  # K parameters + log tau, minus a_itbs
    row = init.info["laplace_check"]["parameters"]["stimulation.a_itbs"]
    gmap = calibrate.GridTransform(row["grid"], row["grid_logd"])
    u, theta = np.asarray(post["u"])[0], np.asarray(post["theta"])[0]
    np.testing.assert_allclose(theta[:, i], [float(gmap(v)[0]) for v in u[:, i]], rtol=1e-12)
    W, t0 = np.asarray(json.loads(post.attrs["whitening"])), np.asarray(json.loads(post.attrs["start_theta"]))
    np.testing.assert_allclose(theta[:, rest], t0[rest] + u[:, rest] @ W.T, rtol=1e-10, atol=1e-10)
    assert np.all(theta[:, i] > np.log(1.3))  # never below the cliff


def test_widen_xla_pool_adds_one_worker_and_keeps_a_users_value():
    """NPROC (XLA's CPU pool size) becomes cores + 1 unless the user set it; importing
    pkpd.calibrate must not start the JAX backend, or setting it would come too late."""
    import os
    import subprocess
    import sys

    code = (
        "import os; from pkpd import calibrate; from jax._src import xla_bridge as xb; "
        "started = bool(xb._backends); print(calibrate.widen_xla_pool(), os.cpu_count(), started)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert int(out[0]) == int(out[1]) + 1 and out[2] == "False"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**env, "NPROC": "7"}
    ).stdout.split()
    assert out[0] == "7"


def test_solve_settings_validate_and_reach_the_problems_predictions():
    """A Problem's ODE settings are FIT_SOLVE with its overrides; bad overrides fail clearly, and
    JointProblem hands each modality its own."""
    import diffrax as dfx

    from pkpd.fit import FIT_SOLVE, FitError, describe_solve, solve_settings

    assert solve_settings() == FIT_SOLVE
    s = solve_settings({"rtol": 1e-3, "solver": dfx.Bosh3()})
    assert s["rtol"] == 1e-3 and isinstance(s["solver"], dfx.Bosh3) and s["atol"] == FIT_SOLVE["atol"]
    assert describe_solve(s) == "Bosh3 rtol=0.001 atol=1e-09"
    for bad, match in [
        ({"rtl": 1e-3}, "unknown keys"),
        ({"rtol": 0.0}, "rtol"),
        ({"atol": np.nan}, "atol"),
        ({"max_steps": 0}, "max_steps"),
        ({"solver": "Tsit5"}, "not a diffrax solver"),
        ([("rtol", 1e-3)], "must be a dict"),
    ]:
        with pytest.raises(FitError, match=match):
            solve_settings(bad)
    with pytest.raises(ValueError, match="unknown modalities"):
        calibrate.JointProblem(["dmt"], solve={"dmtt": {}}, progress=False)
    # dmt's PK rows are solved exactly (matrix exponentials); its ODE-free predictions must not move
    jp = calibrate.JointProblem(["dmt"], solve={"dmt": {"rtol": 1e-2, "solver": dfx.Bosh3()}}, progress=False)
    pb = jp.problems["dmt"]
    assert isinstance(pb.solve["solver"], dfx.Bosh3) and pb.solve["rtol"] == 1e-2
    z = jnp.asarray(pb.mu)
    np.testing.assert_allclose(np.asarray(pb.predict(z)), np.asarray(Problem("dmt").predict(z)), rtol=1e-12)


@pytest.mark.parametrize("modality", sorted(calibrate.NUTS_SOLVE))
def test_nuts_solve_is_accurate_at_the_shipped_map(shipped, modality):
    """Every per-modality NUTS_SOLVE entry must keep predictions and forward-mode Jacobians at
    the shipped MAP within the budget NUTS_SOLVE states, against Tsit5 at rtol 1e-9 (a looser
    entry that a model change made inaccurate fails here)."""
    import diffrax as dfx

    jp = calibrate.JointProblem([modality], solve={modality: calibrate.NUTS_SOLVE[modality]}, progress=False)
    pb = jp.problems[modality]
    ref = Problem(modality, solve=dict(rtol=1e-9, atol=1e-12, solver=dfx.Tsit5(), max_steps=400_000))
    z = jnp.asarray([shipped.map_z[shipped.keys.index(k)] for k in jp.keys])
    jac, pred = jp._jac[modality](z)
    jac_ref, pred_ref = calibrate.JointProblem._compile(ref)(z)
    sd = pb.sd()
    assert np.max(np.abs(np.asarray(pred) - np.asarray(pred_ref)) / sd) < calibrate.NUTS_SOLVE_BUDGET["prediction"]
    assert np.max(np.abs(np.asarray(jac) - np.asarray(jac_ref)) / sd[:, None]) < calibrate.NUTS_SOLVE_BUDGET["jacobian"]


def test_uncalibrated_parameters_drawn_from_their_card_priors():
    # Parameters no usable row informs: "card" keeps the card value, "prior" draws each from its card
    # prior, the same value on the same draw in every modality that shares it; calibrated ones are equal.
    cal = calibrate.load()
    card = cal.models("psilocybin", 200, uncalibrated="card")
    prior = cal.models("psilocybin", 200, uncalibrated="prior")
    ket = cal.models("ketamine", 200, uncalibrated="prior")
    k_bdnf = cards.load("core", "core").get("k_bdnf", "all")
    assert "k_bdnf" not in cal.keys
    assert {float(m.core.k_bdnf) for m in card} == {k_bdnf.value}
    logs = np.log([float(m.core.k_bdnf) for m in prior])
    assert logs.mean() == pytest.approx(np.log(k_bdnf.prior["median"]), abs=0.25 * k_bdnf.prior["sigma"])
    assert logs.std() == pytest.approx(k_bdnf.prior["sigma"], rel=0.15)
    assert [float(m.core.k_bdnf) for m in ket] == [float(m.core.k_bdnf) for m in prior]
    assert [float(m.core.k_spine_form) for m in prior] == [float(m.core.k_spine_form) for m in card]
    with pytest.raises(ValueError, match="uncalibrated"):
        cal.models("psilocybin", 2, uncalibrated="posterior")
