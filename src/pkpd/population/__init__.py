"""Population NLME on individual data: a pkpd structural model + parameter model + residual error
model fitted to NONMEM-style records by FOCE with interaction or NUTS, with standard errors,
individual estimates, GOF/CWRES/VPC diagnostics and NONMEM interoperability.

>>> res = pkpd.population.from_nonmem("run1.mod").fit(method="focei")
"""

from __future__ import annotations

from .model import PopulationModel as PopulationModel
from .nonmem import UnsupportedNonmem as UnsupportedNonmem, from_nonmem as from_nonmem, read_ext as read_ext
from .params import Covariance as Covariance, Parameters as Parameters, Theta as Theta
from .records import RecordError as RecordError, Records as Records, read_records as read_records
from .result import PopulationResult as PopulationResult

__all__ = [
    "PopulationModel",
    "PopulationResult",
    "Records",
    "RecordError",
    "UnsupportedNonmem",
    "from_nonmem",
    "read_ext",
    "read_records",
    "Theta",
    "Covariance",
    "Parameters",
]
