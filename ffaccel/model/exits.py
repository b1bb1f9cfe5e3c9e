"""Early-exit rules (LightFF), shared by the float model and the integer golden model.

Scores are cumulative per layer: MP goodness G_c(l) = sum_{i<=l, i scored} g_{c,i}, OP
logits likewise. After a scored layer l before the decision layer the comparator fires
when max_c score >= T_l ("max") or top1 - top2 >= T_l ("margin"); after a skipped layer
it never fires; the decision layer (the last scored one, ``AccelConfig.decision_layer``)
always decides; ties go to the lowest label.
"""

from __future__ import annotations

import numpy as np

from .intops import top2_margin


def decision_layer(scored) -> int:
    """0-based index of the layer that decides: the last scored one."""
    return max(i for i, v in enumerate(scored) if v)


def fires(scores: np.ndarray, layer: int, scored, policy: str,
          thresholds: tuple | list | np.ndarray) -> np.ndarray:
    """Boolean (B,): does the exit comparator fire after ``layer`` (0-based)? ``scored``:
    per layer, whether the cumulative score sums it (``AccelConfig.scored``)."""
    if layer >= decision_layer(scored):
        return np.ones(len(scores), dtype=bool)
    if policy == "none" or len(thresholds) == 0 or not scored[layer]:
        return np.zeros(len(scores), dtype=bool)
    t = thresholds[layer]
    if policy == "max":
        return scores.max(axis=-1) >= t
    if policy == "margin":
        return top2_margin(scores) >= t
    raise ValueError(f"unknown exit policy {policy!r}")


def apply_exit(layer_scores: np.ndarray, policy: str, thresholds, scored) -> tuple[np.ndarray, np.ndarray]:
    """(exit_layer 1-based, predicted label) for full-depth cumulative scores (B, L, C)."""
    bsz, nl, _ = layer_scores.shape
    if len(scored) != nl:
        raise ValueError(f"scored has {len(scored)} entries for {nl} layers")
    exit_layer = np.full(bsz, nl, dtype=np.int64)
    done = np.zeros(bsz, dtype=bool)
    for layer in range(nl):
        f = fires(layer_scores[:, layer], layer, scored, policy, thresholds) & ~done
        exit_layer[f] = layer + 1
        done |= f
    final = layer_scores[np.arange(bsz), exit_layer - 1]
    return exit_layer, np.argmax(final, axis=-1)


def calibrate(layer_scores: np.ndarray, y: np.ndarray, policy: str, k: float,
              classes: int) -> list[float]:
    """LightFF thresholds T_l = mu_l - k * sigma_l for layers 1..L-1 from validation scores.

    "max": statistics of the correct label's cumulative score, per class, then averaged.
    "margin": statistics of top1 - top2 over the samples the layer already classifies
    correctly, per class, then averaged. "none": no thresholds.
    """
    if policy == "none":
        return []
    _, nl, _ = layer_scores.shape
    out = []
    for layer in range(nl - 1):
        s = layer_scores[:, layer].astype(np.float64)
        if policy == "max":
            vals, cls = s[np.arange(len(y)), y], y
        else:
            ok = s.argmax(1) == y
            vals, cls = top2_margin(s[ok]), y[ok]
        mus, sds = [], []
        for c in range(classes):
            v = vals[cls == c]
            if len(v):
                mus.append(v.mean())
                sds.append(v.std())
        out.append(float(np.mean(mus) - k * np.mean(sds)) if mus else float("inf"))
    return out


def cumulative(own: np.ndarray, scored) -> np.ndarray:
    """Cumulative scores (B, L, C) from per-layer scores ``own`` (B, L, C): the running sum
    of the scored layers (a skipped layer adds nothing)."""
    w = np.asarray([1 if v else 0 for v in scored], dtype=own.dtype)
    return np.cumsum(own * w[None, :, None], axis=1)


