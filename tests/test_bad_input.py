"""Bad-input catalogue (issue 7): every public entry point rejects bad input loudly and helpfully.

The catalogue is one table, ``CASES``: a case id, the call, the exception type, and three regular
expressions that must all be found in the message -- the **field** (argument, column or
parameter), the **bad value**, and **what would be valid**. Calls that need a file take the
``tmp_path`` directory as their only argument.
"""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pandas as pd
import pytest

import pkpd
from pkpd import Schedule
from pkpd.fit import FitError

NAN, INF = float("nan"), float("inf")
ORAL = pkpd.pk.OneCompartment(cl=10.0, v=50.0, ka=1.0)
IV_ONLY = pkpd.pk.OneCompartment(cl=10.0, v=50.0)
DOSE = Schedule.single_dose(100.0)
T = np.array([0.0, 1.0])


def sim(times=T, model=ORAL, schedule=DOSE, **kw):
    return pkpd.simulate(model, schedule, times, **kw)


def curve(**kw):
    """One valid published-curve row with ``kw`` replaced."""
    row = dict(
        study_id="x",
        species="human",
        modality="psilocybin",
        readout="spine_density",
        statistic="percent_change",
        value="10",
        unit="%",
        time="1",
        time_unit="d",
        citation="A 2020",
        doi="10.1/x",
        quote="q",
        n="5",
    )
    row.update(kw)
    return pd.DataFrame([row])


def nonmem(**cols):
    """A one-subject NONMEM dataset; columns as lists."""
    base = dict(ID=[1], TIME=[0.0], AMT=[100.0], EVID=[1], CMT=[1])
    base.update(cols)
    n = max(len(v) for v in base.values())
    return pkpd.read_nonmem(pd.DataFrame({k: v * n if len(v) == 1 else v for k, v in base.items()}))


def wpd(tmp, text, **kw):
    path = tmp / "wpd.csv"
    path.write_text(text)
    meta = dict(
        study_id="m",
        species="mouse",
        modality="psilocybin",
        readout="spine_density",
        statistic="percent_change",
        unit="%",
        time_unit="d",
        citation="Me 2026",
        doi="10.0/me",
    )
    return pkpd.read_webplotdigitizer(path, **{**meta, **kw})


def fit(**kw):
    return pkpd.fit("psilocybin", progress=False, **kw)


def unusable_rows(**kw):
    return pd.DataFrame(
        [
            dict(
                study_id="x",
                species="human",
                modality="psilocybin",
                citation="c",
                doi="d",
                quote="q",
                n=20.0,
                value=50.0,
                **kw,
            )
        ]
    )


def load_file(tmp, content: bytes, name="fit.nc"):
    path = tmp / name
    path.write_bytes(content)
    return pkpd.fit.load(path)


