"""Physical (black-box) layers: model-free FF on systems that are never modelled.

Momeni et al., "Backpropagation-free training of deep physical neural networks", Science
382 (2023), arXiv 2304.11042 (public code MomeniAli/PhyLL): a block is a physical system P
(an optical cavity, an acoustic or microwave device) followed by a trainable digital layer.
P is only ever *run*: FF's layer-local loss needs P's outputs, never its gradient or a
model of it. ffaccel's blocks (docs/architecture.md, "Physical layers"):

    p_l = P_l(u_l)                       u_1 = the label-embedded image, u_l = h_{l-1}
    x_l = p_l  or  [p_l, u_l]            (``concat``: the block also sees its own input)
    h_l = ReLU(W_l x_l / ||x_l|| + b_l)  the digital layer, as in every other ffaccel net

The plug-in contract (``PhysicalLayer``): ``forward(u)`` maps non-negative real inputs
(B, n_in) to non-negative real outputs (B, n_out) and is the only thing a block asks of
P. Integer inference drives P with the activation codes' values (code * 2**-afrac) and
reads its response back on the same activation grid (the engine's ADC), so the golden
model and the hardware see P's *quantised* output as an input.

Shipped physical layers (``--physical SPEC``, ``parse_spec``):

* ``random``: a fixed Gaussian transform of the input direction, a detector nonlinearity,
  measurement noise and a slow random-walk drift of the transform (the emulator).
* ``file``: a user's measured model, ``act(A u)`` with A from an .npz.
* ``exec``: an external process (a lab instrument's driver, a simulator) that answers
  arrays over stdin/stdout (``ExternalPhysical``, protocol in its docstring).
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..physical_spec import ACTS, PhysicalError, PhysicalSpec, blocks, parse_spec, pin_files

# ---------------------------------------------------------------------------- plug-ins
class PhysicalLayer(ABC):
    """A physical system in front of a digital layer: forward only, never differentiated.

    ``forward(u)``: (B, n_in) non-negative float64 -> (B, n_out) non-negative float64.
    ``advance(steps)``: let the system age by ``steps`` time steps (drift); ``reset()``:
    back to its state at time 0, noise generator included, so a run is reproducible."""

    def __init__(self, n_in: int, n_out: int):
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.time = 0

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != self.n_in:
            raise PhysicalError(f"physical layer of {self.n_in} inputs driven with shape {u.shape}")
        y = np.asarray(self.forward(u), dtype=np.float64)
        if y.shape != (u.shape[0], self.n_out):
            raise PhysicalError(f"physical layer answered shape {y.shape}; the network needs "
                                f"({u.shape[0]}, {self.n_out})")
        if not np.isfinite(y).all():
            raise PhysicalError("physical layer answered a non-finite value")
        return np.maximum(y, 0.0)

    @abstractmethod
    def forward(self, u: np.ndarray) -> np.ndarray: ...

    def advance(self, steps: int = 1) -> None:
        self.time += int(steps)

    def reset(self) -> None:
        self.time = 0

    def close(self) -> None:
        pass


def _matmul(u: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``u @ a.T`` in float64 through torch: training calls P between torch steps, and
    numpy's BLAS threads then spin against torch's on a small machine (measured on 2
    cores: 300 digits steps 7.1 s with numpy's matmul, 2.6 s with one BLAS thread)."""
    import torch
    return (torch.from_numpy(np.ascontiguousarray(u)) @ torch.from_numpy(a).T).numpy()


def _rms(u: np.ndarray) -> np.ndarray:
    """Each drive's RMS amplitude (B, 1)."""
    return np.sqrt((u * u).mean(1, keepdims=True))


def _detect(s: np.ndarray, act: str, rms: np.ndarray) -> np.ndarray:
    """The detector: |s| (field amplitude), s^2 / rms (intensity, at the drive's scale) or
    max(s, 0). Each keeps P positively homogeneous: P(c u) = c P(u) for c >= 0."""
    if act == "abs":
        return np.abs(s)
    if act == "square":
        return s * s / np.where(rms > 0, rms, 1.0)
    return np.maximum(s, 0.0)


