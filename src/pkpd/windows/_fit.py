"""Second-stage fit of the window card to the window and combination rows of the data library.

The core is held at the shipped joint calibration (its MAP; :mod:`pkpd.calibrate`): its TrkB and
synaptic-protein trajectories under each row's protocol are the inputs of the openness state, and
only the window parameters (``k_open`` of the candidate, ``k_close``, ``gain``) are fitted, with
the card's priors, by MAP and a Laplace approximation. Each candidate signal
(:data:`pkpd.windows.SIGNALS`) is fitted separately and the candidates are compared by their
Laplace evidence and by leave-one-row-out predictive density (refit without the row).

Row likelihoods (fuzz widths ``s`` are assumed, stated here once):

- ``plasticity_window`` / ``duration`` ``D`` (h after the end of the treatment): the window closes
  there, ``W(D) = 1``: ``ln W(D)`` is normal around 0 with sd ``k_close * D * 0.35`` (a closing
  time known to +-35 % in log, tests at weekly time points, mapped through the slope of ``ln W``
  at closing, ``-k_close``; smooth also where the model's window never opens), and the model's
  own closing time is lognormal around ``D`` with sd 0.35 (so that a window that crosses 1 at
  ``D`` on its way up does not count as closing there); the two terms share the row's
  information (each sd times sqrt 2).
  With an interval ``[last open, first closed]`` (``dispersion`` lo;hi, ``range``): open at lo
  and closed at hi, each as a ``window_open`` row;
- rows whose ``analyte`` is ``stress_resilience`` (a prophylactic state against later stress, not
  a window for learning) are reported as a check, not fitted;
- ``plasticity_window`` / ``window_open``: ``P(open) = Phi(ln W(t) / 0.5)`` at the row's time;
- ``learning`` / ``ratio`` with ``analyte = training_gain`` (improvement with treatment plus
  training over improvement with the same training alone): ``ln`` of the model's learning gain is
  normal around ``ln value`` with sd ``se / value`` (0.25 if the source gives no dispersion).
  Other learning rows (effect sizes, response rates, ratios of other outcomes) have no link to the
  learning readout and are listed as excluded with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from .. import cards
from .._json import json_safe
from ..data import WINDOW_READOUTS, datasets
from ..observe import schedule_for, time_since_first_dose
from ..schedule import Schedule
from ._core import SIGNALS, WindowParams, learning, learning_alone, openness, training_arrays, window_interval

FITTED = ("k_open", "k_close", "gain")
DURATION_SD = 0.35
OPEN_FUZZ = 0.5
RATIO_SD = 0.25
TRAINING_KEYS = ("training_delay_h", "training_sessions", "training_interval_h", "training_duration_h")


def card():
    """The window card (``models/windows.toml``)."""
    return cards.load("window", "windows")


def card_params(candidate: str = "pv_brake") -> WindowParams:
    """:class:`WindowParams` at the card's values for ``candidate``."""
    c = card()
    return WindowParams(
        k_open=c.get(f"k_open_{candidate}", "all").value,
        k_close=c.get("k_close", "all").value,
        gain=c.get("gain", "all").value,
        k_forget=c.get("k_forget", "all").value,
        candidate=candidate,
    )


def prior(candidate: str) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal prior medians' logs and sigmas of the fitted parameters (order :data:`FITTED`)."""
    c = card()
    names = (f"k_open_{candidate}", "k_close", "gain")
    pr = [c.get(n, "all").prior for n in names]
    return np.log([p["median"] for p in pr]), np.array([p["sigma"] for p in pr], dtype=float)


def split_options(options: str) -> tuple[str, dict]:
    """A row's ``protocol_options`` split into the treatment's and the training course's."""
    treat, train = [], {}
    for part in [p.strip() for p in str(options or "").split(";") if p.strip()]:
        k, _, v = part.partition("=")
        if k.strip() in TRAINING_KEYS:
            train[k.strip()] = float(v)
        else:
            treat.append(part)
    return ";".join(treat), train


def row_schedule(modality: str, species: str, options: str) -> Schedule:
    """The treatment of a data row plus its training course (``training_*`` options)."""
    treat, train = split_options(options)
    sched = schedule_for(modality, species, treat)
    if not train:
        return sched
    course = Schedule.training_course(
        int(train.get("training_sessions", 1)),
        first_at=train.get("training_delay_h", 0.0),
        interval=train.get("training_interval_h", 24.0),
        duration=train.get("training_duration_h", 1.0),
    )
    return sched + course


