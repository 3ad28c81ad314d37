"""The window and learning equations (pure functions of a core trajectory; see :mod:`pkpd.windows`).

Openness ``W`` (dimensionless, 0 at baseline) integrates the treatment's signal above baseline
and closes at its own rate::

    W' = k_open * max(x(t) - 1, 0) - k_close * W

where ``x`` is the core state named by the candidate (:data:`SIGNALS`). The window is *open*
while ``W >= 1``. A training session at time ``t`` is learned with the gain
``1 + gain * W / (1 + W)`` (half of the maximal enhancement exactly when the window opens), and
consolidated learning fades at ``k_forget``::

    learning(T) = sum_j intensity_j * integral_{s_j}^{min(s_j + d_j, T)} (1 + gain W/(1+W)) e^{-k_forget (T - t)} dt

in hours of standard training. Training alone (``W = 0``) gives the same sum with gain 1, so
``learning_gain = learning / learning_alone`` is the treatment's multiplier on what training
teaches. ``W`` is propagated exactly between the trajectory's time points for a signal that is
linear between them, so its accuracy is that of the trajectory's time grid.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..schedule import Schedule

#: Candidate openness states: the name and the core state whose excess over baseline opens the window.
SIGNALS = {
    "pv_brake": "trkb",  # TrkB signalling releases the PV-interneuron brake (iPlasticity)
    "spine_formation": "protein",  # synaptic protein synthesis above baseline: new spines forming
}
#: Gauss-Legendre nodes per training session of the learning integral.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


class WindowParams(eqx.Module):
    """Window and learning parameters (rates per hour; see the module docstring).

    ``candidate``: a key of :data:`SIGNALS`; ``k_open`` (1/h per unit of signal above baseline),
    ``k_close`` (1/h), ``gain`` (maximal extra learning per training hour, dimensionless),
    ``k_forget`` (1/h, decay of consolidated learning)."""

    k_open: jax.Array | float
    k_close: jax.Array | float
    gain: jax.Array | float
    k_forget: jax.Array | float
    candidate: str = eqx.field(default="pv_brake", static=True)

    def __check_init__(self):
        if self.candidate not in SIGNALS:
            raise ValueError(f"candidate={self.candidate!r} is not known; valid: {list(SIGNALS)}")
        for name in ("k_open", "k_close", "gain", "k_forget"):
            v = getattr(self, name)
            if isinstance(v, jax.core.Tracer):
                continue
            arr = np.asarray(v, dtype=float)
            if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (name == "k_close" and np.any(arr <= 0)):
                raise ValueError(f"{name}={v!r} must be finite and {'> 0' if name == 'k_close' else '>= 0'}")

    @property
    def signal(self) -> str:
        """The core state that drives the openness."""
        return SIGNALS[self.candidate]


@jax.jit
def openness(times, signal, k_open, k_close):
    """Openness ``W`` on ``times`` (h, increasing; ``W = 0`` at ``times[0]``) from the core state
    ``signal`` (relative to baseline, shape ``(..., len(times))``), exact for a signal linear
    between time points. Passes through ``jit``, ``vmap`` and ``grad``."""
    t = jnp.asarray(times, dtype=jnp.float64)
    u = jnp.maximum(jnp.asarray(signal, dtype=jnp.float64) - 1.0, 0.0)
    h = jnp.diff(t)
    k = jnp.asarray(k_close, dtype=jnp.float64)
    e = jnp.exp(-k * h)
    a0 = (1.0 - e) / k  # integral of e^{-k(h - s)} over [0, h]
    a1 = (h / k - a0 / k) / jnp.where(h > 0, h, 1.0)  # integral of (s/h) e^{-k(h - s)}: the ramp part
    u0, u1 = u[..., :-1], u[..., 1:]
    inc = k_open * (u0 * (a0 - a1) + u1 * a1)

    def step(w, xs):
        ei, di = xs
        w = w * ei + di
        return w, w

    inc_t = jnp.moveaxis(inc, -1, 0)
    w0 = jnp.zeros(inc.shape[:-1])
    _, ws = jax.lax.scan(step, w0, (e, inc_t))
    return jnp.concatenate([w0[..., None], jnp.moveaxis(ws, 0, -1)], axis=-1)


def window_interval(times, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(opens_h, closes_h, open_h)`` per row of ``w`` (numpy): the first time ``W`` reaches 1,
    the last time it is >= 1 (both linearly interpolated; NaN if it never opens) and the total
    time it is open (h). A window still open at the last time point closes there (a lower bound)."""
    t = np.asarray(times, dtype=float)
    w2 = np.atleast_2d(np.asarray(w, dtype=float))
    d = w2 - 1.0
    opens, closes, total = (np.full(w2.shape[0], np.nan) for _ in range(3))
    for i, row in enumerate(d):
        above = row >= 0
        if not above.any():
            total[i] = 0.0
            continue
        a, b = int(np.argmax(above)), int(len(row) - 1 - np.argmax(above[::-1]))
        opens[i] = t[a] if a == 0 else t[a - 1] + (t[a] - t[a - 1]) * (-row[a - 1]) / (row[a] - row[a - 1])
        closes[i] = t[b] if b == len(row) - 1 else t[b] + (t[b + 1] - t[b]) * row[b] / (row[b] - row[b + 1])
        # total open time: the trapezoid of the indicator with interpolated crossings
        cross = np.where(np.diff(above.astype(int)) != 0)[0]
        edges = [t[0]] if above[0] else []
        for j in cross:
            edges.append(t[j] + (t[j + 1] - t[j]) * (-row[j]) / (row[j + 1] - row[j]))
        if above[-1]:
            edges.append(t[-1])
        total[i] = float(np.sum(np.diff(np.reshape(edges, (-1, 2)), axis=1)))
    shape = np.shape(w)[:-1]
    return opens.reshape(shape), closes.reshape(shape), total.reshape(shape)


