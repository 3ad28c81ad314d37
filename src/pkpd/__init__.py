"""pkpd: pharmacodynamic time-course models of treatments that reshape synapses.

Importing pkpd switches JAX to 64-bit floats (``jax_enable_x64``): every ODE in pkpd runs in
float64, because the systems span minutes to months and dose jumps need exact bookkeeping.
Import pkpd before creating JAX arrays you intend to pass to it.
"""

from __future__ import annotations

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import (
    calibrate as calibrate,
    pk as pk,
    plot as plot,
    population as population,
    structures as structures,
    timescales as timescales,
)
from .calibrate import model as model
from .compare import compare as compare
from .data import datasets as datasets, load_curves as load_curves, read_webplotdigitizer as read_webplotdigitizer
from .design import optimise_schedule as optimise_schedule, sensitivity as sensitivity
from .fit import MapFit as MapFit, fit as fit
from .modalities import citation as citation, modalities as modalities, parameters as parameters
from .model import SESSION_FEATURES as SESSION_FEATURES, Model as Model
from .nonmem import read_nonmem as read_nonmem
from .observe import ErrorModel as ErrorModel
from .plasticity import PlasticityModel as PlasticityModel
from .protocols import protocol as protocol, protocols as protocols
from .schedule import PATTERNS as PATTERNS, ROUTES as ROUTES, Schedule as Schedule
from .simulate import (
    SegmentTable as SegmentTable,
    SolverError as SolverError,
    segment_table as segment_table,
    simulate as simulate,
    simulate_population as simulate_population,
    solve as solve,
    stack as stack,
)
from .trajectory import Trajectory as Trajectory
from .validate import validate as validate

__version__ = "0.1.0"


def check_float64() -> None:
    """Raise ``RuntimeError`` if JAX's 64-bit mode has been switched off after import."""
    import jax.numpy as jnp

    if jnp.asarray(1.0).dtype != jnp.float64:
        raise RuntimeError("pkpd needs JAX float64: jax.config.update('jax_enable_x64', True)")
