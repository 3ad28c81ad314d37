"""Parameter addressing: get, set and transform a model's parameters by name.

A :class:`pkpd.plasticity.PlasticityModel` keeps its parameters in three places: the shared
plasticity core (``model.core``), the modality driver (``model.driver``) and, for drugs, the
driver's pharmacokinetics (``model.driver.pk``). A parameter is addressed by its model-card name
(``"k_spine_form"``, ``"ec50"``, ``"cl"``); :func:`where` finds the place that holds it, looking in
that order, and the other functions build on it. Everything returns new models (``eqx.tree_at``);
values may be JAX tracers, so :func:`replace` passes through ``jit``, ``vmap`` and ``grad``.

Fitting works in an unconstrained space: each parameter has a transform (:data:`TRANSFORMS`)
from its prior (:func:`prior_transform`): ``"log"`` for lognormal priors, ``"logit"`` for beta
priors, ``"identity"`` for normal priors. :func:`to_natural` and :func:`to_unconstrained` map
between the spaces.

Used by :mod:`pkpd.fit`, :mod:`pkpd.calibrate` and :mod:`pkpd.design`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

#: Transforms from the unconstrained (fitted) space to natural units.
TRANSFORMS = ("log", "logit", "identity")

#: Where a parameter may live inside a model, searched in this order.
_PLACES: tuple[Callable, ...] = (lambda m: m.core, lambda m: m.driver, lambda m: m.driver.pk)


def where(model, name: str) -> Callable | None:
    """The getter ``m -> value`` of parameter ``name`` inside ``model`` (core, then driver, then
    the driver's PK), or ``None`` when no part of the model has a field ``name`` set (not
    ``None``). The getter is what ``eqx.tree_at`` takes."""
    for place in _PLACES:
        try:
            obj = place(model)
        except AttributeError:
            continue
        fields = getattr(obj, "__dataclass_fields__", {})
        if name in fields and getattr(obj, name) is not None:
            return lambda m, place=place: getattr(place(m), name)
    return None


def has(model, name: str) -> bool:
    """Whether ``model`` has a parameter ``name`` (see :func:`where`)."""
    return where(model, name) is not None


def _getter(model, name: str) -> Callable:
    getter = where(model, name)
    if getter is None:
        raise KeyError(f"parameter {name!r} is not a parameter of the {getattr(model, 'modality', '')!r} model")
    return getter


def get(model, name: str):
    """The value of parameter ``name`` in ``model``; ``KeyError`` naming it if the model has none."""
    return _getter(model, name)(model)


def replace(model, names: Sequence[str], values: Sequence) -> object:
    """A copy of ``model`` with each parameter of ``names`` set to the matching entry of ``values``
    (as float64 arrays; tracers allowed). ``KeyError`` for a name the model does not have."""
    names = [names] if isinstance(names, str) else list(names)
    values = list(values)
    if len(names) != len(values):
        raise ValueError(f"replace: {len(names)} names {names} but {len(values)} values")
    getters = [_getter(model, n) for n in names]
    return eqx.tree_at(
        lambda m: tuple(g(m) for g in getters), model, tuple(jnp.asarray(v, dtype=jnp.float64) for v in values)
    )


def set(model, name: str, value) -> object:
    """A copy of ``model`` with parameter ``name`` set to ``value`` (the value as given, no cast)."""
    return eqx.tree_at(_getter(model, name), model, value)


def _check_transform(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise ValueError(f"transform={transform!r} is not known; valid: {list(TRANSFORMS)}")


def to_natural(transform: str, z):
    """Natural value of the unconstrained ``z``: ``exp(z)``, ``sigmoid(z)`` or ``z``."""
    _check_transform(transform)
    return {"log": jnp.exp, "logit": jax.nn.sigmoid, "identity": lambda x: x}[transform](z)


def to_unconstrained(transform: str, x):
    """Inverse of :func:`to_natural`: ``log(x)``, ``logit(x)`` or ``x``."""
    _check_transform(transform)
    if transform == "log":
        return jnp.log(x)
    if transform == "logit":
        return jnp.log(x) - jnp.log1p(-x)
    return x


def prior_transform(card: str, name: str, prior: dict) -> tuple[str, float, float]:
    """``(transform, mean, sd)`` of a model-card prior in the unconstrained space: a lognormal
    prior is Normal(log median, sigma) in log space; a beta prior (mean m, concentration c) its
    logit-normal moment match, Normal(logit m, 1 / sqrt(m (1 - m) (c + 1))); a normal prior as it
    is. ``ValueError`` (naming ``card.name``) for a prior that cannot be fitted."""
    d = prior.get("dist")
    if d == "lognormal":
        return "log", float(np.log(prior["median"])), float(prior["sigma"])
    if d == "beta":
        m, c = float(prior["mean"]), float(prior["concentration"])
        return "logit", float(np.log(m / (1 - m))), float(1.0 / np.sqrt(m * (1 - m) * (c + 1)))
    if d == "normal":
        return "identity", float(prior["mean"]), float(prior["sd"])
    raise ValueError(f"{card}.{name}: a {d} prior cannot be fitted (e.g. lag times are static)")


__all__ = [
    "TRANSFORMS",
    "get",
    "has",
    "prior_transform",
    "replace",
    "set",
    "to_natural",
    "to_unconstrained",
    "where",
]
