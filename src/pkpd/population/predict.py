"""Model states at the observation times of one part of a subject's history.

Two backends, both pure (``jit``/``vmap``/``jacfwd`` pass through):

- :func:`linear_states` for the linear PK models of :mod:`pkpd.pk`: the state at an observation
  is the superposition of every dose's response, ``Phi(t - t_d - lag) b_d`` with ``Phi(dt) =
  exp(A dt)`` (pkpd's :func:`pkpd.model.expm_input`), a steady-state dose adding the periodic sum
  ``Phi(dt) (I - Phi(ii))^-1 b_d``, an infusion its integral. Exact for a linear time-invariant
  model, and differentiable in every parameter *including the absorption lag*, which pkpd's
  event-table simulator keeps static (its event times are cut in numpy).
- :func:`solve_states` for any pkpd model (PK only or a full PK/PD model): :func:`pkpd.solve`
  over the part's :class:`pkpd.SegmentTable` (padded to one shape over subjects). The lag is the
  model's static value.

Times in hours; states in the model's units (amounts in the dose unit for :mod:`pkpd.pk`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..model import EXTRAVASCULAR, expm_input
from ..pk import LinearPK, OneCompartment
from ..schedule import ROUTES
from ..simulate import segment_table, solve

_EXTRA = np.asarray([r in EXTRAVASCULAR for r in ROUTES])


def linear_states(model: LinearPK, lag, part: dict, *, has_ss: bool, has_infusion: bool):
    """States (J, n) at ``part["obs_time"]`` by superposition of the part's doses.

    ``lag``: absorption lag (h) of extravascular doses (a traced scalar is fine).
    ``part``: one part's arrays of :meth:`Records.arrays` (dose_* of shape (D,), obs_time (J,)).
    """
    a = model.matrix()
    n = a.shape[0]
    bolus_m, rate_m = model.bolus_matrix(), model.rate_matrix()
    route = part["dose_route"]
    extra = jnp.asarray(_EXTRA)[route]
    tau = part["dose_time"] + jnp.where(extra, lag, 0.0)
    b = bolus_m[:, route].T * part["dose_amount"][:, None]  # (D, n): where each bolus lands
    dt = part["obs_time"][:, None] - tau[None, :]  # (J, D)
    infusion = part["dose_duration"] > 0
    ss = part["dose_ss"]
    mask = part["dose_mask"]
    if has_ss:  # before its arrival, a steady-state dose shows the previous cycle
        dt = jnp.where(ss[None, :] & (dt < 0), dt + part["dose_ii"][None, :], dt)
    on = (dt >= 0) & mask[None, :]
    phi = transition(model, jnp.where(on, dt, 0.0))  # (J, D, n, n)
    x = jnp.einsum("jdab,db->jda", phi, b)
    if has_ss:
        phi_ii = transition(model, part["dose_ii"])
        eye = jnp.eye(n)
        fix = _empty_depot(model)
        per = jax.vmap(lambda p, v: jnp.linalg.solve(eye - p + fix, v))(phi_ii, b)  # (D, n)
        x = jnp.where(ss[None, :, None], jnp.einsum("jdab,db->jda", phi, per), x)
    if has_infusion:
        x = jnp.where(infusion[None, :, None], _infusion(model, part, dt, a, rate_m), x)
    x = jnp.where(on[..., None] | (infusion[None, :, None] & mask[None, :, None]), x, 0.0)
    return x.sum(axis=1)


def transition(model: LinearPK, dt):
    """``exp(A dt)`` for an array of ``dt`` (h): closed form for :class:`pkpd.pk.OneCompartment`,
    pkpd's matrix exponential (:func:`pkpd.model.expm_input`) for the other linear models."""
    if isinstance(model, OneCompartment):
        k = model.cl / model.v
        ka = 0.0 if model.ka is None else model.ka
        ek, eka = jnp.exp(-k * dt), jnp.exp(-ka * dt)
        d = ka - k
        x = d * dt
        small = jnp.abs(x) < 1e-6
        # ka (e^-k t - e^-ka t) / (ka - k) = ka e^-k t (1 - e^-(ka-k) t) / (ka - k), stable at ka = k
        frac = jnp.where(small, dt * (1 - 0.5 * x), -jnp.expm1(-jnp.where(small, 1.0, x)) / jnp.where(small, 1.0, d))
        cd = ka * ek * frac
        zero = jnp.zeros_like(dt)
        return jnp.stack([jnp.stack([eka, zero], -1), jnp.stack([cd, ek], -1)], -2)
    a = model.matrix()
    n = a.shape[0]
    flat = jnp.reshape(dt, (-1,))
    phi = jax.vmap(lambda s: expm_input(a, jnp.zeros(n), s)[0])(flat)
    return phi.reshape(jnp.shape(dt) + (n, n))


