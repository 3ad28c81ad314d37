"""rTMS and theta-burst stimulation (10 Hz and 1 Hz rTMS, iTBS, cTBS, accelerated iTBS).

During a session the driver sets the stimulation *activity* ``a`` that the core's early
efficacy compares with its sliding threshold (BCM-like: LTP where a > theta, LTD where
a < theta), and the duty-weighted activity ``u = a * duty`` that raises the threshold.
Activity by pattern: ``a_itbs``, ``a_ctbs`` for theta bursts; for regular rTMS
``a = a_rtms_max * f / (f + f_half)`` so that low frequencies (1 Hz) fall below the baseline
threshold (LTD, Chen 1997) and high ones (10-20 Hz) above it. Activity scales with intensity
relative to the protocol's reference (120 % resting motor threshold for rTMS, 80 % active
motor threshold for TBS). Activity-dependent BDNF release: ``bdnf_drive = e_bdnf * u`` during
a session, whatever the sign of the efficacy change. Duty: the fraction of the session spent pulsing (iTBS: 2-s trains
every 10 s = 0.2; cTBS: continuous = 1; rTMS: pulses / (frequency x duration))."""

from __future__ import annotations

import jax.numpy as jnp

from ..model import SESSION_FEATURES, check_parameter
from ..plasticity import Signals
from ._driver import Driver

_F = {name: i for i, name in enumerate(SESSION_FEATURES)}


class StimulationDriver(Driver):
    a_itbs: float
    a_ctbs: float
    a_rtms_max: float
    f_half: float
    duty_itbs: float
    ref_intensity_rtms: float
    ref_intensity_tbs: float
    e_bdnf: float

    def __check_init__(self):
        for name in ("a_itbs", "a_ctbs", "a_rtms_max", "f_half", "ref_intensity_rtms", "ref_intensity_tbs"):
            check_parameter("StimulationDriver", name, getattr(self, name))
        check_parameter("StimulationDriver", "duty_itbs", self.duty_itbs, hi=1.0)
        check_parameter("StimulationDriver", "e_bdnf", self.e_bdnf, lo_open=False)

    def activity(self, session):
        s = lambda n: session[..., _F[n]]  # noqa: E731
        f = s("frequency_hz")
        a_rtms = self.a_rtms_max * f / (f + self.f_half) * s("intensity") / self.ref_intensity_rtms
        a_itbs = self.a_itbs * s("intensity") / self.ref_intensity_tbs
        a_ctbs = self.a_ctbs * s("intensity") / self.ref_intensity_tbs
        a = s("pattern_rtms") * a_rtms + s("pattern_itbs") * a_itbs + s("pattern_ctbs") * a_ctbs
        duty_rtms = jnp.clip(s("pulses") / jnp.maximum(f * s("duration_h") * 3600.0, 1e-12), 0.0, 1.0)
        duty = s("pattern_rtms") * duty_rtms + s("pattern_itbs") * self.duty_itbs + s("pattern_ctbs")
        return a * s("active"), a * duty * s("active")

    def signals(self, y, session):
        a, u = self.activity(session)
        return Signals(activity=a, threshold_drive=u, bdnf_drive=self.e_bdnf * u)