def dense_times(schedule: Schedule, horizon_h: float) -> np.ndarray:
    """A time grid for the window: 0.1 h through 6 h after each dose or session start (the
    absorption and the fast core response), 0.5 h through 48 h, 2 h elsewhere, to ``horizon_h`` (h).
    Openness is exact for the signal interpolated linearly on this grid; against a 0.1 h grid
    through 48 h, window durations move by < 0.1 h (psilocybin, ketamine, iTBS, fluoxetine at the MAP)."""
    events = np.unique(np.concatenate([schedule.dose_time, schedule.session_start, [0.0]]))
    fine = [np.arange(e, min(e + 6.0, horizon_h), 0.1) for e in events]
    mid = [np.arange(e, min(e + 48.0, horizon_h), 0.5) for e in events]
    return np.unique(np.concatenate(fine + mid + [np.arange(0.0, horizon_h, 2.0), [horizon_h]]))


@dataclass
class WindowRow:
    """One usable row: what it measures (``kind``), on which schedule, its numbers (h for times)."""

    study_id: str
    modality: str
    species: str
    kind: str  # duration | window_open | ratio
    schedule: Schedule
    value: float
    lo: float = float("nan")
    hi: float = float("nan")
    time_h: float = float("nan")
    sd_log: float = RATIO_SD
    quote: str = ""


_HOURS = {"h": 1.0, "d": 24.0, "week": 168.0, "min": 1 / 60}


def _row(r) -> WindowRow:
    sched = row_schedule(r["modality"], r["species"], r.get("protocol_options", ""))
    base = dict(study_id=r["study_id"], modality=r["modality"], species=r["species"], schedule=sched, quote=r["quote"])
    stat, unit = r["statistic"], r["unit"]
    if r["readout"] == "plasticity_window" and stat == "duration":
        if unit not in _HOURS:
            raise ValueError(f"duration unit {unit!r} is not a time unit; use {sorted(_HOURS)}")
        lo = hi = float("nan")
        disp = str(r.get("dispersion", "") or "")
        if r.get("dispersion_type") == "range" and ";" in disp:
            lo, hi = (float(x) * _HOURS[unit] for x in disp.split(";"))
        return WindowRow(**base, kind="duration", value=float(r["value"]) * _HOURS[unit], lo=lo, hi=hi)
    if str(r.get("analyte", "")) == "stress_resilience":
        raise ValueError("a prophylactic resilience state, not a learning window: reported as a check, not fitted")
    if r["readout"] == "plasticity_window" and stat == "window_open":
        if not np.isfinite(r["time_h"]):
            raise ValueError("a window_open row needs a time")
        t = time_since_first_dose(r["time_h"], r.get("time_origin") or "first_dose", sched)
        return WindowRow(**base, kind="window_open", value=float(r["value"]), time_h=t)
    if r["readout"] == "learning" and stat == "ratio" and str(r.get("analyte", "")) == "training_gain":
        if sched.n_training == 0:
            raise ValueError("a learning ratio row needs a training course (training_* protocol options)")
        t = r["time_h"]
        t = (
            sched.training_end + 24.0
            if not np.isfinite(t)
            else time_since_first_dose(t, r.get("time_origin") or "first_dose", sched)
        )
        se = float(r["se"]) if np.isfinite(r["se"]) else float("nan")
        sd = se / float(r["value"]) if np.isfinite(se) and se > 0 else RATIO_SD
        return WindowRow(**base, kind="ratio", value=float(r["value"]), time_h=t, sd_log=sd)
    raise ValueError(
        f"{r['readout']} statistic={stat!r} (analyte {r.get('analyte', '')!r}) has no link to the window model; "
        "modelled: plasticity_window duration and window_open, learning ratio of analyte training_gain"
    )


def window_rows(data=None) -> tuple[list[WindowRow], list[tuple[str, str]]]:
    """The usable window rows of ``data`` (default: the library) and ``(study_id, reason)`` of the others."""
    df = datasets() if data is None else data
    df = df[df["readout"].isin(WINDOW_READOUTS)]
    rows, excluded = [], []
    for _, r in df.iterrows():
        try:
            rows.append(_row(r))
        except (ValueError, KeyError, TypeError) as e:
            excluded.append((r["study_id"], str(e)))
    return rows, excluded


