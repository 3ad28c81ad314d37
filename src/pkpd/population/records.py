"""Individual records (a NONMEM-style dataset) as padded per-subject arrays.

A subject's history is cut into *parts*: a new part starts at a reset (EVID=3, or EVID=4 = reset
and dose) and at a steady-state dose (SS=1, which NONMEM and pkpd also treat as a reset). Inside a
part the dosing history carries over; across parts it does not, so parts are independent and the
individual parameters may differ between them (inter-occasion variability). The parameters must
be constant inside a part: every covariate the parameter model reads must be constant inside a
part (time-varying covariates within a dosing history are refused with an error naming the
covariate, the subject and the times).

Each part is read by :func:`pkpd.read_nonmem` (which validates the rows and builds the part's
:class:`pkpd.Schedule`); the doses and observations are then padded to one shape over subjects
(``S`` subjects, ``P`` parts, ``D`` doses and ``J`` observations per part) so that one compiled
function serves every subject.

Units: TIME in hours, AMT in the dataset's amount unit (mg by default), DV in the unit of the
model's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..nonmem import _py, read_nonmem
from ..schedule import ROUTES, Schedule


class RecordError(ValueError):
    """A dataset row the population model cannot use (the message names the row and field)."""


@dataclass(frozen=True)
class Records:
    """Padded per-subject arrays of a dataset (see the module docstring for the shapes).

    ``dose_route`` holds indices into :data:`pkpd.ROUTES`; ``obs_row`` the row of each observation
    in the input dataset (-1 in padding); ``cov`` the covariates (``cov_names``) per part;
    ``occasion`` the index of the part's occasion in ``occasions`` (0 without an occasion column).
    """

    ids: tuple
    dose_time: np.ndarray
    dose_amount: np.ndarray
    dose_route: np.ndarray
    dose_duration: np.ndarray
    dose_ss: np.ndarray
    dose_ii: np.ndarray
    dose_mask: np.ndarray
    obs_time: np.ndarray
    obs_dv: np.ndarray
    obs_mask: np.ndarray
    obs_row: np.ndarray
    cov: np.ndarray
    cov_names: tuple
    occasion: np.ndarray
    occasions: tuple
    part_mask: np.ndarray
    schedules: list = field(repr=False)
    amount_unit: str = "mg"

    @property
    def n_subjects(self) -> int:
        return len(self.ids)

    @property
    def n_observations(self) -> int:
        return int(self.obs_mask.sum())

    @property
    def has_ss(self) -> bool:
        return bool((self.dose_ss & self.dose_mask).any())

    @property
    def has_infusion(self) -> bool:
        return bool(((self.dose_duration > 0) & self.dose_mask).any())

    def arrays(self) -> dict:
        """The numeric arrays as a dict (a pytree with a leading subject axis) for vmapped code."""
        return {
            name: getattr(self, name)
            for name in (
                "dose_time",
                "dose_amount",
                "dose_route",
                "dose_duration",
                "dose_ss",
                "dose_ii",
                "dose_mask",
                "obs_time",
                "obs_dv",
                "obs_mask",
                "cov",
                "occasion",
                "part_mask",
            )
        }

    def observations(self):
        """A DataFrame of the observations: ID, part, TIME, DV and the dataset row."""
        import pandas as pd

        s, p, j = np.nonzero(self.obs_mask)
        return pd.DataFrame(
            {
                "ID": [self.ids[i] for i in s],
                "part": p,
                "TIME": self.obs_time[s, p, j],
                "DV": self.obs_dv[s, p, j],
                "row": self.obs_row[s, p, j],
            }
        )

    def with_dv(self, dv: np.ndarray) -> Records:
        """A copy with new observed values ``dv`` (shape of ``obs_dv``), e.g. a simulated replicate."""
        import dataclasses

        return dataclasses.replace(self, obs_dv=np.where(self.obs_mask, np.asarray(dv, float), 0.0))


def _frame(data):
    import pandas as pd

    if isinstance(data, (str, Path)):
        df = pd.read_csv(data)
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        raise TypeError(f"data must be a pandas DataFrame or a CSV path, got {type(data).__name__}")
    df.columns = [str(c).strip().upper() for c in df.columns]
    return df.reset_index(drop=True)


def _num(df, name, default):
    import pandas as pd

    if name not in df.columns:
        return np.full(len(df), default, float)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(float)


def _check_rows(df, evid, mdv):
    """Negative or missing times, missing DV on observation rows (row numbers of the input)."""
    time = _num(df, "TIME", np.nan)
    dv = _num(df, "DV", np.nan)
    for i in range(len(df)):
        where = f"row {i} (ID={_py(df['ID'].iloc[i])!r})"
        if not np.isfinite(time[i]) or time[i] < 0:
            raise RecordError(f"{where}: TIME={_py(df['TIME'].iloc[i])!r} must be a finite number of hours >= 0")
        if evid[i] == 0 and mdv[i] != 1 and not np.isfinite(dv[i]):
            raise RecordError(
                f"{where}: DV={_py(df['DV'].iloc[i]) if 'DV' in df.columns else None!r} is missing on an "
                "observation row (EVID=0, MDV=0); give the value, or set MDV=1 to skip the row"
            )


def _parts(df, evid, ss):
    """Part number of each row (a new part at EVID 3/4 and SS=1 doses) and the rows to keep."""
    part = np.zeros(len(df), int)
    keep = ~np.isin(evid, (2, 3))  # other-type events and pure resets carry no dose, no observation
    ids = df["ID"].to_numpy()
    k = count = 0
    for i in range(len(df)):
        if i and ids[i] != ids[i - 1]:
            k = count = 0
        reset = evid[i] in (3, 4) or (evid[i] == 1 and ss[i] == 1)
        if reset and count:
            k, count = k + 1, 0
        part[i] = k
        count += int(keep[i])
    return part, keep


def _covariates(df, rows_by_part, covariates, ids):
    """Covariate values per (subject, part), refusing values that change inside a part."""
    out = {}
    for (sid, p), rows in rows_by_part.items():
        vals = []
        for c in covariates:
            v = _num(df.iloc[rows], c, np.nan)
            if not np.all(np.isfinite(v)):
                r = rows[int(np.argmax(~np.isfinite(v)))]
                raise RecordError(
                    f"row {r} (ID={_py(sid)!r}): covariate {c}={_py(df[c].iloc[r])!r} is missing or not a number"
                )
            if np.ptp(v) > 0:
                t = df["TIME"].to_numpy(float)[rows]
                j = int(np.argmax(v != v[0]))
                raise RecordError(
                    f"covariate {c} changes within ID={_py(sid)!r} between TIME={t[j - 1]:g} h ({v[j - 1]:g}) and "
                    f"TIME={t[j]:g} h ({v[j]:g}) inside one dosing history; time-varying covariates are not "
                    "supported: the individual parameters must be constant between resets (EVID=3/4 or SS=1)"
                )
            vals.append(v[0])
        out[(sid, p)] = np.asarray(vals, float)
    return out


def read_records(
    data,
    *,
    covariates=(),
    occasion: str | None = None,
    cmt_routes: dict[int, str] | None = None,
    amount_unit: str = "mg",
) -> Records:
    """Read a NONMEM-style dataset (DataFrame or CSV path) into padded :class:`Records`.

    ``covariates``: the columns the parameter model reads (an unknown name raises, listing the
    columns). ``occasion``: the column numbering occasions (for inter-occasion variability).
    ``cmt_routes``: dose compartment -> route, as in :func:`pkpd.read_nonmem`.

    Raises :class:`RecordError` (a ``ValueError``) naming the row for a negative or missing TIME,
    a missing DV on an observation row, a covariate that is missing or changes inside a dosing
    history, an unknown covariate or occasion column, EVID outside 0-4; and every error of
    :func:`pkpd.read_nonmem` (bad AMT, RATE, SS, II, CMT, decreasing TIME...).
    """
    df = _frame(data)
    for c in ("ID", "TIME"):
        if c not in df.columns:
            raise RecordError(f"the dataset has no {c} column; it has {list(df.columns)}")
    covariates = tuple(str(c).upper() for c in covariates)
    names = covariates + ((occasion.upper(),) if occasion else ())
    for c in names:
        if c not in df.columns:
            raise RecordError(
                f"unknown covariate {c!r}: it is not a column of the dataset; columns: {list(df.columns)}"
            )
    amt = np.nan_to_num(_num(df, "AMT", 0.0))
    evid = _num(df, "EVID", np.nan)
    evid = np.where(np.isnan(evid), (amt > 0).astype(float), evid)
    bad = ~np.isin(evid, (0, 1, 2, 3, 4))
    if bad.any():
        i = int(np.argmax(bad))
        raise RecordError(f"row {i} (ID={_py(df['ID'].iloc[i])!r}): EVID={evid[i]:g} is not one of 0, 1, 2, 3, 4")
    mdv = _num(df, "MDV", np.nan)
    _check_rows(df, evid, mdv)
    ss = np.nan_to_num(_num(df, "SS", 0.0))
    part, keep = _parts(df, evid, ss)
    work = df.copy()
    work["EVID"] = np.where(evid == 4, 1.0, evid)
    work["_PART"] = part
    work["_ROW"] = np.arange(len(df))
    work = work[keep].reset_index(drop=True)
    ids = tuple(dict.fromkeys(work["ID"].tolist()))
    rows_by_part = {k: np.asarray(v) for k, v in work.groupby(["ID", "_PART"], sort=False).indices.items()}
    # read_nonmem validates each part's rows and builds its Schedule (ADDL expanded)
    parts = {}
    for key, rows in rows_by_part.items():
        sub = work.iloc[rows].drop(columns=["_PART", "_ROW"])
        try:
            parts[key] = read_nonmem(sub, amount_unit=amount_unit, cmt_routes=cmt_routes)[key[0]]
        except ValueError as e:  # re-number the row as in the input dataset
            raise RecordError(f"ID={_py(key[0])!r} (dataset rows {work['_ROW'].iloc[rows[0]]}..): {e}") from None
    cov = _covariates(work, rows_by_part, covariates, ids)
    occ_val = _covariates(work, rows_by_part, (occasion.upper(),), ids) if occasion else None
    occasions = tuple(sorted({float(v[0]) for v in occ_val.values()})) if occasion else (0.0,)
    return _pad(work, ids, rows_by_part, parts, cov, occ_val, occasions, covariates, amount_unit)


def _pad(work, ids, rows_by_part, parts, cov, occ_val, occasions, covariates, amount_unit) -> Records:
    n_s = len(ids)
    n_p = 1 + max(p for _, p in parts)
    n_d = max(1, max(s.schedule.n_doses for s in parts.values()))
    n_j = max(1, max(len(s.observations) for s in parts.values()))
    z = lambda *shape: np.zeros((n_s, n_p) + shape)  # noqa: E731
    a = dict(
        dose_time=z(n_d),
        dose_amount=z(n_d),
        dose_route=np.zeros((n_s, n_p, n_d), np.int64),
        dose_duration=z(n_d),
        dose_ss=np.zeros((n_s, n_p, n_d), bool),
        dose_ii=np.ones((n_s, n_p, n_d)),
        dose_mask=np.zeros((n_s, n_p, n_d), bool),
        obs_time=z(n_j),
        obs_dv=z(n_j),
        obs_mask=np.zeros((n_s, n_p, n_j), bool),
        obs_row=-np.ones((n_s, n_p, n_j), np.int64),
        cov=z(len(covariates)),
        occasion=np.zeros((n_s, n_p), np.int64),
        part_mask=np.zeros((n_s, n_p), bool),
    )
    schedules = [[None] * n_p for _ in range(n_s)]
    row = work["_ROW"].to_numpy()
    evid = work["EVID"].to_numpy(float)
    mdv = _num(work, "MDV", np.nan)
    for (sid, p), subj in parts.items():
        i = ids.index(sid)
        s = subj.schedule
        nd, nj = s.n_doses, len(subj.observations)
        a["part_mask"][i, p] = nj > 0
        schedules[i][p] = s
        a["dose_time"][i, p, :nd] = s.dose_time
        a["dose_amount"][i, p, :nd] = s.dose_amount
        a["dose_route"][i, p, :nd] = s.dose_route
        a["dose_duration"][i, p, :nd] = s.dose_duration
        a["dose_ss"][i, p, :nd] = s.dose_ss
        a["dose_ii"][i, p, :nd] = np.where(s.dose_ii > 0, s.dose_ii, 1.0)
        a["dose_mask"][i, p, :nd] = True
        a["obs_time"][i, p, :nj] = subj.observations["time_h"].to_numpy()
        a["obs_dv"][i, p, :nj] = subj.observations["dv"].to_numpy()
        a["obs_mask"][i, p, :nj] = True
        rows = rows_by_part[(sid, p)]
        obs_rows = rows[(evid[rows] == 0) & ~(mdv[rows] == 1)]
        a["obs_row"][i, p, :nj] = row[obs_rows]
        a["cov"][i, p] = cov[(sid, p)]
        if occ_val is not None:
            a["occasion"][i, p] = occasions.index(float(occ_val[(sid, p)][0]))
        if s.n_doses and np.any(s.dose_ss[1:]):
            raise RecordError(f"ID={_py(sid)!r}: a steady-state dose that is not the first dose of its dosing history")
    return Records(
        ids=ids, cov_names=covariates, occasions=occasions, schedules=schedules, amount_unit=amount_unit, **a
    )


__all__ = ["Records", "RecordError", "read_records", "ROUTES", "Schedule"]
