"""Observation models: from simulated states to what a paper reported, and the summary-level likelihood.

:func:`prepare` turns published-curve rows (``pkpd.datasets()`` format) into an
:class:`ObservationSet`: the schedules to simulate (one per distinct study design), the save
times each needs, and for every usable row how to compute its prediction. Rows that cannot be
predicted are kept in ``excluded`` with the reason (e.g. an effect size without a control-arm
model, a serum BDNF value the model has no compartment for, protocol options that are free text).

Statistics (``readout``/``statistic`` -> prediction, in the row's unit):

- ``concentration``/``cmax``: maximum of the simulated concentration after the first dose (within
  24 h, or until the second dose) (ng/mL, ug/L or mg/L); ``tmax``: soft-argmax time of that
  maximum (h or min; differentiable);
  ``half_life``: terminal log-linear slope after the last dose, over the window in which the
  concentration under the model-card parameters falls from 10 % to 0.1 % of its peak there (on a
  log-spaced grid up to 12 slowest PK half-lives, at most 60 days); ``mean`` at a time: the
  concentration.
- ``occupancy``/``occupancy_percent``: 100 x occupancy at the time, or its maximum without a time.
- ``percent_change`` of spine density, hippocampal volume, synaptic efficacy, BDNF, neurogenesis,
  clinical score: 100 (y(t) - 1); ``fold_change``: y(t); ``slope_per_session``: 100 (y - 1) /
  sessions one day after the last session.
- ``response_rate``/``remission_rate`` (%): a threshold model on the clinical improvement
  1 - symptom_score with between-patient spread: 100 Phi((improvement - threshold) / spread),
  threshold 0.5 for response and ``remission_improvement`` for remission (``ClinicalLink``).

A row's time counts from its ``time_origin`` (first dose, end of course, or the k-th dose or
session); :func:`time_since_first_dose` places it on the schedule's clock, so rows reported after the
end of a course are predicted at the right time. Rows without a time are evaluated one day after the
schedule's last dose or session (an end-of-course assessment), except synaptic efficacy, evaluated 5 min after the first session (the
meta-analytic after-effect). The likelihood is Normal on the row's scale with standard deviation
sqrt(se^2 + (proportional |value|)^2 + additive^2): ``se`` from the reported dispersion and n
(``pkpd.data``), plus a residual model error (:class:`ErrorModel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .model import check_parameter
from .protocols import protocol as build_protocol
from .schedule import Schedule
from .simulate import SegmentTable, segment_table, simulate, solve

#: Dense grid (log-spaced, after the first and the last dose) for Cmax, Tmax and half-lives:
#: DENSE_N points up to 12 slowest PK half-lives, at most DENSE_H hours.
DENSE_H = 24.0 * 60
DENSE_N = 150
TIME_SCALE = {"h": 1.0, "min": 60.0, "d": 1 / 24.0}
CONC_SCALE = {"ng/mL": 1000.0, "ug/L": 1000.0, "µg/L": 1000.0, "mg/L": 1.0, "ug/mL": 1.0}
CHANGE_READOUTS = (
    "spine_density",
    "hippocampal_volume",
    "synaptic_efficacy",
    "bdnf",
    "neurogenesis",
    "trkb",
    "mtor",
    "clinical_score",
)
_READOUT_OUTPUT = {"clinical_score": "symptom_score"}


class ErrorModel(eqx.Module):
    """Residual error added to the reported standard error: ``kind`` additive, proportional or
    combined; sd = sqrt(se^2 + (proportional |value|)^2 + additive^2)."""

    proportional: float = 0.15
    additive: float = 0.0
    kind: str = eqx.field(static=True, default="proportional")

    def __check_init__(self):
        if self.kind not in ("additive", "proportional", "combined"):
            raise ValueError(f"ErrorModel.kind={self.kind!r} must be 'additive', 'proportional' or 'combined'")
        check_parameter("ErrorModel", "proportional", self.proportional, lo_open=False)
        check_parameter("ErrorModel", "additive", self.additive, lo_open=False)

    def sd(self, value, se):
        se = jnp.nan_to_num(se, nan=0.0)
        prop = self.proportional if self.kind in ("proportional", "combined") else 0.0
        add = self.additive if self.kind in ("additive", "combined") else 0.0
        return jnp.sqrt(se**2 + (prop * jnp.abs(value)) ** 2 + add**2 + 1e-12)


class ClinicalLink(eqx.Module):
    """Between-patient spread of the clinical improvement (fraction of the baseline score) and
    the improvement that counts as remission; values in ``models/core.toml``."""

    clinical_spread: float = 0.3
    remission_improvement: float = 0.65

    def __check_init__(self):
        check_parameter("ClinicalLink", "clinical_spread", self.clinical_spread)
        check_parameter("ClinicalLink", "remission_improvement", self.remission_improvement, hi=1.0, hi_open=True)

    def rate(self, improvement, threshold):
        return 100.0 * jax.scipy.stats.norm.cdf((improvement - threshold) / self.clinical_spread)


@dataclass
class Group:
    """One study design to simulate: species, schedule, save times and its segment table."""

    species: str
    schedule: Schedule
    times: np.ndarray
    table: SegmentTable | None = None


@dataclass
class ObservationSet:
    """Prepared observations of one modality (see :func:`prepare`)."""

    modality: str
    groups: list[Group]
    rows: object  # DataFrame of usable rows (same order as the arrays below)
    excluded: object  # DataFrame of unusable rows with a ``reason`` column
    specs: list[dict] = field(default_factory=list)
    value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    se: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n(self) -> int:
        return len(self.specs)

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(sorted({g.species for g in self.groups}))


def _num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"protocol option value {x!r} is not a number (free text)") from None


def schedule_for(modality: str, species: str, options: str) -> Schedule:
    """The schedule of a data row: the modality's standard protocol with the row's
    ``protocol_options`` (``key=value;...``). Raises ``ValueError`` for free-text options."""
    opts = {}
    for part in [p for p in str(options or "").split(";") if p.strip()]:
        if "=" not in part:
            raise ValueError(f"protocol option {part!r} is not key=value")
        k, v = (x.strip() for x in part.split("=", 1))
        opts[k] = v
    from .protocols import BODY_WEIGHT_KG, PER_KG_HUMAN

    standard = build_protocol(modality, species=species)
    drug = standard.n_doses > 0
    per_kg = species != "human" or modality in PER_KG_HUMAN
    kw: dict = {"species": species}
    for k, v in opts.items():
        if k == "dose_mg":
            if species != "human":
                raise ValueError("dose_mg given for a rodent (per-kg) protocol")
            kw["dose"] = (
                _num(v) * (1000.0 if standard.amount_unit == "ug" else 1.0) / (BODY_WEIGHT_KG if per_kg else 1.0)
            )
        elif k == "dose_mg_per_kg":
            kw["dose"] = _num(v) * (1.0 if per_kg else BODY_WEIGHT_KG)
        elif k in ("doses", "sessions"):
            kw[k] = int(_num(v))
        elif k == "interval_h":
            kw["interval_h"] = _num(v)
        elif k == "route":
            kw["route"] = v
        elif k == "weeks":
            if drug:
                kw["doses"] = int(round(7 * _num(v)))
            else:
                kw["weeks"] = int(_num(v))
        elif k == "days":
            if drug:
                kw["doses"] = int(_num(v))
            else:
                d = int(_num(v))
                kw["days_per_week"], kw["weeks"] = min(d, 7), -(-d // 7)
        elif k == "sessions_per_day":
            kw["per_day"] = int(_num(v))
        elif k == "sessions_per_week":
            kw["per_week"] = int(_num(v))
        elif k in ("gap_min", "pulses", "frequency_hz"):
            kw[k] = _num(v)
        elif k == "placement":
            kw["placement"] = v
        else:
            raise ValueError(f"protocol option {k!r} is not supported")
    try:
        return build_protocol(modality, **kw)
    except TypeError as e:
        raise ValueError(str(e)) from None


def time_since_first_dose(time_h: float, origin: str, schedule: Schedule) -> float:
    """A data row's time (h after its ``time_origin``) as hours after the first dose or session.

    ``first_dose``: unchanged; ``dose:<k>``: plus the start of the k-th dose (or session, for
    device protocols); ``end_of_course``: plus the end of the last dose or session (start plus
    duration, so after the infusion or the session). Raises ``ValueError`` naming the origin when
    the schedule has fewer than k doses or sessions, or none at all."""
    from .data import parse_time_origin

    kind, k = parse_time_origin(origin)
    doses = schedule.n_doses > 0
    starts = np.asarray(schedule.dose_time if doses else schedule.session_start, dtype=float)
    durations = np.asarray(schedule.dose_duration if doses else schedule.session_duration, dtype=float)
    if starts.size == 0:
        raise ValueError(f"time_origin={origin!r}: the schedule has no doses or sessions to count from")
    t0 = float(starts[0])
    if kind == "end_of_course":
        return float(time_h) + float(starts[-1] + durations[-1]) - t0
    if k > starts.size:
        raise ValueError(
            f"time_origin={origin!r}: the schedule has only {starts.size} "
            f"{'doses' if doses else 'sessions'}; give protocol_options that include dose {k}"
        )
    return float(time_h) + float(starts[k - 1]) - t0


def _spec(row, schedule: Schedule) -> dict:
    """How to predict one row from a trajectory on its group's times (times added to ``need``)."""
    readout, stat, unit = row["readout"], row["statistic"], row["unit"]
    end = schedule.end_time + 24.0
    t = row["time_h"] if np.isfinite(row["time_h"]) else None
    if t is not None:
        t = time_since_first_dose(t, row.get("time_origin", "first_dose") or "first_dose", schedule)
    if readout == "concentration":
        if stat not in ("cmax", "tmax", "half_life", "mean"):
            raise ValueError(
                f"statistic={stat!r} of concentration is not modelled; modelled: ['cmax', 'tmax', 'half_life', 'mean']"
            )
        analyte = str(row.get("analyte", "")).lower()
        out = "metabolite_concentration" if analyte.startswith("nor") and analyte != "norketamine" else "concentration"
        if analyte in ("norketamine", "dehydronorketamine", "hydroxynorketamine"):
            raise ValueError(f"analyte {analyte!r} is not modelled")
        if stat in ("cmax", "mean"):
            if unit not in CONC_SCALE:
                raise ValueError(f"concentration unit {unit!r} is not supported; use {sorted(CONC_SCALE)}")
            return dict(kind="max" if stat == "cmax" else "at", output=out, scale=CONC_SCALE[unit], time=t)
        if unit not in TIME_SCALE:
            raise ValueError(f"time unit {unit!r} of {stat} is not supported; use {sorted(TIME_SCALE)}")
        return dict(kind=stat, output=out, scale=TIME_SCALE[unit], time=None)
    if readout == "occupancy":
        if stat not in ("occupancy_percent", "mean") or unit != "%":
            raise ValueError(f"occupancy {stat!r} in {unit!r} is not modelled (use occupancy_percent in %)")
        return dict(kind="max" if t is None else "at", output="occupancy", scale=100.0, time=t)
    if readout in CHANGE_READOUTS:
        out = _READOUT_OUTPUT.get(readout, readout)
        if readout == "synaptic_efficacy" and t is None and schedule.n_sessions:
            t = float(schedule.session_start[0] + schedule.session_duration[0]) + 5 / 60
        if stat == "percent_change" and unit == "%":
            return dict(kind="change", output=out, scale=100.0, time=end if t is None else t)
        if stat == "fold_change":
            return dict(kind="at", output=out, scale=1.0, time=end if t is None else t)
        if stat == "slope_per_session" and unit == "%/session" and schedule.n_sessions:
            return dict(kind="change", output=out, scale=100.0 / schedule.n_sessions, time=end)
        raise ValueError(
            f"statistic={stat!r} of {readout} in unit={unit!r} is not modelled; modelled: "
            "percent_change in '%', fold_change, slope_per_session in '%/session' (device courses)"
        )
    if readout in ("response", "remission") and stat in ("response_rate", "remission_rate") and unit == "%":
        return dict(kind=stat, output="symptom_score", scale=1.0, time=end if t is None else t)
    reasons = {
        "bdnf_serum": "the model has no peripheral (serum) BDNF compartment; central BDNF is not calibrated "
        "on serum (Brunoni 2015: no serum rise after rTMS)",
        "subjective_effect": "subjective effects are not a model readout",
        "plasticity_window": "window rows are fitted by the second-stage window fit (pkpd.windows), not by the core",
        "learning": "combination rows are fitted by the second-stage window fit (pkpd.windows), not by the core",
    }
    modelled = ["concentration", "occupancy", *CHANGE_READOUTS, "response", "remission"]
    if stat == "effect_size":
        raise ValueError("effect sizes need a control arm and the between-subject SD; not modelled")
    if readout in reasons:
        raise ValueError(f"readout={readout!r}: {reasons[readout]}; modelled readouts: {modelled}")
    if readout in ("response", "remission"):
        raise ValueError(
            f"readout={readout!r} with statistic={stat!r} in unit={unit!r} is not modelled; use "
            f"statistic='{readout}_rate' in '%'"
        )
    raise ValueError(
        f"readout={readout!r} with statistic={stat!r} in unit={unit!r} is not modelled; modelled readouts: {modelled}"
    )


