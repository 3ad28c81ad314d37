"""Schedule design: gradient-based schedule optimisation and sensitivity analysis.

``pkpd.optimise_schedule(modality, readout=..., at_h=..., vary=[...], bounds={...})`` searches the
schedule of a modality's standard protocol for the design that maximises (or minimises) a readout
metric; ``pkpd.sensitivity(modality, readout=..., metric=...)`` says which model-card parameters a
time-scale metric depends on, locally (normalised derivatives) or globally (Sobol indices over
the cards' priors).

How the gradient reaches the schedule
-------------------------------------
:func:`pkpd.simulate.segment_table` cuts the time axis at every event in numpy, so a schedule's
times are not traced. Here the table is built once in numpy **at the current design point** (which
fixes its structure: which event opens and closes each segment, in which segment each dose lands)
and its ``t0``/``t1``/``save_ts`` columns and bolus/infusion amounts are then replaced by traced
functions of the design variables: every segment boundary is looked up in a traced vector of event
times (session starts and ends, dose arrivals, infusion ends, save times). ``jax.jacfwd`` (with
``diffrax.ForwardMode``) then differentiates the simulated readout through the segment boundaries
exactly (discretise-then-differentiate, as for any other parameter). The structure is rebuilt at
every optimiser step, so the gradient is the one-sided derivative of the schedule family whose
event order is that of the current point; where the order changes (sessions running into the next
day, a session crossing ``at_h``) the objective may have a kink, which the projected optimiser
and the best-of-history bookkeeping tolerate. A self-check compares the traced table with the
numpy one at every evaluation.

Why not finite differences: the traced table gives exact derivatives of the numerical solution in
one forward-mode pass per design variable. They converge to the true derivative as the tolerance
tightens; the stimulation models' BCM switch (LTP/LTD branch) makes them noisier than the values:
d(efficacy at day 5)/d(gap) of accelerated iTBS was measured within 3 % (gap 1.2 h) and 6 %
(0.6 h) of converged central differences at rtol 1e-7 (:data:`DESIGN_SOLVE`), but 60 % off at
0.6 h with rtol 1e-6. The sign is reliable, which is what projected Adam needs; every candidate is
judged by its simulated value, not by the gradient.

Design variables
----------------
Continuous (gradient, projected Adam in the box of ``bounds``):

- ``gap_h`` -- start-to-start gap between same-day device sessions (h);
- ``dose_mg`` -- the maintenance dose of a drug (in the protocol's amount unit: mg, ug, ...);
- ``loading_dose_mg`` -- the first dose (defaults to the maintenance dose).

Discrete (enumerated: every value in ``bounds`` at the continuous optimum of the standard discrete
setting; the continuous variables are then re-optimised for the best two):

- ``sessions_per_day``, ``sessions_per_week`` (device sessions; <5/week are spread over the week as
  in :meth:`pkpd.Schedule.sessions`), ``days`` (treatment days for devices, number of doses for
  drugs).

Constraints (``constraints={...}``): ``max_sessions_per_day``, ``min_gap_h`` (h), ``max_daily_dose_mg``,
``total_sessions`` or ``total_pulses`` (devices: the number of sessions is fixed, days follow from
sessions per day), ``cmax`` (a ceiling on the drug ``concentration`` in mg/L, or ``"steady_state"``
for the steady-state Cmax of the standard regimen). Bounds and the first four act on the search
box; ``cmax`` is a path constraint handled by a quadratic penalty, and the returned design is
always checked on the time grid (an infeasible end point is pulled back towards the start by
bisection).

Metrics (``metric=``): ``"value"`` (the readout at ``at_h``, default), ``"time_to"`` (first time
the readout reaches ``target``, linear interpolation on the grid; not reached within ``at_h``:
``at_h`` times one plus the remaining fraction of the way, so that the metric stays continuous and
still ranks designs), ``"auc"`` (integral of the change from baseline over [0, ``at_h``], h),
``"peak"`` (largest change, as a readout value), ``"mean"`` (mean over [0, ``at_h``]).


Modules: ``_optimise`` (:func:`optimise_schedule`), ``_space`` (design variables, bounds and
constraints), ``_traced`` (the traced segment table), ``_readouts`` (readouts and metrics),
``_sensitivity`` (:func:`sensitivity`), ``_priors`` (prior draws), ``_sobol`` (Sobol estimators).
"""

from __future__ import annotations

from ..simulate import as_arrays as as_arrays
from ._optimise import (
    DesignResult,
    _Spec as _Spec,
    _ss_cmax as _ss_cmax,
    _val as _val,
    _val_jac as _val_jac,
    _value as _value,
    optimise_schedule,
)
from ._priors import (
    DOMAINS,
    _candidates as _candidates,
    _dist as _dist,
    _get as _get,
    _log_domain as _log_domain,
    _ppf as _ppf,
    _sd_log as _sd_log,
    _set as _set,
    prior_draws,
    screening_rows,
)

# Names with a leading underscore are private helpers, importable from here for tests.
from ._readouts import (
    DESIGN_SOLVE,
    OPT_METRICS,
    SENS_METRICS,
    SOBOL_SOLVE,
    _check_readout as _check_readout,
    _crossing as _crossing,
    _readout as _readout,
    _readout_names as _readout_names,
    opt_metric,
    sens_metric,
)
from ._sensitivity import (
    _sens_batch as _sens_batch,
    _sens_local as _sens_local,
    _sens_metric_fn as _sens_metric_fn,
    _SensSpec as _SensSpec,
    sensitivity,
)
from ._sobol import ishigami, saltelli_sample, sobol, sobol_estimates
from ._space import (
    CONSTRAINTS,
    CONTINUOUS,
    DISCRETE,
    _combos as _combos,
    _Space as _Space,
    _whole_c as _whole_c,
    _with as _with,
)
from ._traced import (
    SAVE_SLOTS,
    _event_vector as _event_vector,
    _events as _events,
    _Link as _Link,
    _traced_table as _traced_table,
)

__all__ = [
    "CONSTRAINTS",
    "CONTINUOUS",
    "DESIGN_SOLVE",
    "DISCRETE",
    "DOMAINS",
    "DesignResult",
    "OPT_METRICS",
    "SAVE_SLOTS",
    "SENS_METRICS",
    "SOBOL_SOLVE",
    "ishigami",
    "opt_metric",
    "optimise_schedule",
    "prior_draws",
    "saltelli_sample",
    "screening_rows",
    "sens_metric",
    "sensitivity",
    "sobol",
    "sobol_estimates",
]
