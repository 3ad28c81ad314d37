import numpy as np
import pandas as pd
import pytest

import pkpd
from pkpd import data


def test_library_size_and_provenance():
    df = pkpd.datasets()
    assert len(df) >= 40 and df["citation"].nunique() >= 20
    assert (df["quote"].str.len() > 0).all()
    ident = df[["doi", "pmcid", "pmid"]].astype(str).apply(lambda r: any(x.strip() for x in r), axis=1)
    assert ident.all()
    from pkpd.modalities import MODALITIES

    assert {MODALITIES[m].family for m in set(df["modality"])} == {
        "psychedelic",
        "ketamine",
        "ssri",
        "stimulation",
        "seizure",
    }
    assert {
        "concentration",
        "occupancy",
        "spine_density",
        "neurogenesis",
        "hippocampal_volume",
        "synaptic_efficacy",
        "response",
    } <= set(df["readout"])


def test_brunoni_serum_bdnf_does_not_rise():
    df = pkpd.datasets("rtms_10hz", readout="bdnf_serum")
    row = df[df["study_id"] == "brunoni2015"].iloc[0]
    assert abs(row["value"]) < 0.1 and row["statistic"] == "effect_size"


def test_filters():
    assert set(pkpd.datasets(family="seizure")["modality"]) <= {"ect", "mst"}
    assert (pkpd.datasets(species="mouse")["species"] == "mouse").all()
    with pytest.raises(KeyError):
        pkpd.datasets("homeopathy")
    with pytest.raises(KeyError):
        pkpd.datasets(readout="mood_ring")


def test_standard_errors_from_dispersion():
    assert data._se("2", "sd", 16) == pytest.approx(0.5)
    assert data._se("10;13", "ci95_low_high", 20) == pytest.approx(3 / 3.92)
    assert data._se("1.5", "se", 3) == 1.5
    assert np.isnan(data._se("", "", 3))


def _row(**kw):
    base = dict(
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
    base.update(kw)
    return pd.DataFrame([base])


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(readout="mood"), "readout"),
        (dict(statistic="vibes"), "statistic"),
        (dict(unit=""), "unit"),
        (dict(n="0"), "n="),
        (dict(dispersion="-1", dispersion_type="sd"), "dispersion"),
        (dict(dispersion="3;1", dispersion_type="ci95_low_high"), "lo < hi"),
        (dict(time_unit="fortnight"), "time_unit"),
        (dict(doi=""), "identifier"),
        (dict(value="ten"), "value"),
        (dict(species="dog"), "species"),
        (dict(dispersion="1", dispersion_type="stderr"), "dispersion_type"),
    ],
)
def test_loader_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        data.load_curves(_row(**kw))


def test_loader_missing_column():
    with pytest.raises(ValueError, match="missing column"):
        data.load_curves(_row().drop(columns=["quote"]))


def test_webplotdigitizer_import(tmp_path):
    p = tmp_path / "wpd.csv"
    p.write_text("Dataset 1\nX,Y\n1,5.2\n7,9.8\n30,8.1\n")
    df = pkpd.read_webplotdigitizer(
        p,
        study_id="mine",
        species="mouse",
        modality="psilocybin",
        readout="spine_density",
        statistic="percent_change",
        unit="%",
        time_unit="d",
        citation="Me 2026",
        doi="10.0/me",
        location="figure 2B",
        n=6,
        dispersion=1.0,
        dispersion_type="se",
    )
    assert list(df["time_h"]) == [24.0, 168.0, 720.0] and (df["extraction"] == "figure").all()
    assert df["se"].tolist() == [1.0, 1.0, 1.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="two columns"):
        pkpd.read_webplotdigitizer(
            bad,
            study_id="m",
            species="mouse",
            modality="psilocybin",
            readout="spine_density",
            statistic="percent_change",
            unit="%",
            time_unit="d",
            citation="c",
            doi="d",
        )


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(time_origin="last_tuesday"), r"curve row 0 \(study_id='x'\): time_origin='last_tuesday' is not known"),
        (dict(time_origin="dose:0"), r"time_origin='dose:0' is not known"),
        (dict(time_origin="dose:two"), r"time_origin='dose:two' is not known"),
        (dict(time_origin=""), r"time_origin='' is empty but time='1' is given"),
        (dict(time="", time_unit="", time_origin="end_of_course"), "time_origin='end_of_course' is given but time"),
    ],
)
def test_time_origin_validation_names_row_column_and_value(kw, match):
    with pytest.raises(ValueError, match=match):
        data.load_curves(_row(**kw))


def test_time_origin_vocabulary_and_legacy_tables():
    for origin, parsed in (
        ("first_dose", ("dose", 1)),
        ("end_of_course", ("end_of_course", 0)),
        ("dose:12", ("dose", 12)),
    ):
        assert data.parse_time_origin(origin) == parsed
        df = data.load_curves(_row(time_origin=origin))
        assert df["time_origin"].iloc[0] == origin and df["time_h"].iloc[0] == 24.0
    # A table without the column (written before it existed) counts times from the first dose.
    legacy = data.load_curves(pd.concat([_row(), _row(time="", time_unit="")], ignore_index=True))
    assert list(legacy["time_origin"]) == ["first_dose", ""]


def test_library_time_origins_are_explicit():
    df = pkpd.datasets()
    timed = df["time"].astype(str).str.strip() != ""
    assert (df.loc[timed, "time_origin"] != "").all() and (df.loc[~timed, "time_origin"] == "").all()
    # rows the audit re-based on the end of the course or a named dose
    cole = df[df["study_id"] == "cole2022_snt"].iloc[0]
    assert cole["time_origin"] == "end_of_course" and cole["time_h"] == 4 * 168
    guk = df[df["study_id"] == "gukasyan2022"]
    assert set(guk["time_origin"]) == {"dose:2"} and guk["time_h"].iloc[0] == pytest.approx(30.4 * 24)
    shao = df[df["study_id"] == "shao2021"]
    assert len(shao) == 1 and np.isnan(shao["time_h"].iloc[0])
    mad = df[df["study_id"] == "madsen2019"].iloc[0]
    assert np.isnan(mad["n"]) and str(mad["dose"]).strip() == ""