def training_arrays(schedule: Schedule):
    """``(start, duration, intensity)`` of the schedule's training sessions (h, h, -)."""
    return (
        jnp.asarray(schedule.training_start, dtype=jnp.float64),
        jnp.asarray(schedule.training_duration, dtype=jnp.float64),
        jnp.asarray(schedule.training_intensity, dtype=jnp.float64),
    )


@jax.jit
def learning(times, w, start, duration, intensity, at_h, gain, k_forget):
    """Consolidated learning at ``at_h`` (hours of standard training; module docstring) of
    training sessions ``start``/``duration``/``intensity`` (1-D arrays, h) given openness ``w`` on
    ``times``. Sessions (or their parts) after ``at_h`` do not count. Differentiable in the
    session starts, ``w``, ``gain`` and ``k_forget``; ``w`` may carry leading batch axes."""
    t = jnp.asarray(times, dtype=jnp.float64)
    a = jnp.minimum(start, at_h)
    b = jnp.minimum(start + duration, at_h)
    half = 0.5 * (b - a)
    nodes = 0.5 * (a + b)[:, None] + half[:, None] * jnp.asarray(_GL_NODES)[None, :]  # (sessions, nodes)
    interp = lambda row: jnp.interp(nodes, t, row)  # noqa: E731
    wn = interp(w) if jnp.ndim(w) == 1 else jax.vmap(interp)(jnp.reshape(w, (-1, t.shape[0])))
    g = 1.0 + gain * wn / (1.0 + wn)
    decay = jnp.exp(-k_forget * (at_h - nodes))
    per = jnp.sum(g * decay * jnp.asarray(_GL_WEIGHTS), axis=-1) * half * intensity
    out = jnp.sum(per, axis=-1)
    return out if jnp.ndim(w) == 1 else jnp.reshape(out, jnp.shape(w)[:-1])


@jax.jit
def learning_alone(start, duration, intensity, at_h, k_forget):
    """:func:`learning` of the same training without a treatment (``W = 0``), in closed form."""
    a = jnp.minimum(start, at_h)
    b = jnp.minimum(start + duration, at_h)
    k = jnp.asarray(k_forget, dtype=jnp.float64)
    safe = jnp.where(k > 0, k, 1.0)
    dec = jnp.where(k > 0, (jnp.exp(-k * (at_h - b)) - jnp.exp(-k * (at_h - a))) / safe, b - a)
    return jnp.sum(intensity * dec)


def _per_draw(plist, name):
    return jnp.asarray([getattr(p, name) for p in plist], dtype=jnp.float64)


def openness_draws(times, signals, plist) -> np.ndarray:
    """:func:`openness` per draw: row ``i`` of ``signals`` (draws x times, relative to baseline)
    with parameter set ``plist[i]``, in one vectorised call."""
    per = jax.vmap(openness, in_axes=(None, 0, 0, 0))
    return np.array(per(times, jnp.asarray(signals), _per_draw(plist, "k_open"), _per_draw(plist, "k_close")))


def gain_draws(times, w, plist, start, duration, intensity, at_h) -> tuple[np.ndarray, np.ndarray]:
    """``(learning, learning_alone)`` per draw of the training sessions given openness ``w``
    (draws x times) and one parameter set per draw; their ratio is the learning gain."""
    with_w = jax.vmap(learning, in_axes=(None, 0, None, None, None, None, 0, 0))
    alone = jax.vmap(learning_alone, in_axes=(None, None, None, None, 0))
    forget = _per_draw(plist, "k_forget")
    lv = with_w(times, jnp.asarray(w), start, duration, intensity, at_h, _per_draw(plist, "gain"), forget)
    return np.asarray(lv), np.asarray(alone(start, duration, intensity, at_h, forget))
