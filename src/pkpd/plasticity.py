"""The plasticity core shared by every modality.

Every readout is relative to its pre-treatment baseline (exactly 1.0 before any event). The core
receives dimensionless *signals* from a modality driver (:class:`Signals`) and evolves:

==========================  =========================================================  ===========
state                        equation (rates per hour)                                  readout
==========================  =========================================================  ===========
``bdnf``        B            B' = k_bdnf (1 + D + e_bc sp(C - 1) - B)                   ``bdnf``
``trkb``        T            T' = k_trkb (B (1 + P) - T)                                ``trkb``
``mtor``        M            M' = k_mtor (T^n_mtor (1 + Dm) - M)                        ``mtor``
``protein``     Pr           Pr' = k_protein (M - Pr)   (synaptic protein synthesis)
``spine_density`` S          S' = k_spine_elim (1 - S) + k_spine_form F(Pr^n_spine - 1, S)  ``spine_density``
``proliferation`` Np         Np' = k_prolif (T^n_neuro (1 + Dn) - Np)
``immature_1, immature_2``   I1' = k_mature (Np - I1); I2' = k_mature (I1 - I2)         ``neurogenesis`` = (I1 + I2)/2
``vegf``        V            V' = k_vegf (1 + Dv - V)
``hippocampal_volume`` H     H' = k_volume (1 - H) + g_vegf (V - 1) + g_neuro (I2 - 1)  ``hippocampal_volume``
``efficacy_early`` E         E' = x (Emax - E if x > 0 else E - Emin) - k_early (E - 1),  ``synaptic_efficacy`` = E C
                             x = eta a (a - theta)
``efficacy_consolidated`` C  C' = k_consolidate Pr (E - 1) R(C) - k_consolidated (C - 1)
``threshold``   theta        theta' = k_theta_up u (theta_max - theta) - k_theta_down (theta - 1)
``clinical``    X            X' = k_clinical (g_spine (S - 1) + g_efficacy (C - 1) - X) ``symptom_score`` = 1 - X
==========================  =========================================================  ===========

D, P, Dm, Dn, Dv: BDNF drive, direct TrkB potentiation, direct mTOR drive, direct neurogenesis
drive and VEGF drive from the driver. Spine formation F(d, S) = sp(d) (Smax - S)/(Smax - 1)
- sp(-d) S saturates at the capacity Smax = ``spine_capacity`` and keeps S positive (sp(d) -
sp(-d) = d, so near baseline it is linear in d). (zero at baseline); a: stimulation activity during a device
session and u: its duty-weighted version that slides the BCM-like threshold theta (both zero
without a session). sp is a smooth positive part (exactly 0 below 0). With all signals zero the baseline
(every state 1, X = 0) is an exact fixed point.

Alternative structures (:mod:`pkpd.structures`, chosen in ``models/structures.toml`` or by
``pkpd.model(name, structure={...})``) change three of these equations and add a state each:

- ``post_course = two_pool``: state ``volume_transient`` Ht (0 at baseline), the VEGF-fed part of
  the volume, Ht' = g_vegf (V - 1) - k_volume_transient Ht, and H' gains
  - (k_volume_transient - k_volume) Ht, so H stays the total volume and its VEGF part decays at
  its own rate (k_volume_transient = k_volume is the one-pool model exactly);
- ``tbs = two_threshold``: state ``threshold_slow`` theta_s (1 at baseline),
  theta_s' = k_theta_up u (theta_max - theta_s) - k_theta_slow (theta_s - 1), and the BCM rule
  compares a with theta + w_theta_slow (theta_s - 1) (w_theta_slow = 0: one threshold);
- ``clinical = per_family``: X relaxes at k_clinical x ``clinical_rate_ratio`` of the modality
  family (from its driver card; ketamine, the reference family, has none: ratio 1).

Why these forms: indirect-response (turnover) models for BDNF, TrkB and mTOR (DESIGN.md:
BDNF -> TrkB -> mTOR -> synapse formation); spine formation proportional to existing dendrite so
that density stays positive, with slow elimination carrying persistence (Shao 2021: spines
raised at 1 month after one psilocybin dose); a two-stage maturation chain for adult-born
neurons (Zhao 2006: ~4 weeks); a sliding threshold so that protocol length, spacing and
priming can flip the sign of stimulation-induced plasticity (Gamboa 2010; Yu 2020); consolidated
efficacy accumulates early changes at a rate set by synaptic protein synthesis, with soft bounds
R(C) = (Emax - C)/(Emax - 1) for potentiation and (C - Emin)/(1 - Emin) for depression, so it stays
between the early efficacy's bounds and decays over about a week. Parameter
values and their sources are in ``models/core.toml``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from . import structures
from .model import Model, check_parameter

CORE_STATES: tuple[str, ...] = (
    "bdnf",
    "trkb",
    "mtor",
    "protein",
    "spine_density",
    "proliferation",
    "immature_1",
    "immature_2",
    "vegf",
    "hippocampal_volume",
    "efficacy_early",
    "efficacy_consolidated",
    "threshold",
    "clinical",
)
#: Readouts of the core (all relative to baseline).
CORE_READOUTS: tuple[str, ...] = (
    "bdnf",
    "trkb",
    "mtor",
    "spine_density",
    "neurogenesis",
    "hippocampal_volume",
    "synaptic_efficacy",
    "symptom_score",
)
CORE_PARAMETERS: tuple[str, ...] = (
    "k_bdnf",
    "k_trkb",
    "k_mtor",
    "n_mtor",
    "k_protein",
    "k_spine_form",
    "n_spine",
    "k_spine_elim",
    "spine_capacity",
    "k_prolif",
    "n_neuro",
    "k_mature",
    "k_vegf",
    "k_volume",
    "g_vegf",
    "g_neuro",
    "eta",
    "efficacy_max",
    "efficacy_min",
    "k_early",
    "k_consolidate",
    "k_consolidated",
    "e_bc",
    "k_theta_up",
    "k_theta_down",
    "theta_max",
    "k_clinical",
    "g_spine",
    "g_efficacy",
)
#: Parameters of the alternative structures (:mod:`pkpd.structures`): set when the structure uses
#: them, ``None`` otherwise. ``clinical_rate_ratio`` comes from the modality family's driver card.
STRUCTURE_PARAMETERS: dict[str, tuple[str, str]] = {
    "k_volume_transient": ("post_course", "two_pool"),
    "w_theta_slow": ("tbs", "two_threshold"),
    "k_theta_slow": ("tbs", "two_threshold"),
    "clinical_rate_ratio": ("clinical", "per_family"),
}
#: States an alternative structure adds to the core (after :data:`CORE_STATES`), with their baselines.
STRUCTURE_STATES: dict[tuple[str, str], tuple[str, float]] = {
    ("post_course", "two_pool"): ("volume_transient", 0.0),
    ("tbs", "two_threshold"): ("threshold_slow", 1.0),
}
#: The reference structure (every item at its first candidate): the equations in the table above.
REFERENCE: structures.Structure = tuple(sorted((item, c[0]) for item, c in structures.IMPLEMENTED.items()))


class Signals(NamedTuple):
    """Dimensionless inputs from a driver to the core (all zero at baseline)."""

    bdnf_drive: jax.Array | float = 0.0
    trkb_potentiation: jax.Array | float = 0.0
    mtor_drive: jax.Array | float = 0.0
    neurogenesis_drive: jax.Array | float = 0.0
    vegf_drive: jax.Array | float = 0.0
    activity: jax.Array | float = 0.0
    threshold_drive: jax.Array | float = 0.0


def smooth_positive(x, eps: float = 0.01):
    """A continuously differentiable positive part: x^2 / (x + eps) for x > 0, else 0.

    Exactly 0 for x <= 0 (so baselines stay exact fixed points) and within ``eps`` of x above."""
    xp = jnp.maximum(x, 0.0)
    return xp * xp / (xp + eps)


class PlasticityCore(eqx.Module):
    """Parameters of the shared plasticity core (rates in 1/h, gains and exponents dimensionless)."""

    k_bdnf: float
    k_trkb: float
    k_mtor: float
    n_mtor: float
    k_protein: float
    k_spine_form: float
    n_spine: float
    k_spine_elim: float
    spine_capacity: float
    k_prolif: float
    n_neuro: float
    k_mature: float
    k_vegf: float
    k_volume: float
    g_vegf: float
    g_neuro: float
    eta: float
    efficacy_max: float
    efficacy_min: float
    k_early: float
    k_consolidate: float
    k_consolidated: float
    e_bc: float
    k_theta_up: float
    k_theta_down: float
    theta_max: float
    k_clinical: float
    g_spine: float
    g_efficacy: float
    #: which candidate of each item (:mod:`pkpd.structures`) the equations use
    structure: structures.Structure = eqx.field(static=True, default=REFERENCE)
    k_volume_transient: float | None = None
    w_theta_slow: float | None = None
    k_theta_slow: float | None = None
    clinical_rate_ratio: float | None = None

    def __check_init__(self):
        for name in CORE_PARAMETERS:
            nonneg = name.startswith(("g_", "e_", "n_")) or name in ("eta", "k_consolidate", "k_spine_form")
            lo = 1.0 if name in ("spine_capacity", "efficacy_max") else 0.0
            hi = 1.0 if name == "efficacy_min" else None
            check_parameter("PlasticityCore", name, getattr(self, name), lo=lo, lo_open=not nonneg, hi=hi, hi_open=True)
        structures.resolve(self.structure)
        for name, (item, cand) in STRUCTURE_PARAMETERS.items():
            used, value = structures.choice(self.structure, item) == cand, getattr(self, name)
            if value is None:
                if used and name != "clinical_rate_ratio":  # the reference family has no ratio (1)
                    raise ValueError(f"PlasticityCore: structure {item}={cand} needs {name}")
                continue
            if not used:
                raise ValueError(f"PlasticityCore: {name}={value!r} is set but structure {item} is not {cand}")
            check_parameter("PlasticityCore", name, value, lo_open=name != "w_theta_slow")

    @property
    def state_names(self) -> tuple[str, ...]:
        return CORE_STATES + tuple(st for key, (st, _) in STRUCTURE_STATES.items() if key in self.structure)

    def initial_state(self):
        base = jnp.ones(len(CORE_STATES)).at[CORE_STATES.index("clinical")].set(0.0)
        extra = [b for key, (_, b) in STRUCTURE_STATES.items() if key in self.structure]
        return jnp.concatenate([base, jnp.asarray(extra, dtype=base.dtype)])

    def _has(self, item: str, candidate: str) -> bool:
        return (item, candidate) in self.structure

    def vector_field(self, y, s: Signals):
        """The core's derivatives (per hour) at state ``y`` with driver signals ``s``."""
        b, t, m, pr, sp, npro, i1, i2, v, h, e, c, th, x = (y[i] for i in range(len(CORE_STATES)))
        extra = dict(zip(self.state_names[len(CORE_STATES) :], y[len(CORE_STATES) :], strict=True))
        db = self.k_bdnf * (1.0 + s.bdnf_drive + self.e_bc * smooth_positive(c - 1.0) - b)
        dt = self.k_trkb * (b * (1.0 + s.trkb_potentiation) - t)
        dm = self.k_mtor * (t**self.n_mtor * (1.0 + s.mtor_drive) - m)
        dpr = self.k_protein * (m - pr)
        drive = pr**self.n_spine - 1.0
        room = (self.spine_capacity - sp) / (self.spine_capacity - 1.0)
        dsp = self.k_spine_elim * (1.0 - sp) + self.k_spine_form * (
            smooth_positive(drive) * room - smooth_positive(-drive) * sp
        )
        dnp = self.k_prolif * (t**self.n_neuro * (1.0 + s.neurogenesis_drive) - npro)
        di1 = self.k_mature * (npro - i1)
        di2 = self.k_mature * (i1 - i2)
        dv = self.k_vegf * (1.0 + s.vegf_drive - v)
        dh = self.k_volume * (1.0 - h) + self.g_vegf * (v - 1.0) + self.g_neuro * (i2 - 1.0)
        d_extra = {}
        if self._has("post_course", "two_pool"):
            # H stays the total volume; its VEGF-fed part Ht decays at its own rate
            ht = extra["volume_transient"]
            d_extra["volume_transient"] = self.g_vegf * (v - 1.0) - self.k_volume_transient * ht
            dh = dh - (self.k_volume_transient - self.k_volume) * ht
        a = s.activity
        theta = th
        if self._has("tbs", "two_threshold"):  # a slow threshold component adds to the fast one
            ths = extra["threshold_slow"]
            theta = th + self.w_theta_slow * (ths - 1.0)
            d_extra["threshold_slow"] = self.k_theta_up * s.threshold_drive * (
                self.theta_max - ths
            ) - self.k_theta_slow * (ths - 1.0)
        # LTP (a > theta) saturates towards efficacy_max, LTD towards efficacy_min (soft bounds).
        bcm = self.eta * a * (a - theta)
        de = bcm * jnp.where(bcm > 0, self.efficacy_max - e, e - self.efficacy_min) - self.k_early * (e - 1.0)
        # Consolidation accumulates early changes (scaled by protein synthesis) with soft bounds at
        # the early efficacy's limits; without stimulation C decays to 1 at k_consolidated.
        d = e - 1.0
        room_c = jnp.where(
            d > 0,
            (self.efficacy_max - c) / (self.efficacy_max - 1.0),
            (c - self.efficacy_min) / (1.0 - self.efficacy_min),
        )
        dc = self.k_consolidate * pr * d * room_c - self.k_consolidated * (c - 1.0)
        dth = self.k_theta_up * s.threshold_drive * (self.theta_max - th) - self.k_theta_down * (th - 1.0)
        k_x = self.k_clinical if self.clinical_rate_ratio is None else self.k_clinical * self.clinical_rate_ratio
        dx = k_x * (self.g_spine * (sp - 1.0) + self.g_efficacy * (c - 1.0) - x)
        core = [db, dt, dm, dpr, dsp, dnp, di1, di2, dv, dh, de, dc, dth, dx]
        return jnp.stack(core + [d_extra[n] for n in self.state_names[len(CORE_STATES) :]])

    def readouts(self, ys) -> dict[str, jax.Array]:
        names = self.state_names
        g = lambda n: ys[..., names.index(n)]  # noqa: E731
        return {
            "bdnf": g("bdnf"),
            "trkb": g("trkb"),
            "mtor": g("mtor"),
            "spine_density": g("spine_density"),
            "neurogenesis": 0.5 * (g("immature_1") + g("immature_2")),
            "hippocampal_volume": g("hippocampal_volume"),
            "synaptic_efficacy": g("efficacy_early") * g("efficacy_consolidated"),
            "synaptic_efficacy_early": g("efficacy_early"),
            "synaptic_efficacy_consolidated": g("efficacy_consolidated"),
            "symptom_score": 1.0 - g("clinical"),
        }


