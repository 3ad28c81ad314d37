"""The shipped calibration's method: the joint MAP (Levenberg-Marquardt on the block-assembled
normal equations), its Laplace posterior, the check that the Laplace sees each parameter's far
tails (:func:`check_laplace`), and the mode and curvature of a log density from its gradient
(:func:`laplace_at_mode`, the hierarchical NUTS's start)."""

from __future__ import annotations

import time

import numpy as np

from .. import structures
from ._grid import SLICE_GRID, grid_marginal
from ._marginal import _HostLogLikelihood
from ._problem import TAU_STUDY, JointProblem
from ._store import N_DRAWS, Calibration

#: Laplace check (:func:`check_laplace`): how far out, in prior sds of each parameter, the slice is
#: looked at, and the log-density drop below which the Laplace is refused there.
SLICE_SPAN = 2.0


SLICE_DROP = 4.5


def calibrate(
    modalities=None,
    *,
    tau: float = TAU_STUDY,
    draws: int = N_DRAWS,
    seed: int = 0,
    max_iter: int = 60,
    progress: bool = True,
    error=None,
    check: bool = True,
    structure=None,
) -> Calibration:
    """The joint MAP and Laplace posterior over all (or the given) modalities' curated data, with
    the models in ``structure`` (candidate per item, :mod:`pkpd.structures`; default the cards').

    ``check`` (default): :func:`check_laplace` on the slices of the posterior with the study effects
    integrated out (``tau`` fixed); a parameter it refuses gets its draws from :func:`grid_marginal`
    of its slice over the MAP +- 3 prior sds instead of the Laplace (``marginal = "slice grid"`` in
    :meth:`Calibration.summary`; independent of the other parameters, an approximation: for
    ``stimulation.a_itbs`` the hierarchical NUTS finds |r| < 0.2 with every other parameter).
    Costs two log-density evaluations per contracted parameter plus ``SLICE_GRID`` per refused one."""
    t0 = time.perf_counter()
    jp = JointProblem(modalities, tau=tau, error=error, progress=progress, structure=structure)
    x, r, J, obj, converged, it = _joint_map(jp, max_iter, progress, t0)
    rng = np.random.default_rng(seed)
    sd, draws_z, params, cov_z = _laplace_draws(jp, x, J, draws, rng)
    laplace_check = _check_and_grid(jp, x, sd, tau, draws_z, params, rng, progress) if check else None
    seconds = time.perf_counter() - t0
    refused = [k for k, r in (laplace_check or {}).get("parameters", {}).items() if r["refused"]]
    info = dict(
        method="joint MAP (Levenberg-Marquardt, block-assembled) + Laplace"
        + (f" (slice grid marginals for {', '.join(refused)})" if refused else ""),
        tau_study=tau,
        structure=structures.describe(jp.structure),
        laplace_cov_z=np.asarray(cov_z).tolist(),
        objective=obj,
        converged=bool(converged),
        iterations=it,
        seconds=seconds,
        seed=seed,
        rows=int(sum(pb.obs.n for pb in jp.problems.values())),
        per_modality=_per_modality(jp, r),
        skipped=jp.skipped,
        study_effects={s: dict(b=float(x[jp.K + j]), sd=float(sd[jp.K + j])) for j, s in enumerate(jp.studies)},
        laplace_check=laplace_check,
        command="python -m pkpd.calibrate",
        created=time.strftime("%Y-%m-%d"),
    )
    if progress:
        print(
            f"[pkpd.calibrate] done in {seconds:.0f} s: {jp.K} parameters, {jp.S} study effects, "
            f"{info['rows']} rows, objective {obj:.5g}, {'converged' if converged else 'NOT converged'}",
            flush=True,
        )
    return Calibration(parameters=params, draws_z=draws_z, map_z=x[: jp.K], info=info)