def _dense_horizon(model) -> float:
    """Hours after a dose to resolve Cmax, Tmax and the terminal phase: 12 of the slowest PK
    half-lives (from the PK matrix's eigenvalues under the model-card values), at most 60 days."""
    pk = getattr(getattr(model, "driver", None), "pk", None) or model
    try:
        rates = -np.real(np.linalg.eigvals(np.asarray(pk.matrix())))
    except (AttributeError, NotImplementedError):
        return DENSE_H
    rates = rates[rates > 1e-12]
    if rates.size == 0:
        return DENSE_H
    return float(min(DENSE_H, max(24.0, 12.0 * np.log(2.0) / rates.min())))


def _anchors(schedule: Schedule) -> tuple[float, float]:
    """Times of the first and last dose (0, 0 without doses)."""
    if not schedule.n_doses:
        return 0.0, 0.0
    return float(schedule.dose_time[0]), float(schedule.dose_time[-1] + schedule.dose_duration[-1])


def same_design(a: Schedule, b: Schedule) -> bool:
    """Whether two schedules give the same doses and sessions (labels aside)."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return (
        a.amount_unit == b.amount_unit
        and len(la) == len(lb)
        and all(np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
    )


def prepare(modality: str, data, model_for) -> ObservationSet:
    """Prepare the rows of ``data`` (a published-curve DataFrame) for ``modality``.

    ``model_for(species)`` returns the model of that species (used to build segment tables and,
    for half-lives, the reference window)."""
    import pandas as pd

    from .data import load_curves

    if "time_h" not in data.columns or "se" not in data.columns:
        data = load_curves(data)
    data = data[data["modality"] == modality].reset_index(drop=True)
    used, excluded, specs, groups, alias = [], [], [], {}, {}
    for _, row in data.iterrows():
        try:
            key = (row["species"], str(row.get("protocol_options", "") or ""))
            if key not in alias:
                sched = schedule_for(modality, row["species"], key[1])
                # Options that spell out a default (or the same design twice) give the same schedule:
                # such rows share one group, so the design is simulated once.
                alias[key] = next(
                    (k for k, g in groups.items() if k[0] == key[0] and same_design(g["schedule"], sched)), key
                )
                if alias[key] == key:
                    groups[key] = dict(schedule=sched, need={0.0})
            key = alias[key]
            g = groups[key]
            spec = _spec(row, g["schedule"])
        except (ValueError, KeyError) as e:
            excluded.append({**row.to_dict(), "reason": str(e)})
            continue
        spec["group"] = key
        specs.append(spec)
        used.append(row)
        if spec["time"] is not None:
            g["need"].add(float(spec["time"]))
        if spec["kind"] in ("max", "tmax", "half_life"):
            g["dense"] = True
    keys = [k for k in groups if any(s["group"] == k for s in specs)]
    out_groups = []
    for k in keys:
        g = groups[k]
        need = set(g["need"])
        if g.get("dense"):
            horizon = _dense_horizon(model_for(k[0]))
            g["horizon"] = horizon
            for anchor in _anchors(g["schedule"]):
                need |= set(anchor + np.concatenate([[0.0], np.geomspace(0.01, horizon, DENSE_N)]))
        times = np.array(sorted(need))
        model = model_for(k[0])
        out_groups.append(
            Group(species=k[0], schedule=g["schedule"], times=times, table=segment_table(model, g["schedule"], times))
        )
    reference: dict = {}
    for s in specs:
        gi = keys.index(s.pop("group"))
        s["group"] = gi
        times = out_groups[gi].times
        if s["time"] is not None:
            s["index"] = int(np.argmin(np.abs(times - s["time"])))
        if s["kind"] in ("max", "tmax", "half_life"):
            first, last = _anchors(out_groups[gi].schedule)
            # Cmax and Tmax after the first dose; the terminal half-life after the last one.
            anchor, stop = (
                (last, last + DENSE_H)
                if s["kind"] == "half_life"
                else (first, min(last, first + 24.0) if last > first else first + DENSE_H)
            )
            horizon = groups[keys[gi]]["horizon"]
            if s["kind"] == "half_life":
                stop = last + horizon
            s["window"] = np.nonzero((times >= anchor) & (times <= max(stop, anchor + min(24.0, horizon))))[0]
        if s["kind"] == "half_life":
            if gi not in reference:  # one reference simulation per design, under the card values
                g = out_groups[gi]
                reference[gi] = simulate(model_for(g.species), g.schedule, g.times)
            c = np.asarray(reference[gi][s["output"]])[s["window"]]
            tw = times[s["window"]]
            ipk = int(np.argmax(c))
            sel = (np.arange(len(c)) > ipk) & (c <= 0.1 * c[ipk]) & (c >= 0.001 * c[ipk])
            if sel.sum() < 3:
                sel = np.arange(len(c)) > ipk
            s["window"] = s["window"][sel]
            s["tw"] = tw[sel]
    rows = pd.DataFrame(used).reset_index(drop=True) if used else data.iloc[:0]
    exc = pd.DataFrame(excluded) if excluded else data.iloc[:0].assign(reason=[])
    return ObservationSet(
        modality=modality,
        groups=out_groups,
        rows=rows,
        excluded=exc,
        specs=specs,
        value=rows["value"].to_numpy(float) if used else np.zeros(0),
        se=rows["se"].to_numpy(float) if used else np.zeros(0),
    )


def _pk_view(model, used: set):
    """The exact-PK view of ``model``'s drug driver when every output in ``used`` is one it
    produces (concentrations, occupancy), else None."""
    driver = getattr(model, "driver", None)
    if not hasattr(driver, "pk_view") or not hasattr(driver.pk, "propagate"):
        return None
    view = driver.pk_view()
    produced = jax.eval_shape(view.outputs, jax.ShapeDtypeStruct((1, len(view.state_names)), jnp.float64))
    return view if used and used <= set(produced) else None


def predict(models: dict, clinical: ClinicalLink, obs: ObservationSet, *, solve_options: dict | None = None):
    """Predictions for every usable row of ``obs`` (jnp array, in the rows' units).

    ``models``: species -> model. Pure and differentiable in the models' parameters."""
    opts = solve_options or {}
    outputs = []
    for gi, g in enumerate(obs.groups):
        m = models[g.species]
        view = _pk_view(m, {s["output"] for s in obs.specs if s["group"] == gi})
        if view is not None:  # rows that read PK only: exact matrix-exponential PK, no PD ODE
            m = view
        ys, status, _ = solve(m, g.table, **opts)
        out = m.outputs(ys)
        out = {k: jnp.where(status == 0, v, jnp.nan) for k, v in out.items()}
        outputs.append(out)
    preds = []
    for s in obs.specs:
        out = outputs[s["group"]]
        y = out[s["output"]]
        times = jnp.asarray(obs.groups[s["group"]].times)
        k = s["kind"]
        if k == "at":
            p = s["scale"] * y[s["index"]]
        elif k == "change":
            p = s["scale"] * (y[s["index"]] - 1.0)
        elif k == "max":
            w = y[s["window"]] if "window" in s else y
            p = s["scale"] * jnp.max(w)
        elif k == "tmax":
            w = y[s["window"]]
            wt = jax.nn.softmax(200.0 * w / jnp.max(w))
            p = s["scale"] * jnp.sum(wt * times[s["window"]])
        elif k == "half_life":
            logc = jnp.log(jnp.maximum(y[s["window"]], 1e-300))
            tw = jnp.asarray(s["tw"])
            slope = jnp.sum((tw - tw.mean()) * (logc - logc.mean())) / jnp.sum((tw - tw.mean()) ** 2)
            p = s["scale"] * jnp.log(2.0) / -slope
        elif k in ("response_rate", "remission_rate"):
            improvement = 1.0 - y[s["index"]]
            thr = 0.5 if k == "response_rate" else clinical.remission_improvement
            p = clinical.rate(improvement, thr)
        else:  # pragma: no cover - specs are built above
            raise ValueError(k)
        preds.append(p)
    return jnp.stack(preds) if preds else jnp.zeros(0)


def log_likelihood(pred, value, se, error: ErrorModel):
    """Per-row Normal log-likelihood with the reported standard error plus residual error."""
    sd = error.sd(jnp.asarray(value), jnp.asarray(se))
    return jax.scipy.stats.norm.logpdf(jnp.asarray(value), loc=pred, scale=sd)
