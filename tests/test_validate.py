"""pkpd.validate (posterior predictive coverage, leave-one-paper-out) and the compare data share."""

import importlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pkpd
from pkpd.validate import Validation
from pkpd.validate.predictive import Predictive, study_effect_conditional
from pkpd.validate.refit import refit
from pkpd.validate.run import make_folds

C = importlib.import_module("pkpd.compare")  # the module (pkpd.compare is the function)


@pytest.fixture(scope="module")
def quick():
    return pkpd.validate(quick=True, progress=False)


# ---- the predictive mixture -----------------------------------------------------------------


def test_study_effect_conditional_is_the_mode_and_its_curvature():
    rng = np.random.default_rng(1)
    pred = rng.uniform(1.0, 5.0, size=(3, 5))
    value = rng.uniform(1.0, 5.0, size=5)
    sd = rng.uniform(0.2, 1.0, size=5)
    study = np.array([0, 0, 1, 1, 1])
    tau = 0.3
    b, s = study_effect_conditional(pred, value, sd, study, 3, tau)
    grid = np.linspace(-2, 2, 400_001)
    for d in range(3):
        for k in (0, 1):
            rows = study == k
            mu = pred[d, rows][:, None] * np.exp(grid)[None, :]
            logp = -0.5 * np.sum(((mu - value[rows, None]) / sd[rows, None]) ** 2, axis=0) - 0.5 * (grid / tau) ** 2
            assert b[d, k] == pytest.approx(grid[np.argmax(logp)], abs=2e-5)
            e = pred[d, rows] * np.exp(b[d, k])
            assert s[d, k] == pytest.approx(1.0 / np.sqrt(np.sum((e / sd[rows]) ** 2) + 1 / tau**2), rel=1e-8)
        assert (b[d, 2], s[d, 2]) == (0.0, pytest.approx(tau))  # a study without rows keeps its prior


def test_predictive_is_exact_for_one_normal_and_matches_sampling_for_a_mixture():
    one = Predictive(np.array([[2.0, -1.0]]), 0.0, 0.0, np.array([0.5, 2.0]))
    y = np.array([2.3, 0.5])
    assert one.cdf(y) == pytest.approx(stats.norm.cdf(y, [2.0, -1.0], [0.5, 2.0]), rel=1e-12)
    assert one.quantile(0.95) == pytest.approx(stats.norm.ppf(0.95, [2.0, -1.0], [0.5, 2.0]), abs=1e-9)
    rng = np.random.default_rng(0)
    pred = rng.lognormal(0.0, 0.4, size=(30, 3))
    centre, scale, sd = np.array([0.1, -0.2, 0.0]), np.array([0.3, 0.05, 0.5]), np.array([0.2, 0.4, 0.1])
    mix = Predictive(pred, centre, scale, sd)
    n = 400_000
    d = rng.integers(0, 30, n)
    ys = pred[d] * np.exp(centre + scale * rng.standard_normal((n, 3))) + sd * rng.standard_normal((n, 3))
    mean, sdev = mix.moments()  # closed form: E[exp(b)] = exp(c + s^2 / 2), E[exp(2b)] = exp(2c + 2 s^2)
    m1 = np.mean(pred * np.exp(centre + scale**2 / 2), axis=0)
    m2 = np.mean(pred**2 * np.exp(2 * centre + 2 * scale**2), axis=0) + sd**2
    assert mean == pytest.approx(m1, rel=1e-10)
    assert sdev == pytest.approx(np.sqrt(m2 - m1**2), rel=1e-8)
    for q in (0.05, 0.25, 0.75, 0.95):
        assert mix.quantile(q) == pytest.approx(np.quantile(ys, q, axis=0), rel=1e-2, abs=5e-3)
        assert mix.cdf(np.quantile(ys, q, axis=0)) == pytest.approx(q, abs=3e-3)


