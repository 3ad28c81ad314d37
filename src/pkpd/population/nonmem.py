"""NONMEM interoperability: a population model from a NONMEM control stream, and NONMEM's
results (``.ext``) for comparison. Needs the optional ``nonmem`` extra (pharmpy-core).

pharmpy-core parses $INPUT/$DATA/$PK/$ERROR/$THETA/$OMEGA/$SIGMA and the $SUBROUTINE's
compartmental system. Its sympy expressions (the rate constants, lag, bioavailability and Y,
with every $PK variable substituted) become JAX functions through ``sympy.lambdify(...,
modules="jax")``. Supported: the linear compartmental systems that :mod:`pkpd.pk` covers (one
or two compartments, with or without a first-order absorption depot, absorption lag and
bioavailability; ADVAN1-4 with any TRANS). Everything else raises
:class:`UnsupportedNonmem` naming the construct.

Mapping: the pkpd model is built in amounts (volume 1, ``cl`` = the elimination rate
constant), so its states are NONMEM's compartment amounts ``A(1..n)``; NONMEM's ``F`` and ``Y``
are evaluated from them exactly as written in $ERROR (``F = A(central)/S``).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..pk import OneCompartment, TwoCompartment
from .model import PopulationModel
from .params import Covariance, Parameters, Theta
from .records import read_records


class UnsupportedNonmem(ValueError):
    """A control-stream construct pkpd cannot translate (the message names it)."""


def _require_pharmpy():
    try:
        from pharmpy.modeling import read_model
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "from_nonmem needs pharmpy-core: pip install 'pkpd-plasticity[nonmem]' (or pharmpy-core>=2.1)"
        ) from e
    return read_model


def _sym(expr):
    import sympy

    return sympy.sympify(expr)


def _check_control_stream(path: Path):
    """Refuse records pkpd cannot honour (before pharmpy's parse, so the message names them)."""
    text = path.read_text(errors="replace")
    records = {line.split()[0].upper().lstrip("$") for line in text.splitlines() if line.strip().startswith("$")}
    unsupported = {
        "DES": "$DES (general ODEs): only the linear compartmental ADVANs 1-4 are supported",
        "MODEL": "$MODEL (general compartmental ADVAN5/7): only ADVANs 1-4 are supported",
        "MIX": "$MIX (mixture models)",
        "PRIOR": "$PRIOR (NWPRI priors)",
        "LEVEL": "$LEVEL (nested random effects)",
        "INFN": "$INFN (user Fortran code)",
        "MSFI": "$MSFI (model specification file input)",
        "AES": "$AES (DAE systems)",
        "PRED": "$PRED (a user-coded prediction without a $SUBROUTINE)",
    }
    for key in sorted(records):
        if key in unsupported:
            raise UnsupportedNonmem(f"{path.name}: unsupported control-stream record {unsupported[key]}")
    for line in text.splitlines():
        u = line.split(";")[0].upper()
        if u.strip().startswith("$SUBR"):
            for token in u.replace("=", " ").split():
                if token.startswith("ADVAN") and token not in ("ADVAN1", "ADVAN2", "ADVAN3", "ADVAN4"):
                    raise UnsupportedNonmem(
                        f"{path.name}: $SUBROUTINE {token} is not supported; valid: ADVAN1-4 "
                        "(one or two compartments, IV or first-order absorption)"
                    )


def _structure(m):
    """The compartmental system as pkpd needs it: expressions of k, ka, k12, k21, lag, F1 and
    the map from NONMEM amounts to pkpd state indices."""
    from pharmpy.model import output

    s = m.statements
    cs = s.ode_system
    if cs is None:
        raise UnsupportedNonmem("the model has no compartmental system ($PRED models are not supported)")
    central = cs.central_compartment
    depot = cs.find_depot(s)
    peripherals = cs.find_peripheral_compartments()
    if cs.find_transit_compartments(s):
        raise UnsupportedNonmem("transit compartments are not supported (pkpd.pk has a single absorption depot)")
    if len(peripherals) > 1:
        raise UnsupportedNonmem(f"{len(peripherals) + 1}-compartment disposition is not supported; at most two")
    if any(_sym(z) != 0 for z in np.asarray(cs.zero_order_inputs).ravel()):
        raise UnsupportedNonmem("zero-order inputs in the ODE system are not supported")
    import sympy

    for expr in np.asarray(cs.compartmental_matrix).ravel():
        e = _sym(expr)
        if any(str(f.func).startswith("A_") for f in e.atoms(sympy.Function)):
            raise UnsupportedNonmem(f"non-linear elimination or transfer ({e}) is not supported: pkpd.pk is linear")
    out = {"k": None, "ka": None, "k12": None, "k21": None, "lag": 0, "f1": 1}
    flows = dict((str(c.name) if c is not output else "OUTPUT", r) for c, r in cs.get_compartment_outflows(central))
    out["k"] = flows.get("OUTPUT", 0)
    for c in (central,) + tuple(peripherals):
        if _sym(c.lag_time) != 0:
            raise UnsupportedNonmem(f"a lag time on compartment {c.name} is not supported (only on the depot)")
        if c is central and depot is not None and _sym(c.bioavailability) != 1:
            raise UnsupportedNonmem("bioavailability of the central compartment (F2) with a depot is not supported")
        if c is central and depot is None and _sym(c.bioavailability) != 1:
            raise UnsupportedNonmem("bioavailability of an IV dose (F1 in ADVAN1/3) is not supported")
    if peripherals:
        out["k12"] = cs.get_flow(central, peripherals[0])
        out["k21"] = cs.get_flow(peripherals[0], central)
    state = {central.amount: 1}
    if depot is not None:
        out["ka"] = cs.get_flow(depot, central)
        out["lag"] = depot.lag_time
        out["f1"] = depot.bioavailability
        state[depot.amount] = 0
    if peripherals:
        state[peripherals[0].amount] = 2
    if any(type(d).__name__ != "Bolus" for c in cs.dosing_compartments for d in c.doses):
        raise UnsupportedNonmem("zero-order (modelled duration/rate) doses are not supported; give RATE in the data")
    return out, state, depot is not None, len(peripherals)


def _lambdify(args, expr):
    import sympy

    fn = sympy.lambdify(args, expr, modules="jax")
    return lambda *a: jnp.asarray(fn(*a), dtype=jnp.float64)


def _covariance(dists, all_names, fix):
    """A :class:`Covariance` from pharmpy's joint normal distributions (etas or epsilons)."""
    names, blocks = [], []
    for d in dists:
        idx = tuple(all_names.index(n) for n in d.names)
        var = d.variance
        k = len(idx)
        cov = [[_sym(var)]] if k == 1 else [[_sym(var[i, j]) for j in range(k)] for i in range(k)]
        pm = -np.ones((len(idx), len(idx)), int)
        for i in range(len(idx)):
            for j in range(len(idx)):
                e = cov[i][j]
                if e == 0:
                    continue
                if not e.is_Symbol:
                    raise UnsupportedNonmem(f"covariance entry {e} is not a single parameter")
                if str(e) not in names:
                    names.append(str(e))
                pm[i, j] = names.index(str(e))
        blocks.append((idx, pm))
    init = np.asarray([fix[n][0] for n in names], float)
    fixed = np.asarray([fix[n][1] for n in names], bool)
    return Covariance(tuple(names), init, fixed, tuple(blocks), len(all_names))


def _dataset(m, has_depot: bool):
    """The dataset as pharmpy read it (IGNORE/ACCEPT applied), without DROPped columns, checked
    for what the translation supports."""
    df = m.dataset.copy()
    drop = [c.name for c in m.datainfo if c.drop]
    df = df.drop(columns=[c for c in drop if c in df.columns])
    df.columns = [str(c).upper() for c in df.columns]
    dv = m.datainfo.dv_column.name.upper()
    if dv != "DV":
        df = df.rename(columns={dv: "DV"})
    import pandas as pd

    amt = pd.to_numeric(df.get("AMT", pd.Series(0.0, index=df.index)), errors="coerce").fillna(0.0)
    evid = pd.to_numeric(df["EVID"], errors="coerce") if "EVID" in df else (amt > 0).astype(float)
    central = 2 if has_depot else 1
    if "CMT" in df.columns:
        cmt = pd.to_numeric(df["CMT"], errors="coerce")
        bad = (evid == 0) & cmt.notna() & (cmt != central)
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise UnsupportedNonmem(
                f"row {i}: an observation in compartment CMT={cmt.iloc[i]:g}; only the central compartment "
                f"({central}) is observed in the supported models"
            )
    if "RATE" in df.columns:
        rate = pd.to_numeric(df["RATE"], errors="coerce").fillna(0.0)
        if (rate < 0).any():
            raise UnsupportedNonmem("RATE=-1/-2 (modelled infusion rate or duration) is not supported")
        if has_depot and "CMT" in df.columns and ((rate > 0) & (pd.to_numeric(df["CMT"], errors="coerce") == 1)).any():
            raise UnsupportedNonmem("an infusion into the depot (RATE > 0 with CMT=1) is not supported")
    return df


def _covariates_used(exprs: dict, y, known: set, columns: list) -> list[str]:
    """Data columns the $PK/$ERROR expressions use as covariates (upper case, in order of use);
    ``UnsupportedNonmem`` for time-dependent code, unknown symbols and lower-case references."""
    used = []
    for name, e in list(exprs.items()) + [("Y", y)]:
        for fs in sorted(e.free_symbols, key=str):
            n = str(fs)
            if n in known:
                continue
            if n in ("t", "TIME", "TAD"):
                raise UnsupportedNonmem(
                    f"{name} depends on time ({n}): time-dependent $PK/$ERROR code is not supported"
                )
            if n.upper() in columns:
                if n.upper() not in used:
                    used.append(n.upper())
                continue
            raise UnsupportedNonmem(
                f"{name} uses {n!r}, which is neither a THETA, ETA, EPS, compartment amount nor a data column"
            )
    for e in list(exprs.values()) + [y]:
        for fs in e.free_symbols:
            if str(fs).upper() in used and str(fs) != str(fs).upper():
                raise UnsupportedNonmem(f"covariate {fs} is referenced in lower case")
    return used


def _nonmem_info(m, path, thetas, etas, epss) -> dict:
    """What the control stream declared (names, OMEGA/SIGMA entries, estimation method), kept
    on the model for :meth:`PopulationResult.compare_nonmem`."""
    step = m.execution_steps[0] if len(m.execution_steps) else None

    def entries(rvs, names):
        cov = rvs.covariance_matrix
        return {(i + 1, j + 1): str(_sym(cov[i, j])) for i in range(len(names)) for j in range(i + 1)}

    return dict(
        path=str(path),
        theta=tuple(thetas),
        omega=entries(m.random_variables.etas, etas),
        sigma=entries(m.random_variables.epsilons, epss),
        method=None if step is None else step.method,
        interaction=None if step is None else bool(step.interaction),
    )


def from_nonmem(path, *, data=None) -> PopulationModel:
    """A :class:`PopulationModel` from a NONMEM control stream (``.mod``/``.ctl``).

    ``data``: a DataFrame replacing the $DATA file (same $INPUT columns). Raises
    :class:`UnsupportedNonmem` naming any construct outside the supported set (see the module
    docstring) and :class:`pkpd.population.RecordError` for bad dataset rows.
    """
    import sympy
    from pharmpy.modeling import get_thetas

    read_model = _require_pharmpy()
    path = Path(path)
    _check_control_stream(path)
    m = read_model(str(path))
    struct, state_of, has_depot, n_periph = _structure(m)
    s = m.statements
    amt_subs = {_sym(a): sympy.Symbol(str(_sym(a).func)) for a in s.ode_system.amounts}
    amt_syms = [amt_subs[_sym(a)] for a in state_of]
    amt_index = [state_of[a] for a in state_of]
    full = lambda e: _sym(s.before_odes.full_expression(e)).subs(amt_subs)  # noqa: E731
    y = _sym(s.before_odes.full_expression(s.after_odes.full_expression("Y"))).subs(amt_subs)
    exprs = {k: full(v) for k, v in struct.items() if v is not None}
    thetas = [p.name for p in get_thetas(m)]
    etas = list(m.random_variables.etas.names)
    epss = list(m.random_variables.epsilons.names)
    df = _dataset(m, has_depot) if data is None else data
    columns = [str(c).upper() for c in df.columns]
    known = set(thetas) | set(etas) | set(epss) | {str(a) for a in amt_subs.values()}
    used_cov = _covariates_used(exprs, y, known, columns)
    cov_syms = [sympy.Symbol(c) for c in used_cov]
    th_s, eta_s, eps_s = ([sympy.Symbol(n) for n in v] for v in (thetas, etas, epss))
    fns = {k: _lambdify([th_s, eta_s, cov_syms], e) for k, e in exprs.items()}
    fy = _lambdify([th_s, eta_s, cov_syms, eps_s, amt_syms], y)
    routes = {1: "oral", 2: "iv"} if has_depot else {1: "iv"}
    records = read_records(df, covariates=used_cov, cmt_routes=routes)
    pars = {p.name: (p.init, p.fix, p.lower, p.upper) for p in m.parameters}
    theta = Theta(
        tuple(thetas),
        *(np.asarray([pars[n][k] for n in thetas], float) for k in (0, 2, 3)),
        np.asarray([pars[n][1] for n in thetas], bool),
    )
    fix = {n: (v[0], v[1]) for n, v in pars.items()}
    omega = _covariance(m.random_variables.etas, etas, fix)
    sigma = _covariance(m.random_variables.epsilons, epss, fix)

    def indiv(th, eta, cov, occ):
        return {k: f(th, eta, cov) for k, f in fns.items()}

    def structural(prm):
        ka = prm.get("ka")
        f1 = prm.get("f1", 1.0)
        if n_periph:
            return TwoCompartment(cl=prm["k"], v1=1.0, q=prm["k12"], v2=prm["k12"] / prm["k21"], ka=ka, f=f1)
        return OneCompartment(cl=prm["k"], v=1.0, ka=ka, f=f1)

    def yfun(state, mdl, prm, th, eta, cov, eps):
        return fy(th, eta, cov, eps, [state[i] for i in amt_index])

    model = PopulationModel.__new__(PopulationModel)
    model._setup(
        Parameters(theta, omega, sigma),
        records,
        indiv=indiv,
        structural=structural,
        lag=lambda prm: prm.get("lag", 0.0),
        y=yfun,
        eta_names=etas,
        backend="linear",
    )
    model.nonmem = _nonmem_info(m, path, thetas, etas, epss)
    return model


def read_ext(path) -> dict:
    """NONMEM's final estimates (ITERATION -1000000000), their standard errors (-1000000001, when
    present) and the OFV from an ``.ext`` file (the last table when there are several)."""
    import pandas as pd

    text = Path(path).read_text()
    tables = [t for t in text.split("TABLE NO.") if t.strip()]
    lines = tables[-1].splitlines()[1:]
    df = pd.read_csv(__import__("io").StringIO("\n".join(lines)), sep=r"\s+")
    est = df[df["ITERATION"] == -1000000000]
    if est.empty:
        raise ValueError(f"{path}: no final-estimate row (ITERATION -1000000000)")
    se = df[df["ITERATION"] == -1000000001]
    cols = [c for c in df.columns if c not in ("ITERATION", "OBJ")]
    return dict(
        estimates={c: float(est[c].iloc[0]) for c in cols},
        se={c: float(se[c].iloc[0]) for c in cols} if not se.empty else {},
        ofv=float(est["OBJ"].iloc[0]),
    )


def nonmem_reference(model: PopulationModel, path) -> dict:
    """NONMEM's values keyed by pkpd parameter name: from an ``.ext`` (estimates, SEs, OFV) or, for a
    control stream, its initial estimates ($THETA/$OMEGA/$SIGMA, e.g. a run's final estimates
    written back into the model)."""
    path = Path(path)
    nm = getattr(model, "nonmem", None)
    if nm is None:
        raise ValueError("compare_nonmem needs a model built by from_nonmem (it maps THETA/OMEGA/SIGMA by position)")
    if path.suffix.lower() == ".ext":
        ext = read_ext(path)
        names = {f"THETA{i + 1}": n for i, n in enumerate(nm["theta"])}
        names.update({f"OMEGA({i},{j})": n for (i, j), n in nm["omega"].items() if n != "0"})
        names.update({f"SIGMA({i},{j})": n for (i, j), n in nm["sigma"].items() if n != "0"})
        est = {names[c]: v for c, v in ext["estimates"].items() if c in names}
        se = {names[c]: v for c, v in ext["se"].items() if c in names and v < 1e9}
        return dict(estimates=est, se=se, ofv=ext["ofv"])
    read_model = _require_pharmpy()
    m = read_model(str(path))
    return dict(estimates={p.name: float(p.init) for p in m.parameters}, se={}, ofv=None)
