"""The ``--physical SPEC`` grammar and a network's blocks (bottom floor: no numpy, no model).

``parse_spec`` turns ``kind:key=value,...`` into a ``PhysicalSpec``; ``blocks`` derives each
layer's input width with physical layers in front (the config's ``fan_in`` reads it). The
physical layers themselves (emulator, measured model, external process) are in
``ffaccel.model.physical``; docs/architecture.md, "Physical layers", has the design.
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import lru_cache
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import FFAccelError

KINDS = ("random", "file", "exec")
ACTS = ("abs", "square", "relu")
#: Keys every kind accepts, with their defaults (the canonical spec leaves defaults out).
_COMMON = {"out": 0, "concat": False, "at": ""}
_KEYS = {
    "random": {"seed": 1, "noise": 0.0, "drift": 0.0, "act": "abs", "gain": 1.0},
    "file": {"path": "", "sha256": "", "noise": 0.0},
    "exec": {"cmd": ""},
}
MAX_NOISE = 10.0
MAX_DRIFT = 1.0


class PhysicalError(FFAccelError):
    """A physical-layer spec, file or process is unusable; the message says why."""


# ---------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class PhysicalSpec:
    """A parsed ``--physical`` spec: the kind, its parameters, and where the blocks are.

    ``out``: P's output width (0: the block's input width). ``concat``: the digital layer
    reads ``[P(u), u]``. ``at``: the 1-based layers that have a P in front ("" = all),
    written ``2-4`` or ``1+3``."""

    kind: str
    params: tuple[tuple[str, object], ...] = ()
    out: int = 0
    concat: bool = False
    at: str = ""

    def get(self, key: str):
        return dict(self.params).get(key, _KEYS[self.kind][key])

    def layers(self, n_layers: int) -> tuple[bool, ...]:
        """Per layer (0-based): is there a physical layer in front of it?"""
        if not self.at:
            return (True,) * n_layers
        on = set()
        for part in self.at.split("+"):
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi or lo)
            if not 1 <= a <= b <= n_layers:
                raise PhysicalError(f"physical spec at={self.at!r}: layers are 1..{n_layers}")
            on.update(range(a - 1, b))
        return tuple(i in on for i in range(n_layers))

    def canonical(self) -> str:
        """The spec as a string with keys sorted and defaults left out (configs store this)."""
        items = [(k, v) for k, v in self.params if v != _KEYS[self.kind][k] and k != "cmd"]
        if self.out:
            items.append(("out", self.out))
        if self.concat:
            items.append(("concat", 1))
        if self.at:
            items.append(("at", self.at))
        items.sort()
        if self.kind == "exec":
            items.append(("cmd", self.get("cmd")))          # last: it takes the rest of the spec
        return self.kind + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in items)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def parse_spec(text: str) -> PhysicalSpec:
    """``kind:key=value,...`` -> PhysicalSpec, or PhysicalError naming the bad part.

    Examples: ``random:seed=3,noise=0.02,drift=0.001``, ``random:out=256,concat=1,at=2-3``,
    ``file:path=p.npz``, ``exec:out=100,cmd=python3 my_p.py`` (``cmd`` must come last: it
    takes the rest of the spec, commas included)."""
    if not isinstance(text, str) or ":" not in text:
        raise PhysicalError(f"physical spec {text!r}: expected KIND:key=value,... with KIND one of "
                            f"{', '.join(KINDS)}")
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise PhysicalError(f"physical spec {text!r}: unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
    allowed = {**_KEYS[kind], **_COMMON}
    params: dict[str, object] = {}
    common: dict[str, object] = {}
    while rest.strip():
        item, sep, tail = rest.partition(",")
        key, eq, val = item.partition("=")
        key = key.strip()
        if key == "cmd":                                     # the rest, commas included
            val = (val + sep + tail).strip() if eq else ""
            tail = ""
        if not eq or key not in allowed:
            raise PhysicalError(f"physical spec {text!r}: {item.strip()!r} is not key=value with a key of "
                                f"{', '.join(sorted(allowed))}")
        if key in params or key in common:
            raise PhysicalError(f"physical spec {text!r}: {key} given twice")
        (common if key in _COMMON else params)[key] = _convert(text, key, val.strip(), allowed[key])
        rest = tail
    params = {k: v for k, v in params.items() if k == "cmd" or v != _KEYS[kind][k]}   # one form per spec
    spec = PhysicalSpec(kind, tuple(sorted(params.items())), int(common.get("out", 0)),
                        bool(common.get("concat", False)), str(common.get("at", "")))
    _validate(text, spec)
    return spec


def _convert(text: str, key: str, val: str, default):
    try:
        if isinstance(default, bool):
            if val not in ("0", "1", "true", "false"):
                raise ValueError
            return val in ("1", "true")
        if isinstance(default, int):
            return int(val)
        if isinstance(default, float):
            v = float(val)
            if not math.isfinite(v):
                raise ValueError
            return v
    except ValueError:
        raise PhysicalError(f"physical spec {text!r}: {key}={val!r} is not a valid "
                            f"{type(default).__name__}") from None
    return val


def _validate(text: str, spec: PhysicalSpec) -> None:
    def bad(why: str):
        raise PhysicalError(f"physical spec {text!r}: {why}")
    if not 0 <= spec.out <= 1 << 16:
        bad(f"out={spec.out} out of range (0 = the block's input width, else 1..65536)")
    if spec.at and not re.fullmatch(r"[0-9]{1,5}(-[0-9]{1,5})?(\+[0-9]{1,5}(-[0-9]{1,5})?)*", spec.at):
        bad(f"at={spec.at!r}: expected layers like 2, 2-4 or 1+3")
    if spec.kind == "random":
        if not 0 <= spec.get("seed") < 2 ** 32:
            bad("seed must be 0..2**32-1")
        if not 0.0 <= spec.get("noise") <= MAX_NOISE:
            bad(f"noise={spec.get('noise')} out of range (0..{MAX_NOISE})")
        if not 0.0 <= spec.get("drift") <= MAX_DRIFT:
            bad(f"drift={spec.get('drift')} out of range (0..{MAX_DRIFT})")
        if spec.get("act") not in ACTS:
            bad(f"act={spec.get('act')!r} (allowed: {', '.join(ACTS)})")
        if not 0.0 < spec.get("gain") <= 1e3:
            bad(f"gain={spec.get('gain')} out of range (0 < gain <= 1000)")
    elif spec.kind == "file":
        if not spec.get("path"):
            bad("file needs path=FILE.npz")
        if not 0.0 <= spec.get("noise") <= MAX_NOISE:
            bad(f"noise={spec.get('noise')} out of range (0..{MAX_NOISE})")
    elif not spec.get("cmd"):
        bad("exec needs cmd=COMMAND (last)")


def with_params(text: str, **params) -> str:
    """The canonical spec ``text`` with ``params`` set (e.g. the drift a study adds to the
    spec a network was trained with)."""
    spec = parse_spec(text)
    merged = {**dict(spec.params), **params}
    body = ",".join(f"{k}={_fmt(v)}" for k, v in merged.items() if k != "cmd")
    extra = [f"{k}={_fmt(v)}" for k, v in (("out", spec.out), ("concat", spec.concat), ("at", spec.at)) if v]
    return parse_spec(f"{spec.kind}:" + ",".join([b for b in [body] if b] + extra)).canonical()


def pin_files(spec: PhysicalSpec) -> PhysicalSpec:
    """A ``file`` spec with the file's sha256 recorded (what a checkpoint stores: loading
    it later against a changed file is refused). Other kinds are returned unchanged."""
    if spec.kind != "file":
        return spec
    digest = _sha256(spec.get("path"))
    params = dict(spec.params)
    if params.get("sha256") and params["sha256"] != digest:
        raise PhysicalError(f"physical file {spec.get('path')!r} has changed since the network was trained "
                            f"(sha256 {digest[:12]}..., recorded {params['sha256'][:12]}...)")
    params["sha256"] = digest
    return replace(spec, params=tuple(sorted(params.items())))


def _sha256(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as e:
        raise PhysicalError(f"physical file {path!r} cannot be read: {e.strerror or e}") from None


# ---------------------------------------------------------------------------- a network's blocks
@dataclass(frozen=True)
class Block:
    """Layer ``index`` (0-based): its input width, whether a P is in front, P's output
    width and whether the digital layer also reads the block input (concat)."""

    index: int
    n_u: int
    physical: bool
    n_p: int
    concat: bool

    @property
    def fan_in(self) -> int:
        if not self.physical:
            return self.n_u
        return self.n_p + (self.n_u if self.concat else 0)


@lru_cache(maxsize=256)         # read by every fan_in / physical_at / share_layer1
def blocks(spec_text: str, inputs: int, layers: tuple[int, ...]) -> tuple[Block, ...]:
    """The blocks of a network (the one place fan-ins with physical layers are derived)."""
    spec = parse_spec(spec_text) if spec_text else None
    on = spec.layers(len(layers)) if spec else (False,) * len(layers)
    out, n_u = [], inputs
    for i, n in enumerate(layers):
        if on[i]:
            out.append(Block(i, n_u, True, spec.out or n_u, spec.concat))
        else:
            out.append(Block(i, n_u, False, 0, False))
        n_u = n
    return tuple(out)
