"""The published-curve library: one tidy long format with provenance, validated on load.

``pkpd.datasets()`` returns the curated library (``models/data/curves.csv``) as a DataFrame;
``pkpd.load_curves(df_or_path)`` validates any table in the same format (e.g. a user's own);
``pkpd.read_webplotdigitizer(path, ...)`` turns a WebPlotDigitizer CSV export plus metadata into it.

Columns are documented in ``models/data/README.md``. Validation raises ``ValueError`` naming the
row and the field for: a missing column, an unknown species/modality/readout/statistic/
dispersion type/extraction, a non-numeric value, a missing unit, n < 1, a dispersion <= 0 (or a
CI whose bounds are not increasing), a time in an unknown unit, and a row without any of
doi/pmcid/pmid, a ``time_origin`` outside its vocabulary (or a time without an origin, or an origin
without a time). Two columns are added: ``time_h`` (hours after the row's ``time_origin``, NaN where
no time is given; :func:`pkpd.observe.time_since_first_dose` converts it with the row's schedule) and ``se``
(standard error of the value derived from the dispersion: se as given; sd / sqrt(n); 95 % CI
width / 3.92; range / 4 / sqrt(n); iqr / 1.35 / sqrt(n); NaN where not reported or where n is
missing for an sd, range or iqr).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._paths import models_dir
from ._units import TIME_UNITS
from .cards import SPECIES

COLUMNS = (
    "study_id",
    "species",
    "modality",
    "protocol",
    "protocol_options",
    "dose",
    "dose_unit",
    "route",
    "time",
    "time_unit",
    "time_origin",
    "readout",
    "analyte",
    "region",
    "statistic",
    "value",
    "unit",
    "dispersion",
    "dispersion_type",
    "n",
    "citation",
    "doi",
    "pmcid",
    "pmid",
    "location",
    "extraction",
    "quote",
    "note",
)
READOUTS = (
    "concentration",
    "occupancy",
    "bdnf",
    "bdnf_serum",
    "trkb",
    "mtor",
    "spine_density",
    "spine_formation",
    "neurogenesis",
    "hippocampal_volume",
    "synaptic_efficacy",
    "clinical_score",
    "response",
    "remission",
    "subjective_effect",
    "plasticity_window",
    "learning",
)
#: Readouts of the second-stage window fit (:mod:`pkpd.windows`), not of the core calibration.
WINDOW_READOUTS = ("plasticity_window", "learning")
STATISTICS = (
    "mean",
    "median",
    "percent_change",
    "fold_change",
    "change_from_baseline",
    "slope_per_session",
    "half_life",
    "cmax",
    "tmax",
    "auc",
    "response_rate",
    "remission_rate",
    "effect_size",
    "ec50",
    "occupancy_percent",
    "duration",
    "window_open",
    "ratio",
)
DISPERSION_TYPES = ("se", "sd", "ci95_low_high", "range", "iqr")
EXTRACTIONS = ("text", "table", "secondary", "figure")
#: ``time_origin`` vocabulary: ``first_dose`` (time after the first dose or session),
#: ``end_of_course`` (after the end of the last dose or session of the row's protocol),
#: ``dose:<k>`` (after the start of the k-th dose or session, k = 1, 2, ...); empty without a time.
TIME_ORIGINS = ("first_dose", "end_of_course", "dose:<k>")
_DOSE_ORIGIN = re.compile(r"^dose:([1-9][0-9]*)$")
REQUIRED = ("study_id", "species", "modality", "readout", "statistic", "value", "unit", "citation", "quote")


def _blank(x) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x)) or (isinstance(x, str) and not x.strip())


def parse_time_origin(origin: str) -> tuple[str, int]:
    """``(kind, k)`` of a ``time_origin``: ``("first_dose", 1)``, ``("end_of_course", 0)`` or
    ``("dose", k)``; raises ``ValueError`` naming the value for anything else."""
    o = str(origin).strip()
    if o == "first_dose":
        return "dose", 1
    if o == "end_of_course":
        return "end_of_course", 0
    m = _DOSE_ORIGIN.match(o)
    if m:
        return "dose", int(m.group(1))
    raise ValueError(
        f"time_origin={origin!r} is not known; valid: 'first_dose', 'end_of_course', 'dose:<k>' with k = 1, 2, ..."
    )


def _se(disp, kind, n) -> float:
    if _blank(disp) or _blank(kind):
        return float("nan")
    nn = float(n) if not _blank(n) else float("nan")
    if kind in ("ci95_low_high", "range", "iqr") and ";" in str(disp):
        lo, hi = (float(x) for x in str(disp).split(";"))
        width = hi - lo
        return {"ci95_low_high": width / 3.92, "range": width / 4.0 / np.sqrt(nn), "iqr": width / 1.35 / np.sqrt(nn)}[
            kind
        ]
    d = float(disp)
    return {
        "se": d,
        "sd": d / np.sqrt(nn),
        "ci95_low_high": d / 1.96,
        "range": d / 4.0 / np.sqrt(nn),
        "iqr": d / 1.35 / np.sqrt(nn),
    }[kind]


def _check_origin(fail, i, t, origin):
    if _blank(t):
        if not _blank(origin):
            fail(
                i, f"time_origin={origin!r} is given but time is empty; leave time_origin empty for rows without a time"
            )
        return
    if _blank(origin):
        fail(i, f"time_origin={origin!r} is empty but time={t!r} is given; valid: {list(TIME_ORIGINS)}")
    try:
        parse_time_origin(origin)
    except ValueError as e:
        fail(i, str(e))


def _read_table(data):
    """The table as strings, with every column of the schema (``time_origin`` defaulted for
    tables written before it existed)."""
    import pandas as pd

    if isinstance(data, (str, Path)):
        df = pd.read_csv(data, dtype=str, keep_default_na=False)
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        raise TypeError(f"data must be a DataFrame or a CSV path, got {type(data).__name__}")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"published-curve table is missing column(s) {missing}; required: {list(REQUIRED)}")
    if "time_origin" not in df.columns:
        # Tables written before the column existed count times from the first dose or session.
        df["time_origin"] = [
            "first_dose" if not _blank(t) else "" for t in (df["time"] if "time" in df.columns else [""] * len(df))
        ]
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    return df.replace({np.nan: ""}).astype(object)


def _check_vocabulary(fail, i, r) -> None:
    from .modalities import MODALITIES

    for c in REQUIRED:
        if _blank(r[c]):
            hint = " (the unit of value, e.g. '%', 'ng/mL', 'fold')" if c == "unit" else ""
            fail(i, f"{c}={r[c]!r} is empty; every row needs a non-empty {c}{hint}")
    checks = (("species", SPECIES), ("modality", tuple(MODALITIES)), ("readout", READOUTS), ("statistic", STATISTICS))
    for c, vocab in checks:
        if r[c] not in vocab:
            fail(i, f"{c}={r[c]!r} is not known; valid: {list(vocab)}")
    if not _blank(r["extraction"]) and r["extraction"] not in EXTRACTIONS:
        fail(i, f"extraction={r['extraction']!r} is not known; valid: {list(EXTRACTIONS)}")
    if all(_blank(r[c]) for c in ("doi", "pmcid", "pmid")):
        fail(i, "no identifier: give at least one of doi, pmcid, pmid")


def _number(fail, i, r, column: str, *, lo: float | None = None) -> float:
    try:
        x = float(r[column])
    except (TypeError, ValueError):
        fail(i, f"{column}={r[column]!r} is not a number")
    if not np.isfinite(x) or (lo is not None and not x >= lo):
        fail(i, f"{column}={r[column]!r} must be finite" + (f" and >= {lo:g}" if lo is not None else ""))
    return x


def _time_h(fail, i, r) -> float:
    if _blank(r["time"]):
        return float("nan")
    if r["time_unit"] not in TIME_UNITS:
        fail(i, f"time_unit={r['time_unit']!r} is not known; valid: {sorted(TIME_UNITS)}")
    return _number(fail, i, r, "time", lo=0.0) * TIME_UNITS[r["time_unit"]]


def _check_dispersion(fail, i, kind, disp) -> None:
    if _blank(disp) and _blank(kind):
        return
    if kind not in DISPERSION_TYPES:
        fail(i, f"dispersion_type={kind!r} is not known; valid: {list(DISPERSION_TYPES)}")
    try:
        parts = [float(x) for x in str(disp).split(";")]
    except ValueError:
        fail(i, f"dispersion={disp!r} is not a number (or 'lo;hi' for intervals)")
    if len(parts) == 2:
        if not parts[1] > parts[0]:
            fail(i, f"dispersion interval {disp!r} must have lo < hi")
    elif len(parts) != 1 or not parts[0] > 0:
        fail(i, f"dispersion={disp!r} must be > 0 (or 'lo;hi' with lo < hi for {kind}; leave empty if not reported)")


def load_curves(data):
    """Validate a published-curve table (DataFrame or CSV path) and add ``time_h`` and ``se``."""
    df = _read_table(data)

    def fail(i, msg):
        raise ValueError(f"curve row {i} (study_id={df['study_id'].iloc[i]!r}): {msg}")

    values, times, ses, ns = [], [], [], []
    for i, row in enumerate(df.itertuples(index=False)):
        r = row._asdict()
        _check_vocabulary(fail, i, r)
        v = _number(fail, i, r, "value")
        n = r["n"]
        if not _blank(n):
            n = _number(fail, i, r, "n")
            if not n >= 1:
                fail(i, f"n={n!r} must be >= 1 (number of subjects; leave empty if not reported)")
        th = _time_h(fail, i, r)
        _check_origin(fail, i, r["time"], r["time_origin"])
        _check_dispersion(fail, i, r["dispersion_type"], r["dispersion"])
        values.append(v)
        times.append(th)
        ses.append(_se(r["dispersion"], r["dispersion_type"], n))
        ns.append(float("nan") if _blank(n) else float(n))
    df["value"] = np.asarray(values, dtype=float)
    df["n"] = np.asarray(ns, dtype=float)
    df["time_h"] = np.asarray(times, dtype=float)
    df["se"] = np.asarray(ses, dtype=float)
    return df.reset_index(drop=True)


_LIBRARY = None


def datasets(
    modality: str | None = None, *, readout: str | None = None, family: str | None = None, species: str | None = None
):
    """The curated published-curve library as a DataFrame (validated), optionally filtered.

    ``family``: psychedelic | ketamine | ssri | stimulation | seizure.
    """
    from .modalities import MODALITIES, get_modality

    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = load_curves(models_dir() / "data" / "curves.csv")
    df = _LIBRARY.copy()
    if modality is not None:
        get_modality(modality)
        df = df[df["modality"] == modality]
    if readout is not None:
        if readout not in READOUTS:
            raise KeyError(f"unknown readout {readout!r}; valid: {list(READOUTS)}")
        df = df[df["readout"] == readout]
    if family is not None:
        fams = sorted({m.family for m in MODALITIES.values()})
        if family not in fams:
            raise KeyError(f"unknown family {family!r}; valid: {fams}")
        df = df[df["modality"].map(lambda m: MODALITIES[m].family) == family]
    if species is not None:
        if species not in SPECIES:
            raise ValueError(f"species={species!r} is not known; valid: {list(SPECIES)}")
        df = df[df["species"] == species]
    return df.reset_index(drop=True)


def read_webplotdigitizer(
    path,
    *,
    study_id: str,
    species: str,
    modality: str,
    readout: str,
    statistic: str,
    unit: str,
    time_unit: str,
    citation: str,
    time_origin: str = "first_dose",
    doi: str = "",
    pmcid: str = "",
    pmid: str = "",
    location: str = "figure",
    n: float | None = None,
    dispersion=None,
    dispersion_type: str | None = None,
    protocol_options: str = "",
    quote: str = "",
    note: str = "",
):
    """Turn a WebPlotDigitizer CSV export (x = time, y = value; one dataset) into validated rows.

    Accepted layouts: two numeric columns without header; a header ``x,y`` (any case); or WPD's
    two-line header (dataset name, then ``X,Y``). ``extraction`` is set to ``figure`` and the note
    says the points were digitised. ``dispersion`` may be one number for all points or one per point.
    """
    import pandas as pd

    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    rows = []
    for ln in lines:
        cells = [c.strip() for c in ln.split(",")]
        try:
            nums = [float(c) for c in cells if c != ""]
        except ValueError:
            continue  # a header line
        if len(nums) != 2:
            raise ValueError(
                f"{path}: expected two columns (x = time, y = value) per line, got {len(nums)} columns "
                f"in line {ln!r}; export a single dataset from WebPlotDigitizer as CSV (x,y)"
            )
        rows.append(nums)
    if not rows:
        raise ValueError(f"{path}: no numeric (x, y) rows found; export one dataset from WebPlotDigitizer as CSV")
    xy = np.asarray(rows)
    k = xy.shape[0]
    if dispersion is None:
        disp = [""] * k
    else:
        arr = np.asarray(dispersion, dtype=float)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, k)):
            raise ValueError(
                f"{path}: dispersion has {arr.size} values for {k} digitised points; give one value for "
                f"all points or {k} values (one per point)"
            )
        disp = list(np.broadcast_to(arr, (k,)))
    df = pd.DataFrame(
        {
            "study_id": study_id,
            "species": species,
            "modality": modality,
            "protocol": modality,
            "protocol_options": protocol_options,
            "time": xy[:, 0],
            "time_unit": time_unit,
            "time_origin": time_origin,
            "readout": readout,
            "statistic": statistic,
            "value": xy[:, 1],
            "unit": unit,
            "dispersion": disp,
            "dispersion_type": dispersion_type or "",
            "n": "" if n is None else n,
            "citation": citation,
            "doi": doi,
            "pmcid": pmcid,
            "pmid": pmid,
            "location": location,
            "extraction": "figure",
            "quote": quote or f"digitised from {location} with WebPlotDigitizer",
            "note": (note + " " if note else "") + "values read off a figure (WebPlotDigitizer)",
        }
    )
    return load_curves(df)
