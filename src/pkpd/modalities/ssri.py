"""SSRIs (fluoxetine + norfluoxetine, escitalopram, sertraline): daily oral PK -> SERT occupancy
(Meyer 2004: ~80 % at minimum therapeutic doses) -> slow adaptation (5-HT1A autoreceptor
desensitisation, modelled as a first-order tolerance compartment) -> BDNF and neurogenesis;
direct TrkB binding (Casarotto 2021)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ..model import check_parameter
from ..plasticity import Signals
from ._driver import DrugDriver


class SSRIDriver(DrugDriver):
    """State ``adaptation`` A: A' = k_adapt (occupancy - A) (fraction, 0 at baseline).

    With ``two_stage`` (structure ``ssri = two_stage``, :mod:`pkpd.structures`) a transcriptional
    stage follows: A2' = k_transcription (A - A2), and A2 instead of A drives BDNF and neurogenesis;
    as k_transcription grows, A2 -> A (the one-stage driver).

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
    k_transcription: float | None = None
    two_stage: bool = eqx.field(static=True, default=False)

    @property
    def extra_states(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("adaptation", "transcription") if self.two_stage else ("adaptation",)

    def __check_init__(self):
        super().__check_init__()
        check_parameter("SSRIDriver", "k_adapt", self.k_adapt)
        if self.two_stage:
            check_parameter("SSRIDriver", "k_transcription", self.k_transcription)
        elif self.k_transcription is not None:
            raise ValueError(f"SSRIDriver: k_transcription={self.k_transcription!r} is set but two_stage is False")
        for name in ("e_bdnf", "e_neuro", "p_trkb"):
            check_parameter("SSRIDriver", name, getattr(self, name), lo_open=False)
        check_parameter("SSRIDriver", "kd_trkb", self.kd_trkb)
        check_parameter("SSRIDriver", "ec50_m", self.ec50_m)

    @property
    def units(self):  # type: ignore[override]
        return {**super().units, "adaptation": "fraction (0 at baseline)", "transcription": "fraction (0 at baseline)"}

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
        da = self.k_adapt * (self.occupancy(yp) - ye[..., :1])
        if not self.two_stage:
            return da
        return jnp.concatenate([da, self.k_transcription * (ye[..., :1] - ye[..., 1:])], axis=-1)

    def signals(self, y, session):
        yp, ye = self._split(y)
        a = ye[..., -1]  # the last stage drives the core
        c, cm = self._total(yp)
        ct = c + cm
        return Signals(
            bdnf_drive=self.e_bdnf * a,
            neurogenesis_drive=self.e_neuro * a,
            trkb_potentiation=self.p_trkb * ct / (ct + self.kd_trkb),
        )

    def outputs(self, ys):
        yp, ye = self._split(ys)
        out = {**super().outputs(ys), "adaptation": ye[..., 0]}
        if self.two_stage:
            out["transcription"] = ye[..., 1]
        return out
