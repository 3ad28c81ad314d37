"""A population model: a pkpd structural model + a parameter model (typical values, covariate
effects, log-normal or other random effects with diagonal or block OMEGA, inter-occasion
variability) + a residual error model, evaluated on individual records.

Individual parameters are ``individual(theta, eta, cov)`` (dicts keyed by name; ``cov`` holds the
part's covariates by upper-case column name). For a parameter with inter-occasion variability
``eta[name]`` already includes the random effect of the part's occasion. The structural model
is ``structural(**params)`` (e.g. :class:`pkpd.pk.OneCompartment`, or any callable returning a
pkpd model, PK only or a full PK/PD model). The prediction ``f`` is the model output ``output``
at the observation times; the residual error model gives ``Y = f + f eps_prop + eps_add`` with
``eps ~ N(0, SIGMA)`` (``error``: "additive", "proportional" or "combined"; SIGMA holds
variances, as in NONMEM).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._units import amount_factor
from ..model import Model
from ..pk import LinearPK
from .params import Covariance, Parameters, Theta
from .predict import linear_states, part_tables, solve_states
from .records import Records, read_records

#: Estimation methods by name (``PopulationModel.fit(method=...)``), registered by the modules that
#: implement them (:mod:`.foce`, :mod:`.nuts`), so that the model does not import its estimators.
ESTIMATORS: dict[str, Callable] = {}

ERRORS = {"additive": ("add",), "proportional": ("prop",), "combined": ("prop", "add")}


class PopulationModel:
    """Structural model + parameter model + error model + records. Build it with the arguments
    below, or from a NONMEM control stream with :func:`pkpd.population.from_nonmem`.

    - ``structural``: callable ``(**params) -> pkpd Model``.
    - ``data``: a NONMEM-style DataFrame or CSV path (see :func:`read_records`), or :class:`Records`.
    - ``theta``: ``{name: initial}`` or ``{name: (lower, initial, upper)}``.
    - ``omega``: ``{eta name: variance}`` (diagonal) and/or ``{(name, name, ...): matrix}`` blocks.
    - ``individual``: ``(theta, eta, cov) -> {structural parameter: value}`` (pure JAX code).
    - ``sigma``: ``{"prop": variance}``, ``{"add": variance}`` or both (per ``error``).
    - ``covariates``: dataset columns the parameter model reads; ``occasion``: the occasion column;
      ``iov``: ``{eta name: variance}`` of random effects that vary between occasions.
    - ``lag``: name of the individual parameter that is an estimated absorption lag (h); only the
      exact linear backend differentiates it.
    - ``backend``: "linear" (superposition, :mod:`pkpd.pk` models), "solve" (:func:`pkpd.solve`,
      any model) or "auto" (linear when the structural model is linear PK).
    """

    def __init__(
        self,
        structural: Callable[..., Model],
        data,
        *,
        theta: dict,
        omega: dict,
        individual: Callable,
        sigma: dict | None = None,
        error: str = "proportional",
        covariates=(),
        output: str = "concentration",
        occasion: str | None = None,
        iov: dict | None = None,
        lag: str | None = None,
        backend: str = "auto",
        cmt_routes: dict | None = None,
    ):
        if error not in ERRORS:
            raise ValueError(f"error={error!r} is not known; valid: {list(ERRORS)}")
        sigma = dict(sigma or {k: 0.01 for k in ERRORS[error]})
        if set(sigma) != set(ERRORS[error]):
            raise ValueError(f"sigma={sigma} must have the keys {list(ERRORS[error])} for error={error!r}")
        iov = dict(iov or {})
        if iov and occasion is None:
            raise ValueError("iov needs occasion= (the dataset column that numbers the occasions)")
        records = (
            data
            if isinstance(data, Records)
            else read_records(data, covariates=covariates, occasion=occasion, cmt_routes=cmt_routes)
        )
        theta_spec = _theta_spec(theta)
        omega_spec, eta_names, iiv = _omega_spec(omega, iov, len(records.occasions))
        sigma_spec = Covariance(
            names=tuple(sigma),
            init=np.asarray([float(v) for v in sigma.values()]),
            fixed=np.zeros(len(sigma), bool),
            blocks=tuple(((i,), np.asarray([[i]])) for i in range(len(sigma))),
            dim=len(sigma),
        )
        th_names, cov_names, n_occ = theta_spec.names, records.cov_names, len(records.occasions)
        iov_names = tuple(iov)

        def indiv(th, eta, cov, occ):
            e = {n: eta[i] for i, n in enumerate(iiv)}
            for k, n in enumerate(iov_names):
                kappa = eta[len(iiv) + k * n_occ + occ]
                e[n] = e.get(n, 0.0) + kappa
            return individual(
                {n: th[i] for i, n in enumerate(th_names)}, e, {n: cov[i] for i, n in enumerate(cov_names)}
            )

        eps_names = tuple(sigma)

        def y(state, mdl, prm, th, eta, cov, eps):
            f = mdl.outputs(state)[output]
            e = dict(zip(eps_names, eps))
            return f + f * e.get("prop", 0.0) + e.get("add", 0.0)

        self._setup(
            Parameters(theta_spec, omega_spec, sigma_spec),
            records,
            indiv=indiv,
            structural=lambda prm: structural(**prm),
            lag=(lambda prm: prm[lag]) if lag else (lambda prm: 0.0),
            y=y,
            eta_names=eta_names,
            backend=backend,
            build_params=lambda prm: {k: v for k, v in prm.items()},
        )

    def _setup(self, params, records, *, indiv, structural, lag, y, eta_names, backend, build_params=None):
        """Common construction (also used by :func:`from_nonmem`)."""
        self.params, self.records, self.eta_names = params, records, tuple(eta_names)
        if not hasattr(self, "_cache"):
            self._cache = {}  # compiled functions; shared by with_records copies
        self._indiv, self._structural, self._lag, self._y = indiv, structural, lag, y
        th0 = jnp.asarray(params.theta.init)
        prm0 = indiv(th0, jnp.zeros(params.omega.dim), jnp.asarray(records.cov[0, 0]), 0)
        proto = structural({k: float(v) for k, v in prm0.items()})
        if not isinstance(proto, Model):
            raise TypeError(f"structural(...) must return a pkpd model, got {type(proto).__name__}")
        if backend not in ("auto", "linear", "solve"):
            raise ValueError(f"backend={backend!r} is not known; valid: 'auto', 'linear', 'solve'")
        if backend == "auto":
            backend = "linear" if isinstance(proto, LinearPK) else "solve"
        if backend == "linear" and not isinstance(proto, LinearPK):
            raise ValueError(f"backend='linear' needs a pkpd.pk linear model, got {type(proto).__name__}")
        self.backend, self._proto = backend, proto
        arrays = records.arrays()
        arrays["dose_amount"] = arrays["dose_amount"] * amount_factor(records.amount_unit, proto.dose_unit)
        if backend == "solve":
            arrays["table"] = part_tables(proto, records)
        self._arrays = jax.tree_util.tree_map(jnp.asarray, arrays)
        self._flags = dict(has_ss=records.has_ss, has_infusion=records.has_infusion)
        return self

    # ------------------------------------------------------------------ evaluation (pure)
    def part_predictions(self, theta, sigma_m, eta, part):
        """(f, R) at one part's observations: prediction ``Y(eps=0)`` and residual variance
        ``h' SIGMA h`` with ``h = dY/deps`` (the FOCE linearisation of the error model)."""
        prm = self._indiv(theta, eta, part["cov"], part["occasion"])
        mdl = self._structural(prm)
        if self.backend == "linear":
            states = linear_states(mdl, self._lag(prm), part, **self._flags)
        else:
            states = solve_states(mdl, part["table"])
        zero = jnp.zeros(sigma_m.shape[0])

        def yj(s, e):
            return self._y(s, mdl, prm, theta, eta, part["cov"], e)

        h, f = jax.vmap(lambda s: jax.jacfwd(lambda e: (yj(s, e), yj(s, e)), has_aux=True)(zero))(states)
        r = jnp.einsum("je,ef,jf->j", h, sigma_m, h)
        return f, r

    def part_simulate(self, theta, eta, eps, part):
        """``Y`` at one part's observations with residuals ``eps`` (J, n_eps) drawn from SIGMA (the
        error model as written, not linearised)."""
        prm = self._indiv(theta, eta, part["cov"], part["occasion"])
        mdl = self._structural(prm)
        if self.backend == "linear":
            states = linear_states(mdl, self._lag(prm), part, **self._flags)
        else:
            states = solve_states(mdl, part["table"])
        return jax.vmap(lambda s, e: self._y(s, mdl, prm, theta, eta, part["cov"], e))(states, eps)

    def subject_predictions(self, theta, sigma_m, eta, subj):
        """(f, R) of shape (P, J) for one subject (its arrays from ``_arrays``, no subject axis)."""
        return jax.vmap(lambda part: self.part_predictions(theta, sigma_m, eta, part))(_parts_of(subj))

    def individual_parameters(self, theta, eta, subj):
        """Individual structural parameters of each part of one subject (dict of (P,) arrays)."""
        return jax.vmap(lambda c, o: self._indiv(theta, eta, c, o))(subj["cov"], subj["occasion"])

    def fit(self, method: str = "focei", **options):
        """Estimate the parameters: ``method="focei"`` (FOCE with interaction, see
        :func:`pkpd.population.foce.fit_focei`), ``"foce"`` (without interaction) or ``"nuts"`` (NumPyro NUTS, see
        :func:`pkpd.population.nuts.fit_nuts`). Returns a :class:`PopulationResult` (FOCE-I) or
        a :class:`BayesResult` (NUTS). The methods are those in :data:`ESTIMATORS`, which the
        estimation modules fill when :mod:`pkpd.population` is imported."""
        if method not in ESTIMATORS:
            raise ValueError(f"method={method!r} is not supported; valid: {sorted(ESTIMATORS)}")
        return ESTIMATORS[method](self, **options)

    def with_records(self, records: Records) -> PopulationModel:
        """The same model on other records with the same covariates (e.g. simulated data)."""
        import copy

        new = copy.copy(self)
        return new._setup(
            self.params,
            records,
            indiv=self._indiv,
            structural=self._structural,
            lag=self._lag,
            y=self._y,
            eta_names=self.eta_names,
            backend=self.backend,
        )