def test_failed_draws_carry_no_weight():
    pred = np.array([[1.0, np.nan], [3.0, 2.0]])
    mix = Predictive(pred, 0.0, 0.0, np.array([0.1, 0.1]))
    assert list(mix.n_draws) == [2, 1]
    assert mix.cdf(np.array([2.0, 2.0])) == pytest.approx([0.5, 0.5])


# ---- coverage on data simulated from the model itself ----------------------------------------


def test_coverage_is_nominal_on_data_drawn_from_the_model(quick):
    """Rows simulated from the model (a posterior draw, a new study effect, the observation noise)
    fall inside the 50 % / 90 % predictive intervals at the nominal rate."""
    setup = quick.setup
    pred = setup.predictions(setup.draws_z[:40])
    rng = np.random.default_rng(3)
    reps = 300
    inside = {0.5: [], 0.9: []}
    mix = Predictive(pred, 0.0, setup.tau, setup.sd)
    for _ in range(reps):
        d = rng.integers(0, len(pred), pred.shape[1])
        b = setup.tau * rng.standard_normal(setup.jp.S)[setup.study]
        y = pred[d, np.arange(pred.shape[1])] * np.exp(b) + setup.sd * rng.standard_normal(pred.shape[1])
        pit = mix.cdf(y)
        for lv in inside:
            inside[lv].append(np.abs(pit - 0.5) <= lv / 2)
    n = reps * pred.shape[1]
    for lv, hits in inside.items():
        assert np.mean(hits) == pytest.approx(lv, abs=4 * np.sqrt(lv * (1 - lv) / n))
    # and observed values far outside the predictive are outside both intervals
    assert not np.any(np.abs(mix.cdf(100.0 * np.abs(pred).max(axis=0)) - 0.5) <= 0.45)


# ---- the report ------------------------------------------------------------------------------


def test_report_schema_and_consistency(quick, tmp_path):
    path = tmp_path / "v.json"
    quick.save(path)
    rep = json.loads(path.read_text())
    assert set(rep) >= {"coverage", "loo", "excluded", "info"}
    ov = rep["coverage"]["overall"]
    assert set(ov) >= {"0.5", "0.9", "n"} and 0 <= ov["0.5"] <= ov["0.9"] <= 1
    assert set(rep["coverage"]["by_modality"]) == {"lsd", "dmt"}
    for d in rep["coverage"]["by_modality"].values():
        assert 0 <= d["0.5"] <= d["0.9"] <= 1
    assert sum(d["n"] for d in rep["coverage"]["by_modality"].values()) == ov["n"] == len(quick.rows)
    inside = quick.rows["inside_0.9"].to_numpy()
    assert ov["0.9"] == pytest.approx(inside.mean())
    assert np.all(quick.rows["lo_0.9"] <= quick.rows["lo_0.5"]) and np.all(quick.rows["hi_0.5"] <= quick.rows["hi_0.9"])
    assert np.array_equal(
        inside, (quick.rows["value"] >= quick.rows["lo_0.9"]) & (quick.rows["value"] <= quick.rows["hi_0.9"])
    )
    loo = rep["loo"]
    assert 0 <= loo["coverage_90"] <= 1
    assert {"paper", "n", "inside_90"} <= set(loo["papers"][0])
    assert sum(p["n"] for p in loo["papers"]) == loo["n"] == ov["n"]
    assert loo["coverage_90"] == pytest.approx(sum(p["n"] * p["inside_90"] for p in loo["papers"]) / loo["n"])
    assert [abs(w["z"]) for w in loo["worst"]] == sorted((abs(w["z"]) for w in loo["worst"]), reverse=True)
    # rows the likelihood does not use are reported, with their reasons
    lib = pkpd.datasets()
    assert rep["excluded"]["n"] == int(lib["modality"].isin(["lsd", "dmt"]).sum()) - ov["n"]
    assert sum(rep["excluded"]["by_reason"].values()) == rep["excluded"]["n"]
    assert quick.coverage["overall"]["0.9"] == pytest.approx(ov["0.9"], abs=1e-6)
    assert quick.loo["coverage_90"] == pytest.approx(loo["coverage_90"], abs=1e-6)
    text = quick.table()
    assert "overall" in text and "lsd" in text and "rows not in the likelihood" in text
    fig = quick.figure()
    assert len([a for a in fig.axes if a.get_visible()]) == quick.rows["readout"].nunique()
    # the JSON keeps every observation's predictive summary: the report can be read back and redrawn
    assert len(rep["rows"]) == ov["n"] and len(rep["loo_rows"]) == loo["n"]
    back = Validation.from_json(rep)
    assert back.rows["median"].to_numpy() == pytest.approx(quick.rows["median"].to_numpy(), rel=1e-5)
    assert len(back.figure().axes) == len(fig.axes)
    with pytest.raises(ValueError, match="rows"):
        Validation.from_json({k: rep[k] for k in ("coverage", "loo", "excluded")})