def scaled_nll(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of ``y`` under ``softmax(beta * scores)`` (B, C) at the
    best temperature ``beta >= 0``: a proper scoring rule that reads the whole score
    vector, not only its argmax, and does not depend on the scores' scale (MP goodness sums
    and OP logits alike). The NLL is convex in ``beta``; the search runs a golden section
    over ``log(beta * spread)`` in [-12, 12], ``spread`` the mean max - min score, and
    also tries ``beta = 0`` (log C)."""
    s = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(y))

    def nll(beta: float) -> float:
        z = s * beta
        z = z - z.max(axis=1, keepdims=True)
        return float((np.log(np.exp(z).sum(axis=1)) - z[rows, y]).mean())

    spread = float((s.max(axis=1) - s.min(axis=1)).mean()) if s.size else 0.0
    if spread == 0.0:
        return nll(0.0)
    g = (5 ** 0.5 - 1) / 2
    lo, hi = -12.0, 12.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(np.exp(a) / spread), nll(np.exp(b) / spread)
    for _ in range(50):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(np.exp(a) / spread)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(np.exp(b) / spread)
    return min(fa, fb, nll(0.0))


def select_scored(own: np.ndarray, y: np.ndarray) -> tuple[int, ...]:
    """Which layers the cumulative score should sum, from per-layer scores ``own`` (B, L, C)
    on the validation split: the subset of layers whose summed score gives the lowest
    temperature-scaled NLL of ``y`` (``scaled_nll``; every subset up to 8 layers, else
    backward elimination from all layers). Subsets within a relative 1e-9 of the best
    count as equal, and then the one with the most layers, then the earliest, wins, so
    layers that change nothing stay. Returns a mask of 0/1 per layer (all ones: every
    layer). Why NLL and not the count of correct samples: docs/architecture.md, section 2."""
    own = np.asarray(own, dtype=np.float64)
    y = np.asarray(y)
    _, nl, _ = own.shape
    memo: dict[tuple[int, ...], float] = {}

    def loss(mask) -> float:
        if mask not in memo:
            memo[mask] = scaled_nll(np.einsum("blc,l->bc", own, np.asarray(mask, dtype=np.float64)), y)
        return memo[mask]

    full = (1,) * nl
    if nl <= 8:
        cands = [tuple((m >> i) & 1 for i in range(nl)) for m in range(1, 1 << nl)]
    else:
        cands, cur = [full], full
        while sum(cur) > 1:
            cur = min((cur[:i] + (0,) + cur[i + 1:] for i in range(nl) if cur[i]), key=loss)
            cands.append(cur)
    best = min(loss(m) for m in cands)
    near = [m for m in cands if loss(m) <= best + 1e-9 * max(abs(best), 1e-12)]
    return max(near, key=lambda m: (sum(m), tuple(-i for i, v in enumerate(m) if v)))


def layer_macs(fan_in, layers, classes: int, mode: str, share: bool) -> list[int]:
    """MACs spent in each layer for one sample (heads included in OP).

    MP without sharing: classes * n_in * n_out per layer. With layer-1 sharing:
    (n_in - classes) * n1 once for the image plus classes * n1 for the per-copy label
    column. OP: n_in * n_out + classes * n_out (every visited head costs its MACs).
    """
    out = []
    for i, (n_in, n_out) in enumerate(zip(fan_in, layers)):
        if mode == "mp":
            if i == 0 and share:
                out.append((n_in - classes) * n_out + classes * n_out)
            else:
                out.append(classes * n_in * n_out)
        else:
            out.append(n_in * n_out + classes * n_out)
    return out


def class_recall(label: np.ndarray, y: np.ndarray, classes: int) -> dict[str, float | None]:
    """Recall of every class (``None`` for a class with no sample in ``y``)."""
    label, y = np.asarray(label), np.asarray(y)
    out: dict[str, float | None] = {}
    for c in range(classes):
        n = int((y == c).sum())
        out[str(c)] = float(((label == c) & (y == c)).sum() / n) if n else None
    return out


def balanced_accuracy(label: np.ndarray, y: np.ndarray, classes: int) -> float:
    """Mean recall over the classes that occur in ``y`` (sklearn's balanced accuracy)."""
    rec = [r for r in class_recall(label, y, classes).values() if r is not None]
    return float(np.mean(rec)) if rec else float("nan")


def exit_report(exit_layer: np.ndarray, label: np.ndarray, label_full: np.ndarray, y: np.ndarray,
                cfg) -> dict:
    """Accuracy and MAC figures of an exit decision (keys of ``ffaccel.eval --json``)."""
    nl, d = cfg.n_layers, cfg.decision_layer - 1         # full depth ends at the decision layer
    per = np.cumsum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, cfg.share_layer1))
    per_ns = np.cumsum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, False))
    hist = np.bincount(exit_layer, minlength=nl + 1)[1:]
    macs = float(per[exit_layer - 1].mean())
    macs_ns = float(per_ns[exit_layer - 1].mean())
    return {
        "samples": int(len(y)),
        "accuracy": float((label == y).mean()),
        "accuracy_full": float((label_full == y).mean()),
        "macs_per_sample": macs,
        "macs_full": int(per[d]),
        "mac_reduction": float(per[d] / macs),
        "macs_per_sample_noshare": macs_ns,
        "macs_full_noshare": int(per_ns[d]),
        "per_class_recall": class_recall(label, y, cfg.classes),
        "per_class_recall_full": class_recall(label_full, y, cfg.classes),
        "balanced_accuracy": balanced_accuracy(label, y, cfg.classes),
        "balanced_accuracy_full": balanced_accuracy(label_full, y, cfg.classes),
        "scored_layers": [i + 1 for i, v in enumerate(cfg.scored) if v],
        "mean_exit_layer": float(exit_layer.mean()),
        "exit_histogram": {str(i + 1): int(h) for i, h in enumerate(hist)},
    }
