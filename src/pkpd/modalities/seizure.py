"""ECT and magnetic seizure therapy: each session induces a seizure, an impulse in the ``seizure``
state that decays over hours and drives BDNF, VEGF and progenitor proliferation (ECS in animals:
devices.md section 5) -> neurogenesis and hippocampal volume (Oltedal 2018: ~0.28 % per session)."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from ..model import SESSION_FEATURES, check_parameter
from ..plasticity import Signals
from ._driver import Driver

_F = {name: i for i, name in enumerate(SESSION_FEATURES)}


class SeizureDriver(Driver):
    """State ``seizure`` Z (0 at baseline): at a session with a seizure, Z += q * intensity, with
    q = q_ect for ECT and q_mst for MST; Z' = -k_seizure Z. Signals: ``bdnf_drive = e_bdnf Z``,
    ``vegf_drive = e_vegf Z``, ``neurogenesis_drive = e_neuro Z``."""

    q_ect: float
    q_mst: float
    k_seizure: float
    e_bdnf: float
    e_vegf: float
    e_neuro: float

    state_names: ClassVar[tuple[str, ...]] = ("seizure",)
    units: ClassVar[dict[str, str]] = {"seizure": "impulse units (q per seizure)"}

    def __check_init__(self):
        for name in ("q_ect", "q_mst", "k_seizure"):
            check_parameter("SeizureDriver", name, getattr(self, name))
        for name in ("e_bdnf", "e_vegf", "e_neuro"):
            check_parameter("SeizureDriver", name, getattr(self, name), lo_open=False)

    def session_onset(self, y, session):
        q = session[..., _F["pattern_ect"]] * self.q_ect + session[..., _F["pattern_mst"]] * self.q_mst
        return y + (q * session[..., _F["seizure"]] * session[..., _F["intensity"]])[..., None] * jnp.ones_like(y)

    def vector_field(self, y, rates, session):
        return -self.k_seizure * y

    def signals(self, y, session):
        z = y[..., 0]
        return Signals(bdnf_drive=self.e_bdnf * z, vegf_drive=self.e_vegf * z, neurogenesis_drive=self.e_neuro * z)