def _parts_of(subj):
    """The per-part arrays of one subject (everything except subject-level keys)."""
    return {k: v for k, v in subj.items() if k != "part_mask"}


def _theta_spec(theta: dict) -> Theta:
    names, init, lo, hi = [], [], [], []
    for n, v in theta.items():
        if isinstance(v, (tuple, list)):
            if len(v) != 3:
                raise ValueError(f"theta[{n!r}]={v!r} must be an initial value or (lower, initial, upper)")
            a, b, c = (float(x) if x is not None else None for x in v)
            a = -np.inf if a is None else a
            c = np.inf if c is None else c
        else:
            a, b, c = -np.inf, float(v), np.inf
        names.append(n)
        init.append(b)
        lo.append(a)
        hi.append(c)
    k = len(names)
    return Theta(tuple(names), np.asarray(init), np.asarray(lo), np.asarray(hi), np.zeros(k, bool))


def _omega_spec(omega: dict, iov: dict, n_occ: int):
    """OMEGA over the IIV etas (diagonal entries and blocks) then n_occ IOV etas per IOV name."""
    names, init, blocks, etas = [], [], [], []
    for key, val in omega.items():
        group = (key,) if isinstance(key, str) else tuple(key)
        m = np.atleast_2d(np.asarray(val, float))
        if m.shape != (len(group), len(group)):
            raise ValueError(f"omega[{key!r}] has shape {m.shape}; expected ({len(group)}, {len(group)})")
        idx = tuple(range(len(etas), len(etas) + len(group)))
        etas += list(group)
        pm = -np.ones(m.shape, int)
        for i in range(len(group)):
            for j in range(i + 1):
                pm[i, j] = pm[j, i] = len(names)
                names.append(f"omega({group[i]},{group[j]})" if i != j else f"omega({group[i]})")
                init.append(m[i, j])
        blocks.append((idx, pm))
    iiv = tuple(etas)
    for n, var in iov.items():
        p = len(names)
        names.append(f"omega_iov({n})")
        init.append(float(var))
        for k in range(n_occ):
            blocks.append(((len(etas),), np.asarray([[p]])))
            etas.append(f"{n}_occ{k + 1}")
    if len(set(etas)) != len(etas):
        raise ValueError(f"omega names an eta twice: {etas}")
    cov = Covariance(tuple(names), np.asarray(init, float), np.zeros(len(names), bool), tuple(blocks), len(etas))
    return cov, tuple(etas), iiv
