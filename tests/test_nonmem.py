import numpy as np
import pandas as pd
import pytest
from conftest import one_cmt_oral

import pkpd


def _df(rows):
    return pd.DataFrame(rows, columns=["ID", "TIME", "AMT", "EVID", "CMT", "RATE", "II", "ADDL", "SS", "DV", "MDV"])


def test_read_nonmem_addl_and_observations():
    df = _df(
        [
            [1, 0, 100, 1, 1, 0, 24, 2, 0, 0, 1],
            [1, 2, 0, 0, 2, 0, 0, 0, 0, 1.3, 0],
            [1, 50, 0, 0, 2, 0, 0, 0, 0, 1.1, 0],
            [2, 0, 60, 1, 2, 30, 0, 0, 0, 0, 1],
            [2, 1, 0, 0, 2, 0, 0, 0, 0, 2.0, 0],
        ]
    )
    subjects = pkpd.read_nonmem(df)
    s1 = subjects[1].schedule
    assert np.allclose(s1.dose_time, [0, 24, 48]) and s1.n_doses == 3
    assert list(subjects[1].observations["time_h"]) == [2, 50]
    s2 = subjects[2].schedule
    assert pkpd.ROUTES[s2.dose_route[0]] == "infusion" and s2.dose_duration[0] == pytest.approx(2.0)
    m = pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=1.0)
    t = np.linspace(0, 72, 37)
    c = pkpd.simulate(m, s1, t)["concentration"]
    assert np.allclose(c, one_cmt_oral(t, [0, 24, 48], [100] * 3, 10.0, 50.0, 1.0), rtol=1e-9, atol=1e-15)


def test_read_nonmem_ss_and_csv(tmp_path):
    df = _df([[1, 0, 100, 1, 1, 0, 24, 0, 1, 0, 1]])
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    s = pkpd.read_nonmem(path)[1].schedule
    assert bool(s.dose_ss[0]) and s.dose_ii[0] == 24.0


@pytest.mark.parametrize(
    "rows,match",
    [
        ([[1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1]], "AMT > 0"),
        ([[1, 0, 100, 0, 1, 0, 0, 0, 0, 0, 0]], "AMT=0"),
        ([[1, 0, 100, 4, 1, 0, 0, 0, 0, 0, 1]], "EVID=4"),
        ([[1, 5, 0, 0, 2, 0, 0, 0, 0, 1, 0], [1, 2, 0, 0, 2, 0, 0, 0, 0, 1, 0]], "TIME decreases"),
        ([[1, 0, 100, 1, 1, -1, 0, 0, 0, 0, 1]], "RATE"),
        ([[1, 0, 100, 1, 1, 0, 0, 0, 1, 0, 1]], "II > 0"),
        ([[1, 0, 100, 1, 1, 0, 0, 3, 0, 0, 1]], "II > 0"),
        ([[1, 0, 100, 1, 7, 0, 0, 0, 0, 0, 1]], "CMT=7"),
        ([[1, -1, 0, 0, 1, 0, 0, 0, 0, 0, 0]], "TIME"),
    ],
)
def test_read_nonmem_rejects(rows, match):
    with pytest.raises(ValueError, match=match):
        pkpd.read_nonmem(_df(rows))


def test_read_nonmem_missing_columns():
    with pytest.raises(ValueError, match="missing column"):
        pkpd.read_nonmem(pd.DataFrame({"TIME": [0.0]}))
