"""Workloads shared by ``ffaccel.verify``, ``ffaccel.perf`` and ``ffaccel.energy``: the same
seed (or the same checkpoint and data) gives every tool exactly the same model and samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FFAccelError
from .config import AccelConfig
from .model.golden import GoldenModel, QuantModel


@dataclass
class Workload:
    qm: QuantModel
    x: np.ndarray                 # (N, inputs) input codes
    y: np.ndarray | None          # labels, when the samples come from a data set
    source: dict                  # provenance: seed or checkpoint + dataset

    @property
    def cfg(self) -> AccelConfig:
        return self.qm.cfg


def spread_thresholds(qm: QuantModel, x: np.ndarray, responses: list | None = None) -> QuantModel:
    """Thresholds from the scores of the samples still running at each layer (the median),
    so that random models exit at every layer rather than all at the first or the last
    (physical layers: ``responses``, a golden run's, replayed; else the model's P)."""
    cfg = qm.cfg
    if cfg.n_layers == 1 or cfg.exit_policy == "none" or len(x) == 0:
        return qm
    sc = GoldenModel(qm).run(x, responses=responses).layer_scores
    live = np.ones(len(x), dtype=bool)
    th = []
    for layer in range(cfg.n_layers - 1):
        s = np.sort(sc[:, layer], axis=1)
        v = s[:, -1] if cfg.exit_policy == "max" else s[:, -1] - s[:, -2]
        pool = np.sort(v[live]) if live.any() else np.sort(v)
        t = int(pool[len(pool) // 2 + (len(pool) % 2)]) if len(pool) > 1 else int(pool[0]) + 1
        th.append(t)
        live &= v < t
    return QuantModel(cfg.replace(thresholds=tuple(th)), qm.weights, qm.biases, qm.heads, qm.head_biases,
                      physical=qm.physical)


def informative_config(rng: np.random.Generator, **shape) -> AccelConfig:
    """A config with the given structure and number formats drawn from ``rng``, chosen so
    that activations depend on the input: with random weights, ``W x/||x||`` spreads over
    about ``2**(wbits-1)`` weight units, so ``wfrac ~ wbits - abits + afrac - 1`` puts it at
    about half the activation range (a larger wfrac lets the random biases alone decide,
    and a bench would compare constants); likewise the heads' hfrac against lfrac."""
    abits, wbits = shape["abits"], shape["wbits"]
    n = len(shape["layers"])
    rfrac = int(rng.integers(max(6, abits - wbits + 3), 13))
    afrac = int(rng.integers(max(0, abits - wbits + 2), abits + 3))
    wcenter = wbits - abits + afrac - 1
    if shape.get("neuron") == "bsff":
        # BSFF: W x/||x|| should spread over a few units of the sigmoid's input (|z| ~ 4)
        afrac = int(rng.integers(2, 7))
        wcenter = wbits - 3
    lfrac = int(rng.integers(0, 6))
    if shape.get("goodness") == "cos" and shape.get("mode") == "mp":
        lfrac += 6            # a cosine score is at most 1: spread it over many codes

    def frac(center: int, lo: int) -> int:
        return max(lo, center + int(rng.integers(-1, 2)))
    hfrac = tuple(frac(wbits - 3 + lfrac, max(0, lfrac - rfrac)) for _ in range(n))
    if shape.get("exit_head", "learned") != "learned":
        # an LLS basis has its own fixed format (|B h| / ||h|| is about 1): the logit scale
        # alone spreads the increments, within rsqrt_frac + hfrac - lfrac >= 0 (hfrac 0)
        hfrac = ()
        lfrac = min(int(rng.integers(4, 9)), rfrac)
    return AccelConfig(
        afrac=afrac, rsqrt_frac=rfrac, rsqrt_index=int(rng.integers(2, 7)), lfrac=lfrac,
        wfrac=tuple(frac(wcenter, max(0, afrac - rfrac)) for _ in range(n)),
        hfrac=hfrac, **shape)


