"""The single source of truth: one frozen, JSON-serialisable accelerator configuration.

Every part of ffaccel (golden model, RTL generator, cycle simulator, energy model, DSE)
takes an :class:`AccelConfig`. Widths that follow from other fields (accumulator,
goodness, shifter widths) are *derived properties* here and nowhere else.

A config that could overflow, or that names an impossible value, is refused in the
constructor with a :class:`ConfigError` whose message names the bad value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fixedpoint import clog2, cos_reference, cos_scale, normalised_dot_bound, rsqrt_table, rsqrt_widths
from .physical_spec import Block, PhysicalError, blocks, parse_spec

SCHEMA_VERSION = 1

MODES = ("mp", "op")
EXIT_POLICIES = ("max", "margin", "none")
# OP exit heads: trained linear heads (LightFF), or zero-parameter LLS heads whose basis
# (sin, or its sign: a square wave) is generated on chip (ffaccel.fixedpoint, LLS).
EXIT_HEADS = ("learned", "lls", "lls-square")
WEIGHT_MEMS = ("sram", "dram")
# Neuron types: real-valued ReLU units, or binary stochastic units (BSFF; Jaiswal, Datta
# and Makin, arXiv 2507.06461): ``bsff_k`` units tied to one weight row, each with its own
# bias, fire with probability sigmoid(z + b_k); a unit's output is the count that fired.
NEURONS = ("relu", "bsff", "abs")
BSFF_FIELDS = ("neuron", "bsff_k", "bsff_seed")
BSFF_K_RANGE = (1, 4)
#: BSFF: the sigmoid table covers pre-activations in [-BSFF_ZRANGE, BSFF_ZRANGE)
BSFF_ZRANGE_BITS = 3
#: OP: a stored head's bias is below this many logits in magnitude (trained heads measured
#: |b| <= 1.9 logits; the bias lane and score_bits are sized from it)
HEAD_BIAS_LOGITS = 8
#: BSFF: bits of a firing probability's random draw (p in 0..2**BSFF_PBITS)
BSFF_PBITS = 8
GOODNESS = ("sq", "cos")
#: cosine goodness: bits of the fixed reference vector's signed codes (made by the hash)
COS_RBITS = 8
#: cosine goodness: fractional bits of the per-layer constant 1/||r_l||
COS_KFRAC = 24
TECH_NODES = ("45nm", "32nm", "28nm", "22nm", "16nm", "7nm")

# Hard limits. They are generous but finite so that widths stay sane and errors are clear.
MAX_LAYER = 1 << 16
MAX_INPUTS = 1 << 20
MAX_ARRAY_DIM = 256
MAX_BATCH = 64
#: The exit knob k (thresholds mu - k sigma): the range every tool and the DSE accept.
K_RANGE = (-10.0, 10.0)
WBITS_RANGE = (2, 16)
ABITS_RANGE = (1, 16)
RSQRT_FRAC_RANGE = (4, 24)
RSQRT_INDEX_RANGE = (2, 10)
# A float64 matmul is an exact integer matmul while every partial sum stays below 2**53.
FLOAT64_EXACT_BITS = 53
# What a trained network fixes (the float model's shape), the bit widths a quantised model
# is built for, and the scales quantisation derives from data: a checkpoint carries all of
# them, and commands that load one refuse to change them (each list is used everywhere).
NETWORK_FIELDS = ("inputs", "layers", "classes", "mode", "exit_head", "neuron", "bsff_k", "physical", "goodness")
#: Fields left out of a config's JSON, hash and cache keys while at their default (the
#: configs, hashes and trained-network caches from before them stay valid)
OPTIONAL_FIELDS = {"physical": "", "goodness": "sq", "port_latency": 16, "physical_pj": 0.0}
WIDTH_FIELDS = ("wbits", "abits")
FORMAT_FIELDS = WIDTH_FIELDS + ("afrac", "wfrac", "hfrac", "lfrac")
# Fields that never change the generated hardware (energy, latency and exit-calibration
# knobs). Exit thresholds do: they are the reset values of run-time registers.
NON_HARDWARE_FIELDS = ("clock_mhz", "tech", "exit_k", "weight_mem", "sram_kib", "sram_bank_kib", "onchip_kib",
                       "port_latency", "physical_pj")
# Run-time shift-base registers (written through the register port) hold 0..63.
SHIFT_BASE_BITS = 6


# Fields whose sentinel value means "derive from the other fields". The config keeps track
# of which were derived, so replace() re-derives them and to_dict() writes the sentinel.
_AUTO: dict[str, Any] = {"wfrac": (), "hfrac": (), "accbits": 0, "label_value": 0}


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the value and what is allowed."""


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is not an integer (allowed: {lo}..{hi})")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range (allowed: {lo}..{hi})")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not allowed (allowed: {', '.join(choices)})")


_DIGITS = re.compile(r"[0-9]{1,9}")


