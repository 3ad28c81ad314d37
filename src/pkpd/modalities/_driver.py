"""Drivers: what a modality feeds into the plasticity core.

A driver owns its own states (PK compartments, adaptation, a seizure impulse) and maps them,
with the active device session, to :class:`pkpd.plasticity.Signals`. Drug drivers share
:class:`DrugDriver`: linear PK (from :mod:`pkpd.pk`) -> target occupancy
``emax C^h / (ec50^h + C^h)``.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from ..model import Model, check_parameter
from ..pk import LinearPK
from ..plasticity import Signals


class Driver(eqx.Module):
    """Base of modality drivers (no states, no doses, no signals)."""

    state_names: ClassVar[tuple[str, ...]] = ()
    units: ClassVar[dict[str, str]] = {}
    dose_unit: ClassVar[str] = "mg"

    def initial_state(self):
        return jnp.zeros(len(self.state_names))

    def lag(self, route: str) -> float:
        return 0.0

    def accepts_route(self, route: str) -> bool:
        return False

    def dose(self, y, amounts):
        return y

    def session_onset(self, y, session):
        return y

    def vector_field(self, y, rates, session):
        return jnp.zeros_like(y)

    def signals(self, y, session) -> Signals:
        return Signals()

    def outputs(self, ys) -> dict:
        return {}

    def steady_state(self, y, bolus, rates, duration, ii, lag):
        raise NotImplementedError(f"{type(self).__name__} has no doses, so no steady-state dosing")


def hill_occupancy(c, ec50, emax, hill):
    """Fractional target occupancy emax C^h / (ec50^h + C^h); C >= 0 (tiny negatives from the
    solver are clipped)."""
    x = (jnp.maximum(c, 0.0) / ec50) ** hill
    return emax * x / (1.0 + x)


class DrugDriver(Driver):
    """PK -> target occupancy. ``dose_scale`` multiplies every dose (psilocybin -> psilocin molar
    conversion); ``units_dose`` is the dose unit of the PK parameter set (mg, or mg/kg for rodents)."""

    pk: LinearPK
    dose_scale: float
    ec50: float
    emax: float
    hill: float
    units_dose: str = eqx.field(static=True, default="mg")

    extra_states: ClassVar[tuple[str, ...]] = ()

    def __check_init__(self):
        name = type(self).__name__
        check_parameter(name, "dose_scale", self.dose_scale)
        check_parameter(name, "ec50", self.ec50)
        check_parameter(name, "emax", self.emax, lo=0.0, lo_open=True, hi=1.0)
        # hill < 1 gives an infinite slope of C^h at C = 0, which breaks implicit solvers.
        check_parameter(name, "hill", self.hill, lo=1.0, lo_open=False)

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.pk.state_names) + self.extra_states

    @property
    def dose_unit(self) -> str:  # type: ignore[override]
        return self.units_dose

    @property
    def units(self) -> dict[str, str]:  # type: ignore[override]
        conc = "mg/L" if self.units_dose == "mg" else "mg/L (per-kg dosing)"
        return {
            **{s: self.units_dose for s in self.pk.state_names},
            "concentration": conc,
            "metabolite_concentration": conc,
            "occupancy": "fraction of targets",
        }

    def _split(self, y):
        n = len(self.pk.state_names)
        return y[..., :n], y[..., n:]

    def pk_view(self) -> "DrugPK":
        """The driver's PK alone (with ``dose_scale`` and the occupancy output): a linear model
        that :func:`pkpd.simulate.solve` propagates exactly. Concentrations and occupancy do not
        depend on the plasticity core, so rows that read only them need no PD integration."""
        return DrugPK(self)

    def initial_state(self):
        return jnp.zeros(len(self.state_names))

    def lag(self, route):
        return self.pk.lag(route)

    def accepts_route(self, route):
        return self.pk.accepts_route(route)

    def dose(self, y, amounts):
        yp, ye = self._split(y)
        return jnp.concatenate([self.pk_view().dose(yp, amounts), ye])

    def concentration(self, yp):
        return self.pk.outputs(yp)["concentration"]

    def occupancy(self, yp):
        return hill_occupancy(self.concentration(yp), self.ec50, self.emax, self.hill)

    def extra_field(self, yp, ye, session):
        return jnp.zeros_like(ye)

    def vector_field(self, y, rates, session):
        yp, ye = self._split(y)
        return jnp.concatenate(
            [self.pk_view().vector_field(None, yp, rates, session), self.extra_field(yp, ye, session)]
        )

    def steady_state(self, y, bolus, rates, duration, ii, lag):
        yp, ye = self._split(y)
        return jnp.concatenate([self.pk_view().steady_state(yp, bolus, rates, duration, ii, lag), ye])

    def outputs(self, ys):
        yp, _ = self._split(ys)
        return self.pk_view().outputs(yp)


class DrugPK(Model):
    """Exact-PK view of a :class:`DrugDriver`: its PK compartments, doses scaled by ``dose_scale``,
    outputs ``concentration`` (and ``metabolite_concentration``) and ``occupancy``. Linear, so
    :func:`pkpd.simulate.solve` propagates it by matrix exponentials (``propagate``). The driver's
    own dose, vector field, steady state and outputs use it for their PK part, so the two agree by
    construction."""

    driver: DrugDriver

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.driver.pk.state_names)

    @property
    def dose_unit(self) -> str:  # type: ignore[override]
        return self.driver.dose_unit

    def lag(self, route):
        return self.driver.pk.lag(route)

    def accepts_route(self, route):
        return self.driver.pk.accepts_route(route)

    def initial_state(self):
        return self.driver.pk.initial_state()

    def dose(self, y, amounts):
        return self.driver.pk.dose(y, amounts * self.driver.dose_scale)

    def vector_field(self, t, y, rates, session):
        return self.driver.pk.vector_field(t, y, rates * self.driver.dose_scale, session)

    def propagate(self, y, rates, dt):
        return self.driver.pk.propagate(y, rates * self.driver.dose_scale, dt)

    def steady_state(self, y, bolus, rates, duration, ii, lag):
        s = self.driver.dose_scale
        return self.driver.pk.steady_state(y, bolus * s, rates * s, duration, ii, lag)

    def outputs(self, ys):
        return {**self.driver.pk.outputs(ys), "occupancy": self.driver.occupancy(ys)}
