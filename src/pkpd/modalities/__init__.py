"""One driver per modality family, and the registry that builds models from model cards.

``pkpd.model(name, species=...)`` reads the drug card (``models/drugs/``, PK and target), the
driver card (``models/drivers/``, how the target or session drives plasticity) and the core card
(``models/core.toml``), and composes a :class:`pkpd.plasticity.PlasticityModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import cards, structures
from ..pk import OneCompartment, ParentMetabolite, TwoCompartment
from ..plasticity import CORE_PARAMETERS, STRUCTURE_PARAMETERS, PlasticityCore, PlasticityModel
from ._driver import Driver, DrugDriver, hill_occupancy
from .ketamine import KetamineDriver
from .psychedelic import PsychedelicDriver
from .seizure import SeizureDriver
from .ssri import SSRIDriver
from .stimulation import StimulationDriver


@dataclass(frozen=True)
class Modality:
    name: str
    family: str  # psychedelic | ketamine | ssri | stimulation | seizure
    drug: str | None  # drug card name, None for devices
    description: str


MODALITIES: dict[str, Modality] = {
    m.name: m
    for m in [
        Modality("psilocybin", "psychedelic", "psilocybin", "oral psilocybin (prodrug of psilocin)"),
        Modality("lsd", "psychedelic", "lsd", "oral LSD"),
        Modality("dmt", "psychedelic", "dmt", "intravenous DMT"),
        Modality("ketamine", "ketamine", "ketamine", "racemic ketamine, IV infusion (i.p. in rodents)"),
        Modality("fluoxetine", "ssri", "fluoxetine", "oral fluoxetine with norfluoxetine"),
        Modality("escitalopram", "ssri", "escitalopram", "oral escitalopram"),
        Modality("sertraline", "ssri", "sertraline", "oral sertraline"),
        Modality("rtms_10hz", "stimulation", None, "10 Hz rTMS"),
        Modality("rtms_1hz", "stimulation", None, "1 Hz rTMS"),
        Modality("itbs", "stimulation", None, "intermittent theta-burst stimulation"),
        Modality("ctbs", "stimulation", None, "continuous theta-burst stimulation"),
        Modality("accelerated_itbs", "stimulation", None, "accelerated iTBS (SAINT-like)"),
        Modality("ect", "seizure", None, "electroconvulsive therapy"),
        Modality("mst", "seizure", None, "magnetic seizure therapy"),
    ]
}

_DRIVERS = {
    "psychedelic": PsychedelicDriver,
    "ketamine": KetamineDriver,
    "ssri": SSRIDriver,
    "stimulation": StimulationDriver,
    "seizure": SeizureDriver,
}
_DRIVER_FIELDS = {
    "psychedelic": ("e_glu", "p_trkb", "kd_trkb"),
    "ketamine": ("e_glu", "e_mtor", "p_trkb", "kd_trkb"),
    "ssri": ("k_adapt", "e_bdnf", "e_neuro", "p_trkb", "kd_trkb"),
    "stimulation": (
        "a_itbs",
        "a_ctbs",
        "a_rtms_max",
        "f_half",
        "duty_itbs",
        "ref_intensity_rtms",
        "ref_intensity_tbs",
        "e_bdnf",
    ),
    "seizure": ("q_ect", "q_mst", "k_seizure", "e_bdnf", "e_vegf", "e_neuro"),
}


def modalities() -> list[str]:
    """Names of every modality ``pkpd.model`` can build."""
    return list(MODALITIES)


def get_modality(name: str) -> Modality:
    if not isinstance(name, str) or name not in MODALITIES:
        raise KeyError(f"unknown modality {name!r}; valid: {list(MODALITIES)}")
    return MODALITIES[name]


def _pk(card: cards.Card, species: str, used: list) -> tuple:
    structure = card.header.get("pk_structure", "")
    p = lambda n: _take(card, n, species, used)  # noqa: E731
    has = lambda n: n in card.parameters and (species in card.parameters[n] or "all" in card.parameters[n])  # noqa: E731
    oral = dict(ka=p("ka"), f=p("f"), lag=p("lag") if has("lag") else 0.0) if has("ka") else {}
    if structure == "oral_one_compartment":
        pk = OneCompartment(cl=p("cl"), v=p("v"), **oral)
    elif structure == "oral_one_compartment_metabolite":
        pk = ParentMetabolite(
            cl=p("cl"),
            v=p("v"),
            fm=p("fm"),
            cl_m=p("cl_m"),
            v_m=p("v_m"),
            mw_ratio=p("mw_ratio") if has("mw_ratio") else 1.0,
            **oral,
        )
    elif structure == "iv_two_compartment":
        pk = TwoCompartment(cl=p("cl"), v1=p("v1"), q=p("q"), v2=p("v2"), **oral)
    elif structure == "iv_one_compartment":
        pk = OneCompartment(cl=p("cl"), v=p("v"), **oral)
    else:
        raise ValueError(f"{card.path.name}: unknown pk_structure {structure!r}")
    scale = p("dose_to_active") if has("dose_to_active") else 1.0
    return pk, scale


def _take(card, name, species, used, overrides=None):
    if overrides and name in overrides:
        return overrides.pop(name)
    par = card.get(name, species)
    used.append(par)
    return par.value


def _structure_parameters(structure, family, core_card, driver_card, species, used, overrides):
    """Values of the parameters the structure's candidates add: core ones (:data:`STRUCTURE_PARAMETERS`)
    and the SSRI driver's ``k_transcription``; each from the card the structure names for it."""
    wanted = {name for card, name in structures.parameters(structure) if card in ("core", family)}
    take = lambda card, n: _take(card, n, species, used, overrides) if n in wanted else None  # noqa: E731
    core = {n: take(driver_card if n == "clinical_rate_ratio" else core_card, n) for n in STRUCTURE_PARAMETERS}
    driver = {}
    if family == "ssri":
        two = structures.choice(structure, "ssri") == "two_stage"
        driver = dict(two_stage=two, k_transcription=take(driver_card, "k_transcription"))
    return core, driver


