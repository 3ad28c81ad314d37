"""The comparison's charts: the headline T50/Tmax chart and the faceted trajectories."""

import importlib
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pkpd import charts, plot  # noqa: E402

C = importlib.import_module("pkpd.compare")
READOUTS = C.TABLE_READOUTS
NAMES = ["ect", "psilocybin", "rtms_10hz"]  # deliberately not in family order


def _metrics(t50, tmax):
    return {"onset_h": [t50 / 3, t50 / 4, t50 / 2], "t50_h": [t50, t50 / 2, t50 * 2], "tmax_h": [tmax, tmax / 2, tmax]}


def _report():
    t50 = {"ect": 300.0, "psilocybin": 15.0, "rtms_10hz": 400.0}
    mods = [
        {"name": n, "readouts": {r: _metrics(t50[n] * (1 + i), 2 * t50[n] * (1 + i)) for i, r in enumerate(READOUTS)}}
        for n in NAMES
    ]
    mods[1]["readouts"]["synaptic_efficacy"] = {k: [None, None, None] for k in ("onset_h", "t50_h", "tmax_h")}
    claims = [
        {"id": "c_t50", "verdict": "supported", "probability": 1.0},
        {"id": "c_at", "verdict": "contradicted", "probability": 0.0},
        {"id": "c_order", "verdict": "uncertain", "probability": 0.5},
    ]
    return {"modalities": mods, "claims": claims, "info": {"draws": 8}}


SPECS = [
    dict(
        id="c_t50",
        modalities=["ect"],
        readout="hippocampal_volume",
        metric="t50_h",
        op="between",
        threshold=[48.0, 672.0],
    ),
    dict(
        id="c_at",
        modalities=["psilocybin"],
        readout="spine_density",
        metric="change_at",
        op=">",
        threshold=0.0,
        at_h=720.0,
    ),
    dict(id="c_order", modalities=["psilocybin", "ect"], readout="spine_density", metric="order", op="order"),
]


def test_timescale_chart_rows_panels_and_claim_bands():
    fig = plot.timescale_chart(_report(), SPECS)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in axes] == [charts.READOUT_LABELS[r] for r in READOUTS]
    first = axes[0]
    # rows grouped by family: psychedelic, stimulation, seizure
    assert [t.get_text() for t in first.get_yticklabels()] == ["psilocybin", "rtms_10hz", "ect"]
    assert first.get_xscale() == "log"
    ticks = [t.get_text() for t in first.get_xticklabels()]
    assert {"1 h", "1 d", "1 wk", "1 mo"} <= set(ticks)
    assert "log scale" in axes[-1].get_xlabel()
    family_labels = {t.get_text() for t in first.texts}
    assert {"psychedelics", "rTMS / TBS", "ECT / MST"} <= family_labels
    # the T50 claim's band: a rectangle from 48 h to 672 h in the hippocampal-volume panel
    vol = axes[list(READOUTS).index("hippocampal_volume")]
    bands = [p for p in vol.patches if np.isclose(p.get_x(), 48.0) and np.isclose(p.get_x() + p.get_width(), 672.0)]
    assert len(bands) == 1
    assert matplotlib.colors.same_color(bands[0].get_facecolor()[:3], charts.VERDICT_COLOURS["supported"])
    assert "1\u2713" in {t.get_text() for t in vol.texts}
    # the change claim: a tick at 720 h in the spine panel, labelled 2 and contradicted
    spine = axes[list(READOUTS).index("spine_density")]
    assert any(np.allclose(ln.get_xdata(), [720.0, 720.0]) for ln in spine.lines)
    assert "2\u2717" in {t.get_text() for t in spine.texts}
    # the order claim cannot sit on one cell: listed in the title
    assert "3" in fig.get_suptitle().split("not drawn")[1]
    # T50 markers at the medians; a readout without change says so
    ys = dict(zip(["psilocybin", "rtms_10hz", "ect"], first.get_yticks()))
    pts = [ln for ln in spine.lines if ln.get_marker() == "o"]
    assert any(np.allclose(ln.get_xdata(), [15.0]) and ln.get_ydata()[0] < ys["psilocybin"] for ln in pts)
    eff = axes[list(READOUTS).index("synaptic_efficacy")]
    assert "no change" in {t.get_text() for t in eff.texts}
    plt.close(fig)


