"""Trained-network cache: one training per (network, recipe, data), shared by the
reproduction scripts and the DSE. Checkpoints live under ``$FFACCEL_CACHE`` (default
``~/.cache/ffaccel``) as ``ckpt-<key>.ckpt``, written atomically, so concurrent workers that
race on the same key at worst train twice and never read a half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ..config import BSFF_FIELDS, NETWORK_FIELDS, OPTIONAL_FIELDS, AccelConfig
from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .recipe import TrainRecipe
from .training import fit


def cache_dir() -> Path:
    return Path(os.environ.get("FFACCEL_CACHE", Path.home() / ".cache" / "ffaccel"))


def cache_key(ds, cfg: AccelConfig, recipe: TrainRecipe) -> str:
    """The network, the whole recipe, the training algorithm and the data's hash; with
    quantisation-aware fine-tuning also the weight width it trains for."""
    # (a ReLU network's key leaves out the BSFF fields: the keys from before them stay valid;
    # other units than ReLU name themselves)
    net = {k: getattr(cfg, k) for k in NETWORK_FIELDS
           if (cfg.bsff or k not in BSFF_FIELDS or (k == "neuron" and cfg.neuron != "relu"))
           and getattr(cfg, k) != OPTIONAL_FIELDS.get(k, object())}
    if cfg.bsff:
        net["abits"] = cfg.abits                      # the input coding follows the count's width
    if recipe.qat_epochs:
        net["wbits"] = cfg.wbits
    blob = json.dumps({"net": net, "recipe": recipe.key(), "data": ds.provenance.get("sha256"),
                       "name": ds.name, "algorithm": TrainRecipe.algorithm(cfg.exit_head)},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_fit(ds, cfg: AccelConfig, recipe: TrainRecipe, given: str | None = None, progress: bool = False,
               threads: int = 1):
    """(net, quantised config, meta, path): ``given`` checkpoint, else the cached one for
    (network, recipe, data), else train now and cache."""
    if given:
        net, qcfg, meta = load_checkpoint(given)
        check_compatible(qcfg, cfg, given)
        return net, qcfg, meta, given
    if cfg.physical.startswith("exec:"):
        # an external process's answers are not part of any key: never cached
        net, qcfg, meta = fit(ds, cfg, recipe, threads=threads, progress=progress)
        return net, qcfg, meta, None
    from .physical import prepare
    cfg = prepare(cfg)                                 # a file's hash is part of the key
    path = cache_dir() / f"ckpt-{cache_key(ds, cfg, recipe)}.ckpt"
    if path.is_file():
        net, qcfg, meta = load_checkpoint(path)
        return net, qcfg, meta, str(path)
    if progress:
        print(f"[ffaccel] training {cfg.summary()} ({recipe.epochs} epochs) -> {path}", file=sys.stderr)
    net, qcfg, meta = fit(ds, cfg, recipe, threads=threads, progress=progress)
    save_checkpoint(path, net, qcfg, meta)
    return net, qcfg, meta, str(path)
