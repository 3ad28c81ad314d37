"""Standard treatment protocols by name.

``pkpd.protocols()`` lists them; ``pkpd.protocol(name, **options)`` builds the schedule. Every
modality name is also a protocol name (its standard protocol). Options common to all: drugs take
``doses=N`` (number of doses) and ``dose=`` (amount in the protocol's unit); devices take
``sessions=N`` (total sessions, e.g. ``pkpd.protocol("itbs", sessions=1)``). Rodent protocols:
``species="mouse"`` or ``"rat"`` (per-kg doses, i.p.).

Sources of the standard settings (stated in the papers' text):
- psilocybin 25 mg oral (Holze 2023; Brown 2017: "25 mg should approximate ... 0.3 mg/kg");
  mouse 1 mg/kg i.p. (Shao 2021)
- LSD 100 ug oral (Dolder 2017); DMT 20 mg IV bolus (assumed typical: Strassman 1994 used
  0.05-0.4 mg/kg IV)
- ketamine 0.5 mg/kg IV over 40 min (Zarate 2006; Berman 2000); repeated 2 or 3 times a week
  (Singh 2016); mouse/rat 10 mg/kg i.p.
- fluoxetine 20 mg, escitalopram 10 mg, sertraline 50 mg once daily (minimum therapeutic doses,
  Meyer 2004)
- 10 Hz rTMS: 3000 pulses in 75 trains of 4 s with 26 s gaps (37.5 min), 120 % MT, 5/week
  for 6 weeks (O'Reardon 2007); 1 Hz rTMS: 1200 pulses (20 min)
- iTBS: 600 pulses in 190 s (Huang 2005), 5/week, 6 weeks (Blumberger 2018); cTBS: 600 pulses
  in 40 s (Huang 2005)
- accelerated iTBS (SAINT): 1800 pulses a session, 10 sessions a day 50 min apart, 5 days
  (Cole 2020)
- ECT: 3 sessions a week, up to 12 sessions (option 2 a week); MST likewise

Combination protocols (:data:`COMBINATIONS`, e.g. ``pkpd.protocol("psilocybin+therapy")``) are a
standard treatment protocol plus training or therapy sessions (:meth:`Schedule.training_course`):
``training_delay_h`` (first session, h after the first dose or device session),
``training_sessions``, ``training_interval_h`` (between session starts) and
``training_duration_h``; every other option goes to the treatment protocol. Their default
training patterns are typical of the combination trials named in each description, not
measurements: the delay and spacing are what :func:`pkpd.optimise_schedule` varies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ._units import check_finite
from .schedule import Schedule, _whole

#: Human protocols whose ``dose`` option is in mg/kg (scheduled in mg with ``body_weight_kg``).
PER_KG_HUMAN = ("ketamine",)

BODY_WEIGHT_KG = 70.0


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    build: Callable[..., Schedule]


def _drug(
    name,
    human_amount,
    human_unit,
    human_route,
    rodent_amount=None,
    rodent_route="ip",
    *,
    interval_h=24.0,
    default_doses=1,
    infusion_h=0.0,
    per_kg_human=False,
):
    def build(
        species="human",
        doses=None,
        dose=None,
        interval_h=interval_h,
        body_weight_kg=BODY_WEIGHT_KG,
        loading_dose=None,
        per_week=None,
        weeks=None,
        route=None,
    ):
        human = species == "human"
        if species not in ("human", "mouse", "rat"):
            raise ValueError(f"species={species!r} is not known; valid: ['human', 'mouse', 'rat']")
        if not human and rodent_amount is None:
            raise ValueError(f"protocol {name!r} has no rodent version")
        n = default_doses if doses is None else _whole("doses", doses)
        if per_week is not None:  # e.g. ketamine 2 or 3 times a week
            per_week = _whole("per_week", per_week)
            if per_week > 7:
                raise ValueError(f"per_week={per_week} must be <= 7")
            w = _whole("weeks", weeks if weeks is not None else max(1, -(-n // per_week)))
            days = [wk * 7 + int(i * 7 / per_week) for wk in range(w) for i in range(per_week)]
            if doses is not None and n > len(days):
                raise ValueError(f"doses={n} do not fit in {w} week(s) at {per_week} per week")
            times = [24.0 * d for d in days][: (n if doses is not None else len(days))]
        else:
            interval = check_finite("interval_h", interval_h, lo=0.0, lo_open=True)
            if weeks is not None:
                if doses is not None:
                    raise ValueError("give doses or weeks, not both")
                n = max(1, int(round(_whole("weeks", weeks) * 168.0 / interval)))
            times = [i * interval for i in range(n)]
        bw = check_finite("body_weight_kg", body_weight_kg, lo=0.0, lo_open=True)
        if dose is None:
            amount = human_amount if human else rodent_amount
        else:
            amount = check_finite("dose", dose, lo=0.0)
        if human and per_kg_human:  # dose given in mg/kg (e.g. ketamine 0.5 mg/kg), scheduled in mg
            amount = amount * bw
        unit = human_unit if human else "mg/kg"
        default_route = human_route if human else rodent_route
        route = default_route if route is None else route
        amounts = [amount] * len(times)
        if loading_dose is not None:
            amounts[0] = check_finite("loading_dose", loading_dose, lo=0.0)
        if route == "infusion" and infusion_h <= 0:
            raise ValueError(f"protocol {name!r} has no infusion duration; give route='iv' or an oral route")
        dur = infusion_h if route == "infusion" else 0.0
        return Schedule.doses(times, amounts, route, duration=dur, unit=unit, label=f"{name} ({species})")

    return build


def _device(
    name,
    *,
    pattern,
    pulses,
    duration_min,
    frequency_hz=0.0,
    intensity,
    per_day=1,
    days_per_week=5,
    weeks=6,
    gap_min=50.0,
    max_sessions=None,
):
    def build(
        species="human",
        sessions=None,
        per_day=per_day,
        days_per_week=days_per_week,
        weeks=weeks,
        gap_min=gap_min,
        pulses=pulses,
        duration_min=duration_min,
        intensity=intensity,
        per_week=None,
        placement=None,
        frequency_hz=frequency_hz,
    ):
        if species != "human":
            raise ValueError(f"protocol {name!r} is defined for humans; got species={species!r}")
        if per_week is not None:
            days_per_week = per_week
        if placement is not None:
            if pattern != "ect":
                raise ValueError(f"placement is an ECT option; protocol {name!r} has none")
            if placement not in ("rul", "bl", "bf"):
                raise ValueError(f"placement={placement!r} is not known; valid: 'rul', 'bl', 'bf'")
            # Electrode placement scales the seizure impulse (models/drivers/seizure.toml).
            from . import cards

            intensity = intensity * cards.load("driver", "seizure").get(f"placement_{placement}", "all").value
        if sessions is not None:
            total = _whole("sessions", sessions)
        elif max_sessions is not None:
            total = max_sessions  # e.g. ECT: 12 sessions whether given 2 or 3 times a week
        else:
            total = per_day * days_per_week * weeks
        weeks = max(weeks, -(-total // (per_day * days_per_week)))
        return Schedule.sessions(
            per_day=per_day,
            days_per_week=days_per_week,
            weeks=weeks,
            gap=gap_min,
            duration=duration_min,
            pulses=pulses,
            frequency_hz=frequency_hz,
            pattern=pattern,
            intensity=intensity,
            n=total,
            label=f"{name}",
        )

    return build


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol(
            "psilocybin",
            "psilocybin 25 mg oral once (mouse: 1 mg/kg i.p.)",
            _drug("psilocybin", 25.0, "mg", "oral", 1.0, interval_h=168.0),
        ),
        Protocol("lsd", "LSD 100 ug oral once", _drug("lsd", 100.0, "ug", "oral", interval_h=168.0)),
        Protocol("dmt", "DMT 20 mg IV bolus once", _drug("dmt", 20.0, "mg", "iv", interval_h=168.0)),
        Protocol(
            "ketamine",
            "ketamine 0.5 mg/kg IV over 40 min once (per_week=2|3 for repeated; rodent 10 mg/kg i.p.)",
            _drug("ketamine", 0.5, "mg", "infusion", 10.0, infusion_h=40.0 / 60.0, per_kg_human=True, interval_h=84.0),
        ),
        Protocol(
            "fluoxetine",
            "fluoxetine 20 mg oral once daily for 12 weeks (rodent 10 mg/kg/day i.p.)",
            _drug("fluoxetine", 20.0, "mg", "oral", 10.0, default_doses=84),
        ),
        Protocol(
            "escitalopram",
            "escitalopram 10 mg oral once daily for 12 weeks",
            _drug("escitalopram", 10.0, "mg", "oral", default_doses=84),
        ),
        Protocol(
            "sertraline",
            "sertraline 50 mg oral once daily for 12 weeks",
            _drug("sertraline", 50.0, "mg", "oral", default_doses=84),
        ),
        Protocol(
            "rtms_10hz",
            "10 Hz rTMS, 3000 pulses (37.5 min) at 120 % MT, 5/week for 6 weeks",
            _device("rtms_10hz", pattern="rtms", frequency_hz=10.0, pulses=3000, duration_min=37.5, intensity=1.2),
        ),
        Protocol(
            "rtms_1hz",
            "1 Hz rTMS, 1200 pulses (20 min) at 120 % MT, 5/week for 6 weeks",
            _device("rtms_1hz", pattern="rtms", frequency_hz=1.0, pulses=1200, duration_min=20.0, intensity=1.2),
        ),
        Protocol(
            "itbs",
            "iTBS 600 pulses (190 s) at 80 % AMT, 5/week for 6 weeks",
            _device("itbs", pattern="itbs", pulses=600, duration_min=190.0 / 60.0, intensity=0.8),
        ),
        Protocol(
            "ctbs",
            "cTBS 600 pulses (40 s) at 80 % AMT, 5/week for 6 weeks",
            _device("ctbs", pattern="ctbs", pulses=600, duration_min=40.0 / 60.0, intensity=0.8),
        ),
        Protocol(
            "accelerated_itbs",
            "SAINT: iTBS 1800 pulses (~10 min), 10 sessions/day 50 min apart, 5 days",
            _device(
                "accelerated_itbs",
                pattern="itbs",
                pulses=1800,
                duration_min=9.5,
                intensity=0.8,
                per_day=10,
                days_per_week=5,
                weeks=1,
                gap_min=50.0,
            ),
        ),
        Protocol(
            "ect",
            "ECT 3 sessions/week, 12 sessions (per_week=2 for twice weekly)",
            _device(
                "ect",
                pattern="ect",
                pulses=0,
                duration_min=1.0,
                intensity=1.0,
                days_per_week=3,
                weeks=4,
                max_sessions=12,
            ),
        ),
        Protocol(
            "mst",
            "MST 3 sessions/week, 12 sessions",
            _device(
                "mst",
                pattern="mst",
                pulses=0,
                duration_min=1.0,
                intensity=1.0,
                days_per_week=3,
                weeks=4,
                max_sessions=12,
            ),
        ),
    ]
}


@dataclass(frozen=True)
class Combination:
    """A treatment protocol plus a course of training sessions (see the module docstring)."""

    name: str
    treatment: str
    description: str
    training_delay_h: float
    training_sessions: int
    training_interval_h: float
    training_duration_h: float = 1.0

    def build(self, **options) -> Schedule:
        training = {k: options.pop(k) for k in TRAINING_OPTIONS if k in options}
        t = {k: training.get(k, getattr(self, k)) for k in TRAINING_OPTIONS}
        course = Schedule.training_course(
            _whole("training_sessions", t["training_sessions"]),
            first_at=check_finite("training_delay_h", t["training_delay_h"], lo=0.0),
            interval=check_finite("training_interval_h", t["training_interval_h"], lo=0.0),
            duration=check_finite("training_duration_h", t["training_duration_h"], lo=0.0, lo_open=True),
        )
        treatment = protocol(self.treatment, **options)
        return dataclasses.replace(treatment + course, label=f"{self.name} ({treatment.label})")


#: Options of a combination protocol that set its training course.
TRAINING_OPTIONS = ("training_delay_h", "training_sessions", "training_interval_h", "training_duration_h")

#: Named combination regimens (treatment + training); see the module docstring.
COMBINATIONS: dict[str, Combination] = {
    c.name: c
    for c in [
        Combination(
            "psilocybin+therapy",
            "psilocybin",
            "psilocybin 25 mg once + 3 one-hour therapy sessions, the first 24 h after dosing, then weekly "
            "(integration sessions as in psilocybin trials with psychological support)",
            24.0,
            3,
            168.0,
        ),
        Combination(
            "ketamine+cbt",
            "ketamine",
            "ketamine 0.5 mg/kg IV once + 8 weekly one-hour CBT sessions, the first 24 h after the infusion",
            24.0,
            8,
            168.0,
        ),
        Combination(
            "itbs+training",
            "itbs",
            "iTBS standard course (30 sessions, 5/week, 6 weeks) + 42 daily one-hour training sessions "
            "starting 1 h after the first iTBS session",
            1.0,
            42,
            24.0,
        ),
        Combination(
            "fluoxetine+training",
            "fluoxetine",
            "fluoxetine 20 mg daily for 12 weeks + 84 daily one-hour training sessions from day 1 "
            "(rehabilitation on an SSRI)",
            2.0,
            84,
            24.0,
        ),
    ]
}


def protocols() -> dict[str, str]:
    """Protocol names with a one-line description (standard protocols, then combinations)."""
    return {
        **{name: p.description for name, p in PROTOCOLS.items()},
        **{n: c.description for n, c in COMBINATIONS.items()},
    }


def protocol(name: str, **options) -> Schedule:
    """Build a standard or combination protocol's schedule; see the module docstring for the options."""
    if isinstance(name, str) and name in COMBINATIONS:
        return COMBINATIONS[name].build(**options)
    if not isinstance(name, str) or name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; valid: {list(PROTOCOLS) + list(COMBINATIONS)}")
    import inspect

    valid = list(inspect.signature(PROTOCOLS[name].build).parameters)
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise TypeError(f"protocol {name!r}: unknown option(s) {unknown}; valid options: {valid}")
    return PROTOCOLS[name].build(**options)