def core_signals(model, schedule: Schedule, horizon_h: float) -> tuple[np.ndarray, dict]:
    """``(times, {state: trajectory})`` of the candidate signals (:data:`SIGNALS`) of ``model``
    under ``schedule`` on :func:`dense_times` (the core at whatever parameters ``model`` holds)."""
    import diffrax as dfx

    from ..simulate import simulate

    t = dense_times(schedule, horizon_h)
    tr = simulate(model, schedule, t, solver=dfx.Kvaerno5(), rtol=1e-7, atol=1e-10, max_steps=200_000)
    return t, {s: np.asarray(tr[s]) for s in set(SIGNALS.values())}


def _horizon(row: WindowRow) -> float:
    span = max(x for x in (row.value, row.lo, row.hi, row.time_h, 24.0 * 28) if np.isfinite(x))
    return row.schedule.end_time + max(row.schedule.training_end, 0.0) + 2.0 * span


def row_log_likelihood(row: WindowRow, times, w, params: WindowParams) -> float:
    """Log-likelihood of one row given the openness ``w`` on ``times`` (module docstring)."""
    if row.kind == "duration":
        end = row.schedule.end_time
        lw = lambda t: math.log(max(float(np.interp(end + t, times, w)), 1e-300))  # noqa: E731
        if not np.isfinite(row.lo):
            # the window closes (W = 1) at the reported time: ln W there ~ N(0, k_close D sd_log D),
            # and the model's own closing time is lognormal around it (both at sd x sqrt 2: one row)
            sd = max(params.k_close * row.value * DURATION_SD, 0.05) * math.sqrt(2.0)
            out = stats.norm.logpdf(lw(row.value), 0.0, sd)
            _, closes, _ = window_interval(times, w)
            d = float(closes) - end if np.isfinite(closes) else 1e-3
            out += stats.norm.logpdf(math.log(max(d, 1e-3)), math.log(row.value), DURATION_SD * math.sqrt(2.0))
            return float(out)
        out = stats.norm.logcdf(lw(row.lo) / OPEN_FUZZ)
        if np.isfinite(row.hi):
            out += stats.norm.logcdf(-lw(row.hi) / OPEN_FUZZ)
        return float(out)
    if row.kind == "window_open":
        wt = float(np.interp(row.time_h, times, w))
        z = math.log(max(wt, 1e-300)) / OPEN_FUZZ
        return float(stats.norm.logcdf(z if row.value >= 0.5 else -z))
    start, dur, inten = training_arrays(row.schedule)
    got = float(learning(times, w, start, dur, inten, row.time_h, params.gain, params.k_forget))
    alone = float(learning_alone(start, dur, inten, row.time_h, params.k_forget))
    return float(stats.norm.logpdf(math.log(got / alone), math.log(row.value), row.sd_log))


def predicted(row: WindowRow, times, w, params: WindowParams) -> float:
    """The model's value of the row's quantity: a duration in h (0 if the window never opens),
    1 or 0 for open or closed at the row's time, or the learning ratio."""
    if row.kind == "duration":
        _, closes, _ = window_interval(times, w)
        return float(closes) - row.schedule.end_time if np.isfinite(closes) else 0.0
    if row.kind == "window_open":
        return float(np.interp(row.time_h, times, w) >= 1.0)
    start, dur, inten = training_arrays(row.schedule)
    return float(
        learning(times, w, start, dur, inten, row.time_h, params.gain, params.k_forget)
        / learning_alone(start, dur, inten, row.time_h, params.k_forget)
    )


def _params(candidate: str, z, k_forget: float) -> WindowParams:
    k_open, k_close, gain = np.exp(np.asarray(z, dtype=float))
    return WindowParams(k_open=k_open, k_close=k_close, gain=gain, k_forget=k_forget, candidate=candidate)


@dataclass
class _Problem:
    """The rows with their core signals, for one candidate."""

    candidate: str
    rows: list
    inputs: list  # (times, signal) per row
    k_forget: float
    mu: np.ndarray = field(init=False)
    sigma: np.ndarray = field(init=False)

    def __post_init__(self):
        self.mu, self.sigma = prior(self.candidate)

    def row_terms(self, z) -> np.ndarray:
        p = _params(self.candidate, z, self.k_forget)
        out = []
        for row, (t, x) in zip(self.rows, self.inputs):
            w = np.asarray(openness(t, x, p.k_open, p.k_close))
            out.append(row_log_likelihood(row, t, w, p))
        return np.asarray(out)

    def log_prior(self, z) -> float:
        return float(np.sum(stats.norm.logpdf(z, self.mu, self.sigma)))

    def log_posterior(self, z, drop: int | None = None) -> float:
        terms = self.row_terms(z)
        if drop is not None:
            terms = np.delete(terms, drop)
        total = float(np.sum(terms)) + self.log_prior(z)
        return total if np.isfinite(total) else -np.inf


