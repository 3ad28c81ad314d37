"""Model structures: named candidate forms of four parts of the model, chosen by name.

``models/structures.toml`` declares the items (``post_course``, ``tbs``, ``ssri``, ``clinical``),
their candidates, the parameters each candidate adds (``card.name``; the provenance is in that
model card) and the default of each item. ``pkpd.model(name, structure={"ssri": "two_stage"})``
picks another; :func:`resolve` completes a partial choice with the defaults and validates it. The
equations live in the code (:mod:`pkpd.plasticity`, :mod:`pkpd.modalities.ssri`); the card may name
only the candidates of :data:`IMPLEMENTED`.

A structure travels through the model as a :data:`Structure`: a sorted tuple of ``(item,
candidate)`` pairs, hashable, so that it is a static field of the modules that branch on it.
"""

from __future__ import annotations

import functools
import tomllib

from ._paths import models_dir

#: Candidates the code implements per item; the first is the reference every other one reduces to.
IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "post_course": ("one_pool", "two_pool"),
    "tbs": ("one_threshold", "two_threshold"),
    "ssri": ("one_stage", "two_stage"),
    "clinical": ("shared", "per_family"),
}

Structure = tuple[tuple[str, str], ...]


@functools.cache
def catalogue() -> dict:
    """The parsed ``models/structures.toml``: ``{item: {"description", "default", "candidates":
    {name: {"description", "parameters", "limit"}}}}``, validated against :data:`IMPLEMENTED`."""
    path = models_dir() / "structures.toml"
    with open(path, "rb") as fh:
        raw = tomllib.load(fh).get("structures", {})
    if set(raw) != set(IMPLEMENTED):
        raise ValueError(f"{path.name}: items {sorted(raw)} differ from the implemented {sorted(IMPLEMENTED)}")
    for item, table in raw.items():
        cands = table.get("candidates", {})
        unknown = sorted(set(cands) - set(IMPLEMENTED[item]))
        if unknown:
            raise ValueError(f"{path.name}: structures.{item}: candidates {unknown} are not implemented")
        if table.get("default") not in cands:
            raise ValueError(f"{path.name}: structures.{item}.default={table.get('default')!r} is not a candidate")
        for name, c in cands.items():
            for p in c.get("parameters", []):
                if p.count(".") != 1:
                    raise ValueError(f"{path.name}: structures.{item}.{name}: parameter {p!r} must be 'card.name'")
    return raw


def default() -> Structure:
    """The structure the cards ship: each item's ``default``."""
    return resolve(None)


def resolve(structure: dict | tuple | None) -> Structure:
    """The complete, validated structure: ``structure`` (``{item: candidate}``, a
    :data:`Structure`, or ``None``) with every missing item at its card default. ``ValueError``
    names an unknown item or candidate and the valid ones."""
    cat = catalogue()
    given = dict(structure or {})
    for item, cand in given.items():
        if item not in cat:
            raise ValueError(f"structure: unknown item {item!r}; valid: {sorted(cat)}")
        if cand not in cat[item]["candidates"]:
            raise ValueError(
                f"structure[{item!r}]={cand!r} is not a candidate; valid: {sorted(cat[item]['candidates'])}"
            )
    return tuple(sorted((item, given.get(item, cat[item]["default"])) for item in cat))


def choice(structure: Structure, item: str) -> str:
    """The candidate of ``item`` in ``structure``."""
    return dict(structure)[item]


def is_reference(structure: Structure, item: str) -> bool:
    """Whether ``item`` uses its reference candidate (the first of :data:`IMPLEMENTED`)."""
    return choice(structure, item) == IMPLEMENTED[item][0]


def parameters(structure: Structure) -> list[tuple[str, str]]:
    """``(card, name)`` of every parameter the structure's candidates add."""
    cat = catalogue()
    out = []
    for item, cand in structure:
        for p in cat[item]["candidates"][cand].get("parameters", []):
            card, name = p.split(".")
            out.append((card, name))
    return out


def describe(structure: Structure) -> dict[str, str]:
    """``{item: candidate}`` (for JSON reports)."""
    return dict(structure)


__all__ = [
    "IMPLEMENTED",
    "Structure",
    "catalogue",
    "choice",
    "default",
    "describe",
    "is_reference",
    "parameters",
    "resolve",
]
