"""Import of FF networks trained with other public code (``python -m ffaccel.import``).

Two layouts of PyTorch state dicts are read, and each code base's float inference is
re-implemented here from its published semantics, so the conversion can be checked on the
same inputs:

``mpezeshki`` (github.com/mpezeshki/pytorch_forward_forward)
    Keys ``layers.{i}.weight`` / ``layers.{i}.bias`` (its layers sit in a plain list, so
    users save ``{f"layers.{i}.{k}": v ...}``). A layer is ``relu(W x/(||x|| + 1e-4) + b)``;
    the label overwrites the first ``classes`` inputs: zeros, and the batch maximum at the
    label; the Multi-Pass score of a label sums ``mean(h**2)`` over all layers.
``loewex`` (github.com/loeweX/Forward-Forward)
    Keys ``model.{i}.weight`` / ``model.{i}.bias`` of its ``nn.ModuleList`` (the
    ``linear_classifier.*`` keys of its downstream read-out are accepted and not used).
    Every layer's input is RMS-normalised, ``x / (sqrt(mean(x**2)) + 1e-8)``; the label is
    one-hot (value 1) on the first ``classes`` inputs; its multi-pass score sums
    ``sum(h**2)`` over the layers after the first.

Conversion to ffaccel's layer ``relu(W' x/||x|| + b')`` with score ``sum(h'**2)``:
``mpezeshki``: ``W' = W/sqrt(n_out)``, ``b' = b/sqrt(n_out)`` (so ``sum(h'**2) = mean(h**2)``;
the next layer normalises its input, so the scale does not travel); ``loewex``:
``W' = W sqrt(n_in)`` (the RMS form), ``b' = b``, and layer 1 left out of the score
(``score_mask``). Exact up to the two codes' epsilons.

Both codes feed ``(p/255 - mean)/std`` pixels (torchvision's MNIST ``Normalize``, negative
background); ffaccel's layer 1 takes unsigned pixel codes ``p``. The scale cancels in
``x/||x||``; the offset does not. ``offset="drop"`` feeds the pixel codes as they are (the
label value becomes the pixel code of their label value: 255 for the batch maximum,
``round(255 (std + mean))`` = 112 for a 1); ``offset="fold"`` folds the offset's mean
effect into layer 1 (weight gain and bias from the calibration inputs) and puts the label
in offset-free units (222, 79). The accuracy each costs is measured (docs/results.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..config import AccelConfig
from ..errors import FFAccelError
from .ff import FFNet

__all__ = ["FORMATS", "OFFSETS", "Layout", "convert", "parse_state", "reference_scores", "their_inputs"]

FORMATS = ("mpezeshki", "loewex")
OFFSETS = ("drop", "fold")
#: torchvision's MNIST normalisation, used by both code bases (for Fashion-MNIST too)
NORM_MEAN, NORM_STD = 0.1307, 0.3081
_PREFIX = {"mpezeshki": "layers", "loewex": "model"}
_IGNORED = {"mpezeshki": (), "loewex": ("linear_classifier.",)}
_EPS = {"mpezeshki": 1e-4, "loewex": 1e-8}


@dataclass(frozen=True)
class Layout:
    """The layers of an imported state dict: float64 (W, b) per layer, input first."""
    fmt: str
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    ignored: tuple[str, ...]

    @property
    def inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights)


def parse_state(state, fmt: str) -> Layout:
    """Check a state dict against the layout of ``fmt``; any mismatch is one clear line."""
    if fmt not in FORMATS:
        raise FFAccelError(f"unknown format {fmt!r} (allowed: {', '.join(FORMATS)})")
    if not isinstance(state, Mapping) or not state:
        raise FFAccelError(f"a {fmt} state dict must be a non-empty mapping of names to tensors")
    prefix = _PREFIX[fmt]
    pat = re.compile(rf"{prefix}\.(\d+)\.(weight|bias)")
    found: dict[int, dict[str, torch.Tensor]] = {}
    ignored = []
    for key, val in state.items():
        if not isinstance(key, str):
            raise FFAccelError(f"state dict key {key!r} is not a string")
        if key.startswith(_IGNORED[fmt]):
            ignored.append(key)
            continue
        m = pat.fullmatch(key)
        if m is None:
            raise FFAccelError(f"state dict key {key!r} is not part of the {fmt} layout "
                               f"(expected {prefix}.N.weight and {prefix}.N.bias)")
        if not isinstance(val, torch.Tensor) or not val.dtype.is_floating_point or val.is_complex():
            raise FFAccelError(f"{key} is not a real floating-point tensor")
        if not bool(torch.isfinite(val).all()):
            raise FFAccelError(f"{key} holds NaN or infinite values")
        found.setdefault(int(m.group(1)), {})[m.group(2)] = val.detach().to("cpu", torch.float64)
    if not found:
        raise FFAccelError(f"the state dict holds no {prefix}.N.weight / {prefix}.N.bias tensors ({fmt} layout)")
    n = len(found)
    if sorted(found) != list(range(n)):
        raise FFAccelError(f"{fmt} layers must be numbered 0..{n - 1}, found {sorted(found)}")
    ws, bs = [], []
    for i in range(n):
        for part in ("weight", "bias"):
            if part not in found[i]:
                raise FFAccelError(f"{prefix}.{i}.{part} is missing")
        w, b = found[i]["weight"], found[i]["bias"]
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise FFAccelError(f"{prefix}.{i}: weight {tuple(w.shape)} and bias {tuple(b.shape)} "
                               "are not a Linear layer's")
        if i and w.shape[1] != ws[-1].shape[0]:
            raise FFAccelError(f"{prefix}.{i}.weight takes {w.shape[1]} inputs but layer {i - 1} "
                               f"has {ws[-1].shape[0]} outputs")
        ws.append(w.numpy())
        bs.append(b.numpy())
    if fmt == "loewex" and n < 2:
        raise FFAccelError("a loewex network needs at least 2 layers (its score leaves layer 1 out)")
    return Layout(fmt, tuple(ws), tuple(bs), tuple(sorted(ignored)))


# ------------------------------------------------------------------ their float models
def their_inputs(x_u8: np.ndarray, mean: float = NORM_MEAN, std: float = NORM_STD) -> np.ndarray:
    """Their preprocessing of 8-bit pixels: ``(p/255 - mean)/std`` (float64)."""
    return (np.asarray(x_u8, np.float64) / 255.0 - mean) / std


def _their_embed(lay: Layout, x: np.ndarray, label: int, classes: int, batch_max: float) -> np.ndarray:
    z = x.copy()
    z[:, :classes] = 0.0
    z[:, label] = batch_max if lay.fmt == "mpezeshki" else their_label(lay.fmt)
    return z


def reference_scores(lay: Layout, x: np.ndarray, classes: int, batch_max: float | None = None,
                     eps: float | None = None) -> np.ndarray:
    """Their per-layer goodness (B, L, classes) on their inputs ``x`` (already normalised),
    as their code computes it (float64): ``mean(h**2)`` (mpezeshki), ``sum(h**2)`` (loewex).
    Their Multi-Pass score is the sum over all layers (mpezeshki) or over layers 2.. (loewex).
    ``eps`` replaces their normalisation epsilon (tests: with 0 the conversion is exact)."""
    bmax = float(x.max()) if batch_max is None else batch_max
    eps = _EPS[lay.fmt] if eps is None else eps
    out = np.zeros((len(x), len(lay.weights), classes))
    for c in range(classes):
        h = _their_embed(lay, x, c, classes, bmax)
        for i, (w, b) in enumerate(zip(lay.weights, lay.biases)):
            if lay.fmt == "mpezeshki":
                u = h / (np.linalg.norm(h, axis=1, keepdims=True) + eps)
            else:
                u = h / (np.sqrt((h * h).mean(1, keepdims=True)) + eps)
            h = np.maximum(u @ w.T + b, 0.0)
            out[:, i, c] = (h * h).mean(1) if lay.fmt == "mpezeshki" else (h * h).sum(1)
        del h
    return out


def ffaccel_scores_on(net: FFNet, lay: Layout, x: np.ndarray, classes: int,
                      batch_max: float | None = None) -> np.ndarray:
    """ffaccel's float layers (``FFNet.layer``) on exactly their embedded inputs: per-layer
    ``sum(h'**2)`` (B, L, classes), to compare with :func:`reference_scores`."""
    bmax = float(x.max()) if batch_max is None else batch_max
    out = np.zeros((len(x), len(lay.weights), classes))
    with torch.no_grad():
        for c in range(classes):
            h = torch.as_tensor(_their_embed(lay, x, c, classes, bmax), dtype=torch.float64)
            for i in range(len(lay.weights)):
                h = net.layer(i, h)
                out[:, i, c] = (h * h).sum(1).numpy()
    return out


# ------------------------------------------------------------------ conversion
def their_label(fmt: str, mean: float = NORM_MEAN, std: float = NORM_STD) -> float:
    """Their label value in their normalised units: the batch maximum (that of a 255
    pixel) for mpezeshki, 1 for loewex."""
    return (1.0 - mean) / std if fmt == "mpezeshki" else 1.0


def label_code(fmt: str, offset: str = "drop", mean: float = NORM_MEAN, std: float = NORM_STD) -> int:
    """ffaccel's label value for an imported network. ``drop``: the pixel code whose
    normalised value is their label (255, 112); ``fold``: their label in the units of the
    folded layer 1, pixel codes less the offset, ``255 std their`` (222, 79), so the label
    slot, which their code never offsets, enters exactly."""
    their = their_label(fmt, mean, std)
    code = 255.0 * their * std + (255.0 * mean if offset == "drop" else 0.0)
    return max(1, min(255, math.floor(code + 0.5)))


def convert(lay: Layout, classes: int, *, offset: str = "drop", calib_u8: np.ndarray | None = None,
            mean: float = NORM_MEAN, std: float = NORM_STD, base: AccelConfig | None = None
            ) -> tuple[FFNet, AccelConfig, dict]:
    """(float64 FFNet, its MP config, conversion record) of an imported network.

    ``offset="fold"`` needs ``calib_u8`` (training pixels, uint8) to estimate the fold."""
    if offset not in OFFSETS:
        raise FFAccelError(f"unknown offset handling {offset!r} (allowed: {', '.join(OFFSETS)})")
    if not isinstance(classes, int) or isinstance(classes, bool) or not 2 <= classes < lay.inputs:
        raise FFAccelError(f"--classes {classes!r} out of range (allowed: 2..{lay.inputs - 1}, "
                           "the label takes the first inputs)")
    lv = label_code(lay.fmt, offset, mean, std)
    score_mask = (0,) + (1,) * (len(lay.layers) - 1) if lay.fmt == "loewex" else ()
    data = (base or AccelConfig()).to_dict()
    data.pop("schema", None)
    data.update({"inputs": lay.inputs, "layers": list(lay.layers), "classes": classes, "mode": "mp",
                 "exit_head": "learned", "label_value": lv, "score_mask": list(score_mask),
                 "wfrac": [], "hfrac": [], "thresholds": []})
    cfg = AccelConfig.from_dict(data)
    net = FFNet(cfg).double()
    rec = {"format": lay.fmt, "offset": offset, "label_value": lv, "norm_mean": mean, "norm_std": std,
           "epsilon_theirs": _EPS[lay.fmt], "ignored_keys": list(lay.ignored),
           "scored_layers": [i + 1 for i, v in enumerate(cfg.scored) if v]}
    with torch.no_grad():
        for i, (w, b, lin) in enumerate(zip(lay.weights, lay.biases, net.layers)):
            if lay.fmt == "mpezeshki":
                g, gb = 1.0 / math.sqrt(w.shape[0]), 1.0 / math.sqrt(w.shape[0])
            else:
                g, gb = math.sqrt(w.shape[1]), 1.0
            lin.weight.copy_(torch.as_tensor(w * g))
            lin.bias.copy_(torch.as_tensor(b * gb))
        if offset == "fold":
            if calib_u8 is None or not len(calib_u8):
                raise FFAccelError("offset folding needs calibration pixels")
            gain, shift = _fold(net, lay, np.asarray(calib_u8), classes, lv, mean, std)
            rec.update({"fold_weight_gain": gain, "fold_bias_shift_max_abs": float(np.abs(shift).max())})
    return net, cfg, rec


def _fold(net: FFNet, lay: Layout, x_u8: np.ndarray, classes: int, lv: int, mean: float, std: float):
    """Fold the dropped offset's mean effect into layer 1. In pixel-code units their input is
    ``v = u - o m`` (``u`` the codes ffaccel feeds, ``o = 255 mean`` on the non-label inputs
    ``m``, their label slot zeros aside), so ``W v/||v|| = (W u - o W m)/||v||``; with
    ``r = ||v||/||u||`` and ``1/||v||`` replaced by their means over the calibration inputs
    (label embedded), layer 1 becomes ``W/E[r] u/||u|| + b - o W m E[1/||v||]``."""
    o = 255.0 * mean
    their = their_label(lay.fmt, mean, std)
    u = np.asarray(x_u8, np.float64).copy()
    u[:, :classes] = 0.0
    u[:, 0] = lv                                    # one label copy: the norms differ little between labels
    v = u.copy()
    v[:, classes:] -= o
    v[:, 0] = their * 255.0 * std                   # their label value in the same units
    nu, nv = np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)
    r = float(np.mean(nv / nu))
    inv_v = float(np.mean(1.0 / nv))
    lin = net.layers[0]
    w = lin.weight.detach().numpy().copy()
    shift = -o * w[:, classes:].sum(1) * inv_v
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w / r))
        lin.bias.add_(torch.as_tensor(shift))
    return 1.0 / r, shift
