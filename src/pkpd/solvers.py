"""The ODE solver pkpd uses unless told otherwise (below both :mod:`pkpd.model` and :mod:`pkpd.simulate`)."""

from __future__ import annotations

import diffrax as dfx


def default_solver() -> dfx.AbstractSolver:
    """Kvaerno5 (L-stable ESDIRK, 5th order): stiff-capable, for systems spanning minutes to months.
    A chord root finder with loose Newton tolerances avoids the rejected steps of diffrax's default
    Newton root finder on these models (see the project's notes on the JAX stack)."""
    return dfx.Kvaerno5(root_finder=dfx.VeryChord(rtol=1e-3, atol=1e-6))
