"""Population records, the exact linear predictor, and clear errors for bad records and for every
unsupported NONMEM control-stream construct met (no FOCE compile: fast)."""

import importlib.resources

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import pkpd
from pkpd.population import RecordError, UnsupportedNonmem, read_records
from pkpd.population.predict import linear_states, transition

pharmpy = pytest.importorskip("pharmpy")
EX = importlib.resources.files("pharmpy") / "internals" / "example_models"


def _frame(**cols):
    base = dict(
        ID=[1, 1, 1, 2, 2],
        TIME=[0.0, 1.0, 4.0, 0.0, 2.0],
        AMT=[100.0, 0, 0, 100.0, 0],
        DV=[0.0, 1.2, 0.8, 0.0, 1.0],
        WT=[70.0, 70, 70, 60, 60],
    )
    base.update(cols)
    return pd.DataFrame(base)


def test_records_shapes_and_parts():
    df = _frame()
    rec = read_records(df, covariates=["wt"])
    assert rec.ids == (1, 2)
    assert rec.obs_mask.sum() == 3 and rec.dose_mask.sum() == 2
    np.testing.assert_array_equal(rec.cov[:, 0, 0], [70.0, 60.0])
    np.testing.assert_array_equal(rec.obs_row[0, 0, :2], [1, 2])
    # EVID=4 (reset and dose) starts a second, independent part
    df2 = pd.DataFrame(
        dict(ID=[1] * 4, TIME=[0.0, 2.0, 24.0, 26.0], AMT=[10.0, 0, 10.0, 0], DV=[0, 1.0, 0, 1.1], EVID=[1, 0, 4, 0])
    )
    rec2 = read_records(df2)
    assert rec2.part_mask.tolist() == [[True, True]]
    assert rec2.dose_time[0, 1, 0] == 24.0 and rec2.obs_time[0, 1, 0] == 26.0


def test_bad_records_raise_clear_errors():
    with pytest.raises(RecordError, match=r"row 2 \(ID=1\): TIME=-4.0"):
        read_records(_frame(TIME=[0.0, 1.0, -4.0, 0.0, 2.0]))
    with pytest.raises(RecordError, match=r"row 1 \(ID=1\): DV=nan is missing on an observation row"):
        read_records(_frame(DV=[0.0, np.nan, 0.8, 0.0, 1.0]))
    # MDV=1 marks the row as not observed: no error
    assert read_records(_frame(DV=[0.0, np.nan, 0.8, 0.0, 1.0], MDV=[1, 1, 0, 1, 0])).n_observations == 2
    with pytest.raises(RecordError, match=r"unknown covariate 'CRCL'.*columns: \['ID', 'TIME', 'AMT', 'DV', 'WT'\]"):
        read_records(_frame(), covariates=["CRCL"])
    with pytest.raises(RecordError, match="covariate WT changes within ID=1 between TIME=0 h"):
        read_records(_frame(WT=[70.0, 72, 70, 60, 60]), covariates=["WT"])
    with pytest.raises(RecordError, match="EVID=7 is not one of"):
        read_records(_frame(EVID=[1, 0, 7, 1, 0]))
    with pytest.raises(RecordError, match="covariate WT=nan is missing"):
        read_records(_frame(WT=[np.nan] * 5), covariates=["WT"])
    with pytest.raises(ValueError, match="TIME decreases within ID"):
        read_records(_frame(TIME=[0.0, 4.0, 1.0, 0.0, 2.0]))


def _part(times, amounts, routes, obs, *, dur=None, ss=None, ii=None):
    n = len(times)
    return dict(
        dose_time=jnp.asarray(times, float),
        dose_amount=jnp.asarray(amounts, float),
        dose_route=jnp.asarray([pkpd.ROUTES.index(r) for r in routes]),
        dose_duration=jnp.asarray(dur if dur is not None else [0.0] * n, float),
        dose_ss=jnp.asarray(ss if ss is not None else [False] * n),
        dose_ii=jnp.asarray(ii if ii is not None else [1.0] * n, float),
        dose_mask=jnp.ones(n, bool),
        obs_time=jnp.asarray(obs, float),
    )


@pytest.mark.parametrize(
    "model, schedule, flags",
    [
        (
            pkpd.pk.OneCompartment(cl=5.0, v=40.0, ka=1.3),
            pkpd.Schedule.doses([0.0, 12.0, 30.0], [100.0, 50.0, 80.0], "oral"),
            {},
        ),
        pytest.param(
            pkpd.pk.OneCompartment(cl=5.0, v=40.0, ka=0.125),  # ka = k: the closed form's limit
            pkpd.Schedule.doses([0.0, 12.0], [100.0, 50.0], "oral"),
            {},
            marks=pytest.mark.slow,
        ),
        pytest.param(
            pkpd.pk.TwoCompartment(cl=4.0, v1=20.0, q=3.0, v2=50.0),
            pkpd.Schedule.doses([0.0, 6.0], [100.0, 60.0], ["iv", "infusion"], duration=[0.0, 2.0]),
            {"has_infusion": True},
            marks=pytest.mark.slow,
        ),
        (
            pkpd.pk.OneCompartment(cl=5.0, v=40.0, ka=2.0),
            pkpd.Schedule.doses([40.0], [200.0], "oral", ss=True, ii=12.0),
            {"has_ss": True},
        ),
    ],
)
def test_linear_superposition_matches_pkpd_simulate(model, schedule, flags):
    obs = np.array([0.5, 1.0, 3.0, 7.0, 12.5, 13.0, 20.0, 31.0, 40.0, 40.2, 41.0, 47.0])
    s = schedule
    part = _part(
        s.dose_time,
        s.dose_amount,
        [pkpd.ROUTES[r] for r in s.dose_route],
        obs,
        dur=s.dose_duration,
        ss=s.dose_ss,
        ii=np.where(s.dose_ii > 0, s.dose_ii, 1.0),
    )
    fn = jax.jit(
        lambda m, p: linear_states(
            m, 0.0, p, has_ss=flags.get("has_ss", False), has_infusion=flags.get("has_infusion", False)
        )
    )
    got = fn(model, part)
    t0 = float(s.dose_time[0])
    keep = obs >= t0
    ref = pkpd.simulate(model, s, np.concatenate([[t0], obs[keep]])).states[1:]
    np.testing.assert_allclose(np.asarray(got)[keep], np.asarray(ref), rtol=1e-9, atol=1e-10)