def _comparison():
    t = np.concatenate([[0.0], np.geomspace(0.05, 2160.0, 40)])
    curves = {}
    for k, n in enumerate(NAMES):
        base = (k + 1) * (1 - np.exp(-t / 100.0))
        curves[n] = {r: np.stack([base, 0.5 * base, 1.5 * base]) for r in READOUTS}
    return C.Comparison(
        modalities=[{"name": n} for n in NAMES],
        claims=[],
        counterfactuals=[],
        decomposition=[],
        curves=curves,
        times=t,
        info={"draws": 8},
    )


def test_trajectory_chart_is_faceted_by_family():
    res = _comparison()
    fig = res.trajectory_figure()
    axs = np.array(fig.axes).reshape(len(READOUTS), 3)
    assert [a.get_title() for a in axs[0]] == ["psychedelics", "rTMS / TBS", "ECT / MST"]
    for i, r in enumerate(READOUTS):
        assert charts.READOUT_LABELS[r] in axs[i, 0].get_ylabel() and "% change" in axs[i, 0].get_ylabel()
    assert [t.get_text() for t in axs[0, 0].get_legend().get_texts()] == ["psilocybin"]
    med = res.curves["psilocybin"]["bdnf"][0]
    line = axs[list(READOUTS).index("bdnf"), 0].lines[0]
    assert np.allclose(line.get_ydata(), med[1:])
    plt.close(fig)


def test_figure_writes_both_files(tmp_path):
    res = _comparison()
    res.claims = []
    res.modalities = _report()["modalities"]
    fig = res.figure(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    assert C.trajectories_path(tmp_path / "cmp.png") == tmp_path / "cmp_trajectories.png"
    assert (tmp_path / "cmp_trajectories.png").stat().st_size > 10_000
    assert fig.axes[0].get_xscale() == "log"
    plt.close("all")


def test_running_envelope_closed_form():
    t = np.arange(0.0, 10.0)
    y = np.array([[0, 3, 1, 0, 2, 0, 0, 0, 5, 1]], dtype=float)
    lower, upper = C._running(y, t, 2.0)  # window: the point and the two before it
    assert upper.tolist() == [[0, 3, 3, 3, 2, 2, 2, 0, 5, 5]]
    assert lower.tolist() == [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]


def test_session_grid_holds_every_session():
    import pkpd

    sched = pkpd.protocol("ect")
    times = pkpd.timescales.time_grid(2160.0, 60)
    grid = C._session_grid(times, sched)
    assert grid.size == C.ENVELOPE_GRID and np.all(np.diff(grid) > 0)
    ends = sched.session_start + sched.session_duration
    assert np.all(np.isin(ends, grid)) and np.all(np.isin(times, grid))


@pytest.fixture(scope="module")
def mst_envelope():
    import pkpd

    cmp = types.SimpleNamespace(times=pkpd.timescales.time_grid(2160.0, 60), models=lambda name: [pkpd.model(name)] * 2)
    return C._session_envelope(cmp, "mst"), pkpd.protocol("mst")


def test_session_envelope_brackets_the_spikes(mst_envelope):
    env, sched = mst_envelope
    lower, upper = env["bdnf"]
    t = env["times"]
    assert env["window_h"] == pytest.approx(float(np.max(np.diff(sched.session_start))))
    assert np.all(lower <= upper + 1e-12)
    during = (t > sched.session_start[2]) & (t < sched.session_start[-1])
    assert np.max(upper[during]) > 1.0 and np.min(upper[during] - lower[during]) > 0.0  # spikes (% change)
    late = t > sched.session_start[-1] + 30 * 24.0
    assert np.max(upper[late] - lower[late]) < 0.05 * np.max(upper - lower)  # no spikes after the course
