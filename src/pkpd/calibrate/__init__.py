"""Joint calibration of every modality on the whole curated library, and the shipped result.

One shared plasticity core means one set of core parameters for all treatments. The joint fit
pools every modality's usable rows (``pkpd.datasets()``) into one posterior:

- parameters are keyed by the card they come from: core parameters (``k_spine_form``) are shared
  by all modalities; driver parameters by the modalities of one family
  (``stimulation.a_itbs``); drug PK/target parameters by drug and species
  (``fluoxetine.cl@human``);
- **study-level random effects**: every study arm ``s`` scales its predictions by ``exp(b_s)``
  with ``b_s ~ Normal(0, tau)``, ``tau`` = :data:`TAU_STUDY` (assumed: ~30 % between-study
  heterogeneity of effect sizes and exposures, typical of meta-analyses of these readouts);
  the fit estimates the ``b_s`` with everything else, so one discrepant study cannot drag the
  shared biology;
- the MAP is found by Levenberg-Marquardt on the joint normal equations, assembled block by
  block: every modality compiles only its own prediction and forward-mode Jacobian (the
  modalities never share one giant compiled function), and the study effects enter in closed
  form;
- the posterior is the Laplace approximation at the MAP (Gauss-Newton information, exact for a
  model linear in the parameters), from which :data:`N_DRAWS` draws are stored, checked parameter
  by parameter (:func:`check_laplace`): where the posterior's slice keeps density far out where
  the Laplace puts none, that parameter's draws come from the slice on a grid
  (:func:`grid_marginal`). On the shipped calibration it refuses none.

Parameters no usable row informs (see ``pkpd.fit.INFORMS``) are not in the calibration: they keep
their card values, or are drawn from their card priors with
``Calibration.models(..., uncalibrated="prior")`` (what ``pkpd compare`` does). Run ``python -m pkpd.calibrate`` to reproduce
``models/calibration/posterior.json``; :func:`load` reads it, :meth:`Calibration.models` gives
models on posterior draws for any modality and :func:`model` (``pkpd.model(name,
calibrated=True)``) the model at the MAP.

Hierarchical NUTS
-----------------
The shipped posterior is not a NUTS posterior of the joint model. :func:`nuts` (``python -m
pkpd.calibrate --nuts``) samples the same model with NUTS, the between-study sd estimated and
the study effects integrated out (one-dimensional adaptive Gauss-Hermite quadrature per study),
so that it samples ``theta = (z, log tau)`` only. Each of its gradients costs all modalities'
forward-mode Jacobians, evaluated in parallel threads (which use every core only with
:func:`widen_xla_pool`) with the per-modality solver settings :data:`NUTS_SOLVE`. It starts at
the marginal mode (:func:`nuts_start`) and runs in coordinates ``u`` that whiten the inverse
Hessian there, ``theta = theta_start + V sqrt(S) u`` (``cov = V S V^T``), corrected by the
shipped metric if there is one for these parameters (:data:`NUTS_METRIC`, a previous run's posterior covariance, kept only where it
differs beyond sampling noise: :func:`corrected_covariance`); its warmup adapts the step size in
one window (:func:`one_adaptation_window`). A parameter whose Laplace the check refused (on
earlier calibrations ``stimulation.a_itbs``: a cliff below ~1.45 and a plateau above) is sampled
through its slice-grid transform (:class:`GridTransform`), an exact change of variables that turns
such a cliff and plateau into a near-unit Gaussian where the slice matches the marginal. Its cost, effective sample sizes and R-hat on the library are in
benchmarks/RESULTS.md; per-modality NUTS is ``pkpd.fit(name, method="nuts")``.

Modules: ``_problem`` (:class:`JointProblem`), ``_store`` (:class:`Calibration`, :func:`load`,
:func:`model`), ``_laplace`` (:func:`calibrate`, :func:`check_laplace`,
:func:`laplace_at_mode`), ``_grid`` (:func:`grid_marginal`, :class:`GridTransform`),
``_marginal`` (the likelihood with the study effects integrated out), ``_metric`` (the NUTS
metric), ``_nuts`` (:func:`nuts`), ``__main__`` (the command line).
"""

from __future__ import annotations

# Names with a leading underscore are private helpers, importable from here for tests and benchmarks.
from ._grid import (
    SLICE_GRID,
    GridTransform,
    _cell_inverse as _cell_inverse,
    _cells as _cells,
    _exp_cell_moments as _exp_cell_moments,
    grid_marginal,
)
from ._laplace import SLICE_DROP, SLICE_SPAN, calibrate, check_laplace, laplace_at_mode
from ._marginal import (
    STUDY_NODES,
    TAU_PRIOR_SIGMA,
    _HostLogLikelihood as _HostLogLikelihood,
    _joint_loglik as _joint_loglik,
    _study_marginal as _study_marginal,
    _study_marginal_grad as _study_marginal_grad,
    marginal_log_posterior,
    theta_prior,
)
from ._metric import (
    NUTS_METRIC,
    _resolve_metric as _resolve_metric,
    corrected_covariance,
    load_metric,
    metric_from_posterior,
)
from ._nuts import (
    ADAPT_MASS,
    NUTS_SOLVE,
    NUTS_SOLVE_BUDGET,
    NUTS_STARTS,
    _adapted_scales as _adapted_scales,
    _reflected_share as _reflected_share,
    nuts,
    nuts_start,
    nuts_summary,
    one_adaptation_window,
    widen_xla_pool,
)
from ._problem import TAU_STUDY, JointProblem, _card_of as _card_of, _split_key as _split_key, parameter_key
from ._store import CALIBRATION, N_DRAWS, Calibration, load, model


def main(argv=None) -> int:
    """``python -m pkpd.calibrate`` (see :mod:`pkpd.calibrate.__main__`)."""
    from .__main__ import main as run

    return run(argv)


__all__ = [
    "ADAPT_MASS",
    "CALIBRATION",
    "Calibration",
    "GridTransform",
    "JointProblem",
    "NUTS_METRIC",
    "NUTS_SOLVE",
    "NUTS_SOLVE_BUDGET",
    "NUTS_STARTS",
    "N_DRAWS",
    "SLICE_DROP",
    "SLICE_GRID",
    "SLICE_SPAN",
    "STUDY_NODES",
    "TAU_PRIOR_SIGMA",
    "TAU_STUDY",
    "calibrate",
    "check_laplace",
    "corrected_covariance",
    "grid_marginal",
    "laplace_at_mode",
    "load",
    "load_metric",
    "main",
    "marginal_log_posterior",
    "metric_from_posterior",
    "model",
    "nuts",
    "nuts_start",
    "nuts_summary",
    "one_adaptation_window",
    "parameter_key",
    "theta_prior",
    "widen_xla_pool",
]
