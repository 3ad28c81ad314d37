import numpy as np
import pytest

import pkpd
from pkpd import Schedule


def test_builders_store_hours_and_sort_stably():
    s = Schedule.doses(times=[2.0, 0.0, 1.0], amounts=[3.0, 1.0, 2.0], time_unit="d")
    assert np.allclose(s.dose_time, [0.0, 24.0, 48.0])
    assert np.allclose(s.dose_amount, [1.0, 2.0, 3.0])
    # stable: equal times keep their input order
    s2 = Schedule.doses([1.0, 1.0, 0.0], [10.0, 20.0, 5.0])
    assert np.allclose(s2.dose_amount, [5.0, 10.0, 20.0])


def test_repeated_is_nonmem_ii_addl():
    s = Schedule.repeated(50.0, every=12.0, n=4, start=6.0)
    assert np.allclose(s.dose_time, [6, 18, 30, 42])
    assert np.all(s.dose_ii == 12.0)


def test_daily_with_loading_dose():
    s = Schedule.daily(20.0, days=5, loading_dose=60.0)
    assert np.allclose(s.dose_amount, [60, 20, 20, 20, 20])
    assert np.allclose(np.diff(s.dose_time), 24.0)


def test_sessions_per_day_days_per_week_weeks():
    s = Schedule.sessions(per_day=10, days_per_week=5, weeks=1, gap=50, duration=10, pattern="itbs", pulses=1800)
    assert s.n_sessions == 50
    assert np.allclose(np.diff(s.session_start[:10]), 50 / 60)
    assert np.allclose(s.session_start[10], 24.0)
    ect = Schedule.sessions(per_day=1, days_per_week=3, weeks=4, duration=1, pattern="ect", pulses=0)
    assert ect.n_sessions == 12
    assert ect.session_seizure.all()
    assert np.allclose(ect.session_start[:4] / 24, [0, 2, 4, 7])  # Mon, Wed, Fri, Mon
    assert Schedule.sessions(weeks=6, n=1).n_sessions == 1


def test_merge_and_shift():
    a = Schedule.single_dose(1.0, at=5.0)
    b = Schedule.sessions(n=1)
    c = (a + b).shift(1.0, time_unit="d")
    assert c.n_doses == 1 and c.n_sessions == 1
    assert c.dose_time[0] == pytest.approx(29.0)
    assert c.session_start[0] == pytest.approx(24.0)
    assert "dose" in set(c.to_pandas()["kind"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(times=[0.0, -1.0], amounts=[1.0, 1.0]), "dose_time"),
        (dict(times=[0.0, np.nan], amounts=[1.0, 1.0]), "dose_time"),
        (dict(times=[0.0, np.inf], amounts=[1.0, 1.0]), "dose_time"),
        (dict(times=[0.0], amounts=[-5.0]), "dose_amount"),
        (dict(times=[0.0], amounts=[np.nan]), "dose_amount"),
        (dict(times=[0.0], amounts=[np.inf]), "dose_amount"),
        (dict(times=[0.0, 1.0], amounts=[1.0, 1.0, 1.0]), "length mismatch"),
        (dict(times=[0.0], amounts=[1.0], route="rectal"), "route"),
        (dict(times=[0.0], amounts=[1.0], route="infusion", duration=0.0), "dose_duration"),
        (dict(times=[0.0], amounts=[1.0], route="infusion", duration=-1.0), "dose_duration"),
        (dict(times=[0.0], amounts=[1.0], route="oral", duration=1.0), "dose_duration"),
        (dict(times=[0.0], amounts=[1.0], unit="furlongs"), "amount_unit"),
        (dict(times=[0.0], amounts=[1.0], time_unit="fortnight"), "time_unit"),
        (dict(times=[0.0], amounts=[1.0], ss=True, ii=0.0), "dose_ii"),
    ],
)
def test_dose_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule.doses(**kwargs)


def test_unsorted_direct_construction_rejected():
    with pytest.raises(ValueError, match="not sorted"):
        Schedule(
            dose_time=np.array([1.0, 0.0]),
            dose_amount=np.ones(2),
            dose_route=np.zeros(2, int),
            dose_duration=np.zeros(2),
            dose_ss=np.zeros(2, bool),
            dose_ii=np.zeros(2),
        )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(duration=0.0), "duration"),
        (dict(duration=-3.0), "duration"),
        (dict(per_day=2, gap=1, duration=3), "overlap"),
        (dict(pattern="tdcs"), "pattern"),
        (dict(days_per_week=8), "days_per_week"),
        (dict(n=100, weeks=1), "n=100"),
        (dict(per_day=30, gap=60), "do not fit"),
    ],
)
def test_session_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule.sessions(**kwargs)


def test_overlapping_session_list_rejected():
    with pytest.raises(ValueError, match="overlap"):
        Schedule.session_list([0.0, 0.01], duration=0.05)


def test_merging_different_units_rejected():
    with pytest.raises(ValueError, match="merge"):
        Schedule.single_dose(1.0, unit="mg") + Schedule.single_dose(1.0, unit="mg/kg")


def test_float64_enabled():
    import jax.numpy as jnp

    assert jnp.asarray(1.0).dtype == jnp.float64
    pkpd.check_float64()
