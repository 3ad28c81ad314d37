"""The result of a FOCE-I fit: estimates, OFV, standard errors, individual estimates (EBEs),
shrinkage, residuals, diagnostics and the comparison with a NONMEM run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import PopulationModel


@dataclass
class PopulationResult:
    """Estimates of a :class:`PopulationModel` (natural scale: THETA; OMEGA and SIGMA as
    variances/covariances, as in NONMEM).

    ``ofv``: -2 log-likelihood by the FOCE-I Laplace approximation *without* the constant
    ``n log(2 pi)`` (NONMEM's objective function value; add :attr:`constant` for the full
    -2 log-likelihood). ``covariance``: of the estimated parameters (:attr:`se` order).
    """

    model: PopulationModel
    theta: object
    omega: object
    sigma: object
    ofv: float
    eta: np.ndarray
    covariance: np.ndarray | None
    r_matrix: np.ndarray | None
    s_matrix: np.ndarray | None
    converged: bool
    message: str
    n_iterations: int
    timing: dict
    optimizer: object = field(repr=False, default=None)
    interaction: bool = True

    def __post_init__(self):
        import pandas as pd

        pr = self.model.params
        self._theta, self._omega, self._sigma = (np.asarray(a, float) for a in (self.theta, self.omega, self.sigma))
        self.theta = pd.Series(self._theta, index=list(pr.theta.names), name="theta")
        om = pr.omega.matrix(self._omega)
        self.omega = pd.DataFrame(np.asarray(om), index=self.model.eta_names, columns=self.model.eta_names)
        self.sigma = pd.DataFrame(np.asarray(pr.sigma.matrix(self._sigma)))
        self.estimates = pd.Series(np.asarray(pr.to_p(self._theta, self._omega, self._sigma)), index=pr.p_names())
        if self.covariance is not None:
            d = np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))
            self.se = pd.Series(d, index=pr.p_names(), name="se")
        else:
            self.se = None

    @property
    def constant(self) -> float:
        """``n log(2 pi)``: add it to :attr:`ofv` for the full -2 log-likelihood."""
        return float(self.model.records.n_observations * np.log(2 * np.pi))

    @property
    def rse(self):
        """Relative standard errors (%)."""
        return None if self.se is None else 100 * self.se / self.estimates.abs()

    @property
    def ebe(self):
        """Empirical Bayes estimates of the random effects (subjects x etas)."""
        import pandas as pd

        return pd.DataFrame(self.eta, index=list(self.model.records.ids), columns=self.model.eta_names)

    @property
    def shrinkage(self):
        """Eta shrinkage (%) = 100 (1 - sd(EBE) / sqrt(OMEGA_kk)), per eta."""
        import pandas as pd

        sd = np.std(self.eta, axis=0, ddof=1)
        return pd.Series(100 * (1 - sd / np.sqrt(np.diag(self.omega.to_numpy()))), index=self.model.eta_names)

    def summary(self):
        """A DataFrame of estimates, SEs and RSE (%)."""
        import pandas as pd

        out = pd.DataFrame({"estimate": self.estimates})
        if self.se is not None:
            out["se"] = self.se
            out["rse_%"] = self.rse
        return out

    def table(self):
        """Per observation: ID, TIME, DV, PRED, IPRED, RES, IWRES, CWRES (see
        :func:`pkpd.population.diagnostics.residuals`)."""
        from .diagnostics import residuals

        return residuals(self)

    def compare_nonmem(self, path):
        """A DataFrame: parameter, pkpd, NONMEM, relative difference; SEs and the OFV when ``path`` is
        an ``.ext`` file (NONMEM's final-estimate and standard-error rows); for a control stream,
        its $THETA/$OMEGA/$SIGMA values."""
        import pandas as pd

        from .nonmem import nonmem_reference

        ref = nonmem_reference(self.model, path)
        rows = []
        for name, v in self.estimates.items():
            nm = ref["estimates"].get(name, np.nan)
            row = dict(parameter=name, pkpd=float(v), NONMEM=nm, relative_difference=(float(v) - nm) / abs(nm))
            if ref["se"] or self.se is not None:
                se_nm = ref["se"].get(name, np.nan)
                se = float(self.se[name]) if self.se is not None else np.nan
                row.update(se_pkpd=se, se_NONMEM=se_nm, se_relative_difference=(se - se_nm) / abs(se_nm))
            rows.append(row)
        if ref["ofv"] is not None:
            rows.append(
                dict(
                    parameter="OFV",
                    pkpd=self.ofv,
                    NONMEM=ref["ofv"],
                    relative_difference=(self.ofv - ref["ofv"]) / abs(ref["ofv"]),
                )
            )
        return pd.DataFrame(rows)

    def gof(self, **kwargs):
        """Goodness-of-fit figure (DV vs PRED and IPRED, CWRES vs TIME and PRED)."""
        from .diagnostics import gof

        return gof(self, **kwargs)

    def vpc(self, n: int = 200, **kwargs):
        """Visual predictive check from ``n`` simulated replicates (see
        :func:`pkpd.population.diagnostics.vpc`; ``prediction_corrected=True`` for a pcVPC)."""
        from .diagnostics import vpc

        return vpc(self, n=n, **kwargs)

    def __repr__(self) -> str:
        return (
            f"PopulationResult(ofv={self.ofv:.3f}, converged={self.converged}, "
            f"theta={dict(self.theta.round(6))}, fit_s={self.timing.get('fit_s', float('nan')):.2f})"
        )