def parse_layers(spec: str) -> tuple[int, ...]:
    """Parse the shared ``--layers`` grammar.

    ``4x2000`` -> four hidden layers of 2000; ``2000,1000,500`` -> an explicit list;
    terms combine: ``2x2000,500``. Whitespace around terms is ignored.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--layers {spec!r}: empty (allowed: e.g. 4x2000 or 2000,1000,500)")
    sizes: list[int] = []
    for term in spec.split(","):
        term = term.strip().lower()
        count_s, sep, size_s = term.partition("x")
        if not sep:
            count_s, size_s = "1", term
        # ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() refuses.
        if not (_DIGITS.fullmatch(count_s.strip()) and _DIGITS.fullmatch(size_s.strip())):
            raise ConfigError(
                f"--layers {spec!r}: term {term!r} is not N or RxN with positive integers "
                f"(allowed: e.g. 4x2000 or 2000,1000,500)")
        count, size = int(count_s.strip()), int(size_s.strip())
        if not 1 <= count <= 64:
            raise ConfigError(f"--layers {spec!r}: repeat count {count} out of range (allowed: 1..64)")
        if not 1 <= size <= MAX_LAYER:
            raise ConfigError(f"--layers {spec!r}: layer size {size} out of range (allowed: 1..{MAX_LAYER})")
        sizes.extend([size] * count)
    if len(sizes) > 64:
        raise ConfigError(f"--layers {spec!r}: {len(sizes)} layers (allowed: 1..64)")
    return tuple(sizes)


def format_layers(layers: tuple[int, ...]) -> str:
    """Shortest spec in the ``--layers`` grammar that parses back to ``layers``."""
    if len(set(layers)) == 1:
        return f"{len(layers)}x{layers[0]}" if len(layers) > 1 else str(layers[0])
    return ",".join(str(n) for n in layers)


@dataclass(frozen=True)
class AccelConfig:
    """Accelerator + network + number-format configuration (see docs/architecture.md).

    Integer datapath of one layer (docs/architecture.md, "Integer datapath"): ``acc = W_q @ x``; ``(m, s) = rsqrt(g_in)``;
    ``z = rshr(acc * m, rsqrt_frac + s + wfrac[l] - afrac) + b_q``; ``h = sat(relu(z))``.
    """

    # --- network ---
    inputs: int = 784
    layers: tuple[int, ...] = (2000, 2000, 2000, 2000)
    classes: int = 10
    # --- array: rows carry the reuse dimension (MP label copies / OP samples) ---
    rows: int = 10
    cols: int = 16
    # --- number formats ---
    wbits: int = 8
    abits: int = 8
    afrac: int = 4
    """Fractional bits of every activation (one activation format for the whole net, so
    per-layer goodness values add without alignment shifts)."""
    wfrac: tuple[int, ...] = ()
    """Per-layer weight fractional bits (power-of-two weight scale 2**-wfrac; negative for
    weights larger than the integer range, as long as the shift rsqrt_frac + wfrac - afrac
    stays >= 0). Empty -> wbits-1 each."""
    hfrac: tuple[int, ...] = ()
    """OP only: per-layer head-weight fractional bits. Empty -> wbits-1 each."""
    lfrac: int = 6
    """OP only: fractional bits of the cumulative logit registers."""
    accbits: int = 0
    """Accumulator width; 0 -> derived worst case. A smaller explicit value is refused."""
    rsqrt_frac: int = 12
    """Mantissa precision P of the reciprocal-square-root table: entries ~ 2**P/sqrt(m)."""
    rsqrt_index: int = 6
    """Table index bits (1 parity bit of the exponent + rsqrt_index-1 mantissa bits)."""
    label_value: int = 0
    """Integer value of the one-hot label pixel; 0 -> 2**abits - 1 (the image max)."""
    # --- inference ---
    mode: str = "mp"
    exit_policy: str = "max"
    exit_head: str = "learned"
    """OP only: ``learned`` heads (stored weights), or ``lls`` / ``lls-square`` heads with
    a fixed periodic basis generated on chip (no stored weights, no biases)."""
    thresholds: tuple[int, ...] = ()
    """Per-layer exit thresholds (integer score units) for layers 1..L-1. Empty -> never
    exit early until calibrated; the last layer always decides."""
    score_mask: tuple[int, ...] = ()
    """Per layer, 1 if the cumulative score sums the layer's score (MP goodness, OP head
    logits), 0 if it skips it; empty -> every layer. No exit fires after a skipped layer,
    and the last scored layer decides: layers after it never run. Chosen on the validation
    split at training (recipe ``score_layers``); the reset value of a run-time register."""
    exit_k: float = 1.0
    """LightFF's knob: T_l = mu_l - k * sigma_l on the validation split."""
    label_share: bool = True
    """MP: compute W1 @ x_img once per sample and add the label column per copy."""
    zero_skip: bool = False
    """Each pass streams only the inputs that are non-zero in some bank of its input set
    (MP: any label copy; OP: any row still in the batch), word by word (a word with none
    costs one empty cycle): fewer weight reads and cycles, data-dependent cycle counts
    (docs/architecture.md, "Zero skipping")."""
    batch: int = 1
    """MP: samples per inference (1..64). The engine holds ``batch x classes`` label copies,
    ``rows`` at a time (copy groups); in the shared layer 1 each sample's image streams
    through a row of its own (``batch <= rows``), so one weight read serves every sample
    of the batch; a later layer streams the copy groups whose samples have not exited.
    Results carry the sample's row in the batch (docs/architecture.md, "Batching"). OP
    batches ``rows`` samples already (one per row): 1 there."""
    neuron: str = "relu"
    """``relu``: h = clamp(z, 0, amax). ``abs``: h = min(|z|, amax), unsigned like ReLU's
    output but never dead (behind a physical layer ReLU units die under the cosine loss:
    docs/results.md, "Physical layers"). ``bsff``: binary stochastic units (docs/architecture.md,
    "Binary stochastic FF"): each output is the count of ``bsff_k`` tied units that fire,
    unit k with probability sigmoid(z + b_k), drawn from the engine's random source; the
    array adds a weight where the input is non-zero instead of multiplying."""
    bsff_k: int = 1
    """BSFF: units tied to one weight row (each with its own bias); ``abits`` holds their
    count 0..k, so abits = bit_length(k)."""
    bsff_seed: int = 1
    """BSFF: seed of the engine's random source (32 bits; a hardware constant)."""
    physical: str = ""
    """Physical layers in front of digital layers (docs/architecture.md, "Physical layers"):
    a ``--physical`` spec (``ffaccel.physical_spec``), stored canonical; "" = none. A block
    with one feeds its layer ``P(u)`` (or ``[P(u), u]`` with ``concat``)."""
    goodness: str = "sq"
    """``sq``: a layer's goodness is sum(h^2) (Hinton, LightFF). ``cos``: PhyLL's cosine
    similarity of h with a fixed random vector r_l per layer, at ``lfrac`` fractional bits
    (MP scores sum it over layers)."""
    port_latency: int = 16
    """Physical layers: P's latency in cycles, from the engine's last word of a copy's
    input accepted to P's first response word (a stated parameter of the cycle and energy
    models; the engine itself waits for P's answer, whatever its timing)."""
    physical_pj: float = 0.0
    """Physical layers: the energy of P itself per copy it transforms, in pJ (a stated
    parameter; the converters at the port are priced by ``ffaccel.energy.coeffs``)."""
    fpga_regs: bool = False
    """Registers that cut the long wires of a die-sized FPGA implementation: each PE
    registers its own copy of its row operand and weight lane (with the controls that
    travel with them; ``abits + wbits + 3`` flip-flops per PE, one cycle more per pass),
    each post-processing column its normalisation inputs (one more cycle per pass), each
    activation bank its write (no cycle: hidden under the goodness stages). The multicast
    and cross-die nets then end at registers placed beside the multiplier blocks and block
    RAMs (docs/architecture.md, "FPGA registers")."""
    # --- memory, clock, technology ---
    weight_mem: str = "dram"
    sram_kib: int = 512
    sram_bank_kib: int = 0
    """Weight SRAM built of banks of this many KiB (a power of two, 1..1024); an access
    reads one bank and crosses the memory to its port (ffaccel.energy.memory). 0: one
    monolithic memory sized to the weights, at least ``sram_kib``."""
    onchip_kib: int = 0
    """On-chip budget of the weight SRAM in KiB: layers are placed on chip in order while
    they fit, the rest are read from DRAM. 0: no budget (every layer on chip)."""
    clock_mhz: float = 200.0
    tech: str = "45nm"
    # free-form provenance (never affects hardware); kept out of the hash
    note: str = field(default="", compare=False)
    # names of the fields whose value was derived from a sentinel (see _AUTO)
    _auto: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for name in ("layers", "wfrac", "hfrac", "thresholds", "score_mask"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _check_int("inputs", self.inputs, 1, MAX_INPUTS)
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ConfigError(f"layers={self.layers!r} must be a non-empty list of sizes")
        if len(self.layers) > 64:
            raise ConfigError(f"layers: {len(self.layers)} layers (allowed: 1..64)")
        for i, n in enumerate(self.layers):
            _check_int(f"layers[{i}]", n, 1, MAX_LAYER)
        _check_int("classes", self.classes, 2, 1024)
        if self.classes >= self.inputs:
            raise ConfigError(
                f"classes={self.classes} must be < inputs={self.inputs} "
                "(the label is embedded in the first `classes` inputs)")
        _check_int("rows", self.rows, 1, MAX_ARRAY_DIM)
        _check_int("cols", self.cols, 1, MAX_ARRAY_DIM)
        _check_int("wbits", self.wbits, *WBITS_RANGE)
        _check_int("abits", self.abits, *ABITS_RANGE)
        _check_int("afrac", self.afrac, 0, self.abits + 16)
        _check_int("lfrac", self.lfrac, 0, 24)
        _check_int("rsqrt_frac", self.rsqrt_frac, *RSQRT_FRAC_RANGE)
        _check_int("rsqrt_index", self.rsqrt_index, *RSQRT_INDEX_RANGE)
        _check_choice("mode", self.mode, MODES)
        _check_choice("exit_policy", self.exit_policy, EXIT_POLICIES)
        _check_choice("exit_head", self.exit_head, EXIT_HEADS)
        if self.exit_head != "learned" and self.mode != "op":
            raise ConfigError(f"exit_head={self.exit_head!r} needs mode='op' "
                              "(MP exits on the goodness: it has no heads)")
        _check_choice("neuron", self.neuron, NEURONS)
        _check_int("bsff_k", self.bsff_k, *BSFF_K_RANGE)
        _check_int("bsff_seed", self.bsff_seed, 1, (1 << 32) - 1)   # xorshift32 stays at 0
        if self.neuron == "bsff":
            if self.abits != self.bsff_k.bit_length():
                raise ConfigError(f"neuron='bsff' with bsff_k={self.bsff_k} needs abits={self.bsff_k.bit_length()} "
                                  f"(a unit's output is the count of its {self.bsff_k} tied units; got abits={self.abits})")
            if self.afrac > 8:
                raise ConfigError(f"afrac={self.afrac}: a BSFF pre-activation has 0..8 fractional bits "
                                  "(the sigmoid table has 2**(afrac+4) entries)")
        elif self.bsff_k != 1:
            raise ConfigError(f"bsff_k={self.bsff_k} needs neuron='bsff' (ReLU units are not tied)")
        _check_choice("goodness", self.goodness, GOODNESS)
        if not isinstance(self.physical, str):
            raise ConfigError(f"physical={self.physical!r} must be a spec string (or empty)")
        if self.physical:
            try:
                canon = parse_spec(self.physical).canonical()
                blocks(canon, self.inputs, self.layers)
            except PhysicalError as e:
                raise ConfigError(str(e)) from None
            object.__setattr__(self, "physical", canon)
            if self.bsff:
                raise ConfigError("physical layers take ReLU or |z| digital layers (neuron='relu' or 'abs'); "
                                  "BSFF with physical layers is not supported")
            if self.zero_skip:
                raise ConfigError("physical layers with zero skipping are not supported (the port writes P's "
                                  "answers without the non-zero map): drop --zero-skip")
        _check_int("port_latency", self.port_latency, 1, 1 << 20)
        if not isinstance(self.physical_pj, (int, float)) or isinstance(self.physical_pj, bool) \
                or not 0.0 <= self.physical_pj <= 1e12:
            raise ConfigError(f"physical_pj={self.physical_pj!r} out of range (allowed: 0..1e12 pJ)")
        object.__setattr__(self, "physical_pj", float(self.physical_pj))
        if self.goodness == "cos":
            if self.bsff:
                raise ConfigError("goodness='cos' takes ReLU or |z| layers (BSFF's goodness is its count of firing "
                                  "units)")
            # d * m * k_l of intops.cos_goodness in 63 bits: |d| <= ||r|| sqrt(n) amax
            worst = max(math.isqrt(n) + 1 for n in self.layers) * self.amax * max(
                rsqrt_table(self.rsqrt_frac, self.rsqrt_index)) << (COS_KFRAC + 1)
            if worst >= 1 << 62:
                raise ConfigError(f"goodness='cos' with abits={self.abits}, rsqrt_frac={self.rsqrt_frac} and layers of "
                                  f"{max(self.layers)} overflows the 64-bit cosine product (fewer bits or narrower layers)")
        _check_choice("weight_mem", self.weight_mem, WEIGHT_MEMS)
        _check_choice("tech", self.tech, TECH_NODES)
        _check_int("sram_kib", self.sram_kib, 1, 1 << 20)
        _check_int("sram_bank_kib", self.sram_bank_kib, 0, 1024)
        if self.sram_bank_kib & (self.sram_bank_kib - 1):
            raise ConfigError(f"sram_bank_kib={self.sram_bank_kib} must be a power of two (allowed: 0, 1, 2, 4 .. 1024)")
        _check_int("onchip_kib", self.onchip_kib, 0, 1 << 20)
        for name in ("label_share", "fpga_regs", "zero_skip"):
            if isinstance(getattr(self, name), bool) is False:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")
        _check_int("batch", self.batch, 1, MAX_BATCH)
        if self.batch > 1 and self.mode != "mp":
            raise ConfigError(f"batch={self.batch}: OP batches `rows` samples already (one per row); "
                              "batch is an MP field (allowed in OP: 1)")
        if self.batch > self.rows and self.mode == "mp" and self.label_share:
            raise ConfigError(f"batch={self.batch} > rows={self.rows}: the shared layer 1 streams each sample's "
                              "image through a row of its own (use --no-label-share, or more rows)")
        if not isinstance(self.clock_mhz, (int, float)) or isinstance(self.clock_mhz, bool) \
                or not 0.001 <= self.clock_mhz <= 10000.0:                  # (no float(): 10**400)
            raise ConfigError(f"clock_mhz={self.clock_mhz!r} out of range (allowed: 0.001..10000)")
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))
        if not isinstance(self.exit_k, (int, float)) or isinstance(self.exit_k, bool) \
                or not K_RANGE[0] <= self.exit_k <= K_RANGE[1]:   # NaN fails the range, 10**400 too
            raise ConfigError(f"exit_k={self.exit_k!r} out of range (allowed: {K_RANGE[0]:g}..{K_RANGE[1]:g})")
        object.__setattr__(self, "exit_k", float(self.exit_k))
        if not isinstance(self.note, str):
            raise ConfigError(f"note={self.note!r} must be a string")

        nl = len(self.layers)
        # the sentinel itself, of its own type (0.0 or False for accbits is a bad value, not "auto")
        auto = {name for name, sentinel in _AUTO.items()
                if type(getattr(self, name)) is type(sentinel) and getattr(self, name) == sentinel}
        object.__setattr__(self, "_auto", frozenset(auto))
        for name in ("wfrac", "hfrac"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise ConfigError(f"{name}={value!r} must be a list of integers")
            if not value:
                object.__setattr__(self, name, (self.wbits - 1,) * nl)
            elif len(value) != nl:
                raise ConfigError(f"{name} has {len(value)} entries; the network has {nl} layers")
            for i, v in enumerate(getattr(self, name)):
                _check_int(f"{name}[{i}]", v, -32 if name == "wfrac" else 0, 32)
        if self.exit_head != "learned":
            # an LLS basis has fixed integer values: +-1 (square) or a sin table at full scale
            want = (self.lls_hfrac,) * nl
            if "hfrac" in auto:
                object.__setattr__(self, "hfrac", want)
            elif self.hfrac != want:
                raise ConfigError(f"hfrac={list(self.hfrac)}: {self.exit_head} heads have fixed weights at "
                                  f"{self.lls_hfrac} fractional bits (allowed: {list(want)})")
        _check_int("label_value", self.label_value, 0, (1 << self.abits) - 1)
        if self.label_value == 0:
            object.__setattr__(self, "label_value", (1 << self.abits) - 1)
        if not isinstance(self.thresholds, tuple):
            raise ConfigError(f"thresholds={self.thresholds!r} must be a list of integers")
        if self.thresholds and len(self.thresholds) != nl - 1:
            raise ConfigError(
                f"thresholds has {len(self.thresholds)} entries; expected {nl - 1} "
                "(one per layer except the last, which always decides)")
        tmax = (1 << (self.score_bits - 1)) - 1
        for i, t in enumerate(self.thresholds):
            _check_int(f"thresholds[{i}]", t, -tmax - 1, tmax)
        if not isinstance(self.score_mask, tuple):
            raise ConfigError(f"score_mask={self.score_mask!r} must be a list of 0/1 per layer")
        if self.score_mask:
            if len(self.score_mask) != nl:
                raise ConfigError(f"score_mask has {len(self.score_mask)} entries; expected {nl} (one per layer)")
            for i, v in enumerate(self.score_mask):
                _check_int(f"score_mask[{i}]", v, 0, 1)
            if not any(self.score_mask):
                raise ConfigError("score_mask skips every layer (at least one layer must be scored)")
            if all(self.score_mask):
                object.__setattr__(self, "score_mask", ())     # every layer: the canonical form

        need = self.accbits_required
        if type(self.accbits) is int and self.accbits == 0:
            object.__setattr__(self, "accbits", need)
        else:
            _check_int("accbits", self.accbits, 2, 64)
            if self.accbits < need:
                raise ConfigError(
                    f"accbits={self.accbits} can overflow: the worst case of this config needs "
                    f"{need} bits (wbits + abits + ceil(log2(max n_in)) + 1)")
        # Every right shift of the post-processing must be >= 0 for every input (s >= 0).
        for i, wf in enumerate(self.wfrac):
            if self.rsqrt_frac + wf - self.afrac < 0:
                raise ConfigError(
                    f"wfrac[{i}]={wf}: rsqrt_frac + wfrac - afrac must be >= 0 "
                    f"(got {self.rsqrt_frac}+{wf}-{self.afrac})")
        if self.mode == "op":
            for i, hf in enumerate(self.hfrac):
                if self.rsqrt_frac + hf - self.lfrac < 0 and self.exit_head != "learned":
                    raise ConfigError(
                        f"lfrac={self.lfrac}: {self.exit_head} heads fix hfrac at {hf}, so lfrac must be "
                        f"<= rsqrt_frac + {hf} = {self.rsqrt_frac + hf}")
                if self.rsqrt_frac + hf - self.lfrac < 0:
                    raise ConfigError(
                        f"hfrac[{i}]={hf}: rsqrt_frac + hfrac - lfrac must be >= 0 "
                        f"(got {self.rsqrt_frac}+{hf}-{self.lfrac})")
        if self.product_bits > 62:
            raise ConfigError(
                f"the normalisation product needs {self.product_bits} bits (> 62): "
                "reduce wbits, abits or rsqrt_frac")

    # ------------------------------------------------------------------ derived widths
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def fan_in(self) -> tuple[int, ...]:
        """Input width of every digital layer (n_in): the previous layer's width, or with a
        physical layer in front its output width (+ the block input with ``concat``)."""
        return tuple(b.fan_in for b in self.blocks)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Per layer, its block: input width, physical layer in front, P's width, concat."""
        return blocks(self.physical, self.inputs, self.layers)

    @property
    def physical_at(self) -> tuple[bool, ...]:
        """Per layer (0-based): is there a physical layer in front of it?"""
        return tuple(b.physical for b in self.blocks)

    @property
    def accbits_required(self) -> int:
        """Signed accumulator bits for the worst case: W + A + ceil(log2(n_in)) + 1.

        The OP heads read the layer outputs, so their fan-in (the layer width) counts too.
        """
        fan = max(self.fan_in + (self.layers if self.mode == "op" else ()))
        return self.wbits + self.abits + clog2(fan) + 1

    @property
    def amax(self) -> int:
        """Largest activation code (unsigned, abits)."""
        return (1 << self.abits) - 1

    @property
    def wmin(self) -> int:
        return -(1 << (self.wbits - 1))

    @property
    def wmax(self) -> int:
        return (1 << (self.wbits - 1)) - 1

    @property
    def goodness_bits(self) -> int:
        """Unsigned per-layer goodness sum(h^2): 2*abits + ceil(log2(max width))."""
        return 2 * self.abits + clog2(max(self.fan_in + self.layers))

    @property
    def goodness_reg_bits(self) -> int:
        """Unsigned width of the per-copy goodness registers that feed the rsqrt unit
        (one bit of headroom over ``goodness_bits``)."""
        return self.goodness_bits + 1

    @property
    def rsqrt_mant_bits(self) -> int:
        """Unsigned width of the rsqrt mantissa m: the largest table entry's bit length."""
        return rsqrt_widths(self.goodness_reg_bits, self.rsqrt_frac, self.rsqrt_index)[0]

    @property
    def rsqrt_shift_bits(self) -> int:
        """Width of the rsqrt exponent s = floor(floor(log2 g) / 2) for g < 2**goodness_reg_bits."""
        return rsqrt_widths(self.goodness_reg_bits, self.rsqrt_frac, self.rsqrt_index)[1]

    @property
    def drain_bits(self) -> int:
        """Signed width of a drained row sum: the accumulator plus one bit for the MP
        label-share term (label_value * label weight) added in the drain."""
        return self.accbits + 1

    @property
    def product_bits(self) -> int:
        """Signed width of the normalisation product drain * m (signed x unsigned: the sum of
        the widths holds every product)."""
        return self.drain_bits + self.rsqrt_mant_bits

    @property
    def shift_bits(self) -> int:
        """Width of the post-processing shift amount: a shift base plus the rsqrt exponent."""
        return ((1 << SHIFT_BASE_BITS) - 1 + (1 << self.rsqrt_shift_bits) - 1).bit_length()

    @property
    def bias_bits(self) -> int:
        """Signed bias width at activation scale (wide enough to saturate on its own; BSFF:
        at pre-activation scale, wide enough to reach past the sigmoid table's range)."""
        if self.neuron == "bsff":
            return self.afrac + BSFF_ZRANGE_BITS + 2
        return self.abits + 2

    @property
    def bsff(self) -> bool:
        return self.neuron == "bsff"

    @property
    def unit_lanes(self) -> int:
        """Units per output column that add a bias: BSFF's ``bsff_k`` tied units, else 1."""
        return self.bsff_k if self.bsff else 1

    @property
    def cos_engine(self) -> bool:
        """Whether the engine scores the cosine goodness (MP with ``goodness='cos'``; OP
        scores its heads whatever the goodness, so its engine is the squared one's)."""
        return self.mode == "mp" and self.goodness == "cos"

    @property
    def bias_lanes(self) -> int:
        """Lanes per output column in a bias word: a bias per unit (``unit_lanes``), then,
        with the cosine engine, the column's code of the layer's reference vector r_l
        (lane ``c * bias_lanes + unit_lanes``)."""
        return self.unit_lanes + int(self.cos_engine)

    @property
    def cos_dot_bits(self) -> int:
        """Signed width of the cosine engine's ``d = r_l . h`` registers: |d| <= n amax
        (2**(COS_RBITS-1) - 1) over the widest layer."""
        return (max(self.layers) * self.amax * ((1 << (COS_RBITS - 1)) - 1)).bit_length() + 1

    @property
    def cos_scale_bits(self) -> int:
        """Unsigned width of the per-layer constants k_l = round(2**COS_KFRAC / ||r_l||)."""
        return max(1, max(cos_scale(i, n, COS_RBITS, COS_KFRAC) for i, n in enumerate(self.layers)).bit_length())

    @property
    def bsff_index_bits(self) -> int:
        """BSFF: sigmoid-table index bits (pre-activations in [-8, 8) at 2**-afrac)."""
        return self.afrac + BSFF_ZRANGE_BITS + 1

    @property
    def bias_lane_bits(self) -> int:
        """Signed width of one bias-memory lane: layer biases (``bias_bits``) and, in OP,
        the head biases, which are added at logit scale (``head_bias_max``; LLS heads have
        none); the cosine engine's reference codes (``COS_RBITS``, signed)."""
        return max(self.bias_bits, self.head_bias_max.bit_length() + 1, COS_RBITS if self.cos_engine else 0)

    @property
    def score_bits(self) -> int:
        """Signed width of the cumulative score registers (MP goodness or OP logits)."""
        if self.mode == "mp" and self.goodness == "cos":
            return sum(self.cos_bound(i) for i in range(self.n_layers)).bit_length() + 1
        if self.mode == "mp":
            return self.goodness_bits + clog2(self.n_layers) + 1
        # each layer adds round(H h / ||h||) at logit scale plus its head bias; the bound on
        # the first term is exact to the rsqrt table (normalised_dot_bound), so the sum of
        # every layer's largest increment fits
        total = sum(normalised_dot_bound(n, self.head_max, self.rsqrt_frac, self.rsqrt_index, self.lfrac - hf)
                    + self.head_bias_max for n, hf in zip(self.layers, self.hfrac))
        return total.bit_length() + 1

    def cos_bound(self, layer: int) -> int:
        """Largest |cosine goodness| code of a layer (``intops.cos_goodness``): |cos| <= 1,
        times the rsqrt table's largest overshoot at the top of its interval
        (``normalised_dot_bound`` of a unit vector) and ``||r_l|| k_l / 2**COS_KFRAC``."""
        n = self.layers[layer]
        r = cos_reference(layer, n, COS_RBITS)
        k = cos_scale(layer, n, COS_RBITS, COS_KFRAC)
        b1 = normalised_dot_bound(1, 1, self.rsqrt_frac, self.rsqrt_index, self.lfrac)
        return -(-(b1 * (math.isqrt(int((r * r).sum())) + 1) * k) >> COS_KFRAC)

    @property
    def head_max(self) -> int:
        """Largest |head weight| code: the square basis is +-1, the sin basis reaches its
        amplitude, stored heads reach |wmin| = 2**(wbits-1)."""
        if self.exit_head == "lls-square":
            return 1
        return self.lls_amplitude if self.exit_head == "lls" else 1 << (self.wbits - 1)

    @property
    def head_bias_max(self) -> int:
        """Largest |OP head bias| code at logit scale: HEAD_BIAS_LOGITS logits less one step
        (LLS heads have none)."""
        if self.mode != "op" or self.exit_head != "learned":
            return 0
        return (HEAD_BIAS_LOGITS << self.lfrac) - 1

    @property
    def lls_hfrac(self) -> int:
        """Fractional bits of an LLS basis: square +-1 -> 0; sin at amplitude 2**(wbits-1)-1."""
        return 0 if self.exit_head == "lls-square" else self.wbits - 1

    @property
    def lls_amplitude(self) -> int:
        """Integer amplitude of the sin basis (the largest weight code)."""
        return (1 << (self.wbits - 1)) - 1

    @property
    def scored(self) -> tuple[bool, ...]:
        """Per layer (0-based): does the cumulative score sum this layer's score?"""
        return tuple(bool(v) for v in self.score_mask) if self.score_mask else (True,) * self.n_layers

    @property
    def decision_layer(self) -> int:
        """The layer (1-based) that decides every sample still running: the last scored one.
        Layers after it are never run."""
        return max(i + 1 for i, v in enumerate(self.scored) if v)

    @property
    def exits_enabled(self) -> bool:
        """Whether early exits are on at reset: thresholds are known and a rule uses them."""
        return bool(self.thresholds) and self.exit_policy != "none"

    @property
    def share_layer1(self) -> bool:
        """MP with label sharing: layer 1 computes W1 @ x_img once per sample and adds each
        copy's label column (OP has one copy: nothing to share; a physical layer in front of
        layer 1 sees each copy's whole input, so there is nothing to share either)."""
        return self.mode == "mp" and self.label_share and not self.physical_at[0]

    @property
    def copies(self) -> int:
        """Label copies per sample in flight (MP: classes; OP: 1 sample per row)."""
        return self.classes if self.mode == "mp" else 1

    @property
    def batch_copies(self) -> int:
        """Label copies of an MP batch (``batch x classes``; OP: ``rows``, one per sample)."""
        return self.batch * self.classes if self.mode == "mp" else self.rows

    @property
    def neutral_value(self) -> int:
        """Neutral-label pixel: 0.1 of the label value, rounded half up."""
        return (self.label_value + 5) // 10

    @property
    def weight_word_bits(self) -> int:
        """One weight-memory word: ``cols`` lanes of ``wbits``."""
        return self.cols * self.wbits

    @property
    def bias_word_bits(self) -> int:
        """One bias-memory word: ``cols x bias_lanes`` lanes of ``bias_lane_bits``."""
        return self.cols * self.bias_lanes * self.bias_lane_bits

    @property
    def act_word_bits(self) -> int:
        """One activation-bank word: ``cols`` lanes of ``abits``."""
        return self.cols * self.abits

    def check_float64_exact(self) -> None:
        """Refuse configs whose worst-case partial sums reach 2**53 (golden-model contract)."""
        worst = max(self.fan_in) * (1 << (self.wbits - 1)) * self.amax
        if worst >= 1 << FLOAT64_EXACT_BITS:
            raise ConfigError(
                f"worst-case dot product {worst} >= 2**53: float64 matmul would not be exact")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self, resolved: bool = False) -> dict[str, Any]:
        """Plain dict for JSON. Derived fields are written as their sentinel (the user's
        intent, so a loaded config re-derives them) unless ``resolved`` is true."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            if f.name in BSFF_FIELDS and not self.bsff and not (f.name == "neuron" and self.neuron != "relu"):
                continue        # ReLU configs serialise (and hash) as before the BSFF fields
            if f.name in OPTIONAL_FIELDS and getattr(self, f.name) == OPTIONAL_FIELDS[f.name] \
                    and not (f.name == "goodness" and self.physical):   # (--physical implies cos)
                continue
            v = getattr(self, f.name)
            if f.name in self._auto and not resolved:
                v = _AUTO[f.name]
            d[f.name] = list(v) if isinstance(v, tuple) else v
        d["schema"] = SCHEMA_VERSION
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AccelConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        schema = data.pop("schema", SCHEMA_VERSION)
        if type(schema) is not int or schema != SCHEMA_VERSION:
            raise ConfigError(f"config schema {schema!r} is not supported (allowed: {SCHEMA_VERSION})")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r} (allowed: {', '.join(sorted(names))})")
        if isinstance(data.get("layers"), str):
            data["layers"] = parse_layers(data["layers"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "AccelConfig":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:       # JSONDecodeError, 5000-digit integers, deep nesting
            raise ConfigError(f"config JSON does not parse: {parse_error_text(e)}") from None
        return cls.from_dict(data)

    def hash(self) -> str:
        """Stable content hash (sha256 of the canonical resolved JSON, the note excluded):
        equal configs have equal hashes."""
        d = self.to_dict(resolved=True)
        d.pop("note", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def hardware_hash(self) -> str:
        """Hash of the fields that change the generated Verilog (everything but the clock,
        the technology node, the exit knob k, the weight-memory level and size, and the
        note). Simulator builds and the Verilog header use it, so a run that only changes
        those reuses the build."""
        d = self.to_dict(resolved=True)
        for name in NON_HARDWARE_FIELDS + ("note",):
            d.pop(name, None)
        if self.mode == "op":
            d.pop("label_share")          # only MP's layer 1 can share: OP's RTL ignores it
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def replace(self, **changes: Any) -> "AccelConfig":
        """A new config with ``changes``; derived fields not named are derived anew."""
        data = self.to_dict()
        data.pop("schema")
        data.update(changes)
        return AccelConfig(**data)

    def summary(self) -> str:
        return (f"{self.inputs}-{format_layers(self.layers)}-{self.classes} {self.mode.upper()} "
                f"{self.rows}x{self.cols} W{self.wbits}A{self.abits} acc{self.accbits}"
                + (f" BSFF k={self.bsff_k}" if self.bsff else "") + (" |z| units" if self.neuron == "abs" else "")
                + (f" goodness={self.goodness}" if self.goodness != "sq" else "")
                + (f" physical={self.physical}" if self.physical else ""))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a .json or .toml config file into a dict (validation happens in AccelConfig)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {e}") from None
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"config file {str(p)!r} does not parse as JSON: {parse_error_text(e)}") from None
    elif p.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except (ValueError, RecursionError) as e:
            raise ConfigError(f"config file {str(p)!r} does not parse as TOML: {parse_error_text(e)}") from None
    else:
        raise ConfigError(f"config file {str(p)!r}: unknown extension (allowed: .json, .toml)")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of config keys")
    return data


def parse_error_text(e: BaseException) -> str:
    """A JSON/TOML parser's complaint in one short line (deep nesting: Python's
    RecursionError; 5000-digit integers: ValueError)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return " ".join(str(e).split())[:200]