def test_loo_on_the_quick_subset(quick):
    folds = quick.loo["folds"]
    assert len(folds) == 2 and all(f["converged"] for f in folds)
    papers = [p for f in folds for p in f["papers"]]
    assert sorted(papers) == sorted(set(quick.rows["paper"]))  # every paper left out exactly once
    setup = quick.setup
    jp = setup.jp
    x0 = np.concatenate([setup.map_z, np.zeros(jp.S)])
    held = setup.rows["paper"].isin(folds[1]["papers"]).to_numpy()
    fit = refit(jp, x0, ~held)
    assert fit.converged
    # the left-out studies have no rows: their effects stay at the prior N(0, tau)
    gone = sorted(set(setup.study[held]) - set(setup.study[~held]))
    assert gone and np.allclose(fit.x[jp.K + np.asarray(gone)], 0.0, atol=1e-6)
    assert np.sqrt(np.diag(fit.cov)[jp.K + np.asarray(gone)]) == pytest.approx(setup.tau, rel=1e-6)
    # the fold MAP is a stationary point of the masked objective: the Gauss-Newton step from it
    # gains < 1e-3, and a refit from the prior means lands on it (within 0.1 posterior sd)
    r, J = jp.linearise(fit.x)
    w = np.concatenate([(~held).astype(float), np.ones(r.size - held.size)])
    Jw, rw = J * w[:, None], r * w
    g = Jw.T @ rw
    assert 0.5 * g @ np.linalg.solve(Jw.T @ Jw, g) < 1e-3
    other = refit(jp, jp.mu, ~held)
    sd = np.sqrt(np.diag(fit.cov))
    assert np.max(np.abs(other.x - fit.x) / sd) < 0.1
    # its objective matches what the LOO run (started at the shipped study effects) recorded for that fold
    assert fit.objective == pytest.approx(folds[1]["objective"], abs=2 * 1e-3)  # both within the stopping rule


def test_make_folds_deals_papers_round_robin():
    rows = pd.DataFrame(dict(modality=["a", "a", "b", "b", "c"], paper=["p1", "p1", "p2", "p3", "p4"]))
    assert make_folds(rows, None) == [["p1"], ["p2"], ["p3"], ["p4"]]
    assert make_folds(rows, 2) == [["p1", "p3"], ["p2", "p4"]]
    assert make_folds(rows, 9) == [["p1"], ["p2"], ["p3"], ["p4"]]
    with pytest.raises(ValueError, match="folds"):
        make_folds(rows, 0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="draws"):
        pkpd.validate(draws=0)
    with pytest.raises(ValueError, match="loo_draws"):
        pkpd.validate(loo_draws=1)


# ---- the data share ----------------------------------------------------------------------------


