"""Trajectory: states and derived outputs of a simulation at the save times."""

from __future__ import annotations

from typing import Any

import numpy as np


class Trajectory:
    """Times (h), states and named outputs of one simulation (or a population).

    ``traj["name"]`` gives a state (e.g. ``"central"``) or a derived output (e.g.
    ``"concentration"``); shape (times,) for one subject, (subjects, times) for a population.
    ``traj.names`` lists what is available, ``traj.units`` their units, ``traj.status`` the solver
    status (0 ok, 1 max steps reached, 2 failure) and ``traj.num_steps`` the accepted steps.
    """

    def __init__(self, times, states, model, status=0, num_steps=None):
        self.times = times
        self.states = states
        self.model = model
        self.status = status
        self.num_steps = num_steps
        self._outputs: dict[str, Any] | None = None

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self.model.state_names)

    def _derived(self) -> dict[str, Any]:
        if self._outputs is None:
            if np.ndim(self.states) == 3:  # population: the model's array leaves carry a subject axis
                import equinox as eqx

                outputs = eqx.filter_vmap(lambda m, y: m.outputs(y), in_axes=(eqx.if_array(0), 0))
                self._outputs = dict(outputs(self.model, self.states))
            else:
                self._outputs = dict(self.model.outputs(self.states))
        return self._outputs

    @property
    def names(self) -> tuple[str, ...]:
        return self.state_names + tuple(k for k in self._derived() if k not in self.state_names)

    @property
    def units(self) -> dict[str, str]:
        return {n: self.model.units.get(n, "") for n in self.names}

    @property
    def ok(self) -> bool:
        return bool(np.all(np.asarray(self.status) == 0))

    def __getitem__(self, name: str):
        if not isinstance(name, str):
            raise TypeError(f"index a Trajectory by readout name (str), got {type(name).__name__}")
        if name in self.state_names:
            return self.states[..., self.state_names.index(name)]
        derived = self._derived()
        if name in derived:
            return derived[name]
        raise KeyError(
            f"readout {name!r} is not a state or output of {type(self.model).__name__}; available: {list(self.names)}"
        )

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __repr__(self) -> str:
        shape = np.shape(self.states)
        return (
            f"Trajectory({type(self.model).__name__}, {shape[-2]} times from {float(self.times[0]):g} to "
            f"{float(self.times[-1]):g} h{f', {shape[0]} subjects' if len(shape) == 3 else ''}, names={list(self.names)})"
        )

    def to_pandas(self):
        """A wide DataFrame: ``time_h`` (and ``subject`` for a population) plus one column per name."""
        import pandas as pd

        cols = {n: np.asarray(self[n]) for n in self.names}
        if np.ndim(self.states) == 2:
            return pd.DataFrame({"time_h": np.asarray(self.times), **cols})
        n_sub, n_t = np.shape(self.states)[:2]
        return pd.DataFrame(
            {
                "subject": np.repeat(np.arange(n_sub), n_t),
                "time_h": np.tile(np.asarray(self.times), n_sub),
                **{k: v.reshape(-1) for k, v in cols.items()},
            }
        )
