"""Linear compartmental PK models (amounts as states, concentrations as outputs).

Parameterisation and units (human; rodent cards use per-kg volumes and clearances with doses in
mg/kg, which gives the same concentration unit):

- ``cl``: clearance, L/h (apparent CL/F when ``f`` = 1 stands for an unknown bioavailability)
- ``v``, ``v1``: central volume, L; ``v2``: peripheral volume, L; ``q``: inter-compartmental
  clearance, L/h
- ``ka``: first-order absorption rate constant from the depot, 1/h (``None``: IV only)
- ``f``: bioavailability of extravascular doses, in (0, 1]
- ``lag``: absorption lag time of extravascular doses, h (a static value: event times depend on it,
  so it is not differentiated or vmapped)
- ``fm``: fraction of parent clearance that forms the metabolite, in [0, 1]; ``cl_m``, ``v_m``:
  metabolite clearance (L/h) and volume (L). The metabolite is tracked in parent-equivalent
  amounts; ``mw_ratio`` (metabolite/parent molar mass) converts to metabolite mass.

Concentrations are amount / volume: mg / L (= ug/mL) for doses in mg.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .model import EXTRAVASCULAR, N_ROUTES, Model, check_parameter, expm_input, route_index
from .schedule import ROUTES


class LinearPK(Model):
    """Base of linear PK models: dy/dt = A y + B_rate @ rates, doses y += B_bolus @ amounts.

    Subclasses give :meth:`matrix` and the indices of their depot and central compartments."""

    depot_index: ClassVar[int | None] = 0
    central_index: ClassVar[int] = 1

    def matrix(self):
        raise NotImplementedError

    def _ka_f(self):
        return getattr(self, "ka", None), getattr(self, "f", 1.0)

    def accepts_route(self, route: str) -> bool:
        ka, _ = self._ka_f()
        return route in ("iv", "infusion") or (ka is not None and self.depot_index is not None)

    def lag(self, route: str) -> float:
        return float(getattr(self, "lag_h", 0.0)) if route in EXTRAVASCULAR else 0.0

    def bolus_matrix(self):
        """(states, routes): where one unit of each route's bolus lands."""
        ka, f = self._ka_f()
        m = jnp.zeros((self.n_states, N_ROUTES))
        m = m.at[self.central_index, route_index("iv")].set(1.0)
        if ka is not None and self.depot_index is not None:
            for r in EXTRAVASCULAR:
                m = m.at[self.depot_index, route_index(r)].set(f)
        return m

    def rate_matrix(self):
        return jnp.zeros((self.n_states, N_ROUTES)).at[self.central_index, route_index("infusion")].set(1.0)

    def dose(self, y, amounts):
        return y + self.bolus_matrix() @ amounts

    def vector_field(self, t, y, rates, session):
        return self.matrix() @ y + self.rate_matrix() @ rates

    def propagate(self, y, rates, dt):
        """Exact state after ``dt`` hours from ``y`` with constant input ``rates`` (per route)."""
        phi, g = expm_input(self.matrix(), self.rate_matrix() @ rates, dt)
        return phi @ y + g

    def steady_state(self, y, bolus, rates, duration, ii, lag):
        ka, _ = self._ka_f()
        if ka is None and self.depot_index is not None:
            # Without absorption the depot row of A is zero and I - Phi is singular: solve over the
            # other compartments (no dose can reach the depot).
            keep = [i for i in range(self.n_states) if i != self.depot_index]
            sub = _Reduced(self, keep)
            x = sub.steady_state(y[jnp.asarray(keep)], bolus, rates, duration, ii, lag)
            return (y * 0.0).at[jnp.asarray(keep)].set(x)
        a = self.matrix()
        phi_ii, _ = expm_input(a, jnp.zeros(self.n_states), ii)
        eye = jnp.eye(self.n_states)
        # Bolus part: pre-dose state x_pre = (I - Phi_ii)^-1 Phi_ii d; propagate (ii - lag) from the
        # last arrival at t + lag - ii to the nominal dose time t.
        d = self.bolus_matrix() @ bolus
        x_pre = jnp.linalg.solve(eye - phi_ii, phi_ii @ d)
        phi_back, _ = expm_input(a, jnp.zeros(self.n_states), ii - lag)
        x_bolus = phi_back @ (x_pre + d)
        # Infusion part: at the start of an infusion cycle, x = (I - Phi_ii)^-1 Phi_(ii-D) G_D r.
        r = self.rate_matrix() @ rates
        _, g = expm_input(a, r, duration)
        phi_rest, _ = expm_input(a, jnp.zeros(self.n_states), ii - duration)
        x_inf = jnp.linalg.solve(eye - phi_ii, phi_rest @ g)
        return y * 0.0 + x_bolus + x_inf


class _Reduced:
    """A linear PK model restricted to a subset of compartments (for steady states without a depot)."""

    def __init__(self, model: LinearPK, keep):
        idx = np.asarray(keep)
        self._a = model.matrix()[np.ix_(idx, idx)]
        self._b = model.bolus_matrix()[idx]
        self._r = model.rate_matrix()[idx]
        self.n_states = len(keep)

    def matrix(self):
        return self._a

    def bolus_matrix(self):
        return self._b

    def rate_matrix(self):
        return self._r

    def _ka_f(self):
        return 1.0, 1.0

    depot_index = None
    steady_state = LinearPK.steady_state


