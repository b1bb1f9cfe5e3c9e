"""Input coding and label embedding (LightFF / Hinton), shared by float and integer models.

Inputs are unsigned ``abits`` codes. The label lives in the first ``classes`` inputs:
one-hot scaled to ``cfg.label_value`` (the image max, 2**abits - 1 by default) for a
labelled copy; ``cfg.neutral_value`` (0.1 of it, rounded half up) in all of them for the
neutral (One-Pass) input.
"""

from __future__ import annotations

import numpy as np

from ..config import AccelConfig


def input_codes(x_u8: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Map 8-bit pixels (0..255) to ``abits`` activation codes, rounding half up."""
    x = np.asarray(x_u8)
    if x.ndim != 2 or x.shape[1] != cfg.inputs:
        raise ValueError(f"inputs of shape {x.shape} do not match the config ({cfg.inputs} inputs)")
    x = x.astype(np.int64)
    if x.min(initial=0) < 0 or x.max(initial=0) > 255:
        raise ValueError("pixel values must lie in 0..255")
    if cfg.abits == 8:
        return x
    return (x * cfg.amax * 2 + 255) // 510


def embed_labels(x: np.ndarray, labels: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """Copies of ``x`` (B, D) with the label ``labels`` (B,) embedded."""
    out = np.array(x, dtype=np.int64, copy=True)
    out[:, : cfg.classes] = 0
    out[np.arange(len(out)), np.asarray(labels, dtype=np.int64)] = cfg.label_value
    return out


def embed_all(x: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """All ``classes`` labelled copies: (B, classes, D) — the Multi-Pass input."""
    b = len(x)
    out = np.repeat(np.asarray(x, dtype=np.int64)[:, None, :], cfg.classes, axis=1)
    out[:, :, : cfg.classes] = 0
    idx = np.arange(cfg.classes)
    out[:, idx, idx] = cfg.label_value
    return out.reshape(b, cfg.classes, -1)


def embed_neutral(x: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """The neutral-label input (B, D) of One-Pass inference."""
    out = np.array(x, dtype=np.int64, copy=True)
    out[:, : cfg.classes] = cfg.neutral_value
    return out