class PlasticityModel(Model):
    """A modality driver composed with the shared plasticity core: one :class:`pkpd.model.Model`.

    States are the driver's (PK compartments, adaptation, seizure, ...) followed by the core's;
    outputs are the driver's (``concentration``, ``occupancy``, ...) and the core readouts.
    ``modality`` and ``species`` record which model cards the values came from
    (:func:`pkpd.citation`).
    """

    driver: eqx.Module
    core: PlasticityCore
    modality: str = eqx.field(static=True, default="")
    species: str = eqx.field(static=True, default="human")

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.driver.state_names) + self.core.state_names

    @property
    def dose_unit(self) -> str:  # type: ignore[override]
        return self.driver.dose_unit

    @property
    def units(self) -> dict[str, str]:  # type: ignore[override]
        return {
            **self.driver.units,
            **{n: "relative to baseline" for n in CORE_READOUTS + self.core.state_names},
            "volume_transient": "fraction of baseline volume (0 at baseline)",
            "clinical": "fraction of baseline score",
            "symptom_score": "relative to baseline",
        }

    def _split(self, y):
        n = len(self.driver.state_names)
        return y[..., :n], y[..., n:]

    def initial_state(self):
        return jnp.concatenate([self.driver.initial_state(), self.core.initial_state()])

    def lag(self, route):
        return self.driver.lag(route)

    def accepts_route(self, route):
        return self.driver.accepts_route(route)

    def dose(self, y, amounts):
        yd, yc = self._split(y)
        return jnp.concatenate([self.driver.dose(yd, amounts), yc])

    def session_onset(self, y, session):
        yd, yc = self._split(y)
        return jnp.concatenate([self.driver.session_onset(yd, session), yc])

    def vector_field(self, t, y, rates, session):
        yd, yc = self._split(y)
        signals = self.driver.signals(yd, session)
        return jnp.concatenate([self.driver.vector_field(yd, rates, session), self.core.vector_field(yc, signals)])

    def steady_state(self, y, bolus, rates, duration, ii, lag):
        yd, yc = self._split(y)
        return jnp.concatenate([self.driver.steady_state(yd, bolus, rates, duration, ii, lag), yc])

    def outputs(self, ys):
        yd, yc = self._split(ys)
        return {**self.driver.outputs(yd), **self.core.readouts(yc)}

    def describe(self) -> str:
        return f"PlasticityModel({self.modality!r}, species={self.species!r}, driver={type(self.driver).__name__})"
