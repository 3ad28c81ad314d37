"""Full Bayesian fit of a population model by NumPyro NUTS, non-centred, to arviz.

Model: ``eta_i = L z_i`` with ``z_i ~ N(0, I)`` and ``L`` the Cholesky factor of OMEGA (the
non-centred form, which avoids the funnel between OMEGA and the etas); observations
``y_ij ~ N(f_ij(eta_i), R_ij(eta_i))`` with the error model linearised in eps (exact for the
additive, proportional and combined models, whose Y is linear in eps).

Priors (weakly informative defaults, scaled by the model's initial estimates, which a user
supplies or the control stream holds): every estimated THETA on the optimiser's unconstrained
scale (log(theta - lower) for a lower bound, logit for two bounds) ~ Normal(initial, ``theta_sd``
= 2), i.e. a factor e^2 = 7.4 per prior sd for positive parameters; each random-effect and
residual standard deviation ~ HalfNormal(``scale_factor`` x its initial value, 10 by default);
each block's correlation matrix ~ LKJ(2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .model import ESTIMATORS, PopulationModel
from .params import Covariance, _is_diagonal


def _covariance_sample(name: str, cov: Covariance, scale_factor: float):
    """Sample the free blocks of ``cov`` (sd and LKJ correlation) and return its parameter vector."""
    import numpyro
    import numpyro.distributions as dist

    v = jnp.asarray(cov.init, dtype=jnp.float64)
    for b, pm in enumerate(cov._free_blocks()):
        d = pm.shape[0]
        init_sd = np.sqrt(np.asarray(cov.init)[np.diag(pm)])
        sd = numpyro.sample(f"{name}_sd{b}", dist.HalfNormal(jnp.asarray(scale_factor * init_sd)).to_event(1))
        if _is_diagonal(pm):
            v = v.at[np.diag(pm)].set(sd**2)
        else:
            corr_l = numpyro.sample(f"{name}_corr{b}", dist.LKJCholesky(d, 2.0))
            chol = sd[:, None] * corr_l
            m = chol @ chol.T
            il = np.tril_indices(d)
            v = v.at[pm[il]].set(m[il])
    return v


def _numpyro_model(model: PopulationModel, theta_sd: float, scale_factor: float):
    import numpyro
    import numpyro.distributions as dist

    pr = model.params
    free = pr.free_theta
    x_init = np.asarray(pr.theta.to_x(pr.theta.init))[free]
    names = pr.p_names()
    arrays = model._arrays
    mask = arrays["obs_mask"] & arrays["part_mask"][:, :, None]
    n_sub = model.records.n_subjects

    def npm():
        x = numpyro.sample("theta_x", dist.Normal(jnp.asarray(x_init), theta_sd).to_event(1))
        full = pr.theta.to_x(pr.theta.init).at[free].set(x)
        theta = jnp.where(pr.theta.fixed, jnp.asarray(pr.theta.init), pr.theta.from_x(full))
        omega = _covariance_sample("omega", pr.omega, scale_factor)
        sigma = _covariance_sample("sigma", pr.sigma, scale_factor)
        p = pr.to_p(theta, omega, sigma)
        for k, n in enumerate(names):
            numpyro.deterministic(n, p[k])
        om_m, sg_m = pr.omega.matrix(omega), pr.sigma.matrix(sigma)
        chol = jnp.linalg.cholesky(om_m)
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([n_sub, pr.omega.dim]).to_event(2))
        eta = z @ chol.T
        f, r = jax.vmap(lambda e, subj: model.subject_predictions(theta, sg_m, e, subj))(eta, arrays)
        ll = jnp.where(mask, dist.Normal(f, jnp.sqrt(jnp.where(mask, r, 1.0))).log_prob(arrays["obs_dv"]), 0.0)
        numpyro.factor("loglik", jnp.sum(ll))

    return npm


@dataclass
class BayesResult:
    """Posterior draws of a population model (``idata``: arviz InferenceData; the natural
    parameters under their names, plus ``theta_x``, ``omega_sd*``, ``sigma_sd*``, ``z``)."""

    model: PopulationModel
    idata: object
    mcmc: object = field(repr=False)
    timing: dict = field(default_factory=dict)

    def summary(self):
        """Median, sd, 5 % and 95 % quantiles, R-hat and bulk ESS of every estimated parameter."""
        import arviz as az
        import pandas as pd

        names = self.model.params.p_names()
        post = self.idata.posterior
        rows = []
        s = az.summary(self.idata, var_names=names, kind="diagnostics", round_to="none")
        for n in names:
            d = np.asarray(post[n]).ravel()
            rows.append(
                dict(
                    parameter=n,
                    median=float(np.median(d)),
                    sd=float(np.std(d, ddof=1)),
                    q5=float(np.quantile(d, 0.05)),
                    q95=float(np.quantile(d, 0.95)),
                    r_hat=float(s.loc[n, "r_hat"]),
                    ess_bulk=float(s.loc[n, "ess_bulk"]),
                )
            )
        return pd.DataFrame(rows).set_index("parameter")

    def compare(self, result):
        """The posterior medians against a FOCE-I result: (median - estimate) / posterior sd."""
        out = self.summary()
        out["focei"] = result.estimates.reindex(out.index).to_numpy()
        out["z"] = (out["median"] - out["focei"]) / out["sd"]
        return out

    @property
    def divergences(self) -> int:
        return int(np.asarray(self.mcmc.get_extra_fields()["diverging"]).sum())


def fit_nuts(
    model: PopulationModel,
    *,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    theta_sd: float = 2.0,
    scale_factor: float = 10.0,
    target_accept_prob: float = 0.85,
    progress_bar: bool = False,
):
    """Sample the posterior with NUTS (chains run one after another). Returns a :class:`BayesResult`."""
    import arviz as az
    from numpyro.infer import MCMC, NUTS, init_to_value

    pr = model.params
    init = {
        "theta_x": jnp.asarray(np.asarray(pr.theta.to_x(pr.theta.init))[pr.free_theta]),
        "z": jnp.zeros((model.records.n_subjects, pr.omega.dim)),
    }
    for name, cov in (("omega", pr.omega), ("sigma", pr.sigma)):
        for b, pm in enumerate(cov._free_blocks()):
            init[f"{name}_sd{b}"] = jnp.sqrt(jnp.asarray(np.asarray(cov.init)[np.diag(pm)]))
    kernel = NUTS(
        _numpyro_model(model, theta_sd, scale_factor),
        target_accept_prob=target_accept_prob,
        init_strategy=init_to_value(values=init),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=progress_bar,
    )
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging",))
    t1 = time.perf_counter()
    idata = az.from_numpyro(mcmc)
    return BayesResult(model=model, idata=idata, mcmc=mcmc, timing=dict(sample_s=t1 - t0))


ESTIMATORS["nuts"] = fit_nuts