def build(name: str, species: str = "human", *, structure=None, **overrides):
    """Build a modality's model and the list of :class:`pkpd.cards.Parameter` it runs on.

    ``structure``: candidate per item (``{"ssri": "two_stage"}``; :mod:`pkpd.structures`), missing
    items at the card defaults. ``overrides``: parameter values replacing the cards' (core, driver
    or drug parameters by name).
    """
    structure = structures.resolve(structure)
    mod = get_modality(name)
    if species not in cards.SPECIES:
        raise ValueError(f"species={species!r} is not known; valid: {list(cards.SPECIES)}")
    overrides = dict(overrides)
    used: list = []
    core_card = cards.load("core", "core")
    driver_card = cards.load("driver", mod.family)
    drug_card = cards.load("drug", mod.drug) if mod.drug else None
    if drug_card is not None and species not in drug_card.species():
        raise ValueError(f"no {species} parameters for {name}: its card has {list(drug_card.species())}")
    extra_core, extra_driver = _structure_parameters(
        structure, mod.family, core_card, driver_card, species, used, overrides
    )
    core = PlasticityCore(
        **{n: _take(core_card, n, species, used, overrides) for n in CORE_PARAMETERS},
        structure=structure,
        **extra_core,
    )
    fields = {n: _take(driver_card, n, species, used, overrides) for n in _DRIVER_FIELDS[mod.family]}
    fields.update(extra_driver)
    if drug_card is not None:
        for n in ("ka", "cl", "v", "f", "lag", "fm", "cl_m", "v_m", "v1", "q", "v2"):
            if n in overrides:
                raise ValueError(
                    f"override {n!r}: PK parameters come from the drug card; build the PK with "
                    "pkpd.pk and compose it with eqx.tree_at instead"
                )
        pk, scale = _pk(drug_card, species, used)
        target = {n: _take(drug_card, n, species, used, overrides) for n in ("ec50", "emax", "hill")}
        if mod.family == "ssri":
            has_m = "ec50_m" in drug_card.parameters
            target["ec50_m"] = _take(drug_card, "ec50_m", species, used, overrides) if has_m else 1.0
        driver = _DRIVERS[mod.family](
            pk=pk, dose_scale=scale, units_dose="mg" if species == "human" else "mg/kg", **target, **fields
        )
    else:
        driver = _DRIVERS[mod.family](**fields)
    if overrides:
        valid = sorted(
            CORE_PARAMETERS
            + tuple(n for _, n in structures.parameters(structure))
            + _DRIVER_FIELDS[mod.family]
            + (("ec50", "emax", "hill") + (("ec50_m",) if mod.family == "ssri" else ()) if mod.drug else ())
        )
        raise ValueError(f"unknown parameter override(s) {sorted(overrides)} for {name}; valid: {valid}")
    return PlasticityModel(driver=driver, core=core, modality=name, species=species), used


