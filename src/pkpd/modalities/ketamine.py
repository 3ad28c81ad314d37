"""Ketamine: IV infusion PK (two compartments) -> NMDA receptor block -> disinhibition glutamate
burst -> BDNF release and mTORC1 activation (Li 2010)."""

from __future__ import annotations

from ..model import check_parameter
from ..plasticity import Signals
from ._driver import DrugDriver


class KetamineDriver(DrugDriver):
    """Signals: ``bdnf_drive = e_glu * block``, ``mtor_drive = e_mtor * block``, where ``block`` is
    the NMDA receptor occupancy; ``trkb_potentiation = p_trkb * C / (C + kd_trkb)`` (Casarotto
    2021: ketamine binds TrkB directly, at micromolar concentrations)."""

    e_glu: float = 1.0
    e_mtor: float = 0.0
    p_trkb: float = 0.0
    kd_trkb: float = 1.0

    def __check_init__(self):
        super().__check_init__()
        for name in ("e_glu", "e_mtor", "p_trkb"):
            check_parameter("KetamineDriver", name, getattr(self, name), lo_open=False)
        check_parameter("KetamineDriver", "kd_trkb", self.kd_trkb)

    def signals(self, y, session):
        yp, _ = self._split(y)
        block = self.occupancy(yp)
        c = self.concentration(yp)
        return Signals(
            bdnf_drive=self.e_glu * block,
            mtor_drive=self.e_mtor * block,
            trkb_potentiation=self.p_trkb * c / (c + self.kd_trkb),
        )
