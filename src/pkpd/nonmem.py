"""Import of NONMEM-style datasets into per-subject schedules and observations.

Columns (case-insensitive): ``ID``, ``TIME`` (h), ``AMT``, ``EVID`` (0 observation, 1 dose; 2-4
are refused), ``CMT``, ``RATE`` (> 0: infusion of duration AMT/RATE), ``II``, ``ADDL``, ``SS``
(0 or 1), ``DV``, ``MDV``. Only ``ID`` and ``TIME`` are required; ``EVID`` defaults to 1 where
``AMT`` > 0 and 0 elsewhere. ``CMT`` maps to a route with ``cmt_routes`` (ADVAN2 convention by
default: 1 = depot/oral, 2 = central/iv); a dose with ``RATE`` > 0 is an infusion whatever its CMT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .schedule import ROUTES, Schedule


def _py(x):
    """A numpy scalar as the plain Python value (for readable messages)."""
    return x.item() if isinstance(x, np.generic) else x


@dataclass(frozen=True)
class Subject:
    """One subject of a NONMEM dataset: its schedule and its observation rows (``time_h``, ``dv``,
    ``cmt``, ``predose``: recorded before a dose at the same TIME, so ``time_h`` is 1e-6 h earlier)."""

    id: object
    schedule: Schedule
    observations: "object"  # pandas.DataFrame


def read_nonmem(data, *, amount_unit: str = "mg", cmt_routes: dict[int, str] | None = None) -> dict[object, Subject]:
    """Read a NONMEM dataset (a pandas DataFrame or a CSV path) into ``{ID: Subject}``.

    Raises ``ValueError`` naming the row for: missing columns, a missing ID, an ID in separate
    blocks, a non-numeric entry, EVID not in {0, 1}, a dose without a
    positive AMT or an observation with AMT != 0, TIME decreasing within an ID, negative or
    non-finite values, RATE < 0 (model-defined rates are not supported), SS not in {0, 1}, SS=1
    without II > 0, ADDL > 0 without II > 0, an unknown CMT.
    """
    import pandas as pd

    if isinstance(data, (str, Path)):
        df = pd.read_csv(data)
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        raise TypeError(f"data must be a pandas DataFrame or a CSV path, got {type(data).__name__}")
    df.columns = [str(c).strip().upper() for c in df.columns]
    missing = [c for c in ("ID", "TIME") if c not in df.columns]
    if missing:
        raise ValueError(
            f"NONMEM dataset is missing column(s) {missing}; it has {list(df.columns)}; required: "
            "['ID', 'TIME'], optional: ['AMT', 'EVID', 'CMT', 'RATE', 'II', 'ADDL', 'SS', 'DV', 'MDV']"
        )
    cmt_routes = {1: "oral", 2: "iv"} if cmt_routes is None else dict(cmt_routes)
    for c, r in cmt_routes.items():
        if r not in ROUTES:
            raise ValueError(f"cmt_routes[{c}]={r!r} is not a route; valid: {list(ROUTES)}")
    _check_ids(df)
    cols = _columns(df)
    fail = _failer(df)
    for i in range(len(df)):
        _check_row(i, cols, cmt_routes, fail)
    subjects: dict[object, Subject] = {}
    for sid, idx in df.groupby("ID", sort=False).indices.items():
        idx = np.sort(idx)
        t = cols["time"][idx]
        if np.any(np.diff(t) < 0):
            j = int(np.argmax(np.diff(t) < 0)) + 1
            fail(
                int(idx[j]),
                f"TIME decreases within ID (TIME={t[j]:g} after TIME={t[j - 1]:g}); TIME must be "
                "non-decreasing within an ID: sort the dataset by ID and TIME",
            )
        schedule = _subject_schedule(sid, idx, cols, cmt_routes, amount_unit)
        subjects[sid] = Subject(id=sid, schedule=schedule, observations=_observations(idx, cols))
    return subjects


def _check_ids(df) -> None:
    """Every row has an ID, and each ID is one contiguous block (NONMEM's individuals)."""
    import pandas as pd

    if df["ID"].isna().any():
        i = int(np.argmax(df["ID"].isna().to_numpy()))
        raise ValueError(f"NONMEM row {i}: ID is missing")
    ids = df["ID"].to_numpy()
    change = np.concatenate([[True], ids[1:] != ids[:-1]])
    starts = pd.Series(ids[change])
    if starts.duplicated().any():
        raise ValueError(
            f"NONMEM dataset: ID={_py(starts[starts.duplicated()].iloc[0])!r} appears in separate blocks; "
            "NONMEM starts a new individual at each change of ID, so sort by ID (then TIME)"
        )


def _failer(df):
    def fail(i, msg):
        raise ValueError(f"NONMEM row {i} (ID={_py(df['ID'].iloc[i])!r}): {msg}")

    return fail


def _column(df, name: str, default) -> np.ndarray:
    """Column ``name`` as floats (``default`` when absent; NaN for an empty cell or '.')."""
    import pandas as pd

    if name not in df.columns:
        return np.full(len(df), default, float)
    raw = df[name]
    num = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    bad = (
        np.isnan(num)
        & raw.notna().to_numpy()
        & (raw.astype(str).str.strip() != "").to_numpy()
        & (raw.astype(str).str.strip() != ".").to_numpy()
    )
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"NONMEM row {i}: {name}={_py(raw.iloc[i])!r} is not a number (use a number, "
            "or an empty cell or '.' for missing)"
        )
    return num


