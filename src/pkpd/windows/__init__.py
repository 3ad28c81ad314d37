"""Plasticity windows and learning: a treatment opens a window of heightened plasticity and
training or therapy sessions inside it are learned better.

The openness state ``W`` is driven by a core state of the treatment's simulated trajectory (a
*candidate*: TrkB signalling releasing a PV-interneuron brake, ``pv_brake``, or synaptic protein
synthesis, the spine-formation drive, ``spine_formation``); the window is open while ``W >= 1``;
training sessions (:meth:`pkpd.Schedule.training`) are learned with the gain
``1 + gain W / (1 + W)`` and consolidated learning fades at ``k_forget``. Equations:
:mod:`pkpd.windows._core`. The window does not feed back on the core: it is a readout, computed
from the core's trajectory after the ODE solve, exactly between time points.

Parameters are in the window card (``models/windows.toml``); :func:`fit` fits them to the
``plasticity_window`` and ``learning`` rows of the data library with the core at the shipped
calibration and picks the candidate the rows predict best (``python -m pkpd.windows fit``
writes ``models/calibration/windows.json``, read by :func:`load`).

Main entry points: :func:`window` (when a protocol's window opens and closes),
:func:`learning_curve` (learning vs training delay), and ``pkpd.optimise_schedule`` on a
combination protocol (``"psilocybin+therapy"``, ...; :data:`pkpd.protocols.COMBINATIONS`).
"""

from __future__ import annotations

from ._api import WindowResult, learning_curve, learning_value, window
from ._core import (
    SIGNALS,
    WindowParams,
    learning,
    learning_alone,
    openness,
    training_arrays,
    window_interval,
)
from ._fit import WindowFit, card, card_params, fit, load, window_rows

__all__ = [
    "SIGNALS",
    "WindowFit",
    "WindowParams",
    "WindowResult",
    "card",
    "card_params",
    "fit",
    "learning",
    "learning_alone",
    "learning_curve",
    "learning_value",
    "load",
    "openness",
    "training_arrays",
    "window",
    "window_interval",
    "window_rows",
]