def truncated_netcdf(tmp):
    import arviz as az

    path = tmp / "good.nc"
    az.from_dict(posterior={"cl@human": np.zeros((1, 50))}).to_netcdf(str(path))
    raw = path.read_bytes()
    return load_file(tmp, raw[: len(raw) // 2], "truncated.nc")


def case(id, call, exc, field, value, valid):
    return pytest.param(call, exc, field, value, valid, id=id)


V = r"valid"  # most "what would be valid" parts list the valid choices after "valid:"

CASES = [
    # --- schedules: doses -----------------------------------------------------------------------
    case(
        "dose-amount-negative",
        lambda: Schedule.doses([0.0], [-5.0]),
        ValueError,
        r"dose_amount\[0\]",
        r"-5\.0",
        r"finite and >= 0",
    ),
    case(
        "dose-amount-nan",
        lambda: Schedule.doses([0.0, 1.0], [1.0, NAN]),
        ValueError,
        r"dose_amount\[1\]",
        r"nan",
        r"finite and >= 0",
    ),
    case(
        "dose-amount-inf",
        lambda: Schedule.single_dose(INF),
        ValueError,
        r"dose_amount\[0\]",
        r"inf",
        r"finite and >= 0",
    ),
    case(
        "dose-amount-not-a-number",
        lambda: Schedule.doses([0.0], ["ten"]),
        TypeError,
        r"amounts",
        r"'ten'",
        r"must be a number",
    ),
    case(
        "dose-time-negative",
        lambda: Schedule.doses([-1.0], [1.0]),
        ValueError,
        r"dose_time\[0\]",
        r"-1\.0",
        r"finite and >= 0",
    ),
    case(
        "dose-time-nan",
        lambda: Schedule.doses([0.0, NAN], [1.0, 1.0]),
        ValueError,
        r"dose_time\[1\]",
        r"nan",
        r"finite and >= 0",
    ),
    case(
        "dose-time-inf", lambda: Schedule.doses([INF], [1.0]), ValueError, r"dose_time\[0\]", r"inf", r"finite and >= 0"
    ),
    case(
        "times-amounts-length-mismatch",
        lambda: Schedule.doses([0.0, 1.0], [1.0, 1.0, 1.0]),
        ValueError,
        r"amounts",
        r"3 entries",
        r"give 2 values or a single value",
    ),
    case(
        "times-routes-length-mismatch",
        lambda: Schedule.doses([0.0, 1.0], 1.0, ["oral"] * 3),
        ValueError,
        r"route",
        r"3 entries",
        r"give 2 routes or a single route",
    ),
    case(
        "infusion-duration-zero",
        lambda: Schedule.infusion(10.0, 0.0),
        ValueError,
        r"dose_duration\[0\]",
        r"0\.0",
        r"> 0 \(hours\) for an infusion",
    ),
    case(
        "infusion-duration-negative",
        lambda: Schedule.infusion(10.0, -1.0),
        ValueError,
        r"dose_duration\[0\]",
        r"-1\.0",
        r">= 0",
    ),
    case(
        "bolus-with-duration",
        lambda: Schedule.doses([0.0], [1.0], "oral", duration=1.0),
        ValueError,
        r"dose_duration\[0\]",
        r"1\.0",
        r"only 'infusion' doses have a duration",
    ),
    case(
        "ss-dose-without-interval",
        lambda: Schedule.doses([0.0], [1.0], ss=True, ii=0.0),
        ValueError,
        r"dose_ii\[0\]",
        r"0\.0",
        r"> 0 \(hours\)",
    ),
    case(
        "ss-infusion-longer-than-interval",
        lambda: Schedule.doses([0.0], [1.0], "infusion", duration=30.0, ss=True, ii=24.0),
        ValueError,
        r"dose_duration\[0\]",
        r"30\.0",
        r"<= its dosing interval dose_ii\[0\]=24\.0",
    ),
    case(
        "unknown-route", lambda: Schedule.single_dose(1.0, "rectal"), ValueError, r"route", r"'rectal'", V + r".*'oral'"
    ),
    case(
        "unknown-amount-unit",
        lambda: Schedule.single_dose(1.0, unit="furlongs"),
        ValueError,
        r"amount_unit",
        r"'furlongs'",
        V + r".*'mg/kg'",
    ),
    case(
        "unknown-time-unit",
        lambda: Schedule.single_dose(1.0, time_unit="fortnight"),
        ValueError,
        r"time_unit",
        r"'fortnight'",
        V + r".*'week'",
    ),
    case(
        "repeated-n-not-whole",
        lambda: Schedule.repeated(1.0, every=12.0, n=2.7),
        ValueError,
        r"\bn=",
        r"2\.7",
        r"whole number >= 1",
    ),
    case(
        "repeated-interval-zero", lambda: Schedule.repeated(1.0, every=0.0, n=3), ValueError, r"every", r"0\.0", r"> 0"
    ),
    case(
        "raw-constructor-unsorted",
        lambda: Schedule(
            dose_time=np.array([1.0, 0.0]),
            dose_amount=np.ones(2),
            dose_route=np.zeros(2, int),
            dose_duration=np.zeros(2),
            dose_ss=np.zeros(2, bool),
            dose_ii=np.zeros(2),
        ),
        ValueError,
        r"dose_time\[1\]",
        r"0\.0 < dose_time\[0\]=1\.0",
        r"non-decreasing",
    ),
    case(
        "shift-before-time-zero",
        lambda: Schedule.single_dose(1.0, at=1.0).shift(-2.0),
        ValueError,
        r"shift dt",
        r"-2\.0",
        r"before time 0",
    ),
    case("scale-negative", lambda: DOSE.scale(-1.0), ValueError, r"factor", r"-1\.0", r">= 0"),
    case(
        "merge-different-units",
        lambda: Schedule.single_dose(1.0) + Schedule.single_dose(1.0, unit="mg/kg"),
        ValueError,
        r"amount_unit",
        r"'mg/kg'",
        r"same amount_unit",
    ),
    # --- schedules: device sessions ---------------------------------------------------------------
    case(
        "session-duration-zero",
        lambda: Schedule.session_list([0.0], duration=0.0),
        ValueError,
        r"session_duration\[0\]",
        r"0\.0",
        r"finite and > 0",
    ),
    case(
        "session-duration-negative", lambda: Schedule.sessions(duration=-3.0), ValueError, r"duration", r"-3\.0", r"> 0"
    ),
    case(
        "sessions-overlap",
        lambda: Schedule.session_list([0.0, 0.01], duration=0.05),
        ValueError,
        r"session_start\[1\]",
        r"0\.01",
        r"at or after the end of the previous one",
    ),
    case(
        "same-day-gap-shorter-than-session",
        lambda: Schedule.sessions(per_day=2, gap=1, duration=3),
        ValueError,
        r"gap",
        r"gap=1 min",
        r"must be >= the duration",
    ),
    case(
        "unknown-session-pattern",
        lambda: Schedule.sessions(pattern="tdcs"),
        ValueError,
        r"pattern",
        r"'tdcs'",
        V + r".*'itbs'",
    ),
    case(
        "days-per-week-above-7",
        lambda: Schedule.sessions(days_per_week=8),
        ValueError,
        r"days_per_week",
        r"=8",
        r"<= 7",
    ),
    case(
        "session-intensity-nan",
        lambda: Schedule.session_list([0.0], duration=1.0, intensity=NAN),
        ValueError,
        r"session_intensity\[0\]",
        r"nan",
        r"finite and >= 0",
    ),
    case(
        "unknown-gap-unit",
        lambda: Schedule.sessions(gap_unit="fortnight"),
        ValueError,
        r"gap_unit",
        r"'fortnight'",
        V + r".*'min'",
    ),
    # --- simulate ---------------------------------------------------------------------------------
    case("times-empty", lambda: sim([]), ValueError, r"times", r"is empty", r"at least one time"),
    case("times-nan", lambda: sim([0.0, NAN]), ValueError, r"times\[1\]", r"nan", r"finite"),
    case("times-inf", lambda: sim([0.0, INF]), ValueError, r"times\[1\]", r"inf", r"finite"),
    case(
        "times-decreasing",
        lambda: sim([1.0, 0.0]),
        ValueError,
        r"times\[1\]",
        r"0\.0\)? < times\[0\]=\S*1\.0",
        r"non-decreasing",
    ),
    case(
        "times-two-dimensional", lambda: sim([[0.0, 1.0]]), ValueError, r"times", r"shape \(1, 2\)", r"one-dimensional"
    ),
    case(
        "route-model-cannot-take",
        lambda: sim(model=IV_ONLY),
        ValueError,
        r"route",
        r"'oral'",
        r"valid routes for it: \['iv', 'infusion'\]",
    ),
    case(
        "per-kg-dose-for-mg-model",
        lambda: sim(schedule=Schedule.single_dose(1.0, unit="mg/kg")),
        ValueError,
        r"amount",
        r"'mg/kg'",
        r"build the schedule in the model's dose unit \('mg'\)",
    ),
    case("model-not-a-model", lambda: sim(model="psilocybin"), TypeError, r"model", r"got str", r"pkpd model"),
    case(
        "schedule-not-a-schedule",
        lambda: sim(schedule=[0.0, 100.0]),
        TypeError,
        r"schedule",
        r"got list",
        r"pkpd\.Schedule",
    ),
    case("rtol-zero", lambda: sim(rtol=0.0), ValueError, r"rtol", r"0\.0", r"> 0"),
    case("max-steps-zero", lambda: sim(max_steps=0), ValueError, r"max_steps", r"0", r">= 1"),
    case("unknown-solve-method", lambda: sim(method="rk4"), ValueError, r"method", r"'rk4'", V + r".*'exact'"),
    case(
        "population-schedule-count-mismatch",
        lambda: pkpd.simulate_population(pkpd.stack([ORAL, ORAL]), [DOSE] * 3, T),
        ValueError,
        r"schedules",
        r"3 schedules",
        r"batched over 2 subjects",
    ),
    # --- parameters out of their domain -----------------------------------------------------------
    case(
        "clearance-negative",
        lambda: pkpd.pk.OneCompartment(cl=-1.0, v=1.0),
        ValueError,
        r"OneCompartment\.cl",
        r"-1\.0",
        r"domain \(0\.0, inf\)",
    ),
    case(
        "volume-zero",
        lambda: pkpd.pk.OneCompartment(cl=1.0, v=0.0),
        ValueError,
        r"OneCompartment\.v=",
        r"0\.0",
        r"domain \(0\.0, inf\)",
    ),
    case(
        "bioavailability-above-1",
        lambda: pkpd.pk.OneCompartment(cl=1.0, v=1.0, ka=1.0, f=1.5),
        ValueError,
        r"OneCompartment\.f",
        r"1\.5",
        r"domain \(0\.0, 1\.0\]",
    ),
    case(
        "bioavailability-zero",
        lambda: pkpd.pk.OneCompartment(cl=1.0, v=1.0, ka=1.0, f=0.0),
        ValueError,
        r"OneCompartment\.f",
        r"0\.0",
        r"domain \(0\.0, 1\.0\]",
    ),
    case(
        "absorption-rate-nan",
        lambda: pkpd.pk.OneCompartment(cl=1.0, v=1.0, ka=NAN),
        ValueError,
        r"OneCompartment\.ka",
        r"nan",
        r"domain \(0\.0, inf\)",
    ),
    case(
        "lag-negative",
        lambda: pkpd.pk.OneCompartment(cl=1.0, v=1.0, ka=1.0, lag=-0.5),
        ValueError,
        r"lag_h",
        r"-0\.5",
        r"domain \[0, inf\)",
    ),
    case(
        "intercompartmental-clearance-negative",
        lambda: pkpd.pk.TwoCompartment(cl=1.0, v1=1.0, q=-1.0, v2=1.0),
        ValueError,
        r"TwoCompartment\.q",
        r"-1\.0",
        r"domain \(0\.0, inf\)",
    ),
    case(
        "metabolite-fraction-above-1",
        lambda: pkpd.pk.ParentMetabolite(cl=1, v=1, ka=1, fm=1.5, cl_m=1, v_m=1),
        ValueError,
        r"ParentMetabolite\.fm",
        r"1\.5",
        r"domain \[0\.0, 1\.0\]",
    ),
    case(
        "core-rate-constant-nan",
        lambda: pkpd.model("itbs", k_bdnf=NAN),
        ValueError,
        r"PlasticityCore\.k_bdnf",
        r"nan",
        r"domain \(0\.0, inf\)",
    ),
    case(
        "hill-below-1",
        lambda: pkpd.model("psilocybin", hill=0.8),
        ValueError,
        r"hill",
        r"0\.8",
        r"domain \[1\.0, inf\)",
    ),
    case(
        "error-model-negative",
        lambda: pkpd.ErrorModel(proportional=-0.1),
        ValueError,
        r"ErrorModel\.proportional",
        r"-0\.1",
        r"domain \[0\.0, inf\)",
    ),
    case(
        "unknown-error-model-kind",
        lambda: pkpd.ErrorModel(kind="multiplicative"),
        ValueError,
        r"ErrorModel\.kind",
        r"'multiplicative'",
        r"'additive', 'proportional' or 'combined'",
    ),
    # --- unknown names ----------------------------------------------------------------------------
    case(
        "unknown-modality",
        lambda: pkpd.model("homeopathy"),
        KeyError,
        r"modality",
        r"'homeopathy'",
        V + r".*'psilocybin'",
    ),
    case(
        "unknown-protocol", lambda: pkpd.protocol("homeopathy"), KeyError, r"protocol", r"'homeopathy'", V + r".*'itbs'"
    ),
    case(
        "unknown-protocol-option",
        lambda: pkpd.protocol("itbs", strength=2),
        TypeError,
        r"option",
        r"'strength'",
        r"valid options: \[.*'sessions'",
    ),
    case(
        "unknown-species",
        lambda: pkpd.model("psilocybin", species="zebrafish"),
        ValueError,
        r"species",
        r"'zebrafish'",
        V + r".*'mouse'",
    ),
    case(
        "protocol-unknown-species",
        lambda: pkpd.protocol("psilocybin", species="dog"),
        ValueError,
        r"species",
        r"'dog'",
        V + r".*'rat'",
    ),
    case(
        "unknown-parameter-override",
        lambda: pkpd.model("ect", k_magic=1.0),
        ValueError,
        r"override",
        r"'k_magic'",
        V + r".*'k_spine_form'",
    ),
    case(
        "unknown-readout-of-trajectory",
        lambda: sim()["mood"],
        KeyError,
        r"readout",
        r"'mood'",
        r"available: \['depot', 'central', 'concentration'\]",
    ),
    case(
        "unknown-readout-in-datasets",
        lambda: pkpd.datasets(readout="mood"),
        KeyError,
        r"readout",
        r"'mood'",
        V + r".*'spine_density'",
    ),
    case(
        "unknown-statistic",
        lambda: pkpd.load_curves(curve(statistic="vibes")),
        ValueError,
        r"statistic",
        r"'vibes'",
        V + r".*'percent_change'",
    ),
    case(
        "unknown-model-card",
        lambda: pkpd.cards.load("drug", "aspirin"),
        KeyError,
        r"drug card",
        r"'aspirin'",
        V + r".*'psilocybin'",
    ),
    # --- published-curve rows and WebPlotDigitizer files ------------------------------------------
    case(
        "curve-missing-unit", lambda: pkpd.load_curves(curve(unit="")), ValueError, r"\bunit=", r"''", r"non-empty unit"
    ),
    case(
        "curve-dispersion-zero",
        lambda: pkpd.load_curves(curve(dispersion="0", dispersion_type="se")),
        ValueError,
        r"dispersion",
        r"'0'",
        r"must be > 0",
    ),
    case(
        "curve-dispersion-negative",
        lambda: pkpd.load_curves(curve(dispersion="-1", dispersion_type="sd")),
        ValueError,
        r"dispersion",
        r"'-1'",
        r"must be > 0",
    ),
    case("curve-n-below-1", lambda: pkpd.load_curves(curve(n="0")), ValueError, r"\bn=", r"0\.0", r">= 1"),
    case(
        "curve-unknown-time-unit",
        lambda: pkpd.load_curves(curve(time_unit="fortnight")),
        ValueError,
        r"time_unit",
        r"'fortnight'",
        V + r".*'d'",
    ),
    case(
        "curve-missing-column",
        lambda: pkpd.load_curves(curve().drop(columns=["quote"])),
        ValueError,
        r"column",
        r"\['quote'\]",
        r"required: \[",
    ),
    case(
        "wpd-three-columns",
        lambda tmp: wpd(tmp, "time,value,sd\n1,5.2,0.4\n7,9.8,0.5\n"),
        ValueError,
        r"columns",
        r"got 3 columns in line '1,5\.2,0\.4'",
        r"two columns \(x = time, y = value\)",
    ),
    case(
        "wpd-no-numeric-rows",
        lambda tmp: wpd(tmp, "Dataset 1\nX,Y\n"),
        ValueError,
        r"wpd\.csv",
        r"no numeric \(x, y\) rows",
        r"export one dataset",
    ),
    case(
        "wpd-dispersion-count",
        lambda tmp: wpd(tmp, "1,5\n2,6\n3,7\n", dispersion=[1.0, 2.0], dispersion_type="se"),
        ValueError,
        r"dispersion",
        r"2 values for 3",
        r"one value for all points or 3 values",
    ),
    # --- NONMEM datasets --------------------------------------------------------------------------
    case(
        "nonmem-dose-without-amount",
        lambda: nonmem(AMT=[0.0]),
        ValueError,
        r"AMT",
        r"AMT=0\.0",
        r"EVID=1 \(dose\) needs AMT > 0",
    ),
    case(
        "nonmem-observation-with-amount",
        lambda: nonmem(EVID=[0]),
        ValueError,
        r"AMT",
        r"AMT=100\.0",
        r"must have AMT=0",
    ),
    case(
        "nonmem-unsupported-evid",
        lambda: nonmem(EVID=[4]),
        ValueError,
        r"EVID",
        r"EVID=4",
        r"valid: 0 \(observation\), 1 \(dose\)",
    ),
    case(
        "nonmem-time-decreasing",
        lambda: nonmem(TIME=[5.0, 2.0], AMT=[0.0], EVID=[0]),
        ValueError,
        r"TIME",
        r"TIME=2 after TIME=5",
        r"non-decreasing within an ID",
    ),
    case("nonmem-negative-rate", lambda: nonmem(RATE=[-1.0]), ValueError, r"RATE", r"RATE=-1", r"give RATE > 0 or 0"),
    case("nonmem-ss-not-0-or-1", lambda: nonmem(SS=[2], II=[24.0]), ValueError, r"\bSS", r"SS=2", r"valid: 0 or 1"),
    case("nonmem-addl-without-ii", lambda: nonmem(ADDL=[3], II=[0.0]), ValueError, r"ADDL", r"II=0\.0", r"need II > 0"),
    case(
        "nonmem-unknown-cmt",
        lambda: nonmem(CMT=[7]),
        ValueError,
        r"CMT",
        r"CMT=7",
        r"cmt_routes maps \{1: 'oral', 2: 'iv'\}",
    ),
    case(
        "nonmem-missing-id-column",
        lambda: pkpd.read_nonmem(pd.DataFrame({"TIME": [0.0]})),
        ValueError,
        r"column",
        r"\['ID'\]",
        r"required: \['ID', 'TIME'\]",
    ),
    case("nonmem-amount-not-a-number", lambda: nonmem(AMT=["ten"]), ValueError, r"AMT", r"'ten'", r"use a number"),
    case(
        "nonmem-id-in-separate-blocks",
        lambda: nonmem(ID=[1, 2, 1], TIME=[0.0, 0.0, 1.0]),
        ValueError,
        r"\bID",
        r"ID=1",
        r"sort by ID \(then TIME\)",
    ),
    # --- fits and saved fits ----------------------------------------------------------------------
    case(
        "fit-no-usable-data",
        lambda: fit(data=unusable_rows(readout="subjective_effect", statistic="mean", unit="%")),
        FitError,
        r"readout",
        r"'subjective_effect'",
        r"modelled readouts: \[.*'spine_density'",
    ),
    case(
        "fit-data-for-another-modality",
        lambda: fit(
            data=unusable_rows(readout="spine_density", statistic="percent_change", unit="%").assign(
                modality="ketamine"
            )
        ),
        FitError,
        r"modality",
        r"'psilocybin'",
        r"its rows are for \['ketamine'\]",
    ),
    case(
        "fit-unknown-method",
        lambda: fit(method="least_squares"),
        ValueError,
        r"method",
        r"'least_squares'",
        V + r".*'nuts'",
    ),
    case("nuts-chains-zero", lambda: fit(method="nuts", chains=0), ValueError, r"chains", r"=0", r"integer >= 1"),
    case("nuts-draws-zero", lambda: fit(method="nuts", draws=0), ValueError, r"draws", r"=0", r"integer >= 1"),
    case(
        "nuts-option-unknown",
        lambda: fit(method="nuts", nuts_options={"tree_depth": 4}),
        ValueError,
        r"nuts_options",
        r"'tree_depth'",
        r"valid: \[.*'max_tree_depth'",
    ),
    case(
        "nuts-tree-depth-zero",
        lambda: fit(method="nuts", nuts_options={"max_tree_depth": 0}),
        ValueError,
        r"max_tree_depth",
        r"=0",
        r"integer in \[1, 15\]",
    ),
    case(
        "nuts-target-accept-one",
        lambda: fit(method="nuts", nuts_options={"target_accept": 1.0}),
        ValueError,
        r"target_accept",
        r"=1.0",
        r"\(0, 1\)",
    ),
    case(
        "nuts-mass-unknown",
        lambda: fit(method="nuts", nuts_options={"mass": "euclid"}),
        ValueError,
        r"mass",
        r"'euclid'",
        r"'laplace'",
    ),
    case("nuts-warmup-negative", lambda: fit(method="nuts", warmup=-5), ValueError, r"warmup", r"-5", r"integer >= 0"),
    case(
        "fit-parameters-a-string",
        lambda: fit(parameters="k_spine_form"),
        TypeError,
        r"parameters",
        r"'k_spine_form'",
        r"list of parameter names, e\.g\. \['k_spine_form'\]",
    ),
    case("fit-error-not-an-error-model", lambda: fit(error=0.15), TypeError, r"error", r"0\.15", r"pkpd\.ErrorModel"),
    case(
        "corrupted-netcdf",
        lambda tmp: load_file(tmp, b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8),
        FitError,
        r"path=.*fit\.nc",
        r"corrupted netCDF",
        V + r": a NUTS netCDF",
    ),
    case(
        "truncated-netcdf",
        truncated_netcdf,
        FitError,
        r"path=.*truncated\.nc",
        r"corrupted netCDF",
        V + r": a NUTS netCDF",
    ),
    case(
        "corrupted-mapfit-json",
        lambda tmp: load_file(tmp, b'{"modality": "ect", "names": [', "fit.json"),
        FitError,
        r"path=.*fit\.json",
        r"neither netCDF nor valid JSON",
        V + r".*MapFit JSON",
    ),
    case(
        "json-that-is-not-a-mapfit",
        lambda tmp: load_file(tmp, json.dumps({"modality": "ect"}).encode(), "fit.json"),
        FitError,
        r"path=.*fit\.json",
        r"missing field\(s\) \['names'",
        V + r".*MapFit JSON",
    ),
    case(
        "unknown-fit-file-format",
        lambda tmp: load_file(tmp, b"\x00\x01binary", "fit.bin"),
        FitError,
        r"path=.*fit\.bin",
        r"neither netCDF nor valid JSON",
        V + r".*MapFit JSON",
    ),
]


@pytest.mark.parametrize("call,exc,field,value,valid", CASES)
def test_bad_input_is_rejected_naming_field_value_and_valid(call, exc, field, value, valid, tmp_path):
    with pytest.raises(exc) as info:
        call(tmp_path) if inspect.signature(call).parameters else call()
    msg = info.value.args[0] if info.value.args else str(info.value)  # KeyError: the message, not its repr
    for part, pattern in (("field", field), ("value", value), ("valid", valid)):
        assert re.search(pattern, msg), f"message lacks the {part} /{pattern}/: {msg}"


def test_catalogue_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
