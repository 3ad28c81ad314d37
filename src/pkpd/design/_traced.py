"""A segment table whose event times and dose amounts are traced functions of the design
variables (:class:`_Link`), so that ``jax.jacfwd`` differentiates a readout through the schedule
(see :mod:`pkpd.design`)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from .._units import amount_factor
from ..schedule import ROUTES, Schedule
from ..simulate import segment_table

SAVE_SLOTS = 32


def _events(aux, x):
    """Traced event times and amounts: session starts ``s_base + s_k * gap``, dose amounts
    ``a_base + a_dose * dose + a_load * loading dose`` (coefficient arrays in ``aux``)."""
    out = {}
    if "s_base" in aux:
        out["session_start"] = aux["s_base"] + aux["s_k"] * x.get("gap_h", aux["gap"])
    if "d_time" in aux:
        amt = aux["a_base"]
        if "dose_mg" in x:
            amt = amt + aux["a_dose"] * x["dose_mg"]
        if "loading_dose_mg" in x:
            amt = amt + aux["a_load"] * x["loading_dose_mg"]
        out["dose_time"], out["dose_amount"] = aux["d_time"], amt
    return out


def _event_vector(aux, ev, xp):
    parts = []
    if "d_time" in ev:
        parts += [ev["dose_time"] + aux["d_lag"], ev["dose_time"] + aux["d_dur"]]
    if "session_start" in ev:
        parts += [ev["session_start"], ev["session_start"] + aux["s_dur"]]
    parts.append(aux["times"])
    return xp.concatenate([xp.asarray(p, dtype=float) for p in parts])


def _traced_table(aux, x):
    """The segment table of ``aux`` (see :class:`_Link`) with times and amounts traced from ``x``."""
    ev = _events(aux, x)
    e = _event_vector(aux, ev, jnp)
    tb = aux["table"]
    repl = dict(t0=e[aux["i_t0"]], t1=e[aux["i_t1"]], save_ts=e[aux["i_save"]])
    if "d_time" in aux:
        amt = ev["dose_amount"] * aux["scale"]
        repl["bolus"] = jnp.zeros_like(tb.bolus).at[aux["b_rows"], aux["b_routes"]].add(amt[aux["b_doses"]])
        repl["rate"] = (
            jnp.zeros_like(tb.rate).at[aux["r_rows"], aux["r_routes"]].add((amt / aux["d_rate_dur"])[aux["r_doses"]])
        )
    return dataclasses.replace(tb, **repl)


class _Link:
    """A segment table built in numpy at a concrete design, with its times and amounts re-expressed
    as traced functions of the design (see the module docstring). ``aux`` holds every array the
    traced table needs, so that one compiled function serves every design of the same shapes."""

    def __init__(self, model, schedule: Schedule, times: np.ndarray, coeffs: dict, x0: dict):
        tb = segment_table(model, schedule, times, save_slots=SAVE_SLOTS)
        s = schedule
        t_last = float(np.asarray(times)[-1])
        aux = {k: np.asarray(v, float) for k, v in coeffs.items()}
        aux["times"] = np.asarray(times, float)
        if s.n_doses:
            inf = np.array([ROUTES[r] == "infusion" for r in s.dose_route], bool)
            aux["d_lag"] = np.array([model.lag(ROUTES[r]) for r in s.dose_route], float)
            aux["d_dur"] = np.asarray(s.dose_duration, float)
            aux["d_rate_dur"] = np.where(inf, s.dose_duration, 1.0)
            aux["scale"] = np.asarray(amount_factor(s.amount_unit, model.dose_unit))
        if s.n_sessions:
            aux["s_dur"] = np.asarray(s.session_duration, float)
        e0 = np.asarray(_event_vector(aux, {k: np.asarray(v) for k, v in _events(aux, x0).items()}, np))
        n_ev = e0.shape[0] - aux["times"].shape[0]

        def match(values, prefer_events):
            out = np.empty(values.shape, np.int64)
            for j, v in np.ndenumerate(values):
                d = np.abs(e0 - v)
                tol = 1e-9 * max(1.0, abs(v))
                ev_hit = np.nonzero(d[:n_ev] <= tol)[0]
                t_hit = n_ev + np.nonzero(d[n_ev:] <= tol)[0]
                cand = np.concatenate([ev_hit, t_hit] if prefer_events else [t_hit, ev_hit])
                if not cand.size:
                    raise RuntimeError(f"internal: segment boundary {v} h matches no schedule event")
                out[j] = cand[0]
            return out

        t0, t1 = np.asarray(tb.t0), np.asarray(tb.t1)
        aux["i_t0"], aux["i_t1"] = match(t0, True), match(t1, True)
        aux["i_save"] = match(np.asarray(tb.save_ts), False)
        if s.n_doses:
            # Bolus doses land in the first row starting at their arrival; infusions in the rows they cover.
            b_rows, b_routes, b_doses, r_rows, r_routes, r_doses = [], [], [], [], [], []
            for i in range(s.n_doses):
                if s.dose_ss[i]:
                    raise ValueError("schedules with steady-state (ss) doses cannot be designed")
                if inf[i]:
                    start, end = s.dose_time[i], s.dose_time[i] + s.dose_duration[i]
                    if start > t_last:
                        continue
                    rows = np.nonzero((t0 >= start - 1e-12) & (t1 <= end + 1e-12) & (t1 > t0))[0]
                    r_rows += rows.tolist()
                    r_routes += [int(s.dose_route[i])] * rows.size
                    r_doses += [i] * rows.size
                else:
                    arr = s.dose_time[i] + aux["d_lag"][i]
                    if arr > t_last:
                        continue
                    b_rows.append(int(np.argmax(np.abs(t0 - arr) <= 1e-9 * max(1.0, arr))))
                    b_routes.append(int(s.dose_route[i]))
                    b_doses.append(i)
            for name, val in (
                ("b_rows", b_rows),
                ("b_routes", b_routes),
                ("b_doses", b_doses),
                ("r_rows", r_rows),
                ("r_routes", r_routes),
                ("r_doses", r_doses),
            ):
                aux[name] = np.asarray(val, np.int64)
        aux = {k: jnp.asarray(v) for k, v in aux.items()}
        aux["table"] = tb
        self.aux, self.table, self.schedule = aux, tb, schedule
        # Self-check: the traced table at x0 reproduces the numpy one.
        chk = _traced_table(aux, {k: jnp.asarray(v) for k, v in x0.items()})
        for name in ("t0", "t1", "save_ts", "bolus", "rate"):
            a, b = np.asarray(getattr(chk, name)), np.asarray(getattr(tb, name))
            if not np.allclose(a, b, rtol=1e-9, atol=1e-9):
                raise RuntimeError(f"internal: traced segment table differs from the numpy one in {name}")
