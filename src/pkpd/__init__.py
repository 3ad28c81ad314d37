"""pkpd: pharmacodynamic time-course models of treatments that reshape synapses.

Importing pkpd switches JAX to 64-bit floats (``jax_enable_x64``): every ODE in pkpd runs in
float64, because the systems span minutes to months and dose jumps need exact bookkeeping.
Import pkpd before creating JAX arrays you intend to pass to it.
"""

from __future__ import annotations

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import pk as pk  # noqa: E402
from . import calibrate as calibrate  # noqa: E402
from . import timescales as timescales  # noqa: E402
from . import plot as plot  # noqa: E402
from .modalities import citation as citation, model as model, modalities as modalities, parameters as parameters  # noqa: E402
from .plasticity import PlasticityModel as PlasticityModel  # noqa: E402
from .protocols import protocol as protocol, protocols as protocols  # noqa: E402
from .model import SESSION_FEATURES as SESSION_FEATURES, Model as Model  # noqa: E402
from .nonmem import read_nonmem as read_nonmem  # noqa: E402
from .data import datasets as datasets, load_curves as load_curves, read_webplotdigitizer as read_webplotdigitizer  # noqa: E402
from .fit import MapFit as MapFit, fit as fit  # noqa: E402
from .compare import compare as compare  # noqa: E402
from .observe import ErrorModel as ErrorModel  # noqa: E402
from .schedule import PATTERNS as PATTERNS, ROUTES as ROUTES, Schedule as Schedule  # noqa: E402
from .simulate import (  # noqa: E402
    SegmentTable as SegmentTable,
    SolverError as SolverError,
    segment_table as segment_table,
    simulate as simulate,
    simulate_population as simulate_population,
    solve as solve,
    stack as stack,
)
from .trajectory import Trajectory as Trajectory  # noqa: E402
from .design import optimise_schedule as optimise_schedule, sensitivity as sensitivity  # noqa: E402

__version__ = "0.1.0"


def check_float64() -> None:
    """Raise ``RuntimeError`` if JAX's 64-bit mode has been switched off after import."""
    import jax.numpy as jnp

    if jnp.asarray(1.0).dtype != jnp.float64:
        raise RuntimeError("pkpd needs JAX float64: jax.config.update('jax_enable_x64', True)")
