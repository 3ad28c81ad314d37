"""The hierarchical model's data likelihood with every study effect integrated out, on the host.

Each study effect ``b_s ~ Normal(0, tau)`` scales only its own rows, so integrating it out is a
one-dimensional adaptive Gauss-Hermite quadrature per study (:func:`_study_marginal`); the
per-modality forward-mode Jacobians (:meth:`JointProblem._evaluate`) chain with the quadrature's
gradient (:class:`_HostLogLikelihood`), and :func:`_joint_loglik` wraps the pair for JAX so that
NumPyro's NUTS can sample ``theta = (z, log tau)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._problem import TAU_STUDY, JointProblem

#: Prior of the between-study sd ``tau`` in the hierarchical NUTS: lognormal with median
#: :data:`TAU_STUDY` and log-sd 0.5 (assumed; 90 % of the prior mass between 0.13 and 0.69).
TAU_PRIOR_SIGMA = 0.5


#: Gauss-Hermite nodes of the adaptive quadrature that integrates out each study effect.
STUDY_NODES = 16


def _study_marginal(pred, log_tau, centre, scale, value, sd, study, n_studies, x, logw):
    """log of prod_s int prod_{i in s} N(y_i | pred_i e^b, sd_i) N(b | 0, tau) db (up to the rows'
    normalising constants), by adaptive Gauss-Hermite quadrature: nodes b = centre_s + sqrt(2)
    scale_s x_k around each study's conditional mode. The nodes are constants here, so the
    gradient is that of the quadrature sum (exact to quadrature accuracy)."""
    b = centre[:, None] + jnp.sqrt(2.0) * scale[:, None] * x[None, :]  # (studies, nodes)
    mu = pred[:, None] * jnp.exp(b[study])  # (rows, nodes)
    rows = -0.5 * ((mu - value[:, None]) / sd[:, None]) ** 2
    lik = jax.ops.segment_sum(rows, study, num_segments=n_studies)
    prior = -0.5 * (b * jnp.exp(-log_tau)) ** 2 - log_tau - 0.5 * jnp.log(2.0 * jnp.pi)
    terms = lik + prior + logw[None, :] + jnp.log(jnp.sqrt(2.0) * scale)[:, None]
    return jnp.sum(jax.scipy.special.logsumexp(terms, axis=1))


#: Value and gradient (in pred, log tau) of :func:`_study_marginal`; compiled once per row/study shape
#: and reused by every modality and every :func:`nuts` call.
_study_marginal_grad = jax.jit(jax.value_and_grad(_study_marginal, argnums=(0, 1)), static_argnums=(7,))


class _HostLogLikelihood:
    """Data log-likelihood of the hierarchical model with every study effect integrated out, as a
    function of ``theta = (z, log tau)``, and its gradient, on the host: the per-modality
    forward-mode Jacobians (:meth:`JointProblem._evaluate`, the modalities never share one
    compiled function) chained with the gradient of the per-study quadrature
    (:func:`_study_marginal`). Wrapped for JAX by :func:`_joint_loglik` as a ``pure_callback``
    with a custom VJP, so that NumPyro's NUTS can use it; ``calls`` counts evaluations.

    Each study effect ``b_s`` enters only its own rows, so ``int ... db_s`` is one-dimensional:
    integrating it out leaves NUTS ``K + 1`` dimensions instead of ``K + 1 + S``, and removes the
    funnel between ``tau`` and effects that the data pin down."""

    def __init__(self, jp: JointProblem, nodes: int = STUDY_NODES):
        self.jp = jp
        self.calls = 0
        #: evaluations refused (log-likelihood -inf, so NUTS sees a divergence), counted by reason,
        #: and the first ``theta`` refused for each reason
        self.refused: dict[str, int] = {}
        self.refused_at: dict[str, list] = {}
        x, w = np.polynomial.hermite.hermgauss(int(nodes))
        self.x, self.logw = jnp.asarray(x), jnp.asarray(np.log(w) + x**2)
        self.local: dict[str, tuple] = {}
        for m, pb in jp.problems.items():
            uniq, study = np.unique(jp.study_index[m], return_inverse=True)
            self.local[m] = (uniq, study, np.asarray(pb.obs.value, dtype=float), pb.sd())

    def centre(self, m: str, pred: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """Conditional mode and Gauss-Newton sd of each study effect of modality ``m`` given its
        predictions and ``tau`` (damped Newton in b, started at 0)."""
        uniq, study, value, sd = self.local[m]
        b = np.zeros(len(uniq))
        h = np.ones(len(uniq))
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(50):
                e = pred * np.exp(b[study])
                a, r = e / sd, (e - value) / sd
                g = -np.bincount(study, a * r, len(uniq)) - b / tau**2
                h = np.bincount(study, a * a, len(uniq)) + 1.0 / tau**2
                step = np.clip(g / h, -1.0, 1.0)
                b = b + step
                if np.all(np.abs(step) < 1e-10):
                    break
        return b, 1.0 / np.sqrt(h)

    def __call__(self, theta):
        jp = self.jp
        self.calls += 1
        theta = np.asarray(theta, dtype=np.float64)
        z, log_tau = theta[: jp.K], float(theta[jp.K])

        def refused(reason):  # NUTS sees a divergence
            self.refused[reason] = self.refused.get(reason, 0) + 1
            self.refused_at.setdefault(reason, theta.tolist())
            return np.float64(-np.inf), np.zeros(jp.K + 1)

        with np.errstate(over="ignore"):
            tau = np.exp(log_tau)
        if not np.isfinite(tau) or tau <= 0:
            return refused("tau overflows")
        ll, g = 0.0, np.zeros(jp.K + 1)
        for m, (jac, pred) in jp._evaluate(z).items():
            if not np.all(np.isfinite(pred)):
                return refused(f"{m}: prediction not finite (failed solve)")
            if not np.all(np.isfinite(jac)):
                return refused(f"{m}: Jacobian not finite")
            uniq, study, value, sd = self.local[m]
            centre, scale = self.centre(m, pred, tau)
            if not (np.all(np.isfinite(centre)) and np.all(np.isfinite(scale))):
                return refused(f"{m}: study-effect mode not finite")
            v, (d_pred, d_tau) = _study_marginal_grad(
                jnp.asarray(pred),
                jnp.asarray(log_tau),
                jnp.asarray(centre),
                jnp.asarray(scale),
                jnp.asarray(value),
                jnp.asarray(sd),
                jnp.asarray(study),
                len(uniq),
                self.x,
                self.logw,
            )
            ll += float(v)
            g[jp.index[m]] += np.asarray(jac).T @ np.asarray(d_pred)
            g[jp.K] += float(d_tau)
        if not (np.isfinite(ll) and np.all(np.isfinite(g))):
            return refused("log-likelihood or gradient not finite")
        return np.float64(ll), g

    def draw_study_effects(self, theta, rng) -> np.ndarray:
        """One draw of every study effect from its conditional posterior given ``theta`` (Laplace:
        Normal at the conditional mode with the Gauss-Newton sd)."""
        jp = self.jp
        theta = np.asarray(theta, dtype=np.float64)
        tau = float(np.exp(theta[jp.K]))
        out = np.full(jp.S, np.nan)
        for m, (_jac, pred) in jp._evaluate(theta[: jp.K]).items():
            centre, scale = self.centre(m, pred, tau)
            out[self.local[m][0]] = centre + scale * rng.standard_normal(len(centre))
        return out


def _joint_loglik(host: _HostLogLikelihood):
    n = host.jp.K + 1
    shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((n,), jnp.float64))

    def both(x):
        return jax.pure_callback(lambda v: tuple(np.asarray(a, dtype=np.float64) for a in host(v)), shapes, x)

    @jax.custom_vjp
    def loglik(x):
        return both(x)[0]

    def fwd(x):
        ll, g = both(x)
        return ll, g

    def bwd(g, ct):
        return (ct * g,)

    loglik.defvjp(fwd, bwd)
    return loglik


def theta_prior(jp: JointProblem) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean and sd of ``theta = (z, log tau)`` in :func:`nuts` (independent normals)."""
    return (np.concatenate([jp.mu[: jp.K], [np.log(TAU_STUDY)]]), np.concatenate([jp.sigma[: jp.K], [TAU_PRIOR_SIGMA]]))


def marginal_log_posterior(jp: JointProblem, host: _HostLogLikelihood):
    """``theta -> (log posterior, gradient)`` that :func:`nuts` samples, up to a constant: the
    prior of :func:`theta_prior` plus the data with the study effects integrated out (``host``)."""
    mu, sig = theta_prior(jp)

    def logpost(theta):
        ll, g = host(theta)
        return ll - 0.5 * np.sum(((theta - mu) / sig) ** 2), g - (theta - mu) / sig**2

    return logpost
