"""The interface every pkpd model implements, and shared parameter validation.

A model is a frozen :class:`equinox.Module` holding its parameters. The simulator calls:

- :meth:`Model.initial_state` -- pre-treatment state (the baseline);
- :meth:`Model.dose` -- instantaneous jump for bolus amounts given per route;
- :meth:`Model.session_onset` -- instantaneous jump when a device session starts;
- :meth:`Model.vector_field` -- the ODE right-hand side, given the zero-order input rate per
  route and the features of the active device session (both constant within a segment);
- :meth:`Model.outputs` -- derived readouts (e.g. ``concentration``) from states;
- :meth:`Model.steady_state` -- the state at the time of a steady-state (NONMEM SS=1) dose.

All of these are pure functions of arrays, so ``jit``, ``vmap`` and ``grad`` pass through.
"""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .schedule import PATTERNS, ROUTES
from .solvers import default_solver

#: Features of a device session as the model sees them, in this order.
SESSION_FEATURES: tuple[str, ...] = (
    "active",
    "pulses",
    "frequency_hz",
    "intensity",
    "duration_h",
    "seizure",
    *(f"pattern_{p}" for p in PATTERNS),
)
N_ROUTES = len(ROUTES)
N_SESSION_FEATURES = len(SESSION_FEATURES)
EXTRAVASCULAR: tuple[str, ...] = ("oral", "ip", "sc", "im", "intranasal")


def is_concrete(x) -> bool:
    """True when ``x`` holds a value (not a JAX tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_parameter(
    model: str,
    name: str,
    value,
    *,
    lo: float | None = 0.0,
    lo_open: bool = True,
    hi: float | None = None,
    hi_open: bool = False,
) -> None:
    """Reject a concrete parameter value outside its domain (tracers pass: they are checked where
    they were made). Raises ``ValueError`` naming the model, the field, the value and the domain."""
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value, dtype=np.float64)
    domain = (
        f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, "
        f"{'inf' if hi is None else hi}{')' if hi_open or hi is None else ']'}"
    )
    bad = ~np.isfinite(arr)
    if lo is not None:
        bad |= (arr <= lo) if lo_open else (arr < lo)
    if hi is not None:
        bad |= (arr >= hi) if hi_open else (arr > hi)
    if bad.any():
        v = arr.ravel()[int(np.argmax(bad.ravel()))]
        raise ValueError(f"{model}.{name}={float(v)} is out of its domain {domain}")


class Model(eqx.Module):
    """Abstract base of pkpd models. Subclasses set ``state_names`` and ``dose_unit`` and
    implement :meth:`vector_field`; the rest has sensible defaults."""

    state_names: ClassVar[tuple[str, ...]] = ()
    #: Units of states and outputs, for trajectories and plots.
    units: ClassVar[dict[str, str]] = {}
    #: Unit of dose amounts the model expects (schedules are converted to it).
    dose_unit: ClassVar[str] = "mg"

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    def default_solver(self):
        """The diffrax solver ``simulate`` uses unless told otherwise: stiff-capable Kvaerno5
        (:func:`pkpd.solvers.default_solver`)."""
        return default_solver()

    def initial_state(self) -> Float[Array, " states"]:
        return jnp.zeros(self.n_states)

    def lag(self, route: str) -> float:
        """Absorption lag time (h) of a route; a concrete number (event times depend on it)."""
        return 0.0

    def accepts_route(self, route: str) -> bool:
        return True

    def dose(self, y: Float[Array, " states"], amounts: Float[Array, " routes"]) -> Float[Array, " states"]:
        """State just after bolus ``amounts`` (per route, in ``dose_unit``) arrive."""
        return y

    def session_onset(self, y: Float[Array, " states"], session: Float[Array, " features"]) -> Float[Array, " states"]:
        """State just after a device session with these features starts (zeros: no session)."""
        return y

    def vector_field(
        self, t, y: Float[Array, " states"], rates: Float[Array, " routes"], session: Float[Array, " features"]
    ) -> Float[Array, " states"]:
        raise NotImplementedError

    def outputs(self, ys: Float[Array, "... states"]) -> dict[str, Array]:
        """Derived readouts from states (any leading shape)."""
        return {}

    def steady_state(self, y, bolus, rates, duration, ii, lag):
        """State at the nominal time of a steady-state dose repeated every ``ii`` hours (``bolus``
        per route arriving ``lag`` h later, or ``rates`` per route for ``duration`` h)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement steady-state (SS=1) dosing; "
            "only linear PK models do. Simulate the repeated doses explicitly instead."
        )

    def describe(self) -> str:
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        parts = []
        for k, v in fields.items():
            if isinstance(v, eqx.Module):
                parts.append(f"{k}={type(v).__name__}(...)")
            elif v is not None and np.ndim(v) == 0 and is_concrete(v):
                parts.append(f"{k}={float(v):.4g}")
        return f"{type(self).__name__}({', '.join(parts)})"


def route_index(route: str) -> int:
    return ROUTES.index(route)


def expm_input(a: Float[Array, "n n"], b: Float[Array, " n"], dt) -> tuple[Array, Array]:
    """``(exp(A dt), integral_0^dt exp(A s) ds @ b)`` by one augmented matrix exponential
    (valid for singular ``A``)."""
    n = a.shape[0]
    aug = jnp.zeros((n + 1, n + 1)).at[:n, :n].set(a).at[:n, n].set(b)
    e = jax.scipy.linalg.expm(aug * dt)
    return e[:n, :n], e[:n, n]


LN2 = math.log(2.0)