class RandomPhysical(PhysicalLayer):
    """The emulator: ``P(u) = max(0, act(gain * A_t u / sqrt(n_in)) + noise * rms(u) * N(0, 1))``.

    A passive system's response scales with its drive, so P is positively homogeneous:
    P(c u) = c P(u). The float and integer models then drive it with the same block input
    in their own units and read the same response (docs/architecture.md, "Physical layers").
    ``A_0`` has N(0, 1) entries, so each output is about as large as the drive's RMS before
    detection. Noise is relative to the drive (``noise=0.02``: 2% of its RMS), fresh at
    every call, from a generator the seed fixes (a run is reproducible). Drift is a random
    walk, ``A_t = A_0 + drift * sum_{i<=t} E_i`` with E_i of N(0, 1) entries: after t steps
    the transform has moved by ``drift * sqrt(t)`` relative to its own size."""

    def __init__(self, n_in: int, n_out: int, *, seed: int, block: int, noise: float = 0.0,
                 drift: float = 0.0, act: str = "abs", gain: float = 1.0):
        super().__init__(n_in, n_out)
        self.seed, self.block = seed, block
        self.noise, self.drift, self.act, self.gain = noise, drift, act, gain
        self.a0 = np.random.default_rng([seed, block, 0]).standard_normal((n_out, n_in))
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.a = self.a0.copy()
        self._drift_rng = np.random.default_rng([self.seed, self.block, 1])
        self._noise_rng = np.random.default_rng([self.seed, self.block, 2])

    def advance(self, steps: int = 1) -> None:
        if steps < 0:
            raise PhysicalError("a physical layer cannot go back in time (use reset)")
        if steps and self.drift:
            # the sum of `steps` independent N(0,1) increments is N(0, steps)
            self.a += self.drift * math.sqrt(steps) * self._drift_rng.standard_normal(self.a.shape)
        super().advance(steps)

    def forward(self, u: np.ndarray) -> np.ndarray:
        rms = _rms(u)
        y = _detect(self.gain * _matmul(u, self.a) / math.sqrt(self.n_in), self.act, rms)
        if self.noise:
            y = y + self.noise * rms * self._noise_rng.standard_normal(y.shape)
        return y


class MatrixPhysical(PhysicalLayer):
    """A measured model from an .npz: ``act(A u)`` (+ noise relative to the drive's RMS).

    Arrays: ``weight`` (n_out, n_in) for every block or ``weight1``, ``weight2``, ... per
    1-based block; optional ``act`` (a string: abs, square or relu; default abs). A
    characterised device's transfer matrix goes here (no offset: a passive system's
    response scales with its drive); a nonlinear digital twin is an ``exec`` process."""

    def __init__(self, n_in: int, n_out: int, *, path: str, block: int, noise: float = 0.0):
        super().__init__(n_in, n_out)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise PhysicalError(f"physical file {path!r} cannot be read as .npz: {e}") from None
        w = arrays.get(f"weight{block + 1}", arrays.get("weight"))
        if w is None:
            raise PhysicalError(f"physical file {path!r} has no 'weight' or 'weight{block + 1}' array")
        if w.ndim != 2 or w.shape != (n_out, n_in):
            raise PhysicalError(f"physical file {path!r}: layer {block + 1}'s matrix is {tuple(w.shape)}; the network "
                                f"needs ({n_out}, {n_in}) (set out= to its output width)")
        act = str(arrays["act"]) if "act" in arrays else "abs"
        if act not in ACTS:
            raise PhysicalError(f"physical file {path!r}: act={act!r} (allowed: {', '.join(ACTS)})")
        if not np.isfinite(w).all():
            raise PhysicalError(f"physical file {path!r} holds non-finite values")
        self.w, self.act = w.astype(np.float64), act
        self.noise, self.block = noise, block
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._noise_rng = np.random.default_rng([self.block, 2])

    def forward(self, u: np.ndarray) -> np.ndarray:
        rms = _rms(u)
        y = _detect(_matmul(u, self.w), self.act, rms)
        if self.noise:
            y = y + self.noise * rms * self._noise_rng.standard_normal(y.shape)
        return y


