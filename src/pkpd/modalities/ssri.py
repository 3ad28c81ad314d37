"""SSRIs (fluoxetine + norfluoxetine, escitalopram, sertraline): daily oral PK -> SERT occupancy
(Meyer 2004: ~80 % at minimum therapeutic doses) -> slow adaptation (5-HT1A autoreceptor
desensitisation, modelled as a first-order tolerance compartment) -> BDNF and neurogenesis;
direct TrkB binding (Casarotto 2021)."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp

from ..model import check_parameter
from ..plasticity import Signals
from ._driver import DrugDriver


class SSRIDriver(DrugDriver):
    """State ``adaptation`` A: A' = k_adapt (occupancy - A) (fraction, 0 at baseline).

    Occupancy combines parent and (if the PK has one) metabolite as competitive ligands:
    x = C/ec50 + Cm/ec50_m; occupancy = emax x^h / (1 + x^h).
    Signals: ``bdnf_drive = e_bdnf * A``, ``neurogenesis_drive = e_neuro * A``,
    ``trkb_potentiation = p_trkb * Ct / (Ct + kd_trkb)`` with Ct = C + Cm (mg/L)."""

    k_adapt: float = 0.01
    e_bdnf: float = 1.0
    e_neuro: float = 0.0
    p_trkb: float = 0.0
    kd_trkb: float = 1.0
    ec50_m: float = 1.0

    extra_states: ClassVar[tuple[str, ...]] = ("adaptation",)

    def __check_init__(self):
        super().__check_init__()
        check_parameter("SSRIDriver", "k_adapt", self.k_adapt)
        for name in ("e_bdnf", "e_neuro", "p_trkb"):
            check_parameter("SSRIDriver", name, getattr(self, name), lo_open=False)
        check_parameter("SSRIDriver", "kd_trkb", self.kd_trkb)
        check_parameter("SSRIDriver", "ec50_m", self.ec50_m)

    @property
    def units(self):  # type: ignore[override]
        return {**super().units, "adaptation": "fraction (0 at baseline)"}

    def _total(self, yp):
        out = self.pk.outputs(yp)
        c = jnp.maximum(out["concentration"], 0.0)
        cm = jnp.maximum(out.get("metabolite_concentration", jnp.zeros_like(c)), 0.0)
        return c, cm

    def occupancy(self, yp):
        c, cm = self._total(yp)
        x = (c / self.ec50 + cm / self.ec50_m) ** self.hill
        return self.emax * x / (1.0 + x)

    def extra_field(self, yp, ye, session):
        return self.k_adapt * (self.occupancy(yp) - ye)

    def signals(self, y, session):
        yp, ye = self._split(y)
        a = ye[..., 0]
        c, cm = self._total(yp)
        ct = c + cm
        return Signals(
            bdnf_drive=self.e_bdnf * a,
            neurogenesis_drive=self.e_neuro * a,
            trkb_potentiation=self.p_trkb * ct / (ct + self.kd_trkb),
        )

    def outputs(self, ys):
        yp, ye = self._split(ys)
        return {**super().outputs(ys), "adaptation": ye[..., 0]}