def _columns(df) -> dict[str, np.ndarray]:
    """The numeric columns (``time``, ``amt``, ``rate``, ``ii``, ``addl``, ``ss``, ``evid``,
    ``cmt``, ``dv``, ``mdv``) with NONMEM's defaults (EVID: 1 where AMT > 0)."""
    time, amt, rate, ii, addl, ss = (
        _column(df, "TIME", np.nan),
        _column(df, "AMT", 0.0),
        _column(df, "RATE", 0.0),
        _column(df, "II", 0.0),
        _column(df, "ADDL", 0.0),
        _column(df, "SS", 0.0),
    )
    amt, rate, ii, addl, ss = (np.nan_to_num(x, nan=0.0) for x in (amt, rate, ii, addl, ss))
    evid = _column(df, "EVID", np.nan)
    evid = np.where(np.isnan(evid), (amt > 0).astype(float), evid)
    cmt = _column(df, "CMT", np.nan)
    dv = _column(df, "DV", np.nan)
    mdv = _column(df, "MDV", np.nan)
    return dict(time=time, amt=amt, rate=rate, ii=ii, addl=addl, ss=ss, evid=evid, cmt=cmt, dv=dv, mdv=mdv)


def _check_row(i: int, c: dict, cmt_routes: dict, fail) -> None:
    time, amt, rate, ii, addl, ss, evid, cmt = (
        c[k] for k in ("time", "amt", "rate", "ii", "addl", "ss", "evid", "cmt")
    )
    if not np.isfinite(time[i]) or time[i] < 0:
        fail(i, f"TIME={float(time[i])!r} must be finite and >= 0 (hours)")
    if evid[i] not in (0, 1):
        fail(i, f"EVID={evid[i]:g} is not supported; valid: 0 (observation), 1 (dose)")
    if evid[i] == 1 and not (np.isfinite(amt[i]) and amt[i] > 0):
        fail(i, f"EVID=1 (dose) needs AMT > 0, got AMT={float(amt[i])!r}")
    if evid[i] == 0 and amt[i] != 0:
        fail(i, f"EVID=0 (observation) must have AMT=0, got AMT={float(amt[i])!r} (a dose needs EVID=1)")
    if rate[i] < 0:
        fail(i, f"RATE={rate[i]:g}: model-defined rates (-1, -2) are not supported; give RATE > 0 or 0")
    if ss[i] not in (0, 1):
        fail(i, f"SS={ss[i]:g} is not supported; valid: 0 or 1")
    if (ss[i] == 1 or addl[i] > 0) and not ii[i] > 0:
        fail(i, f"SS={ss[i]:g}/ADDL={addl[i]:g} need II > 0, got II={float(ii[i])!r}")
    if addl[i] < 0 or addl[i] != np.floor(addl[i]):
        fail(i, f"ADDL={float(addl[i])!r} must be a non-negative integer")
    if evid[i] == 1 and rate[i] == 0:
        k = 1 if np.isnan(cmt[i]) else int(cmt[i])
        if k not in cmt_routes:
            fail(i, f"CMT={k} has no route; cmt_routes maps {cmt_routes}")


def _subject_schedule(sid, idx, c: dict, cmt_routes: dict, amount_unit: str) -> Schedule:
    """The dose records of one subject (ADDL expanded) as a :class:`Schedule`."""
    time, amt, rate, ii, addl, ss, evid, cmt = (
        c[k] for k in ("time", "amt", "rate", "ii", "addl", "ss", "evid", "cmt")
    )
    times, amounts, routes, durations, ss_flags, iis = [], [], [], [], [], []
    for i in idx[evid[idx] == 1]:
        infusion = rate[i] > 0
        route = "infusion" if infusion else cmt_routes[1 if np.isnan(cmt[i]) else int(cmt[i])]
        for k in range(int(addl[i]) + 1):
            times.append(time[i] + k * ii[i])
            amounts.append(amt[i])
            routes.append(route)
            durations.append(amt[i] / rate[i] if infusion else 0.0)
            ss_flags.append(bool(ss[i]) and k == 0)
            iis.append(ii[i])
    if not times:
        return Schedule(amount_unit=amount_unit, label=f"ID {sid}")
    return Schedule.doses(
        times, amounts, routes, duration=durations, ss=ss_flags, ii=iis, unit=amount_unit, label=f"ID {sid}"
    )


def _observations(idx, c: dict):
    """The observation records of one subject (MDV=1 dropped): time (h), DV, CMT, pre-dose flag."""
    import pandas as pd

    time, evid = c["time"], c["evid"]
    obs_rows = idx[(evid[idx] == 0) & ~(c["mdv"][idx] == 1)]
    # An observation record placed before a dose record at the same TIME is a pre-dose (trough)
    # sample; pkpd trajectories are right-continuous, so it is evaluated 1e-6 h earlier.
    predose = np.array(
        [bool(np.any((time[idx] == time[i]) & (evid[idx] == 1) & (idx > i))) for i in obs_rows], dtype=bool
    )
    return pd.DataFrame(
        {
            "time_h": time[obs_rows] - 1e-6 * predose,
            "dv": c["dv"][obs_rows],
            "cmt": c["cmt"][obs_rows],
            "predose": predose,
        }
    )
