"""Window claims and window durations on posterior draws (used by :func:`pkpd.compare`).

A window claim (``readout = "window"`` in ``models/claims.toml``) names one of
:data:`WINDOW_METRICS`, evaluated per posterior draw: the core draw's TrkB (or protein) trajectory
paired with one Laplace draw of the window fit.

- ``window_duration_h``: h from the end of the treatment to the closing of the window (NaN if it
  never opens); ``window_open_h``: total time open (h, 0 if it never opens);
- ``peak_openness``: the largest ``W`` (1 = the opening threshold); with ``than = [...]`` the
  claim holds when the modality's value exceeds each listed modality's on the same draw;
- ``learning_gain``: learning at ``at_h`` of the training of combination ``combination`` (with
  ``protocol`` options) over the same training without treatment;
- ``gain_ratio``: the learning gain with the training course starting at ``delays_h[0]`` over
  that starting at ``delays_h[1]`` (h after the first dose or session).

**Data share** of a window claim: ``1 - V2 / V0`` of the log metric's variance over draws, with
``V0`` from the window card's priors and ``V2`` from the fit's Laplace posterior (the same core
draws in both): what the window rows taught. All window parameters are ``assumed``, so it is all
``fitted_share``; ``residual_share`` is the rest.
"""

from __future__ import annotations

import numpy as np

from ..claims import WINDOW_METRICS as WINDOW_METRICS
from ..protocols import protocol
from ._core import gain_draws, openness_draws as _openness_draws, training_arrays, window_interval


def openness_draws(times, change, plist) -> np.ndarray:
    """``W`` per draw (rows) from the signal's change from baseline per draw and one parameter set per draw."""
    return _openness_draws(times, np.nan_to_num(change) + 1.0, plist)


def _gain(times, w, plist, start, dur, inten, at_h) -> np.ndarray:
    lv, alone = gain_draws(times, w, plist, start, dur, inten, at_h)
    return lv / alone


def window_metric(claim: dict, times, w, plist, end_time: float) -> np.ndarray:
    """The claim's metric per draw given openness ``w`` (draws x times)."""
    m = claim["metric"]
    if m in ("window_duration_h", "window_open_h"):
        _, closes, total = window_interval(times, w)
        return closes - end_time if m == "window_duration_h" else total
    if m == "peak_openness":
        return np.max(w, axis=1)
    combo = claim["combination"]
    at_h = float(claim["at_h"])
    opts = dict(claim.get("protocol") or {})
    if m == "learning_gain":
        start, dur, inten = training_arrays(protocol(combo, **opts))
        return _gain(times, w, plist, start, dur, inten, at_h)
    a, b = (float(x) for x in claim["delays_h"])
    ga = _gain(times, w, plist, *training_arrays(protocol(combo, **{**opts, "training_delay_h": a})), at_h)
    gb = _gain(times, w, plist, *training_arrays(protocol(combo, **{**opts, "training_delay_h": b})), at_h)
    return ga / gb