def _linear_case(seed):
    rng = np.random.default_rng(seed)
    n = 6
    d = rng.normal(size=n)
    sd = rng.uniform(0.3, 1.5, size=n)
    sourced = np.array([True, True, False, False, True, False])
    H = rng.normal(size=(3, n))  # data informing some combinations of the parameters
    post = np.linalg.inv(np.diag(1 / sd**2) + H.T @ H / 0.5**2)
    return d, sd, sourced, post


def test_variance_shares_closed_form_for_a_linear_metric():
    d, sd, sourced, post = _linear_case(0)
    out = C.variance_shares(d, sd, sourced, post)
    s0 = np.maximum(1.0, sd)
    assert out["v0"] == pytest.approx(np.sum(d**2 * s0**2))
    assert out["v1"] == pytest.approx(np.sum(d**2 * sd**2))
    assert out["v2"] == pytest.approx(d @ post @ d)
    # first-order variance of the assumed group, by Monte Carlo: Var(E[f | z_A]) for f = d . z
    rng = np.random.default_rng(1)
    z = rng.multivariate_normal(np.zeros(d.size), post, size=400_000)
    f = z @ d
    A = ~sourced
    beta, *_ = np.linalg.lstsq(z[:, A], f, rcond=None)  # E[f | z_A] is linear for Gaussians
    first = np.var(z[:, A] @ beta)
    removed_a = np.sum((d**2 * (s0**2 - sd**2))[A])
    assert out["assumed_share"] * out["v0"] == pytest.approx(removed_a + first, rel=1e-2)
    assert out["sourced_share"] == pytest.approx(np.sum((d**2 * (s0**2 - sd**2))[sourced]) / out["v0"])
    assert out["fitted_share"] == pytest.approx((out["v1"] - out["v2"]) / out["v0"])
    assert out["data_share"] == pytest.approx(out["sourced_share"] + out["fitted_share"])


@pytest.mark.parametrize("seed", range(8))
def test_variance_shares_invariants(seed):
    d, sd, sourced, post = _linear_case(seed)
    rng = np.random.default_rng(seed)
    sourced = rng.random(d.size) < 0.5
    out = C.variance_shares(d, sd, sourced, post)
    parts = [out[k] for k in ("sourced_share", "fitted_share", "assumed_share", "residual_share")]
    assert all(0.0 <= p <= 1.0 for p in parts + [out["data_share"]])
    assert sum(parts) == pytest.approx(1.0)
    # no data (posterior = prior): nothing is fitted; all sourced: nothing is assumed
    prior = C.variance_shares(d, sd, sourced, np.diag(sd**2))
    assert prior["fitted_share"] == pytest.approx(0.0, abs=1e-12)
    allsrc = C.variance_shares(d, sd, np.ones(d.size, bool), post)
    assert allsrc["assumed_share"] == 0.0
    assert allsrc["data_share"] + allsrc["residual_share"] == pytest.approx(1.0)
    # a posterior covariance wider than the prior (sampling noise) cannot make the fitted share negative
    assert C.variance_shares(d, sd, sourced, 1.5 * np.diag(sd**2))["fitted_share"] == 0.0
    zero = C.variance_shares(np.zeros(d.size), sd, sourced, post)
    assert zero["data_share"] == 0.0 and zero["residual_share"] == 1.0


def test_variance_shares_bad_input():
    with pytest.raises(ValueError, match="sizes differ"):
        C.variance_shares(np.ones(3), np.ones(2), np.ones(3, bool), np.eye(3))
    with pytest.raises(ValueError, match="prior_sd"):
        C.variance_shares(np.ones(2), np.array([1.0, 0.0]), np.ones(2, bool), np.eye(2))