def _map(problem: _Problem, drop: int | None = None, start=None) -> tuple[np.ndarray, float]:
    """MAP in z = log(params): Nelder-Mead from the prior median and ``start``, polished."""
    f = lambda z: -problem.log_posterior(z, drop)  # noqa: E731
    best = None
    for z0 in [problem.mu] + ([np.asarray(start)] if start is not None else []):
        res = optimize.minimize(f, z0, method="Nelder-Mead", options=dict(xatol=1e-5, fatol=1e-7, maxiter=4000))
        if best is None or res.fun < best.fun:
            best = res
    res = optimize.minimize(f, best.x, method="Nelder-Mead", options=dict(xatol=1e-6, fatol=1e-9, maxiter=4000))
    return res.x, -float(res.fun)


def _hessian(f, z, h: float = 1e-3) -> np.ndarray:
    """Central finite-difference Hessian of ``f`` at ``z``."""
    n = z.size
    hess = np.zeros((n, n))
    e = np.eye(n) * h
    for i in range(n):
        for j in range(i, n):
            v = (f(z + e[i] + e[j]) - f(z + e[i] - e[j]) - f(z - e[i] + e[j]) + f(z - e[i] - e[j])) / (4 * h * h)
            hess[i, j] = hess[j, i] = v
    return hess


def fit_candidate(problem: _Problem, *, loo: bool = True) -> dict:
    """MAP, Laplace covariance and evidence, row predictions and leave-one-row-out of one candidate
    (``loo_pointwise``: each row's log density under the fit without it; ``loo_predicted``: that
    fit's prediction of the row, in the row's units)."""
    z, lp = _map(problem)
    hess = _hessian(lambda x: -problem.log_posterior(x), z)
    evals, evecs = np.linalg.eigh(hess)
    evals = np.maximum(evals, 1e-8)  # a flat direction keeps a (very) wide posterior there
    cov = (evecs / evals) @ evecs.T
    log_evidence = lp + 0.5 * z.size * math.log(2 * math.pi) - 0.5 * float(np.sum(np.log(evals)))
    p = _params(problem.candidate, z, problem.k_forget)
    terms = problem.row_terms(z)
    rows = []
    for row, (t, x), ll in zip(problem.rows, problem.inputs, terms):
        w = np.asarray(openness(t, x, p.k_open, p.k_close))
        rows.append(
            dict(
                study_id=row.study_id,
                modality=row.modality,
                species=row.species,
                kind=row.kind,
                observed=row.value,
                interval_h=[row.lo, row.hi] if row.kind == "duration" else None,
                predicted=predicted(row, t, w, p),
                log_likelihood=float(ll),
            )
        )
    out = dict(
        candidate=problem.candidate,
        map={k: float(v) for k, v in zip(FITTED, np.exp(z))},
        z=z.tolist(),
        cov_z=cov.tolist(),
        prior_mu_z=problem.mu.tolist(),
        prior_sigma_z=problem.sigma.tolist(),
        log_posterior=lp,
        log_likelihood=float(np.sum(terms)),
        log_evidence=float(log_evidence),
        rows=rows,
    )
    if loo:
        pointwise, loo_predicted = [], []
        for i, (row, (t, x)) in enumerate(zip(problem.rows, problem.inputs)):
            zi, _ = _map(problem, drop=i, start=z)
            pointwise.append(float(problem.row_terms(zi)[i]))
            pi = _params(problem.candidate, zi, problem.k_forget)
            loo_predicted.append(predicted(row, t, np.asarray(openness(t, x, pi.k_open, pi.k_close)), pi))
        out["loo_pointwise"] = pointwise
        out["loo_predicted"] = loo_predicted  # each row predicted by the fit without it
        out["elpd_loo"] = float(np.sum(pointwise))
        out["elpd_loo_se"] = float(np.sqrt(len(pointwise) * np.var(pointwise))) if pointwise else float("nan")
    return out


