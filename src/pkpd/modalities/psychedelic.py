"""Psychedelics (psilocybin -> psilocin, LSD, DMT): PK -> 5-HT2A occupancy -> glutamate burst ->
BDNF; plus direct TrkB potentiation (Moliner 2023: LSD and psilocin bind TrkB with ~1000-fold
higher affinity than other antidepressants)."""

from __future__ import annotations

from ..model import check_parameter
from ..plasticity import Signals
from ._driver import DrugDriver


class PsychedelicDriver(DrugDriver):
    """Signals: ``bdnf_drive = e_glu * occupancy``; ``trkb_potentiation = p_trkb * C / (C + kd_trkb)``.

    ``e_glu``: BDNF drive at full 5-HT2A occupancy (dimensionless); ``p_trkb``: maximal relative
    TrkB potentiation; ``kd_trkb``: plasma-equivalent concentration (mg/L) of half-maximal TrkB
    potentiation."""

    e_glu: float = 1.0
    p_trkb: float = 0.0
    kd_trkb: float = 1.0

    def __check_init__(self):
        super().__check_init__()
        check_parameter("PsychedelicDriver", "e_glu", self.e_glu, lo_open=False)
        check_parameter("PsychedelicDriver", "p_trkb", self.p_trkb, lo_open=False)
        check_parameter("PsychedelicDriver", "kd_trkb", self.kd_trkb)

    def signals(self, y, session):
        yp, _ = self._split(y)
        c = self.concentration(yp)
        return Signals(
            bdnf_drive=self.e_glu * self.occupancy(yp), trkb_potentiation=self.p_trkb * c / (c + self.kd_trkb)
        )
