"""Population NLME on individual data: a pkpd structural model + parameter model + residual error
model fitted to NONMEM-style records by FOCE with interaction or NUTS, with standard errors,
individual estimates, GOF/CWRES/VPC diagnostics and NONMEM interoperability.

>>> res = pkpd.population.from_nonmem("run1.mod").fit(method="focei")

Modules: :mod:`.records` (datasets as padded per-subject arrays), :mod:`.params` (THETA, OMEGA,
SIGMA and their unconstrained parameterisation), :mod:`.model` (the population model),
:mod:`.predict` (exact linear superposition and the :func:`pkpd.solve` backend), :mod:`.foce`
(FOCE-I/FOCE, standard errors), :mod:`.nuts` (NumPyro NUTS), :mod:`.diagnostics` (residuals,
GOF, VPC), :mod:`.nonmem` (control streams via pharmpy-core, ``.ext`` files), :mod:`.result`.

Validation against NONMEM's own run of pheno (``pytest tests/test_population_fit.py``): the
FOCE-I estimates, OFV (586.276, NONMEM's scale without n log 2 pi), sandwich standard errors and
the CWRES of NONMEM's table agree with ``pheno.ext``/``pheno.tab`` (``test_pheno_matches_nonmem``
states the tolerances).
"""

from __future__ import annotations

from . import foce as foce, nuts as nuts  # noqa: F401  (register the estimation methods)
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
