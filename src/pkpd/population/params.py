"""Population parameters: fixed effects (THETA), random-effect and residual covariances (OMEGA,
SIGMA), and their unconstrained parameterisation for the optimiser.

THETA ``i`` has bounds ``(lower, upper)`` and is optimised as ``log(theta - lower)`` (lower bound
only), ``logit`` of its position (both bounds) or as is (none). OMEGA and SIGMA are block
diagonal: each block is a matrix of parameter indices (``-1``: a structural zero); blocks that
share the same indices are tied (NONMEM's ``SAME``, used for inter-occasion variability). A free
block is optimised through its Cholesky factor with a log diagonal, so it stays positive
definite.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Theta:
    """Fixed effects: ``names``, initial values ``init``, bounds ``lower``/``upper`` (+-inf when
    absent) and ``fixed`` flags."""

    names: tuple
    init: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fixed: np.ndarray

    def __post_init__(self):
        for i, n in enumerate(self.names):
            lo, v, hi = self.lower[i], self.init[i], self.upper[i]
            if not (np.isfinite(v) and lo <= v <= hi) or (not self.fixed[i] and (v == lo or v == hi)):
                raise ValueError(f"THETA {n}: initial value {v!r} is not inside its bounds ({lo!r}, {hi!r})")

    def to_x(self, values):
        v = jnp.asarray(values)
        lo, hi = self.lower, self.upper
        both, low = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo) & ~np.isfinite(hi)
        up = ~np.isfinite(lo) & np.isfinite(hi)
        lo_, hi_ = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 1.0)
        u = (v - lo_) / (hi_ - lo_)
        x = jnp.where(both, jnp.log(u) - jnp.log1p(-u), v)
        x = jnp.where(low, jnp.log(jnp.where(low, v - lo_, 1.0)), x)
        return jnp.where(up, jnp.log(jnp.where(up, hi_ - v, 1.0)), x)

    def from_x(self, x):
        lo, hi = self.lower, self.upper
        both, low = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo) & ~np.isfinite(hi)
        up = ~np.isfinite(lo) & np.isfinite(hi)
        lo_, hi_ = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 1.0)
        v = jnp.where(both, lo_ + (hi_ - lo_) * jnp.where(both, 1 / (1 + jnp.exp(-x)), 0.5), x)
        v = jnp.where(low, lo_ + jnp.exp(jnp.where(low, x, 0.0)), v)
        return jnp.where(up, hi_ - jnp.exp(jnp.where(up, x, 0.0)), v)


@dataclass(frozen=True)
class Covariance:
    """A block-diagonal covariance matrix of dimension ``dim`` built from parameters ``names``
    (initial values ``init``, ``fixed`` flags). ``blocks``: ``(indices into the random vector,
    (k, k) matrix of parameter indices or -1)``."""

    names: tuple
    init: np.ndarray
    fixed: np.ndarray
    blocks: tuple
    dim: int

    def __post_init__(self):
        seen = set()
        for idx, pm in self.blocks:
            pm = np.asarray(pm)
            if pm.shape != (len(idx), len(idx)):
                raise ValueError(f"covariance block over {idx} has a parameter matrix of shape {pm.shape}")
            key = pm.tobytes()
            if key in seen:
                continue
            seen.add(key)
            used = pm[np.tril_indices(len(idx))]
            fixed = {bool(self.fixed[i]) for i in used if i >= 0}
            if len(fixed) > 1:
                raise ValueError(f"covariance block {[self.names[i] for i in used if i >= 0]} is partly fixed")
            m = self.matrix(self.init)[np.ix_(idx, idx)]
            if not fixed == {True} and np.any(np.linalg.eigvalsh(np.asarray(m)) <= 0):
                raise ValueError(
                    f"covariance block {[self.names[i] for i in used if i >= 0]} = {np.asarray(m).tolist()} "
                    "is not positive definite"
                )

    def matrix(self, values):
        """The (dim, dim) matrix from the parameter values."""
        v = jnp.asarray(values)
        out = jnp.zeros((self.dim, self.dim))
        for idx, pm in self.blocks:
            pm = np.asarray(pm)
            sub = jnp.where(pm >= 0, v[np.maximum(pm, 0)], 0.0)
            out = out.at[np.ix_(idx, idx)].set(sub)
        return out

    def _free_blocks(self):
        """Distinct free blocks: (parameter matrix, lower-triangular parameter indices)."""
        out, seen = [], set()
        for _idx, pm in self.blocks:
            pm = np.asarray(pm)
            if pm.tobytes() in seen:
                continue
            seen.add(pm.tobytes())
            il = np.tril_indices(pm.shape[0])
            used = pm[il]
            if np.all(used < 0) or self.fixed[used[used >= 0]].all():
                continue
            if np.any(used < 0) and pm.shape[0] > 1 and not _is_diagonal(pm):
                raise ValueError(f"covariance block with parameters {pm.tolist()}: partial blocks are not supported")
            out.append(pm)
        return out

    def n_x(self) -> int:
        return sum(_n_free(pm) for pm in self._free_blocks())

    def to_x(self, values):
        xs = []
        v = jnp.asarray(values)
        for pm in self._free_blocks():
            if _is_diagonal(pm):
                xs.append(0.5 * jnp.log(v[np.diag(pm)]))
            else:
                m = jnp.where(pm >= 0, v[np.maximum(pm, 0)], 0.0)
                chol = jnp.linalg.cholesky(m)
                il = np.tril_indices(pm.shape[0])
                chol = chol.at[np.diag_indices(pm.shape[0])].set(jnp.log(jnp.diag(chol)))
                xs.append(chol[il])
        return jnp.concatenate(xs) if xs else jnp.zeros(0)

    def from_x(self, x, base=None):
        """Parameter values from the unconstrained ``x`` (fixed parameters from ``base``/init)."""
        v = jnp.asarray(self.init if base is None else base, dtype=jnp.float64)
        k = 0
        for pm in self._free_blocks():
            n = _n_free(pm)
            seg = x[k : k + n]
            k += n
            if _is_diagonal(pm):
                v = v.at[np.diag(pm)].set(jnp.exp(2 * seg))
            else:
                d = pm.shape[0]
                il = np.tril_indices(d)
                chol = jnp.zeros((d, d)).at[il].set(seg)
                chol = chol.at[np.diag_indices(d)].set(jnp.exp(jnp.diag(chol)))
                m = chol @ chol.T
                v = v.at[pm[il]].set(m[il])
        return v

    def free(self) -> np.ndarray:
        """Indices of the estimated (not fixed) parameters that appear in some block."""
        used = sorted({int(i) for _, pm in self.blocks for i in np.asarray(pm).ravel() if i >= 0})
        return np.asarray([i for i in used if not self.fixed[i]], int)


def _is_diagonal(pm) -> bool:
    pm = np.asarray(pm)
    return pm.shape[0] == 1 or bool(np.all(pm[~np.eye(pm.shape[0], dtype=bool)] < 0))


def _n_free(pm) -> int:
    d = pm.shape[0]
    return d if _is_diagonal(pm) else d * (d + 1) // 2


@dataclass(frozen=True)
class Parameters:
    """THETA, OMEGA and SIGMA of a population model, with the maps between natural values and the
    optimiser's unconstrained vector ``x``, and the vector ``p`` of estimated natural values
    (THETA, then OMEGA, then SIGMA parameters; what standard errors refer to)."""

    theta: Theta
    omega: Covariance
    sigma: Covariance

    @property
    def free_theta(self) -> np.ndarray:
        return np.nonzero(~self.theta.fixed)[0]

    def p_names(self) -> list[str]:
        return (
            [self.theta.names[i] for i in self.free_theta]
            + [self.omega.names[i] for i in self.omega.free()]
            + [self.sigma.names[i] for i in self.sigma.free()]
        )

    def x0(self):
        return self.to_x(self.theta.init, self.omega.init, self.sigma.init)

    def to_x(self, theta, omega, sigma):
        th = self.theta.to_x(theta)[self.free_theta]
        return jnp.concatenate([th, self.omega.to_x(omega), self.sigma.to_x(sigma)])

    def from_x(self, x):
        nt, no = len(self.free_theta), self.omega.n_x()
        full = self.theta.to_x(self.theta.init).at[self.free_theta].set(x[:nt])
        th = jnp.where(self.theta.fixed, jnp.asarray(self.theta.init, dtype=jnp.float64), self.theta.from_x(full))
        return th, self.omega.from_x(x[nt : nt + no]), self.sigma.from_x(x[nt + no :])

    def to_p(self, theta, omega, sigma):
        return jnp.concatenate(
            [
                jnp.asarray(theta)[self.free_theta],
                jnp.asarray(omega)[self.omega.free()],
                jnp.asarray(sigma)[self.sigma.free()],
            ]
        )

    def from_p(self, p):
        nt, no = len(self.free_theta), len(self.omega.free())
        th = jnp.asarray(self.theta.init, dtype=jnp.float64).at[self.free_theta].set(p[:nt])
        om = jnp.asarray(self.omega.init, dtype=jnp.float64).at[self.omega.free()].set(p[nt : nt + no])
        sg = jnp.asarray(self.sigma.init, dtype=jnp.float64).at[self.sigma.free()].set(p[nt + no :])
        return th, om, sg