def _empty_depot(model):
    """Identity on a depot that no dose can reach (ka None): keeps (I - Phi(ii)) invertible."""
    n = model.n_states
    if getattr(model, "ka", 1.0) is None and model.depot_index is not None:
        return jnp.zeros((n, n)).at[model.depot_index, model.depot_index].set(1.0)
    return jnp.zeros((n, n))


def _infusion(model, part, dt, a, rate_m):
    """Response (J, D, n) to each zero-order infusion (not steady state) at the observations."""
    n = a.shape[0]
    dur = jnp.where(part["dose_duration"] > 0, part["dose_duration"], 1.0)
    r = rate_m[:, part["dose_route"]].T * (part["dose_amount"] / dur)[:, None]  # (D, n)
    since = jnp.clip(dt, 0.0, None)  # time since the start (no lag on infusions)
    run = jnp.minimum(since, dur[None, :])
    after = since - run

    def one(run_jd, after_jd, r_d):
        _, g = expm_input(a, r_d, run_jd)
        phi, _ = expm_input(a, jnp.zeros(n), after_jd)
        return phi @ g

    return jax.vmap(jax.vmap(one, in_axes=(0, 0, 0)), in_axes=(0, 0, None))(run, after, r)


def part_tables(proto, records, *, save_slots: int = 4):
    """One :class:`pkpd.SegmentTable` per (subject, part), padded to one length and stacked to
    (S, P, ...) (padding parts repeat the first part's table; they are masked out)."""
    entries = []
    for i in range(records.n_subjects):
        for p in range(records.part_mask.shape[1]):
            if records.part_mask[i, p]:
                t = records.obs_time[i, p][records.obs_mask[i, p]]
                entries.append((i, p, records.schedules[i][p], t))
    # the obs_time padding repeats the last time, so that a table covers every padded save slot
    n_j = records.obs_time.shape[2]
    padded = {}
    for i, p, s, t in entries:
        padded[(i, p)] = (s, np.concatenate([t, np.full(n_j - t.size, t[-1])]))
    sizes = [segment_table(proto, s, t, save_slots=save_slots).n_segments for s, t in padded.values()]
    size = max(sizes)
    tables = {k: segment_table(proto, s, t, n_segments=size, save_slots=save_slots) for k, (s, t) in padded.items()}
    has_ss = any(tb.has_ss for tb in tables.values())
    has_sessions = any(tb.has_sessions for tb in tables.values())
    import dataclasses

    tables = {k: dataclasses.replace(tb, has_ss=has_ss, has_sessions=has_sessions) for k, tb in tables.items()}
    first = next(iter(tables.values()))
    grid = [[tables.get((i, p), first) for p in range(records.part_mask.shape[1])] for i in range(records.n_subjects)]
    return jax.tree_util.tree_map(
        lambda *xs: jnp.stack(xs).reshape((records.n_subjects, -1) + xs[0].shape), *[tb for row in grid for tb in row]
    )


def solve_states(model, table, **options):
    """States (J, n) at the part's observation times by :func:`pkpd.solve` on its segment table
    (forward-mode adjoint: FOCE differentiates in forward mode)."""
    import diffrax

    options.setdefault("adjoint", diffrax.ForwardMode())
    ys, _status, _steps = solve(model, table, **options)
    return ys