def test_lag_is_exact_and_differentiable():
    """An absorption lag by superposition equals pkpd.simulate's static lag, and its derivative
    equals the finite difference (pkpd's event table keeps the lag static)."""
    obs = np.array([0.3, 1.0, 5.0, 12.6, 14.0])
    part = _part([0.0, 12.0], [100.0, 50.0], ["oral", "oral"], obs)
    base = pkpd.pk.OneCompartment(cl=5.0, v=40.0, ka=1.3)
    c = jax.jit(lambda lag: linear_states(base, lag, part, has_ss=False, has_infusion=False)[:, 1])
    m = pkpd.pk.OneCompartment(cl=5.0, v=40.0, ka=1.3, lag=0.5)
    ref = pkpd.simulate(m, pkpd.Schedule.doses([0.0, 12.0], [100.0, 50.0], "oral"), np.concatenate([[0.0], obs]))
    np.testing.assert_allclose(np.asarray(c(0.5)), np.asarray(ref.states[1:, 1]), rtol=1e-10, atol=1e-12)
    d = jax.jit(jax.jacfwd(c))(0.4)
    fd = (c(0.4 + 1e-6) - c(0.4 - 1e-6)) / 2e-6
    np.testing.assert_allclose(np.asarray(d), np.asarray(fd), rtol=1e-6)


def test_transition_closed_form_matches_expm():
    m = pkpd.pk.OneCompartment(cl=3.0, v=10.0, ka=0.9)
    dt = jnp.asarray([0.0, 0.5, 3.0, 40.0])
    ref = jax.vmap(lambda t: jax.scipy.linalg.expm(m.matrix() * t))(dt)
    np.testing.assert_allclose(np.asarray(transition(m, dt)), np.asarray(ref), rtol=1e-12, atol=1e-14)


def _edited(tmp_path, name, old, new, src="pheno.mod"):
    text = (EX / src).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    for ext in (".dta", ".datainfo"):
        f = EX / src.replace(".mod", ext)
        if f.is_file():
            (tmp_path / f.name).write_text(f.read_text())
    return path


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("ADVAN1 TRANS2", "ADVAN6 TOL=9", r"\$SUBROUTINE ADVAN6 is not supported"),
        ("ADVAN1 TRANS2", "ADVAN11 TRANS4", r"\$SUBROUTINE ADVAN11 is not supported"),
        ("$ERROR", "$DES\nDADT(1) = -CL/V*A(1)\n$ERROR", r"\$DES \(general ODEs\)"),
        ("$ERROR", "$MIX\nP(1)=THETA(3)\nNSPOP=2\n$ERROR", r"\$MIX \(mixture models\)"),
        ("$ESTIMATION", "$PRIOR NWPRI\n$ESTIMATION", r"\$PRIOR \(NWPRI priors\)"),
        ("$ESTIMATION", "$LEVEL ID=(1)\n$ESTIMATION", r"\$LEVEL \(nested random effects\)"),
        ("CL = TVCL*EXP(ETA_CL)", "CL = TVCL*EXP(ETA_CL)*(1 + 0.001*TIME)", "depends on time"),
    ],
)
def test_unsupported_control_stream_constructs(tmp_path, old, new, message):
    path = _edited(tmp_path, "bad.mod", old, new)
    with pytest.raises(UnsupportedNonmem, match=message):
        pkpd.population.from_nonmem(path)


def test_unsupported_data_constructs(tmp_path):
    text = (EX / "pheno.dta").read_text().splitlines()
    head = text[0] + " RATE"
    body = [line + ("  -2" if i == 1 else "  0") for i, line in enumerate(text[1:], start=1)]
    (tmp_path / "pheno.dta").write_text("\n".join([head] + body) + "\n")
    mod = (EX / "pheno.mod").read_text().replace("FA1 FA2", "FA1 FA2 RATE")
    (tmp_path / "rate.mod").write_text(mod)
    with pytest.raises(UnsupportedNonmem, match="zero-order|RATE=-1/-2"):
        pkpd.population.from_nonmem(tmp_path / "rate.mod")


def test_from_nonmem_structure_of_moxo():
    m = pkpd.population.from_nonmem(EX / "moxo.mod")
    assert m.eta_names == ("ETA_1", "ETA_2", "ETA_3", "ETA_4", "ETA_5", "ETA_6", "ETA_7")
    om = np.asarray(m.params.omega.matrix(m.params.omega.init))
    assert om[3, 3] == om[4, 4] == pytest.approx(0.0234871)  # IOV SAME blocks are tied
    assert om[0, 1] == pytest.approx(0.0259926)
    assert m.records.part_mask.sum() == 142  # 69 subjects with two occasions, 4 with one
    assert m.nonmem["method"] == "FOCE" and m.nonmem["interaction"] is False