def fit(calibration=None, data=None, *, candidates=None, loo: bool = True, progress: bool = True) -> "WindowFit":
    """Fit the window card's candidates to the window rows with the core at ``calibration``'s MAP
    (default: the shipped calibration); the candidate with the higher leave-one-row-out density
    (Laplace evidence without ``loo``) is ``chosen``."""
    import sys
    import time

    from .. import calibrate

    cal = calibration if calibration is not None else calibrate.load()
    rows, excluded = window_rows(data)
    if not rows:
        raise ValueError("no usable window rows (readouts plasticity_window, learning) in the data")
    t0 = time.perf_counter()
    signals, cache = [], {}
    for row in rows:
        key = (
            row.modality,
            row.species,
            row.schedule.n_doses,
            row.schedule.n_sessions,
            row.schedule.end_time,
            _horizon(row),
        )
        if key not in cache:
            cache[key] = core_signals(cal.model(row.modality, species=row.species), row.schedule, _horizon(row))
        signals.append(cache[key])
    if progress:
        print(f"[pkpd windows] core signals of {len(rows)} rows: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    k_forget = card().get("k_forget", "all").value
    results = {}
    for cand in candidates or list(SIGNALS):
        prob = _Problem(cand, rows, [(t, s[SIGNALS[cand]]) for t, s in signals], k_forget)
        results[cand] = fit_candidate(prob, loo=loo)
        if progress:
            r = results[cand]
            print(
                f"[pkpd windows] {cand}: log-lik {r['log_likelihood']:.2f}, evidence {r['log_evidence']:.2f}"
                + (f", elpd_loo {r['elpd_loo']:.2f} (se {r['elpd_loo_se']:.2f})" if loo else ""),
                file=sys.stderr,
            )
    score = "elpd_loo" if loo else "log_evidence"
    chosen = max(results, key=lambda c: results[c][score])
    return WindowFit(
        chosen=chosen,
        candidates=results,
        k_forget=k_forget,
        excluded=[dict(study_id=s, reason=r) for s, r in excluded],
        info=dict(score=score, rows=len(rows), core_calibration=cal.info.get("created")),
    )


def load(path=None) -> "WindowFit":
    """The shipped window fit (``models/calibration/windows.json``) or the one at ``path``."""
    from pathlib import Path

    from .._paths import models_dir

    path = Path(path) if path is not None else models_dir() / "calibration" / "windows.json"
    if not path.exists():
        raise FileNotFoundError(f"no window fit at {path}; run `python -m pkpd.windows fit` to make it")
    return WindowFit.from_dict(json.loads(path.read_text()))


@dataclass
class WindowFit:
    """The fitted window card: per candidate its MAP, Laplace covariance (in log parameters),
    evidence, leave-one-row-out density and row predictions; ``chosen`` the candidate in use."""

    chosen: str
    candidates: dict
    k_forget: float
    excluded: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def params(self, candidate: str | None = None) -> WindowParams:
        """:class:`WindowParams` at the MAP of ``candidate`` (default: the chosen one)."""
        c = candidate or self.chosen
        return _params(c, self.candidates[c]["z"], self.k_forget)

    def draws(self, n: int, *, seed: int = 0, candidate: str | None = None, prior: bool = False) -> list:
        """``n`` parameter sets from the Laplace posterior (``prior=True``: from the card priors)."""
        c = self.candidates[candidate or self.chosen]
        rng = np.random.default_rng(seed)
        if prior:
            z = np.asarray(c["prior_mu_z"]) + np.asarray(c["prior_sigma_z"]) * rng.standard_normal((n, len(FITTED)))
        else:
            z = rng.multivariate_normal(np.asarray(c["z"]), np.asarray(c["cov_z"]), size=n)
        return [_params(candidate or self.chosen, zi, self.k_forget) for zi in z]

    def table(self):
        """Observed vs predicted per row and candidate (pandas), with the leave-one-row-out
        prediction and log density where the fit has them (``loo_predicted``, ``loo_log_density``)."""
        import pandas as pd

        out = []
        for c, v in self.candidates.items():
            loo_p, loo_d = v.get("loo_predicted"), v.get("loo_pointwise")
            for i, r in enumerate(v["rows"]):
                extra = dict(loo_predicted=loo_p[i] if loo_p else None, loo_log_density=loo_d[i] if loo_d else None)
                out.append(dict(r, candidate=c, **extra))
        return pd.DataFrame(out)

    def to_dict(self) -> dict:
        return dict(
            chosen=self.chosen,
            k_forget=self.k_forget,
            candidates=self.candidates,
            excluded=self.excluded,
            info=self.info,
        )

    def save(self, path=None) -> None:
        """Write the fit as JSON (default: the shipped ``models/calibration/windows.json``)."""
        from pathlib import Path

        from .._paths import models_dir

        path = Path(path) if path is not None else models_dir() / "calibration" / "windows.json"
        path.write_text(json.dumps(json_safe(self.to_dict()), indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "WindowFit":
        return cls(
            chosen=d["chosen"],
            candidates=d["candidates"],
            k_forget=d["k_forget"],
            excluded=d.get("excluded", []),
            info=d.get("info", {}),
        )
