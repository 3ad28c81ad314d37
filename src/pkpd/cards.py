"""Model cards: parameter values, units, priors and sources, stored as TOML under ``models/``.

A card has a header table (``[drug]``, ``[device]`` or ``[core]``) and one table per parameter::

    [parameters.ka]
    description = "first-order absorption rate constant"
    [parameters.ka.human]            # or mouse, rat, or "all" for every species
    value = 0.5958
    unit = "1/h"
    prior = { dist = "lognormal", median = 0.5958, sigma = 0.5 }
    status = "derived"               # sourced | derived | assumed
    citation = "..."; doi = "..."; pmcid = ""; pmid = ""
    location = "abstract"; extraction = "text"; quote = "..."; note = "..."

Priors: ``lognormal`` (median, sigma of the log), ``beta`` (mean, concentration = a + b),
``halfnormal`` (scale), ``normal`` (mean, sd).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ._paths import models_dir

STATUSES = ("sourced", "derived", "assumed")
PRIORS = {
    "lognormal": ("median", "sigma"),
    "beta": ("mean", "concentration"),
    "halfnormal": ("scale",),
    "normal": ("mean", "sd"),
}
SPECIES = ("human", "mouse", "rat")


@dataclass(frozen=True)
class Parameter:
    """One parameter value for one species, with its unit, prior and provenance."""

    name: str
    value: float
    unit: str
    prior: dict
    status: str
    species: str
    card: str
    description: str = ""
    citation: str = ""
    doi: str = ""
    pmcid: str = ""
    pmid: str = ""
    location: str = ""
    extraction: str = ""
    quote: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def identifier(self) -> str:
        for label, v in (("doi", self.doi), ("PMCID", self.pmcid), ("PMID", self.pmid)):
            if v:
                return f"{label}:{v}" if label != "doi" else f"doi:{v}"
        return ""


@dataclass(frozen=True)
class Card:
    """A parsed model card: its header and parameters by name and species."""

    path: Path
    kind: str
    header: dict
    parameters: dict  # name -> {species: Parameter}

    @property
    def name(self) -> str:
        return self.header.get("name", self.path.stem)

    def species(self) -> tuple[str, ...]:
        found = {s for by in self.parameters.values() for s in by}
        return tuple(s for s in SPECIES if s in found or "all" in found)

    def get(self, name: str, species: str) -> Parameter:
        if name not in self.parameters:
            raise KeyError(f"card {self.name!r} has no parameter {name!r}; it has {sorted(self.parameters)}")
        by = self.parameters[name]
        if species in by:
            return by[species]
        if "all" in by:
            return by["all"]
        raise KeyError(f"card {self.name!r} has no value of {name!r} for species {species!r}; it has {sorted(by)}")

    def values(self, species: str, names=None) -> dict[str, float]:
        names = self.parameters if names is None else names
        return {n: self.get(n, species).value for n in names}


def _validate_prior(where: str, prior) -> dict:
    if not isinstance(prior, dict) or prior.get("dist") not in PRIORS:
        raise ValueError(f"{where}: prior {prior!r} must be a table with dist in {sorted(PRIORS)}")
    for key in PRIORS[prior["dist"]]:
        if key not in prior:
            raise ValueError(f"{where}: {prior['dist']} prior needs {key!r}")
        v = float(prior[key])
        if key in ("sigma", "concentration", "scale", "sd") and not v > 0:
            raise ValueError(f"{where}: prior {key}={v!r} must be > 0")
    return dict(prior)


@functools.cache
def load_card(path: str | Path) -> Card:
    """Parse and validate one card; ``ValueError`` names the file, the parameter and the problem."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from None
    kinds = [k for k in ("drug", "driver", "core", "window") if k in raw]
    if len(kinds) != 1:
        raise ValueError(
            f"{path}: a card needs exactly one header table [drug], [driver], [core] or [window]; found {kinds}"
        )
    kind = kinds[0]
    params: dict[str, dict[str, Parameter]] = {}
    for pname, table in raw.get("parameters", {}).items():
        desc = table.get("description", "")
        by_species = {}
        for sp, entry in table.items():
            if not isinstance(entry, dict):
                continue
            where = f"{path.name}: parameters.{pname}.{sp}"
            if sp not in SPECIES + ("all",):
                raise ValueError(f"{where}: unknown species {sp!r}; valid: {SPECIES + ('all',)}")
            for key in ("value", "unit", "prior", "status"):
                if key not in entry:
                    raise ValueError(f"{where}: missing {key!r}")
            status = entry["status"]
            if status not in STATUSES:
                raise ValueError(f"{where}: status {status!r} must be one of {STATUSES}")
            if status == "sourced" and not entry.get("citation"):
                raise ValueError(f"{where}: a sourced value needs a citation")
            if status == "sourced" and not entry.get("quote"):
                raise ValueError(f"{where}: a sourced value needs the quote it comes from")
            if status in ("assumed", "derived") and not entry.get("note"):
                raise ValueError(f"{where}: an {status} value needs a note with its reasoning or derivation")
            known = {
                "value",
                "unit",
                "prior",
                "status",
                "citation",
                "doi",
                "pmcid",
                "pmid",
                "location",
                "extraction",
                "quote",
                "note",
            }
            by_species[sp] = Parameter(
                name=pname,
                value=float(entry["value"]),
                unit=str(entry["unit"]),
                prior=_validate_prior(where, entry["prior"]),
                status=status,
                species=sp,
                card=path.stem,
                description=desc,
                **{k: str(entry.get(k, "")) for k in known - {"value", "unit", "prior", "status"}},
                extra={k: v for k, v in entry.items() if k not in known},
            )
        params[pname] = by_species
    return Card(path=path, kind=kind, header=dict(raw[kind]), parameters=params)


def card_path(kind: str, name: str) -> Path:
    folders = {"drug": "drugs", "driver": "drivers", "core": ".", "window": "."}
    if kind not in folders:
        raise KeyError(f"card kind={kind!r} is not known; valid: {list(folders)}")
    folder = folders[kind]
    return models_dir() / folder / f"{name}.toml"


def load(kind: str, name: str) -> Card:
    path = card_path(kind, name)
    if not path.exists():
        have = sorted(x.stem for x in path.parent.glob("*.toml"))
        raise KeyError(f"no {kind} card named {name!r} (looked for {path}); valid: {have}")
    return load_card(str(path))