def _joint_map(jp: JointProblem, max_iter: int, progress: bool, t0: float):
    """Levenberg-Marquardt on the joint normal equations from the prior mean: ``(x, residuals,
    Jacobian, objective, converged, iterations)``. A failed solve at a trial point rejects the step."""
    x = jp.mu.copy()
    r, J = jp.linearise(x)
    obj = 0.5 * float(r @ r)
    lam, converged, it = 1e-3, False, 0
    for it in range(1, max_iter + 1):
        A, g = J.T @ J, J.T @ r
        step = -np.linalg.solve(A + lam * np.diag(np.diag(A)), g)
        try:
            r_new, J_new = jp.linearise(x + step)
            obj_new = (
                0.5 * float(r_new @ r_new) if np.all(np.isfinite(r_new)) and np.all(np.isfinite(J_new)) else np.inf
            )
        except Exception:  # noqa: BLE001 — a failed solve at a trial point is a rejected step
            obj_new = np.inf
        if obj_new < obj:
            rel = (obj - obj_new) / max(obj, 1e-12)
            x, r, J, obj = x + step, r_new, J_new, obj_new
            lam = max(lam / 3.0, 1e-9)
            if progress:
                print(
                    f"[pkpd.calibrate] iteration {it}: objective {obj:.6g} (lambda {lam:.1e}, "
                    f"{time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            if rel < 1e-7 or np.max(np.abs(step)) < 1e-5:
                converged = True
                break
        else:
            lam *= 10.0
            if lam > 1e8:
                converged = np.max(np.abs(g)) < 1e-3
                break
    return x, r, J, obj, converged, it


def _laplace_draws(jp: JointProblem, x, J, draws: int, rng):
    """Laplace at the MAP ``x``: sds of every coordinate (Gauss-Newton), ``draws`` draws of the
    parameters (study effects marginalised), the parameter table of the calibration and the
    parameters' Laplace covariance (fitted space)."""
    cov = np.linalg.inv(J.T @ J)
    cov = 0.5 * (cov + cov.T)
    K = jp.K
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    chol = np.linalg.cholesky(cov[:K, :K] + 1e-12 * np.eye(K))
    draws_z = x[:K] + rng.standard_normal((draws, K)) @ chol.T
    params = []
    for i, key in enumerate(jp.keys):
        p = dict(jp.meta[key])
        p.update(map_z=float(x[i]), sd_z=float(sd[i]), sd_ratio=float(sd[i] / jp.sigma[i]), marginal="laplace")
        params.append(p)
    return sd, draws_z, params, cov[:K, :K]


def _check_and_grid(jp: JointProblem, x, sd, tau: float, draws_z, params, rng, progress: bool) -> dict:
    """:func:`check_laplace` on the posterior's slices (study effects integrated out, ``tau``
    fixed); each refused parameter's draws (in ``draws_z``) and entry in ``params`` are replaced by
    its :func:`grid_marginal` over the MAP +- 3 prior sds. Returns the check's record."""
    t_check = time.perf_counter()
    K = jp.K
    host = _HostLogLikelihood(jp)
    mu, sig = jp.mu[:K], jp.sigma[:K]

    def logdens(z):
        ll, _ = host(np.concatenate([z, [np.log(tau)]]))
        return ll - 0.5 * float(np.sum(((z - mu) / sig) ** 2))

    rows = check_laplace(logdens, x[:K], sd[:K], sig)
    checked = {}
    for row in rows:
        i = row.pop("index")
        checked[jp.keys[i]] = row
        if not row["refused"]:
            continue

        def along(v, i=i):
            z = x[:K].copy()
            z[i] = v
            return logdens(z)

        g = grid_marginal(along, x[i] - 3.0 * sig[i], x[i] + 3.0 * sig[i], SLICE_GRID, draws=draws_z.shape[0], rng=rng)
        draws_z[:, i] = g["draws"]
        row.update(
            grid_mean=g["mean"],
            grid_sd=g["sd"],
            grid_edge_mass=g["edge_mass"],
            grid=[float(v) for v in g["grid"]],
            grid_logd=[float(v) for v in g["logd"]],
        )
        params[i].update(
            sd_z=g["sd"], sd_ratio=float(g["sd"] / sig[i]), marginal="slice grid", laplace_sd_z=float(sd[i])
        )
        if progress:
            print(
                f"[pkpd.calibrate] {jp.keys[i]}: the Laplace (sd {sd[i]:.3g}) misses the slice's tails (drop "
                f"{row['drop_below']:.3g} below, {row['drop_above']:.3g} above at +-{row['offset']:.3g}, Laplace "
                f"{row['laplace_drop']:.3g}); grid marginal sd {g['sd']:.3g}",
                flush=True,
            )
    return dict(
        parameters=checked,
        seconds=time.perf_counter() - t_check,
        span=SLICE_SPAN,
        drop=SLICE_DROP,
        evaluations=host.calls,
    )


def _per_modality(jp: JointProblem, r) -> dict:
    """Rows, sum of squared and largest standardised residual, excluded rows per modality at the MAP."""
    out, n0 = {}, 0
    for m, pb in jp.problems.items():
        rm = r[n0 : n0 + pb.obs.n]
        out[m] = dict(
            rows=int(pb.obs.n),
            sum_sq_z=float(rm @ rm),
            max_abs_z=float(np.max(np.abs(rm))),
            excluded_rows=int(len(pb.obs.excluded)),
        )
        n0 += pb.obs.n
    return out


def check_laplace(logdens, z_map, sd_z, prior_sd, *, span: float = SLICE_SPAN, drop: float = SLICE_DROP) -> list[dict]:
    """Does the Laplace see the far tails? One dict per parameter.

    ``logdens(z)``: the log posterior (up to a constant) as a function of all parameters. Along
    each axis ``i`` (every other parameter at ``z_map``), the slice is evaluated at
    ``z_map[i] +- span * prior_sd[i]``; the Laplace predicts a drop of at least
    ``0.5 (span prior_sd / sd_z)^2`` there (a slice is never wider than the marginal for a
    Gaussian). The parameter is ``refused`` when the measured drop on either side is below
    ``min(drop, predicted / 4)``: the posterior keeps more than ``exp(-drop)`` of its peak density
    where the Laplace puts almost none -- a plateau or a second mode the local curvature cannot
    see (``stimulation.a_itbs``: benchmarks/RESULTS.md). Only parameters the Laplace says the data
    contracted (predicted drop > ``drop``) are checked: the others cannot be too narrow there.
    Costs ``2`` log-density evaluations per checked parameter plus one."""
    z_map = np.asarray(z_map, dtype=float)
    sd_z, prior_sd = np.asarray(sd_z, dtype=float), np.asarray(prior_sd, dtype=float)
    if not (z_map.shape == sd_z.shape == prior_sd.shape and z_map.ndim == 1):
        raise ValueError(
            f"z_map, sd_z and prior_sd must be 1-d of one length; got {z_map.shape}, {sd_z.shape}, {prior_sd.shape}"
        )
    if not (np.all(sd_z > 0) and np.all(prior_sd > 0)):
        raise ValueError("sd_z and prior_sd must be positive")
    l0 = float(logdens(z_map))
    if not np.isfinite(l0):
        raise ValueError("the log density is not finite at the MAP")
    out = []
    for i in range(z_map.size):
        delta = span * prior_sd[i]
        predicted = 0.5 * (delta / sd_z[i]) ** 2
        row = dict(
            index=i,
            offset=float(delta),
            laplace_drop=float(predicted),
            checked=bool(predicted > drop),
            drop_below=None,
            drop_above=None,
            refused=False,
        )
        if row["checked"]:
            for side, sign in (("drop_below", -1.0), ("drop_above", 1.0)):
                z = z_map.copy()
                z[i] += sign * delta
                lv = float(logdens(z))
                row[side] = float(l0 - lv) if np.isfinite(lv) else float("inf")
            row["refused"] = bool(min(row["drop_below"], row["drop_above"]) < min(drop, predicted / 4.0))
        out.append(row)
    return out


def laplace_at_mode(
    logpost,
    theta0,
    cov0,
    *,
    ascent_steps: int = 8,
    newton_steps: int = 3,
    step: float = 0.01,
    min_curvature: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Mode and Laplace covariance of a log density from its gradient alone.

    ``logpost(theta) -> (value, gradient)``. From ``theta0``, ascend with ``cov0`` as the
    preconditioner (backtracking, at most ``ascent_steps``); then take the Hessian by central
    differences of the gradient along the columns of ``L = chol(cov0)`` (``2 d`` gradients, step
    ``step`` in those whitened units), so ``H_u = L^T H L`` is the curvature relative to ``cov0``;
    then up to ``newton_steps`` Newton steps with it. Eigenvalues of ``-H_u`` below
    ``min_curvature`` (flat or non-concave directions) are raised to it, i.e. no direction gets a
    standard deviation above ``1 / sqrt(min_curvature)`` times that of ``cov0``.

    Returns ``(theta, cov, info)`` with ``cov = L (-H_u)^-1 L^T`` and ``info``: value at the mode,
    gradient evaluations, directions clipped, and the whitened curvature's eigenvalue range. Exact
    (to rounding) for a Gaussian: the gradient is then linear and central differences are exact.
    """
    theta = np.asarray(theta0, dtype=np.float64).copy()
    cov0 = 0.5 * (np.asarray(cov0, dtype=np.float64) + np.asarray(cov0, dtype=np.float64).T)
    d = theta.shape[0]
    if cov0.shape != (d, d):
        raise ValueError(f"cov0 has shape {cov0.shape}; expected ({d}, {d}) for theta0 of length {d}")
    L = np.linalg.cholesky(cov0 + 1e-12 * np.trace(cov0) / d * np.eye(d))
    calls = 0

    def f(t):
        nonlocal calls
        calls += 1
        v, g = logpost(t)
        return float(v), np.asarray(g, dtype=np.float64)

    lp, g = f(theta)
    if not np.isfinite(lp):
        raise ValueError("the log density is not finite at theta0")

    def climb(direction, steps):
        nonlocal theta, lp, g
        for _ in range(steps):
            dx = direction(g)
            for a in (1.0, 0.5, 0.25, 0.1):
                lp1, g1 = f(theta + a * dx)
                if np.isfinite(lp1) and lp1 > lp:
                    theta, lp, g = theta + a * dx, lp1, g1
                    break
            else:
                return

    climb(lambda g: cov0 @ g, ascent_steps)
    Hu = np.empty((d, d))
    for j in range(d):
        _, gp = f(theta + step * L[:, j])
        _, gm = f(theta - step * L[:, j])
        Hu[:, j] = L.T @ (gp - gm) / (2.0 * step)
    if not np.all(np.isfinite(Hu)):
        raise ValueError("the gradient is not finite around the mode; cannot take the Hessian")
    w, V = np.linalg.eigh(-0.5 * (Hu + Hu.T))
    clipped = int(np.sum(w < min_curvature))
    w_used = np.maximum(w, min_curvature)
    Cu = (V / w_used) @ V.T
    cov = L @ Cu @ L.T
    cov = 0.5 * (cov + cov.T)
    climb(lambda g: cov @ g, newton_steps)
    info = dict(
        log_density=lp,
        gradient_evaluations=calls,
        clipped=clipped,
        curvature_min=float(w.min()),
        curvature_max=float(w.max()),
        gradient_norm_whitened=float(np.linalg.norm(L.T @ g)),
    )
    return theta, cov, info