def test_cli_redraws_a_saved_report_and_rejects_bad_input(quick, tmp_path, capsys):
    import pkpd.cli

    path, fig = tmp_path / "v.json", tmp_path / "v.png"
    quick.save(path)
    assert pkpd.cli.main(["validate", "--from-json", str(path), "--figure", str(fig)]) == 0
    assert "overall" in capsys.readouterr().out and fig.stat().st_size > 1000
    assert pkpd.cli.main(["validate", "--modalities", "homeopathy"]) == 2
    assert "unknown modalities" in capsys.readouterr().err
    assert pkpd.cli.main(["validate", "--from-json", str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
def test_linearised_variances_against_monte_carlo():
    """The data share's linearised variances on one claim (psilocybin spine T50): over the
    calibrated parameters it matches the variance over the simulated posterior draws, and under
    the cards' priors a Monte Carlo over those priors to within the nonlinearity of a log T50 over
    a prior sd of ~1 (a factor of 2.5)."""
    claim = next(c for c in C.load_claims() if c["id"] == "psychedelic_spine_t50_under_24h")
    claim = dict(claim, modalities=["psilocybin"])
    cmp = C.Comparer(draws=32, progress=False)
    res = C.evaluate_claim(claim, cmp)
    v = res["variances"]["psilocybin"]
    assert v["v2_calibrated"] <= v["v2"] <= v["v1"] <= v["v0"]
    assert v["v2_calibrated"] == pytest.approx(v["v2_draws"], rel=0.3)

    def log_t50(times, change):
        return np.log(C._metric_values(claim, times, change))

    mc = cmp.prior_monte_carlo("psilocybin", {}, "spine_density", log_t50, n=128)
    mc = mc[np.isfinite(mc)]
    assert mc.size > 100
    assert 1 / 2.5 < v["v1"] / np.var(mc, ddof=1) < 2.5


# --- PSIS-LOO (pkpd.validate.loo) ---------------------------------------------------------------


class _FakeSetup:
    """The attributes of a :class:`pkpd.validate.run.Setup` that the LOO functions read."""

    def __init__(self, value, sd, study, n_studies, tau):
        from types import SimpleNamespace

        self.value, self.sd, self.study, self.tau = value, sd, study, tau
        self.jp = SimpleNamespace(S=n_studies)


def test_marginal_log_likelihood_matches_dense_quadrature():
    from scipy.integrate import quad
    from scipy.stats import norm

    from pkpd.validate.loo import marginal_log_likelihood
    from pkpd.validate.predictive import study_effect_conditional

    rng = np.random.default_rng(1)
    study = np.array([0, 0, 1, 1, 1])
    value = np.array([1.2, 1.1, 0.7, 0.8, 0.75])
    sd = np.array([0.1, 0.2, 0.05, 0.1, 0.08])
    pred = 1.0 + 0.1 * rng.standard_normal((3, 5))
    setup = _FakeSetup(value, sd, study, 2, 0.3)
    centre, scale = study_effect_conditional(pred, value, sd, study, 2, 0.3)
    got = marginal_log_likelihood(setup, pred, centre, scale)
    for d in range(3):
        total = 0.0
        for s in range(2):
            r = study == s

            def f(b, d=d, r=r):
                return np.prod(norm.pdf(value[r], pred[d, r] * np.exp(b), sd[r])) * norm.pdf(b, 0.0, 0.3)

            total += np.log(quad(f, -3.0, 3.0, points=[float(centre[d, s])], limit=200)[0])
        assert got[d] == pytest.approx(total, abs=1e-6)


def test_weighted_psis_loo_with_equal_weights_is_arviz_loo():
    import arviz as az

    from pkpd.validate.loo import _psis_loo_weighted

    rng = np.random.default_rng(2)
    ll = -0.5 * (rng.standard_normal((400, 1)) + rng.standard_normal((1, 12))) ** 2
    ref = az.loo(
        az.from_dict(posterior={"z": rng.standard_normal((1, 400))}, log_likelihood={"y": ll[None]}), pointwise=True
    )
    elpd_i, k = _psis_loo_weighted(ll, np.zeros(400))
    assert np.allclose(elpd_i, np.asarray(ref.loo_i), atol=1e-10)
    assert np.allclose(k, np.asarray(ref.pareto_k), atol=1e-10)