def model(name: str, species: str = "human", *, structure=None, **overrides) -> PlasticityModel:
    """The model of modality ``name`` for ``species`` (human, mouse, rat) with model-card values;
    ``structure`` picks candidate structures (:mod:`pkpd.structures`), ``overrides`` replace card
    values by parameter name (:func:`build`). The calibrated model is ``pkpd.model(name,
    calibrated=True)`` (:func:`pkpd.calibrate.model`).

    >>> m = pkpd.modalities.model("psilocybin", species="human")
    """
    return build(name, species, structure=structure, **overrides)[0]


def parameters(name: str, species: str = "human", *, structure=None):
    """A pandas DataFrame of every parameter the model runs on: value, unit, status, prior, source."""
    import pandas as pd

    _, used = build(name, species, structure=structure)
    return pd.DataFrame(
        [
            dict(
                parameter=p.name,
                card=p.card,
                species=p.species,
                value=p.value,
                unit=p.unit,
                status=p.status,
                prior=p.prior,
                citation=p.citation,
                identifier=p.identifier,
                location=p.location,
                extraction=p.extraction,
                quote=p.quote,
                note=p.note,
            )
            for p in used
        ]
    )


def citation(model_or_name, species: str | None = None) -> str:
    """The sources of every value a model runs on, grouped by reference, with DOI/PMCID/PMID;
    then the parameters that are assumed."""
    if isinstance(model_or_name, PlasticityModel):
        name, species, structure = model_or_name.modality, model_or_name.species, model_or_name.core.structure
    else:
        name, species, structure = model_or_name, species or "human", None
    _, used = build(name, species, structure=structure)
    by_ref: dict[tuple, list] = {}
    assumed = []
    for p in used:
        if p.status == "assumed":
            assumed.append(p)
        else:
            by_ref.setdefault((p.citation or "(derived, no single reference)", p.identifier), []).append(p)
    lines = [f"Sources of the parameter values of pkpd model {name!r} ({species}):", ""]
    for (ref, ident), ps in by_ref.items():
        lines.append(f"- {ref}" + (f" [{ident}]" if ident else ""))
        for p in ps:
            lines.append(f"    {p.card}.{p.name} = {p.value:g} {p.unit} ({p.status}; {p.location or 'see note'})")
    n = len(used)
    lines += ["", f"Assumed (no published value; wide priors) -- {len(assumed)} of {n}:"]
    lines += [f"    {p.card}.{p.name} = {p.value:g} {p.unit}: {p.note}" for p in assumed]
    return "\n".join(lines)


__all__ = [
    "Driver",
    "DrugDriver",
    "KetamineDriver",
    "MODALITIES",
    "PsychedelicDriver",
    "SSRIDriver",
    "SeizureDriver",
    "StimulationDriver",
    "build",
    "citation",
    "hill_occupancy",
    "model",
    "modalities",
    "parameters",
]