class ExternalPhysical(PhysicalLayer):
    """An external process as the physical layer (an instrument driver, a simulator).

    ffaccel starts ``cmd`` once and, per call, writes a request to its stdin: the ASCII
    line ``FFP1 <block> <rows> <n_in> <n_out>\\n`` then rows x n_in little-endian float64;
    the process reads the whole request, then answers rows x n_out little-endian float64 on
    its stdout (an answer started before the request is read can fill both pipes and hang
    both sides). ``advance`` sends ``FFP1 <block> 0 <steps> 0\\n`` (no payload, no
    answer): the process may age its system. A process that exits, answers short, or
    stays silent for ``timeout`` seconds is a PhysicalError."""

    def __init__(self, n_in: int, n_out: int, *, cmd: str, block: int, timeout: float = 600.0):
        super().__init__(n_in, n_out)
        self.cmd, self.block, self.timeout = cmd, block, timeout
        try:
            self.proc = subprocess.Popen(shlex.split(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except (OSError, ValueError) as e:
            raise PhysicalError(f"physical process {cmd!r} cannot be started: {e}") from None

    def _send(self, header: str, payload: bytes = b"") -> None:
        try:
            self.proc.stdin.write(header.encode() + payload)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise PhysicalError(f"physical process {self.cmd!r} has exited (code {self.proc.poll()})") from None

    def forward(self, u: np.ndarray) -> np.ndarray:
        rows = u.shape[0]
        self._send(f"FFP1 {self.block} {rows} {self.n_in} {self.n_out}\n", u.astype("<f8").tobytes())
        want = rows * self.n_out * 8
        data = self._read(want)
        if len(data) != want:
            raise PhysicalError(f"physical process {self.cmd!r} answered {len(data)} bytes; "
                                f"expected {want} ({rows} x {self.n_out} float64)")
        return np.frombuffer(data, dtype="<f8").reshape(rows, self.n_out).copy()

    def _read(self, want: int) -> bytes:
        """Up to ``want`` bytes of the answer (fewer at end of file), waiting at most
        ``timeout`` seconds for each piece."""
        import select
        fd = self.proc.stdout.fileno()
        out = bytearray()
        while len(out) < want:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                raise PhysicalError(f"physical process {self.cmd!r} did not answer within {self.timeout:g} s")
            chunk = os.read(fd, want - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def advance(self, steps: int = 1) -> None:
        if steps:
            self._send(f"FFP1 {self.block} 0 {int(steps)} 0\n")
        super().advance(steps)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@dataclass
class PhysicalStack:
    """The physical layers of one network, one per block that has one (None elsewhere)."""

    spec: PhysicalSpec
    layers: list[PhysicalLayer | None] = field(default_factory=list)

    def __call__(self, i: int, u: np.ndarray) -> np.ndarray:
        return self.layers[i](u)

    def advance(self, steps: int = 1) -> None:
        for p in self.layers:
            if p is not None:
                p.advance(steps)

    def reset(self) -> None:
        for p in self.layers:
            if p is not None:
                p.reset()

    def close(self) -> None:
        for p in self.layers:
            if p is not None:
                p.close()


def check_exec_allowed(spec_text: str) -> None:
    """An ``exec`` spec read from a checkpoint would run its command on load: refused unless
    the environment says FFACCEL_ALLOW_EXEC=1 (one line naming the command)."""
    spec = parse_spec(spec_text)
    if spec.kind == "exec" and os.environ.get("FFACCEL_ALLOW_EXEC") != "1":
        raise PhysicalError(f"the checkpoint's physical layers run the command {spec.get('cmd')!r}; set "
                            "FFACCEL_ALLOW_EXEC=1 to allow it")


def build_stack(spec_text: str, inputs: int, layers: tuple[int, ...]) -> PhysicalStack:
    """Instantiate the physical layers of a network (reads files, starts processes; on a
    failure the ones already started are closed)."""
    out: list[PhysicalLayer | None] = []
    try:
        spec = parse_spec(spec_text)
        return PhysicalStack(spec, _build(spec, spec_text, inputs, layers, out))
    except BaseException:
        PhysicalStack(None, out).close()
        raise


def _build(spec: PhysicalSpec, spec_text: str, inputs: int, layers: tuple[int, ...], out: list) -> list:
    for b in blocks(spec_text, inputs, layers):
        if not b.physical:
            out.append(None)
        elif spec.kind == "random":
            out.append(RandomPhysical(b.n_u, b.n_p, seed=spec.get("seed"), block=b.index, noise=spec.get("noise"),
                                      drift=spec.get("drift"), act=spec.get("act"), gain=spec.get("gain")))
        elif spec.kind == "file":
            if spec.get("sha256"):
                pin_files(spec)                               # refuses a changed file
            out.append(MatrixPhysical(b.n_u, b.n_p, path=spec.get("path"), block=b.index, noise=spec.get("noise")))
        else:
            out.append(ExternalPhysical(b.n_u, b.n_p, cmd=spec.get("cmd"), block=b.index))
    return out


def prepare(cfg):
    """``cfg`` with its physical layers checked before any work: a ``file`` spec gets its
    file's sha256 (a checkpoint records what it was trained with), every layer is built
    once (files read, widths checked, processes started) and closed. Bad input raises
    PhysicalError (one line)."""
    if not cfg.physical:
        return cfg
    spec = pin_files(parse_spec(cfg.physical))
    cfg = cfg.replace(physical=spec.canonical())
    if spec.kind != "exec":                  # (a process is started once, when it is used)
        build_stack(cfg.physical, cfg.inputs, cfg.layers).close()
    return cfg


def response_frac(cfg, layer: int) -> int:
    """Fractional bits of the grid P's response to ``layer``'s block is read on: the
    block input's (layer 1: the image codes, 0; later layers: the activations, afrac)."""
    return 0 if layer == 0 else cfg.afrac


def quantise_response(p: np.ndarray, frac: int, amax: int) -> np.ndarray:
    """P's response on the engine's grid (its ADC): round half up at 2**-frac, saturated
    to 0..amax: the codes the golden model reads (and replays from a record)."""
    return np.clip(np.floor(np.asarray(p, dtype=np.float64) * 2.0 ** frac + 0.5), 0, amax).astype(np.int64)
