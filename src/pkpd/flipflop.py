"""The flip-flop symmetry of first-order absorption into one compartment, for sampling.

With first-order absorption ``ka`` into one compartment (clearance ``cl``, volume ``v``,
elimination ``ke = cl / v``), the plasma curve

    C(t) = F D ka / (v (ka - ke)) (exp(-ke t) - exp(-ka t))

is unchanged when the two rates swap and the volume shrinks by ``ke / ka``:

    (ka, cl, v)  ->  (ke, cl, v ke / ka)          (clearance unchanged)

so every readout computed from the concentration (occupancy, effect compartments, the plasticity
core downstream, and every summary statistic) is too. Concentration data cannot tell which rate is
absorption ("flip-flop" kinetics); where the two are close (psilocin: tmax 2 h against t1/2 1.7 h,
Holze 2023, so ``ka`` 0.60 or 0.42 1/h) the posterior has two mirror-image modes of equal
likelihood. Each sampler chain tends to stay in one of them; two chains on opposite sides inflate
R-hat (psilocybin.v) although both sample the same posterior.

In log space the swap is the affine involution ``M: (a, c, w) -> (c - w, c, c - a)`` with
``a = log ka``, ``c = log cl``, ``w = log v`` (``|det M| = 1``); it maps ``d = a - (c - w) =
log(ka / ke)`` to ``-d``. Sampling the likelihood ``L`` (``L(Mz) = L(z)``) times the symmetrised
prior ``(p(z) + p(Mz)) / 2`` and folding each draw onto ``d >= 0`` samples exactly the folded
posterior of the original model, ``L(z) (p(z) + p(Mz))`` on ``ka >= ke``: the original posterior
with the two indistinguishable labellings identified. Because the symmetrised target gives each
side exactly half the mass, a chain that never crosses still samples the folded posterior, so
chains in opposite modes agree after folding. Reported draws follow the convention ``ka >= ke``
(the drug cards' values do too); which of the two rates is truly absorption, the data cannot say.

Only ``pk_structure = "oral_one_compartment"`` cards qualify (:data:`STRUCTURES`); the invariance
of the library's likelihood is tested (``tests/test_calibrate.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: PK structures whose (ka, cl, v) have the flip-flop symmetry.
STRUCTURES = ("oral_one_compartment",)
#: Parameter names of a triple, in the order :func:`reflect` expects.
NAMES = ("ka", "cl", "v")


def pk_structure(card: str) -> str:
    """``pk_structure`` of drug card ``card`` ("" if there is no such drug card)."""
    from . import cards

    try:
        return cards.load("drug", card).header.get("pk_structure", "")
    except (KeyError, FileNotFoundError, ValueError):
        return ""


def triples(keys, pk_structure, transform) -> list[tuple[int, int, int]]:
    """Index triples ``(ka, cl, v)`` in ``keys`` that have the flip-flop symmetry.

    ``keys``: parameter keys ``"card.name@species"`` (as :func:`pkpd.calibrate.parameter_key`);
    ``pk_structure(card)``: that card's PK structure; ``transform(key)``: the key's fitted-space
    transform. A triple qualifies when its card's structure is in :data:`STRUCTURES`, all three
    parameters of one species are fitted, and all three are fitted on the log scale."""
    keys = list(keys)
    out = []
    for i, k in enumerate(keys):
        card, _, rest = k.rpartition(".")
        base, _, species = rest.partition("@")
        if not card or base != "ka":
            continue
        suffix = f"@{species}" if species else ""
        others = [f"{card}.{n}{suffix}" for n in NAMES[1:]]
        if not all(o in keys for o in others) or pk_structure(card) not in STRUCTURES:
            continue
        idx = (i, keys.index(others[0]), keys.index(others[1]))
        if all(transform(keys[j]) == "log" for j in idx):
            out.append(idx)
    return out


def log_ratio(z, triple):
    """``log(ka / ke)`` of the triple in the log-parameter vector ``z`` (last axis)."""
    a, c, w = triple
    return z[..., a] - (z[..., c] - z[..., w])


def reflect(z, triple):
    """``M z``: swap ``ka`` and ``ke = cl / v`` of one triple (``v -> v ke / ka``); numpy or jax."""
    a, c, w = triple
    za, zc, zw = z[..., a], z[..., c], z[..., w]
    if not isinstance(z, jax.Array):
        out = np.array(z, dtype=float, copy=True)
        out[..., a], out[..., w] = zc - zw, zc - za
        return out
    return z.at[..., a].set(zc - zw).at[..., w].set(zc - za)


def fold(z, triples_):
    """Every draw (rows of ``z``, numpy) with ``ka < ke`` in a triple reflected onto ``ka >= ke``."""
    z = np.array(z, dtype=float, copy=True)
    for t in triples_:
        flip = log_ratio(z, t) < 0
        z[flip] = reflect(z[flip], t)
    return z


def fold_jax(z, triples_):
    """:func:`fold` for one parameter vector inside a traced (jax) computation: where a triple has
    ``ka < ke``, its reflection. Pure, so ``jit`` and ``grad`` pass through."""
    for t in triples_:
        z = jnp.where(log_ratio(z, t) < 0, reflect(z, t), z)
    return z


def log_prior(z, mu, sigma, triples_):
    """Independent normal log prior of ``z`` (jax), each triple's factor symmetrised under its
    reflection: ``log((p(z_t) + p(M z_t)) / 2)``. Symmetric under every triple's ``M``; equal to
    the plain normal prior where the mirror image is far out in the prior's tails."""

    def lp(x, idx):
        i = jnp.asarray(idx)
        return jnp.sum(-0.5 * ((x[i] - mu[i]) / sigma[i]) ** 2 - jnp.log(sigma[i]) - 0.5 * jnp.log(2 * jnp.pi))

    total = jnp.sum(-0.5 * ((z - mu) / sigma) ** 2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi))
    for t in triples_:
        own = lp(z, t)
        total = total - own + jnp.logaddexp(own, lp(reflect(z, t), t)) - jnp.log(2.0)
    return total
