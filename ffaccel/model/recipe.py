"""The training recipe: every hyper-parameter of FF training in one object.

``TrainRecipe`` is the only place that holds training defaults. ``python -m ffaccel.train``
builds its flags from it, the DSE reads its ``[recipe]`` section through it, the scripts and
the library's training functions take one, every checkpoint stores it (``meta["recipe"]``),
and the trained-network cache keys on it (docs/architecture.md, "Training recipe").

Training length is ``epochs`` passes over the training split, but at least ``min_steps``
optimiser steps: a threshold of 16 on mean(h^2) is reached by a climb of the goodness
from about 0.3, which takes a few hundred steps during which positives and negatives rise
together; a small data set (digits, 1,079 training images: 11 steps per epoch at batch
100) never got past it in 10 epochs, while MNIST (50,000 images: 500 steps per epoch at
batch 100, 1,000 at the default 50) spends a small part of its first epoch there
(docs/results.md, "Training defaults across shapes and data").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import FFAccelError

# What the training code does for a given recipe. Bumped whenever the code changes what a
# recipe and seed produce, so cached checkpoints and checkpoint metadata name it.
FF_ALGORITHM = "ff-2: weights and biases init U(-1,1), Adam weight step sqrt(fan_in)*lr"
# The layers of a network with LLS heads learn with LLS's local loss instead (train_lls).
LLS_ALGORITHM = "lls-1: LLS local cross-entropy of the fixed-basis logits, neutral-label input"

SCORE_LAYERS = ("auto", "all")


class RecipeError(FFAccelError):
    """A recipe value is invalid; the message names it and what is allowed."""


def _f(default, help: str, unit: str = ""):
    return field(default=default, metadata={"help": help, "unit": unit})


@dataclass(frozen=True)
class TrainRecipe:
    """All hyper-parameters of FF training, with their meaning and unit."""

    epochs: int = _f(10, "passes over the training split (at least: see min_steps)", "epochs")
    min_steps: int = _f(5000, "optimiser steps at least: a small training set runs more epochs "
                              "(0: exactly `epochs`)", "steps")
    lr: float = _f(0.003, "Adam step of the RMS-input form: biases move by lr, weights of the "
                          "unit-length datapath by sqrt(fan_in) * lr", "parameter units per step")
    theta: float = _f(16.0, "goodness threshold of the FF loss, on mean(h^2) over a layer's units",
                      "activation^2")
    batch: int = _f(50, "samples per optimiser step", "samples")
    hard_negatives: float = _f(1.0, "probability that a negative label is the wrong label layer 1 "
                                    "finds most plausible (else a uniform wrong label)", "probability")
    decay: bool = _f(True, "learning rate falls linearly to 0 over the second half of training")
    head_epochs: int = _f(0, "OP learned heads: epochs after the layers are trained (0: as many as "
                             "the layers; min_steps applies too)", "epochs")
    head_lr: float = _f(0.01, "OP learned heads: Adam learning rate", "parameter units per step")
    lls_temperature: float = _f(0.5, "LLS heads: softmax temperature of the layers' local loss")
    score_layers: str = _f("auto", "auto: the cumulative score sums only the layers that help it on "
                                   "the validation split (golden model and engine honour the choice); "
                                   "all: every layer")
    qat_epochs: int = _f(2, "quantisation-aware fine-tuning after training: passes over the training split "
                            "with the layers' weights rounded to the config's wbits in the forward pass "
                            "(straight-through gradient), then stored on that grid (0: off)", "epochs")
    qat_lr: float = _f(0.0003, "Adam step of the quantisation-aware fine-tuning, in the units of lr (a tenth "
                               "of it: the network is trained already)", "parameter units per step")
    bsff_target: float = _f(0.5, "BSFF layers: goodness threshold of the FF loss, on the expected sum of squared "
                                 "firing counts over the units, divided by units x k^2", "fraction")
    bsff_gain: float = _f(10.0, "BSFF layers: the FF loss is softplus(gain x (target - g)) for positives, "
                                "softplus(gain x (g - target)) for negatives", "1 / fraction")
    cos_theta: float = _f(4.0, "cosine goodness (PhyLL): the loss of a positive/negative pair is "
                               "softplus(-cos_theta x (g_pos - g_neg)), g the cosine of h with the layer's "
                               "fixed vector (Momeni et al. used 4 to 5)", "1 / cosine")
    cos_lr: float = _f(0.0003, "cosine goodness: the Adam step, in the units of lr, that replaces lr for layers "
                               "trained with it (PhyLL used 1e-4 and 5e-5; measured in docs/architecture.md, "
                               "'Physical layers': 0.001 let units die behind a physical layer on MNIST)",
                        "parameter units per step")
    shift: int = _f(0, "augmentation: every training image moves by a random whole number of pixels, up to N "
                        "down or up and, independently, left or right (zero fill), drawn afresh at every step; "
                        "image data sets only (0: off)", "pixels")
    seed: int = _f(0, "seed of the initial weights, the shuffles, the negative labels and the shifts")
    limit: int = _f(0, "train on the first N training samples only (0: all)", "samples")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("float", float) and isinstance(v, int) and not isinstance(v, bool):
                if abs(v) > 1e300:                  # float() of 10**400 would overflow
                    raise RecipeError(f"recipe {f.name}={v} out of range")
                object.__setattr__(self, f.name, float(v))
                v = float(v)
            want = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
            if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
                raise RecipeError(f"recipe {f.name}={v!r} must be {want.__name__}")
        _range("epochs", self.epochs, 1, 100_000)
        _range("head_epochs", self.head_epochs, 0, 100_000)
        _range("qat_epochs", self.qat_epochs, 0, 100_000)
        _range("min_steps", self.min_steps, 0, 10_000_000)
        _range("batch", self.batch, 1, 1_000_000)
        _range("seed", self.seed, 0, 2 ** 32 - 1)        # numpy's legacy seeding (Optuna's samplers)
        _range("limit", self.limit, 0, 2 ** 31)
        _range("shift", self.shift, 0, 64)
        for name in ("lr", "head_lr", "qat_lr", "cos_lr"):
            if not (math.isfinite(getattr(self, name)) and 0.0 < getattr(self, name) < 10.0):
                raise RecipeError(f"recipe {name}={getattr(self, name)!r} out of range (allowed: 0 < {name} < 10)")
        if not (math.isfinite(self.theta) and 0.0 < self.theta <= 1e6):
            raise RecipeError(f"recipe theta={self.theta!r} out of range (allowed: 0 < theta <= 1e6)")
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise RecipeError(f"recipe hard_negatives={self.hard_negatives!r} out of range (allowed: 0..1)")
        if not (math.isfinite(self.lls_temperature) and 0.0 < self.lls_temperature <= 100.0):
            raise RecipeError(f"recipe lls_temperature={self.lls_temperature!r} out of range (allowed: 0 < t <= 100)")
        if not 0.0 < self.bsff_target < 1.0:
            raise RecipeError(f"recipe bsff_target={self.bsff_target!r} out of range (allowed: 0 < target < 1)")
        if not (math.isfinite(self.bsff_gain) and 0.0 < self.bsff_gain <= 1e4):
            raise RecipeError(f"recipe bsff_gain={self.bsff_gain!r} out of range (allowed: 0 < gain <= 1e4)")
        if not (math.isfinite(self.cos_theta) and 0.0 < self.cos_theta <= 1e4):
            raise RecipeError(f"recipe cos_theta={self.cos_theta!r} out of range (allowed: 0 < cos_theta <= 1e4)")
        if self.score_layers not in SCORE_LAYERS:
            raise RecipeError(f"recipe score_layers={self.score_layers!r} (allowed: {', '.join(SCORE_LAYERS)})")

    # ------------------------------------------------------------------ derived
    def subset(self, x, y):
        """The training samples the recipe uses (the first ``limit``, or all)."""
        return (x[: self.limit], y[: self.limit]) if self.limit else (x, y)

    def steps_per_epoch(self, samples: int) -> int:
        return max(1, math.ceil(samples / self.batch))

    def effective_epochs(self, samples: int) -> int:
        """``epochs``, or more when that many passes over ``samples`` give fewer than
        ``min_steps`` optimiser steps."""
        return max(self.epochs, math.ceil(self.min_steps / self.steps_per_epoch(samples)))

    def effective_head_epochs(self, samples: int) -> int:
        return max(self.head_epochs or self.epochs, math.ceil(self.min_steps / self.steps_per_epoch(samples)))

    @staticmethod
    def algorithm(exit_head: str) -> str:
        """The training algorithm a network with these heads is trained with."""
        return FF_ALGORITHM if exit_head == "learned" else LLS_ALGORITHM

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> dict[str, Any]:
        """What cache and DSE keys hash: every field, less the fine-tuning's fields when it is
        off (they change nothing then; so the recipes from before them keep their keys and
        checkpoints)."""
        d = self.to_dict()
        if not self.qat_epochs:
            for name in QAT_FIELDS:
                del d[name]
        for name in BSFF_FIELDS + COS_FIELDS + AUG_FIELDS:    # recipes from before them keep their keys
            if d[name] == _DEFAULTS[name]:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "recipe") -> "TrainRecipe":
        if not isinstance(data, Mapping):
            raise RecipeError(f"{where} must be a table of recipe keys, not {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for k in data:
            if k not in names:
                raise RecipeError(f"{where}: unknown key {k!r} (allowed: {', '.join(names)})")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "TrainRecipe":
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str, str]]:
        """(name, default, help, unit) of every field: the flags and the docs read this."""
        return [(f.name, f.default, f.metadata["help"], f.metadata["unit"]) for f in dataclasses.fields(cls)]


#: The fine-tuning's fields: in the keys only when it is on (``TrainRecipe.key``).
QAT_FIELDS = ("qat_epochs", "qat_lr")
#: BSFF's loss fields (and the cosine loss's cos_theta): in the keys only when they differ
#: from their defaults.
BSFF_FIELDS = ("bsff_target", "bsff_gain")
COS_FIELDS = ("cos_theta", "cos_lr")
#: Augmentation: in the keys only when on.
AUG_FIELDS = ("shift",)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainRecipe)}


def _range(name: str, v: int, lo: int, hi: int) -> None:
    if not lo <= v <= hi:
        raise RecipeError(f"recipe {name}={v} out of range (allowed: {lo}..{hi})")
