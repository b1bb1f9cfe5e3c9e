"""Checkpoints: float weights + the config they were trained and quantised for + provenance.

Saved atomically (temporary file + rename); loaded with ``torch.load(weights_only=True)``
so a checkpoint can never run code. Every shape is checked against the stored config.
"""

from __future__ import annotations

import io
import json
import re
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import FORMAT_FIELDS, NETWORK_FIELDS, AccelConfig, ConfigError, parse_error_text
from ..errors import FFAccelError
from ..fsutil import atomic_write_bytes
from .ff import FFNet, state_shapes

FORMAT = "ffaccel-checkpoint-1"


def checkpoint_bytes(cfg: AccelConfig) -> int:
    """An upper bound of the size of a checkpoint of ``cfg`` (float32 state and 64 kB of
    config, meta and container), for the free-space check before a training."""
    import math
    return sum(4 * math.prod(s) for s in state_shapes(cfg).values()) + (64 << 10)


def save_checkpoint(path: str | Path, net: FFNet, cfg: AccelConfig, meta: dict[str, Any]) -> None:
    blob = {
        "format": FORMAT,
        "config": cfg.to_json(indent=None),
        "meta": json.dumps(meta, sort_keys=True),
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` of a file with tensors and plain data only (``weights_only``: loading
    can never run code); any problem is one clear :class:`FFAccelError` naming ``what``."""
    p = Path(path)
    if p.is_dir():
        raise FFAccelError(f"{what} {str(p)!r} is a folder, not a file")
    if not p.is_file():
        raise FFAccelError(f"{what} {str(p)!r} does not exist")
    try:
        with warnings.catch_warnings():             # torch's pickle-protocol notes: stderr keeps one line
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            raise FFAccelError(f"{what} {str(p)!r} holds objects other than tensors and plain data; "
                               "refused (loading them could run code)") from None
        raise FFAccelError(f"{what} {str(p)!r} is truncated or corrupt ({type(e).__name__})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = re.sub(r"\x1b\[[0-9;]*m", "", first)[:200]        # no terminal escapes, one short line
        raise FFAccelError(f"{what} {str(p)!r} is truncated or corrupt: {first}") from None


def load_checkpoint(path: str | Path) -> tuple[FFNet, AccelConfig, dict[str, Any]]:
    """Load (net, config, meta); any problem is one clear :class:`FFAccelError`."""
    p = Path(path)
    blob = load_torch_file(p)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise FFAccelError(f"checkpoint {str(p)!r} is not an ffaccel checkpoint ({FORMAT})")
    try:
        cfg = AccelConfig.from_json(blob["config"])
        meta = json.loads(blob["meta"])
    except (ConfigError, KeyError, TypeError, ValueError, RecursionError, OverflowError) as e:
        why = parse_error_text(e)
        raise FFAccelError(f"checkpoint {str(p)!r} has a bad config: {why}") from None
    if not isinstance(meta, dict):
        raise FFAccelError(f"checkpoint {str(p)!r} has bad metadata (a {type(meta).__name__}, not a mapping)")
    state = blob.get("state")
    if not isinstance(state, dict):
        raise FFAccelError(f"checkpoint {str(p)!r} holds no weights")
    # shapes and values are checked against the config before the network is allocated,
    # so a small file that claims a huge network is refused without building it
    want = state_shapes(cfg)
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    if missing or extra:
        raise FFAccelError(f"checkpoint {str(p)!r} does not match its config "
                           f"({'missing ' + missing[0] if missing else 'unexpected ' + extra[0]})")
    for k, shape in want.items():
        t = state[k]
        if not isinstance(t, torch.Tensor):
            raise FFAccelError(f"checkpoint {str(p)!r}: {k} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != shape:
            raise FFAccelError(f"checkpoint {str(p)!r}: {k} has shape {tuple(t.shape)}, "
                               f"its config needs {shape}")
        if t.layout != torch.strided or t.device.type != "cpu":
            raise FFAccelError(f"checkpoint {str(p)!r}: {k} is a {t.layout} tensor on {t.device.type} "
                               "(dense CPU tensors needed)")
        if not t.dtype.is_floating_point or t.is_complex():
            raise FFAccelError(f"checkpoint {str(p)!r}: {k} holds {t.dtype} values (real floating point needed)")
        if not bool(torch.isfinite(t).all()):
            raise FFAccelError(f"checkpoint {str(p)!r}: {k} holds NaN or infinite values")
    net = FFNet(cfg)
    net.exec_allowed = False             # a checkpoint's `exec` command runs only when allowed
    net.load_state_dict(state)
    return net, cfg, meta


# what a checkpoint fixes: the network and the number formats it was quantised for
CKPT_FIXED = NETWORK_FIELDS + FORMAT_FIELDS


def checkpoint_config(path: str, overrides: Mapping[str, Any]) -> tuple[FFNet, AccelConfig]:
    """(net, config) of a checkpoint with ``overrides`` (config keys, e.g. the command's
    flags: ``ffaccel.cli.config_overrides(args)``) applied on top; an override that would
    change the network or its formats is refused (one line)."""
    if not isinstance(overrides, Mapping):
        raise TypeError(f"checkpoint_config: overrides must be a mapping of config keys, not {type(overrides).__name__}")
    net, ck_cfg, _ = load_checkpoint(path)
    # the network and formats first, in the user's terms (not a derived field's complaint)
    for key in CKPT_FIXED:
        if key in overrides:
            try:
                asked = getattr(AccelConfig.from_dict({**ck_cfg.to_dict(), key: overrides[key],
                                                       "wfrac": [], "hfrac": [], "thresholds": [],
                                                       "score_mask": []}), key)
            except ConfigError:
                asked = overrides[key]
            if asked != getattr(ck_cfg, key):
                raise FFAccelError(f"checkpoint {path!r} has {key}={getattr(ck_cfg, key)!r}; "
                                   f"the command asks for {asked!r}")
    data = ck_cfg.to_dict()
    data.pop("schema", None)
    data.update(overrides)
    cfg = AccelConfig.from_dict(data)
    for key in CKPT_FIXED:
        if getattr(cfg, key) != getattr(ck_cfg, key):
            raise FFAccelError(f"checkpoint {path!r} has {key}={getattr(ck_cfg, key)!r}; "
                               f"the command asks for {getattr(cfg, key)!r}")
    return net, cfg


def check_compatible(cfg: AccelConfig, want: AccelConfig, path: str) -> None:
    """A checkpoint's network must match the network the user asked for."""
    for key in NETWORK_FIELDS:
        if getattr(cfg, key) != getattr(want, key):
            raise FFAccelError(f"checkpoint {path!r} has {key}={getattr(cfg, key)!r}, "
                               f"but the command asks for {getattr(want, key)!r}")
