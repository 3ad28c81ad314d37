"""The stored calibration: :class:`Calibration` (parameter table and posterior draws), its file
``models/calibration/posterior.json`` (:func:`load`), and :func:`model`, which is ``pkpd.model``
(card values, or the calibrated MAP with ``calibrated=True``)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import params, structures
from .._paths import models_dir
from ..modalities import build, get_modality
from ._problem import _split_key

#: What :meth:`Calibration.models` gives the parameters the calibration does not hold.
UNCALIBRATED = ("card", "prior")
#: Seed of the prior draws of uncalibrated parameters (combined with each parameter's key).
PRIOR_SEED = 20251207

#: Posterior draws stored in the shipped calibration.
N_DRAWS = 200


CALIBRATION = "calibration/posterior.json"


@dataclass
class Calibration:
    """A calibrated posterior (Laplace at the joint MAP): parameter table and draws in the fitted
    (log/logit) space."""

    parameters: list
    draws_z: np.ndarray  # (draws, parameters)
    map_z: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [p["key"] for p in self.parameters]

    @property
    def structure(self) -> structures.Structure:
        """The candidate structures the calibration was made with (the cards' defaults when the
        file does not say)."""
        return structures.resolve(self.info.get("structure"))

    def summary(self):
        """One row per calibrated parameter: MAP, 90 % interval (natural units), prior median,
        posterior/prior sd ratio (> 0.9: the data taught little), where its draws come from
        (``marginal``: ``"laplace"``, or ``"slice grid"`` where :func:`check_laplace` refused the
        Laplace) and the modalities informing it."""
        import pandas as pd

        rows = []
        for i, p in enumerate(self.parameters):
            nat = np.asarray(params.to_natural(p["transform"], jnp.asarray(self.draws_z[:, i])))
            rows.append(
                dict(
                    parameter=p["key"],
                    map=float(params.to_natural(p["transform"], self.map_z[i])),
                    q05=float(np.quantile(nat, 0.05)),
                    q95=float(np.quantile(nat, 0.95)),
                    unit=p["unit"],
                    prior_median=float(params.to_natural(p["transform"], p["prior_mu"])),
                    sd_ratio=p["sd_ratio"],
                    data_taught_little=p["sd_ratio"] > 0.9,
                    marginal=p.get("marginal", "laplace"),
                    card_status=p["status"],
                    modalities=",".join(p["modalities"]),
                )
            )
        return pd.DataFrame(rows)

    def contraction(self) -> dict[str, float]:
        """1 - (posterior sd / prior sd)^2 per parameter key, in [0, 1]."""
        return {p["key"]: float(np.clip(1.0 - p["sd_ratio"] ** 2, 0.0, 1.0)) for p in self.parameters}

    def _setters(self, model, used):
        have = {(p.card, p.name) for p in used}
        out = []
        for i, p in enumerate(self.parameters):
            card, base, species = _split_key(p["key"])
            if species is not None and species != model.species:
                continue
            if card != "core" and (card, base) not in have:
                continue
            where = params.where(model, base)
            if where is not None:
                out.append((i, where, p["transform"]))
        return out

    def models(
        self,
        modality: str,
        n: int | None = None,
        *,
        species: str = "human",
        seed: int | None = None,
        uncalibrated: str = "card",
    ):
        """Models of ``modality`` on ``n`` posterior draws (all stored draws by default; a random
        subset with ``seed``).

        ``uncalibrated``: what the parameters the calibration does not hold (no usable row informs
        them) take: ``"card"`` their card values (the calibration's own conditioning), or
        ``"prior"`` a draw from their card prior per posterior draw, so that predictions carry
        what is still unknown about them. Prior draws are keyed by the parameter and the draw's
        row, so every modality sharing a parameter sees the same value on the same draw."""
        if uncalibrated not in UNCALIBRATED:
            raise ValueError(f"uncalibrated={uncalibrated!r} is not known; valid: {list(UNCALIBRATED)}")
        base, used = build(modality, species, structure=self.structure)
        setters = self._setters(base, used)
        rows = np.arange(len(self.draws_z))
        if n is not None:
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"n={n!r} must be a positive integer (number of posterior draws)")
            if n > len(rows):
                raise ValueError(f"n={n} exceeds the {len(rows)} stored posterior draws")
            rows = rows[:n] if seed is None else np.random.default_rng(seed).choice(len(rows), n, replace=False)
        models = [self._apply(base, setters, z) for z in self.draws_z[rows]]
        if uncalibrated == "prior":
            models = self._prior_draws(models, used, rows)
        return models

    def _uncalibrated(self, model, used) -> list:
        """``(parameter, getter, transform, mean, sd)`` of every card parameter of ``model`` with a
        fittable prior that the calibration does not hold."""
        held = {_split_key(key) for key in self.keys}  # (card, name, species or None)
        out = []
        for p in used:
            if (p.card, p.name, None) in held or (p.card, p.name, model.species) in held:
                continue
            getter = params.where(model, p.name)
            if getter is None:
                continue
            try:
                transform, mu, sd = params.prior_transform(p.card, p.name, p.prior)
            except ValueError:  # static parameters (e.g. lag times)
                continue
            out.append((p, getter, transform, mu, sd))
        return out

    def _prior_draws(self, models, used, rows):
        total = len(self.draws_z)
        for p, getter, transform, mu, sd in self._uncalibrated(models[0], used):
            key = f"{p.card}.{p.name}@{p.species}"
            u = np.random.default_rng([PRIOR_SEED, zlib.crc32(key.encode())]).standard_normal(total)[rows]
            values = np.asarray(params.to_natural(transform, mu + sd * u))
            models = [
                eqx.tree_at(getter, m, jnp.asarray(v, dtype=jnp.float64)) for m, v in zip(models, values, strict=True)
            ]
        return models

    def model(self, modality: str, *, species: str = "human"):
        """The model of ``modality`` at the joint MAP."""
        base, used = build(modality, species, structure=self.structure)
        return self._apply(base, self._setters(base, used), self.map_z)

    @staticmethod
    def _apply(model, setters, z):
        for i, where, transform in setters:
            model = eqx.tree_at(where, model, jnp.asarray(params.to_natural(transform, float(z[i])), dtype=jnp.float64))
        return model

    def to_dict(self) -> dict:
        return dict(
            parameters=self.parameters,
            map_z=np.asarray(self.map_z).tolist(),
            draws_z=np.asarray(self.draws_z).tolist(),
            info=self.info,
        )

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        for k in ("parameters", "map_z", "draws_z"):
            if k not in d:
                raise ValueError(f"not a pkpd calibration: missing {k!r}")
        return cls(
            parameters=d["parameters"],
            map_z=np.asarray(d["map_z"], dtype=float),
            draws_z=np.asarray(d["draws_z"], dtype=float),
            info=d.get("info", {}),
        )


def load(path=None) -> Calibration:
    """The shipped calibration (``models/calibration/posterior.json``) or the one at ``path``."""
    path = Path(path) if path is not None else models_dir() / CALIBRATION
    if not path.exists():
        raise FileNotFoundError(f"no calibration at {path}; run `python -m pkpd.calibrate` to make one")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun `python -m pkpd.calibrate`") from e
    return Calibration.from_dict(d)


def model(name: str, species: str = "human", *, calibrated: bool = False, structure=None, **overrides):
    """The model of modality ``name`` for ``species`` (human, mouse, rat) with model-card values,
    or with ``calibrated=True`` at the MAP of the shipped joint calibration (parameters no data
    informed keep their card values; posterior draws: ``pkpd.calibrate.load().models(name, n)``).
    This is ``pkpd.model``; ``structure`` picks candidate structures (:mod:`pkpd.structures`; a
    calibrated model has its calibration's), ``overrides`` replace card values by parameter name
    (:func:`pkpd.modalities.build`).

    >>> m = pkpd.model("psilocybin", species="human")
    """
    if calibrated:
        if overrides:
            raise ValueError(f"calibrated=True takes no parameter overrides (got {sorted(overrides)})")
        get_modality(name)
        cal = load()
        if structure is not None and structures.resolve(structure) != cal.structure:
            raise ValueError(
                f"structure={structure!r}: the shipped calibration was made with {structures.describe(cal.structure)}; "
                "calibrate another structure with pkpd.calibrate.calibrate(structure=...)"
            )
        return cal.model(name, species=species)
    return build(name, species, structure=structure, **overrides)[0]
