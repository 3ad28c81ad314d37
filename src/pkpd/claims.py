"""The review documents' claims as testable statements (``models/claims.toml``): their
definitions, the readouts they may name, and the verdict thresholds. Evaluated by
:mod:`pkpd.compare`, drawn by :mod:`pkpd.charts`."""

from __future__ import annotations

import tomllib
from pathlib import Path

READOUTS = {
    "spine_density": "spine_density",
    "bdnf": "bdnf",
    "trkb": "trkb",
    "mtor": "mtor",
    "neurogenesis": "neurogenesis",
    "hippocampal_volume": "hippocampal_volume",
    "synaptic_efficacy": "synaptic_efficacy",
    "clinical": "symptom_score",
}
#: Readouts in the printed table and the JSON (all of :data:`READOUTS` are available to claims).
TABLE_READOUTS = ("spine_density", "bdnf", "neurogenesis", "hippocampal_volume", "synaptic_efficacy", "clinical")
VERDICTS = ((0.9, "supported"), (0.1, "contradicted"))
#: Metrics of window claims (``readout = "window"``; evaluated by :mod:`pkpd.windows._claims`).
WINDOW_METRICS = ("window_duration_h", "window_open_h", "peak_openness", "learning_gain", "gain_ratio")


def _verdict(p: float) -> str:
    if p >= 0.9:
        return "supported"
    if p <= 0.1:
        return "contradicted"
    return "uncertain"


def load_claims(path=None) -> list[dict]:
    """The claims (``models/claims.toml``), validated: id, text, modalities, readout, metric, op."""
    from ._paths import models_dir
    from .modalities import modalities

    path = Path(path) if path is not None else models_dir() / "claims.toml"
    with open(path, "rb") as fh:
        claims = tomllib.load(fh).get("claim", [])
    seen = set()
    for c in claims:
        cid = c.get("id", "?")
        for key in ("id", "text", "modalities", "readout", "metric", "op"):
            if key not in c:
                raise ValueError(f"{path}: claim {cid!r} has no {key!r}")
        if cid in seen:
            raise ValueError(f"{path}: duplicate claim id {cid!r}")
        seen.add(cid)
        bad = [m for m in c["modalities"] if m not in modalities()]
        if bad:
            raise ValueError(f"{path}: claim {cid!r} names unknown modalities {bad}; valid: {modalities()}")
        if c["readout"] == "window":
            if c["op"] not in ("<", ">", "<=", ">=", "between"):
                raise ValueError(f"{path}: claim {cid!r} op {c['op']!r} unknown for a window claim")
            if "threshold" not in c and "than" not in c:
                raise ValueError(f"{path}: claim {cid!r} needs a threshold (or 'than')")
            check_window_claim(path, c)
            continue
        if c["readout"] not in READOUTS:
            raise ValueError(f"{path}: claim {cid!r} readout {c['readout']!r} unknown; valid: {list(READOUTS)}")
        metrics = ("onset_h", "t50_h", "tmax_h", "duration_h", "change_at", "change_ratio", "order")
        if c["metric"] not in metrics:
            raise ValueError(f"{path}: claim {cid!r} metric {c['metric']!r} unknown; valid: {list(metrics)}")
        if c["op"] not in ("<", ">", "<=", ">=", "between", "order"):
            raise ValueError(f"{path}: claim {cid!r} op {c['op']!r} unknown; valid: <, >, <=, >=, between, order")
        if (c["op"] == "order") != (c["metric"] == "order"):
            raise ValueError(f"{path}: claim {cid!r}: op 'order' goes with metric 'order'")
        if c["metric"] in ("change_at", "change_ratio") and "at_h" not in c:
            raise ValueError(f"{path}: claim {cid!r}: metric {c['metric']!r} needs at_h")
        if c["metric"] == "change_ratio" and "ref_h" not in c:
            raise ValueError(f"{path}: claim {cid!r}: metric 'change_ratio' needs ref_h")
        if c["op"] != "order" and "threshold" not in c:
            raise ValueError(f"{path}: claim {cid!r} needs a threshold")
    return claims


def check_window_claim(path, c: dict) -> None:
    """Validation of the window-specific fields (``ValueError`` naming the claim and field)."""
    cid = c.get("id", "?")
    if c["metric"] not in WINDOW_METRICS:
        raise ValueError(
            f"{path}: claim {cid!r} metric {c['metric']!r} unknown for readout 'window'; valid: {list(WINDOW_METRICS)}"
        )
    from .protocols import COMBINATIONS

    if c["metric"] in ("learning_gain", "gain_ratio"):
        if c.get("combination") not in COMBINATIONS:
            raise ValueError(f"{path}: claim {cid!r} needs combination, one of {list(COMBINATIONS)}")
        if COMBINATIONS[c["combination"]].treatment not in c["modalities"]:
            raise ValueError(f"{path}: claim {cid!r}: combination {c['combination']!r} is not on {c['modalities']}")
        if "at_h" not in c:
            raise ValueError(f"{path}: claim {cid!r}: metric {c['metric']!r} needs at_h")
    if c["metric"] == "gain_ratio" and len(c.get("delays_h", [])) != 2:
        raise ValueError(f"{path}: claim {cid!r}: metric 'gain_ratio' needs delays_h = [a, b]")
    if "than" in c and c["metric"] != "peak_openness":
        raise ValueError(f"{path}: claim {cid!r}: 'than' goes with metric 'peak_openness'")