def sensitivity(qm: QuantModel, x: np.ndarray, seed: int = 99) -> float:
    """Fraction of activations that change when the inputs are redrawn: a bench comparing
    input-independent constants would prove little."""
    rng = np.random.default_rng(seed)
    x2 = rng.integers(0, qm.cfg.amax + 1, size=x.shape)
    a = GoldenModel(qm).run(x, probe=True).activations
    b = GoldenModel(qm).run(x2, probe=True).activations
    return float(np.mean(np.concatenate([(p != q).ravel() for p, q in zip(a, b)])))


def physical_memory() -> int:
    """Bytes of physical memory of this machine."""
    import os
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def check_memory(cfg: AccelConfig, samples: int, budget: float = 0.5) -> None:
    """Refuse, before allocating anything, a model and batch whose integer golden model would
    need more than ``budget`` of this machine's memory: int64 weights and their float64
    copies (16 bytes per weight), the inputs, and a layer's activations of every copy."""
    weights = sum(a * b for a, b in zip(cfg.fan_in, cfg.layers))
    if cfg.mode == "op":
        weights += cfg.classes * sum(cfg.layers)
    acts = samples * cfg.copies * max(cfg.layers) * 8 * 4          # acc, h, products, one spare
    need = 16 * weights + 8 * samples * cfg.inputs + acts
    have = physical_memory()
    if need > budget * have:
        raise FFAccelError(f"this model and {samples} samples need about {need / 2 ** 30:.1f} GiB "
                           f"(weights {weights:,}); this machine has {have / 2 ** 30:.1f} GiB")


def random_workload(cfg: AccelConfig, seed: int, n: int) -> Workload:
    """Random integer weights, biases and inputs from ``seed``; exits spread over the layers
    unless the config already holds thresholds."""
    if n < 1:
        raise FFAccelError(f"--samples={n} out of range (allowed: >= 1)")
    check_memory(cfg, n)
    rng = np.random.default_rng(seed)
    qm = QuantModel.random(cfg, rng)
    x = rng.integers(0, cfg.amax + 1, size=(n, cfg.inputs))
    if not cfg.thresholds:
        qm = spread_thresholds(qm, x)
    return Workload(qm, x, None, {"seed": seed, "samples": n})


def dataset_workload(checkpoint: str, dataset: str, limit: int | None, overrides: AccelConfig | None = None,
                     k: float | None = None) -> Workload:
    """A trained checkpoint, quantised and calibrated on the validation split, and the first
    ``limit`` test samples. ``overrides``: the config to use (array shape etc.); its network
    must be the checkpoint's."""
    from .data import DataError, load_dataset
    from .model.checkpoint import CKPT_FIXED, load_checkpoint
    from .model.embed import input_codes
    from .model.quant import calibrate_integer, quantize

    net, cfg, meta = load_checkpoint(checkpoint)
    if overrides is not None:
        for key in CKPT_FIXED:                  # the network and the formats it was quantised for
            if getattr(overrides, key) != getattr(cfg, key):
                raise FFAccelError(f"checkpoint {checkpoint!r} has {key}={getattr(cfg, key)!r}; "
                                   f"the command asks for {getattr(overrides, key)!r}")
        cfg = overrides
    try:
        ds = load_dataset(dataset)
    except DataError as e:
        raise FFAccelError(str(e)) from None
    if ds.inputs != cfg.inputs or ds.classes != cfg.classes:
        raise FFAccelError(f"dataset {ds.name!r} has {ds.inputs} inputs / {ds.classes} classes; "
                           f"checkpoint needs {cfg.inputs} / {cfg.classes}")
    if limit is not None and limit < 1:
        raise FFAccelError(f"--limit={limit} out of range (allowed: >= 1)")
    qm = calibrate_integer(quantize(net, cfg.replace(thresholds=())), input_codes(ds.x_val, cfg), ds.y_val, k)
    n = len(ds.x_test) if limit is None else min(limit, len(ds.x_test))
    return Workload(qm, input_codes(ds.x_test[:n], cfg), ds.y_test[:n],
                    {"checkpoint": checkpoint, "dataset": ds.name, "limit": n})