def _check_common(self, name):
    ka = getattr(self, "ka", None)
    if ka is not None:
        check_parameter(name, "ka", ka)
    check_parameter(name, "f", getattr(self, "f", 1.0), lo=0.0, lo_open=True, hi=1.0)
    lag = getattr(self, "lag_h", 0.0)
    if not np.isfinite(lag) or lag < 0:
        raise ValueError(f"{name}.lag_h={lag!r} is out of its domain [0, inf)")


class OneCompartment(LinearPK):
    """One-compartment PK with optional first-order absorption.

    States: ``depot`` (mg), ``central`` (mg). Output: ``concentration`` = central / v (mg/L).
    """

    cl: float
    v: float
    ka: float | None = None
    f: float = 1.0
    lag_h: float = eqx.field(default=0.0, static=True)

    state_names: ClassVar[tuple[str, ...]] = ("depot", "central")
    units: ClassVar[dict[str, str]] = {"depot": "mg", "central": "mg", "concentration": "mg/L"}

    def __init__(self, cl, v, ka=None, f=1.0, lag=0.0):
        self.cl, self.v, self.ka, self.f, self.lag_h = cl, v, ka, f, float(lag)

    def __check_init__(self):
        check_parameter("OneCompartment", "cl", self.cl)
        check_parameter("OneCompartment", "v", self.v)
        _check_common(self, "OneCompartment")

    def matrix(self):
        ka = 0.0 if self.ka is None else self.ka
        k = self.cl / self.v
        return jnp.array([[-ka, 0.0], [ka, -k]])

    def outputs(self, ys):
        return {"concentration": ys[..., 1] / self.v}


class TwoCompartment(LinearPK):
    """Two-compartment PK with optional first-order absorption.

    States: ``depot``, ``central``, ``peripheral`` (mg). Output: ``concentration`` = central / v1.
    """

    cl: float
    v1: float
    q: float
    v2: float
    ka: float | None = None
    f: float = 1.0
    lag_h: float = eqx.field(default=0.0, static=True)

    state_names: ClassVar[tuple[str, ...]] = ("depot", "central", "peripheral")
    units: ClassVar[dict[str, str]] = {"depot": "mg", "central": "mg", "peripheral": "mg", "concentration": "mg/L"}

    def __init__(self, cl, v1, q, v2, ka=None, f=1.0, lag=0.0):
        self.cl, self.v1, self.q, self.v2, self.ka, self.f, self.lag_h = cl, v1, q, v2, ka, f, float(lag)

    def __check_init__(self):
        for name in ("cl", "v1", "q", "v2"):
            check_parameter("TwoCompartment", name, getattr(self, name))
        _check_common(self, "TwoCompartment")

    def matrix(self):
        ka = 0.0 if self.ka is None else self.ka
        k10, k12, k21 = self.cl / self.v1, self.q / self.v1, self.q / self.v2
        return jnp.array([[-ka, 0.0, 0.0], [ka, -(k10 + k12), k21], [0.0, k12, -k21]])

    def outputs(self, ys):
        return {"concentration": ys[..., 1] / self.v1}


class ParentMetabolite(LinearPK):
    """One-compartment parent with first-order absorption forming a one-compartment metabolite
    (fluoxetine -> norfluoxetine; psilocybin -> psilocin is handled as a prodrug dose factor).

    States: ``depot``, ``central`` (parent, mg), ``metabolite`` (parent-equivalent mg).
    Outputs: ``concentration`` (parent, mg/L), ``metabolite_concentration`` (mg/L of metabolite,
    converted with ``mw_ratio``).
    """

    cl: float
    v: float
    ka: float | None
    fm: float
    cl_m: float
    v_m: float
    f: float = 1.0
    mw_ratio: float = 1.0
    lag_h: float = eqx.field(default=0.0, static=True)

    state_names: ClassVar[tuple[str, ...]] = ("depot", "central", "metabolite")
    units: ClassVar[dict[str, str]] = {
        "depot": "mg",
        "central": "mg",
        "metabolite": "mg",
        "concentration": "mg/L",
        "metabolite_concentration": "mg/L",
    }

    def __init__(self, cl, v, ka, fm, cl_m, v_m, f=1.0, mw_ratio=1.0, lag=0.0):
        self.cl, self.v, self.ka, self.fm, self.cl_m, self.v_m = cl, v, ka, fm, cl_m, v_m
        self.f, self.mw_ratio, self.lag_h = f, mw_ratio, float(lag)

    def __check_init__(self):
        for name in ("cl", "v", "cl_m", "v_m", "mw_ratio"):
            check_parameter("ParentMetabolite", name, getattr(self, name))
        check_parameter("ParentMetabolite", "fm", self.fm, lo=0.0, lo_open=False, hi=1.0)
        _check_common(self, "ParentMetabolite")

    def matrix(self):
        ka = 0.0 if self.ka is None else self.ka
        k, km = self.cl / self.v, self.cl_m / self.v_m
        return jnp.array([[-ka, 0.0, 0.0], [ka, -k, 0.0], [0.0, self.fm * k, -km]])

    def outputs(self, ys):
        return {"concentration": ys[..., 1] / self.v, "metabolite_concentration": ys[..., 2] * self.mw_ratio / self.v_m}


__all__ = ["LinearPK", "OneCompartment", "TwoCompartment", "ParentMetabolite", "ROUTES"]
