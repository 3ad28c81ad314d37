"""The comparison: report structure, claim logic, reproducibility, CLI."""

import importlib
import json

import pytest

import pkpd

C = importlib.import_module("pkpd.compare")  # the module (pkpd.compare is the function)

CLAIMS = """
[[claim]]
id = "psilocybin_spines_up_at_30d"
text = "A single psilocybin dose leaves spines raised at 30 days."
modalities = ["psilocybin"]
readout = "spine_density"
metric = "change_at"
op = ">"
threshold = 0.0
at_h = 720.0

[[claim]]
id = "impossible"
text = "Spine T50 below one minute."
modalities = ["psilocybin"]
readout = "spine_density"
metric = "t50_h"
op = "<"
threshold = 0.0166

[[claim]]
id = "order"
text = "Psilocybin before ECT."
modalities = ["psilocybin", "ect"]
readout = "spine_density"
metric = "order"
op = "order"
of = "t50_h"
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("claims") / "claims.toml"
    path.write_text(CLAIMS)
    cf = [("ect", "12 sessions, 2/week", dict(per_week=2), None)]
    kw = dict(draws=8, quick=True, claims=path, counterfactuals=cf, progress=False)
    return C.compare(["psilocybin", "ect"], **kw), C.compare(["psilocybin", "ect"], **kw)


def test_report_structure_and_claim_logic(result):
    res, _ = result
    rep = json.loads(json.dumps(C._clean(res.to_json())))
    assert [m["name"] for m in rep["modalities"]] == ["psilocybin", "ect"]
    for m in rep["modalities"]:
        for r in ("spine_density", "bdnf"):
            med, lo, hi = m["readouts"][r]["t50_h"]
            assert lo <= med <= hi
            assert m["readouts"][r]["onset_h"][0] <= med <= m["readouts"][r]["tmax_h"][0]
    by = {c["id"]: c for c in rep["claims"]}
    assert by["impossible"]["probability"] == 0.0 and by["impossible"]["verdict"] == "contradicted"
    status = {}
    for m in ("psilocybin", "ect"):
        status.update({row.parameter: row.status for row in pkpd.parameters(m).itertuples()})
    for c in rep["claims"]:
        assert 0.0 <= c["data_share"] <= 1.0
        assert c["verdict"] == C._verdict(c["probability"])
        # the parameters keeping a claim prior-driven are assumed ones, largest first
        shares = [p["share"] for p in c["prior_driven_by"]]
        assert shares == sorted(shares, reverse=True) and all(0.0 < x <= 1.0 for x in shares)
        assert all(status[p["parameter"].split(".")[-1].split("@")[0]] == "assumed" for p in c["prior_driven_by"])
    # the order claim is the per-draw conjunction: consistent with the two T50 distributions
    psi = rep["modalities"][0]["readouts"]["spine_density"]["t50_h"]
    ect = rep["modalities"][1]["readouts"]["spine_density"]["t50_h"]
    if psi[2] < ect[1]:
        assert by["order"]["probability"] == 1.0
    assert rep["counterfactuals"][0]["t50_h"][0] > 0
    d = rep["decomposition"][0]
    assert d["biology_h"][0] == pytest.approx(d["t50_h"][0] - d["schedule_pk_h"][0], rel=0.5, abs=2.0)


def test_same_inputs_same_json(result):
    a, b = result
    assert json.dumps(C._clean(a.to_json())) == json.dumps(C._clean(b.to_json()))


def test_figure_is_labelled(result, tmp_path):
    fig = result[0].figure(tmp_path / "f.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_yticklabels()] == ["psilocybin", "ect"]
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert (tmp_path / "f_trajectories.png").stat().st_size > 10_000  # the trajectories beside it


def test_shipped_claims_are_valid_and_cover_the_required_ones():
    claims = C.load_claims()
    ids = {c["id"] for c in claims}
    required = [c for c in claims if c.get("required")]
    assert len(required) >= 9 and len(ids) == len(claims)
    assert any(c["op"] == "order" for c in required)


def test_bad_claims_are_refused(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(CLAIMS.replace('readout = "spine_density"\nmetric = "t50_h"', 'readout = "spines"\nmetric = "t50_h"'))
    with pytest.raises(ValueError, match="readout 'spines' unknown"):
        C.load_claims(p)
    p.write_text(CLAIMS.replace('modalities = ["psilocybin"]', 'modalities = ["magic"]', 1))
    with pytest.raises(ValueError, match="unknown modalities"):
        C.load_claims(p)
    with pytest.raises(KeyError, match="unknown modalities"):
        C.compare(["magic"])
