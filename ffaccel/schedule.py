"""The engine's schedule: one plain-Python description, computed once from the config.

Everything that says *when* and *where* the engine does something lives here, and only
here: activation-bank geometry, copy groups, how samples are batched, the streaming
passes with their tile periods, unit latencies, the weight/bias memory map and the
run-time register map. Its readers:

- the RTL (``ffaccel.hw``): the controller's constants, address bases, bank counts,
  register addresses and widths;
- the cycle model (:meth:`Schedule.inference_cycles`), which sums the passes;
- the activity/energy model, the DSE, the cocotb runner and scoreboard, the benches.

A test compares the RTL's cycle counter with :meth:`Schedule.inference_cycles` on random
configs, so the description and the hardware cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import SHIFT_BASE_BITS, AccelConfig, ConfigError
from .fixedpoint import ceil_div, clog2


# ---------------------------------------------------------------------------- latencies
@dataclass(frozen=True)
class Latencies:
    """Pipeline depths of the units, in cycles (docs/architecture.md, "Units").

    ``command``: the controller registers its issue command (the issue stage reads from it
    the cycle after the controller's counters say so).
    ``mem_read``: weight/bias/activation memories answer one cycle after the address.
    ``read_reg``: the memories' read data registered before the operand select (the block
    RAMs' output registers).
    ``operand``: the issue stage's registers at the array edge (row operands, weight
    lanes, row enables and the tile controls): the cycle after the data of the reads.
    ``product``: the PE's product register (``x * w``); the accumulate is the cycle after.
    With ``AccelConfig.fpga_regs`` the PE first registers its own copies of the
    operands: 2 (:func:`latencies`); post-processing then has a stage B0 (10).
    ``shift``: the drain's shift command -> the shadow registers move up a row (each PE
    registers the command: no one register fans out to every shadow register bit).
    ``drain_go``: the tile's last accumulate -> the first drained row (sums in the shadow
    registers).
    ``select``: drain stage A: A1 (row 0, norm factors, label weight), A2 (label-share term).
    ``postproc``: post-processing registers B1 (partial products), B2 (their sum), C1
    (rounding term), C2 (shift),
    C3 (bias), C4 (clamp; D writes at C4's output), D1 (squares), D2 (sums of four
    lanes) and D3 (the sum), which stage E adds into the goodness registers at the end of
    the cycle it is valid in.
    ``flush_test``: FLUSH leaves the cycle after the pipeline has emptied.
    ``load``: a loaded pixel's square is added to the goodness this many cycles after its
    beat (the beat registered, its square registered); the controller waits as many cycles
    (SETTLE) after the last pixel before START, outside the counted cycles.
    ``norm``: a NORM step's factors ``(m, s)`` can be read this many cycles after the step
    (goodness selected and registered, the rsqrt's two stages, the write). They are first
    read by the drain of the pass that follows, at the earliest ``command + mem_read + tile_go``
    cycles after its first command, so the NORM steps overlap the pass (no cycle is added).
    ``cos``: the cosine engine (``AccelConfig.cos_engine``): a COS step's cosine goodness
    is in its copy's score this many cycles after the step (the NORM step's ``norm``
    cycles, its factors and ``d`` registered, then the ``d * m`` and ``* k_l`` products,
    the rounding term, the shift, each registered; the score add at the end of the last).
    ``port``: physical layers (:class:`PortPlan`): a copy's transfer through the
    external-layer port takes its words out, P's latency, its answer's words in and this
    many cycles: the first word's read and its registered beat (2) and the controller's
    start of the copy (1); the last answer word's goodness (its squares, their sum) is in
    the accumulators by then (``ffaccel.hw.port``).
    """

    command: int = 1
    mem_read: int = 1
    read_reg: int = 1
    operand: int = 1
    product: int = 1
    shift: int = 1
    drain_go: int = 1
    select: int = 2
    postproc: int = 9
    flush_test: int = 1
    norm: int = 4
    load: int = 2
    cos: int = 8
    port: int = 3

    def __post_init__(self):
        # the last NORM step is the cycle before the pass's first command
        first_read = self.command + self.mem_read + self.tile_go
        if self.norm - 1 > first_read:
            raise ValueError(f"Latencies: the normalisation factors ({self.norm} cycles) would be read "
                             f"before they are written ({first_read} cycles into the pass)")

    @property
    def tile_go(self) -> int:
        """A tile's last input issued to the array (its read data in, ``p1``) -> the drain's
        first row: through the read-data, operand and product registers, the accumulate,
        the shadow register."""
        return self.read_reg + self.operand + self.product + self.drain_go

    @property
    def post(self) -> int:
        """Last drained row -> FLUSH may leave: the cycles the cycle model adds after a pass."""
        return self.command + self.tile_go + self.select + self.postproc + self.flush_test

    @staticmethod
    def exit_cmp(classes: int) -> int:
        """The exit comparator's pipeline depth: a registered tree of pairwise comparisons
        over the classes (ceil(log2(classes)) levels), then the registered threshold test.
        A score vector entering in cycle t has its label, top scores and decision in t + this.
        (The comparator was one combinational scan of ``classes`` comparisons: 14.8 MHz on
        an ECP5, docs/results.md, "FPGA".)"""
        return clog2(classes) + 1


LATENCY = Latencies()


def latencies(cfg: AccelConfig) -> Latencies:
    """The pipeline depths of ``cfg``'s engine: :data:`LATENCY`, with the multipliers'
    operand registers where the config has them (``AccelConfig.fpga_regs``): the PEs' own
    operand copies in the product latency, post-processing's stage B0."""
    return Latencies(product=2, postproc=10) if cfg.fpga_regs else LATENCY


# ---------------------------------------------------------------------------- memory map
@dataclass(frozen=True)
class MemoryMap:
    """Weight word = ``cols`` lanes of ``wbits``: lane c of word ``wbase[l] + t*n_in + k``
    is ``W_l[t*cols + c, k]`` (0 beyond the layer). OP head l follows at ``hbase[l]`` with
    ``n_in = layers[l]`` and ``head_tiles`` tiles. Bias word = ``cols`` lanes of
    ``bias_lane_bits``: ``bbase[l] + t`` (layers), ``hbbase[l] + t`` (heads)."""

    tiles: tuple[int, ...]
    head_tiles: int
    wbase: tuple[int, ...]
    hbase: tuple[int, ...]
    bbase: tuple[int, ...]
    hbbase: tuple[int, ...]
    weight_words: int
    bias_words: int
    bias_lane_bits: int
    weight_word_bits: int
    bias_word_bits: int

    @property
    def waddr_bits(self) -> int:
        return max(1, clog2(self.weight_words))

    @property
    def baddr_bits(self) -> int:
        return max(1, clog2(self.bias_words))

    def as_dict(self) -> dict:
        return {"weight_words": self.weight_words, "bias_words": self.bias_words,
                "tiles": list(self.tiles), "weight_base": list(self.wbase), "bias_base": list(self.bbase),
                "head_tiles": self.head_tiles, "head_weight_base": list(self.hbase),
                "head_bias_base": list(self.hbbase), "read_latency": LATENCY.mem_read,
                "weight_addr_bits": self.waddr_bits, "bias_addr_bits": self.baddr_bits,
                "weight_word_bits": self.weight_word_bits, "bias_word_bits": self.bias_word_bits,
                "weight_lane": "word wbase[l] + t*n_in + k, lane c = W[t*cols + c, k]",
                "bias_lane": "word bbase[l] + t, lane c = b[t*cols + c]"}


def _memory_map(cfg: AccelConfig) -> MemoryMap:
    tiles = tuple(ceil_div(n, cfg.cols) for n in cfg.layers)
    wbase, bbase, acc, bacc = [], [], 0, 0
    for t, n_in in zip(tiles, cfg.fan_in):
        wbase.append(acc)
        acc += t * n_in
        bbase.append(bacc)
        bacc += t
    op = cfg.mode == "op"
    ht = ceil_div(cfg.classes, cfg.cols) if op else 0
    hbase, hbbase = [], []
    if op and cfg.exit_head == "learned":          # LLS heads are generated: nothing stored
        for n in cfg.layers:
            hbase.append(acc)
            acc += ht * n
            hbbase.append(bacc)
            bacc += ht
    return MemoryMap(tiles, ht, tuple(wbase), tuple(hbase), tuple(bbase), tuple(hbbase), acc, bacc,
                     cfg.bias_lane_bits, cfg.weight_word_bits, cfg.bias_word_bits)


# ---------------------------------------------------------------------------- register map
@dataclass(frozen=True)
class Register:
    name: str
    addr: int
    bits: int
    signed: bool
    reset: int


@dataclass(frozen=True)
class RegisterMap:
    """Run-time registers behind the register port: exit thresholds (layers 1..L-1),
    shift bases of the layers and of the OP heads, exit enable, and the score mask (bit l:
    layer l+1's score is summed; ``AccelConfig.score_mask``). The port's data lane is
    wide enough for every register's full range (signed ``data_bits``)."""

    registers: tuple[Register, ...]
    threshold: int          # base address of each group
    shift: int
    head_shift: int
    exit_enable: int
    score_mask: int

    @property
    def count(self) -> int:
        return len(self.registers)

    @property
    def addr_bits(self) -> int:
        return max(1, max(r.addr for r in self.registers).bit_length())

    @property
    def data_bits(self) -> int:
        return max(r.bits + (0 if r.signed else 1) for r in self.registers)

    def group(self, name: str) -> tuple[Register, ...]:
        return tuple(r for r in self.registers if r.name.rstrip("0123456789") == name)

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "shift": self.shift, "head_shift": self.head_shift,
                "exit_enable": self.exit_enable, "score_mask": self.score_mask, "count": self.count, "addr_bits": self.addr_bits,
                "data_bits": self.data_bits,
                "registers": [{"name": r.name, "addr": r.addr, "bits": r.bits, "signed": r.signed,
                               "reset": r.reset} for r in self.registers]}


def _register_map(cfg: AccelConfig) -> RegisterMap:
    L = cfg.n_layers
    regs = []
    for i in range(L - 1):
        regs.append(Register(f"threshold{i}", i, cfg.score_bits, True,
                             cfg.thresholds[i] if cfg.thresholds else 0))
    # addresses keep the historical layout: L slots per group (the last threshold slot unused)
    for i in range(L):
        regs.append(Register(f"shift{i}", L + i, SHIFT_BASE_BITS, False,
                             cfg.rsqrt_frac + cfg.wfrac[i] - cfg.afrac))
    for i in range(L if cfg.mode == "op" else 0):          # only OP has heads
        regs.append(Register(f"head_shift{i}", 2 * L + i, SHIFT_BASE_BITS, False,
                             max(0, cfg.rsqrt_frac + cfg.hfrac[i] - cfg.lfrac)))
    regs.append(Register("exit_enable", 3 * L, 1, False, int(cfg.exits_enabled)))
    regs.append(Register("score_mask", 3 * L + 1, L, False, sum(1 << i for i, v in enumerate(cfg.scored) if v)))
    for r in regs:
        hi = (1 << (r.bits - 1)) - 1 if r.signed else (1 << r.bits) - 1
        lo = -(1 << (r.bits - 1)) if r.signed else 0
        if not lo <= r.reset <= hi:
            raise ValueError(f"register {r.name}: reset value {r.reset} does not fit {r.bits} bits")
    return RegisterMap(tuple(regs), 0, L, 2 * L, 3 * L, 3 * L + 1)


# ---------------------------------------------------------------------------- ports
@dataclass(frozen=True)
class PortPlan:
    """The external-layer port of the physical block in front of layer ``layer``
    (docs/architecture.md, "External-layer port"): before the layer's pass, each live copy
    (MP label copy, OP row) streams its block input ``u`` out, ``out_words`` words of
    ``cols`` codes (lanes past ``n_u`` sent as 0), and P's answer comes back, ``in_words``
    words (lanes past ``n_p`` written as 0), written into the copy's bank of the input set
    ``src`` from word ``pbase`` on (after ``u``, which stays). ``embedded``: layer 1's
    input is the sample with its label (MP) or neutral (OP) pixels, made on the way out
    (MP: read from the sample's bank)."""

    layer: int
    n_u: int
    n_p: int
    concat: bool
    out_words: int
    in_words: int
    src: int
    embedded: bool

    @property
    def pbase(self) -> int:
        """The bank word where P's answer starts: the one after ``u``'s last."""
        return self.out_words

    def copy_cycles(self, latency: int, fixed: int) -> int:
        """Cycles of one copy's transfer with a P of ``latency`` cycles that is always ready
        and answers a word per cycle; ``fixed`` is ``Latencies.port``."""
        return self.out_words + self.in_words + latency + fixed

    def cycles(self, copies: int, latency: int, fixed: int) -> int:
        """The PORT phase: ``copies`` live copies one after the other, and the cycle that
        finds none left."""
        return copies * self.copy_cycles(latency, fixed) + 1

    def input_order(self) -> np.ndarray:
        """The digital layer's input position of each input its pass streams: with
        ``concat`` the block input then P's answer, ``[u, p]`` for the layer's ``[p, u]``
        (in the banks P's answer starts at the word after ``u``'s last: the pass jumps
        the gap, :attr:`PassPlan.gap`); else P's answer alone."""
        if not self.concat:
            return np.arange(self.n_p)
        return np.concatenate([self.n_p + np.arange(self.n_u), np.arange(self.n_p)])


def _port(cfg: AccelConfig, layer: int) -> PortPlan | None:
    b = cfg.blocks[layer]
    if not b.physical:
        return None
    wu, wp = ceil_div(b.n_u, cfg.cols), ceil_div(b.n_p, cfg.cols)
    return PortPlan(layer, b.n_u, b.n_p, b.concat, wu, wp, layer % 2, layer == 0)


# ---------------------------------------------------------------------------- passes
@dataclass(frozen=True)
class PassPlan:
    """One streaming pass (a layer, or an OP head) over ``tiles`` output tiles.

    Per tile the array streams ``k`` inputs starting at index ``k_first`` (MP label
    sharing: the image part ``classes..inputs-1``), then ``label_words`` label-weight words
    (MP sharing), then idles until the tile ``period`` has passed: the drain of the
    previous tile (one row per cycle) must have finished. ``groups`` lists the rows
    drained per tile for each copy group (MP); OP passes drain the batch's rows.
    """

    kind: str                     # "layer" | "head"
    layer: int
    tiles: int
    n_in: int
    k: int
    k_first: int
    label_words: int
    groups: tuple[int, ...] | None   # None: the OP batch size
    enabled_rows: tuple[int, ...] | None
    wbase: int
    bbase: int
    src: int                      # activation-bank set the pass reads
    shared: bool
    generated: bool = False       # weights generated on chip (LLS heads): no weight reads
    biased: bool = True           # a bias word per tile (LLS heads have none)
    act_base: int = 0             # word of the banks where the streamed inputs start
    image_end: int = 0            # leading inputs read as the embedded sample (layer 1)
    gap_at: int = 0               # (gap > 0) from this input on, the bank position is ...
    gap: int = 0                  # ... this many lanes further (concat: P's answer's words)

    def position(self, k):
        """The bank position (word ``// cols``, lane ``% cols``, from ``act_base``) of the
        pass's input ``k`` (an int or an array): ``k``, past ``gap_at`` ``k + gap``."""
        if isinstance(k, np.ndarray):
            return k + np.where((k >= self.gap_at) & (self.gap > 0), self.gap, 0)
        return k + (self.gap if self.gap and k >= self.gap_at else 0)

    @property
    def skips(self) -> bool:
        """Whether the pass streams only the inputs that are non-zero somewhere (zero
        skipping, ``AccelConfig.zero_skip``): every pass but one whose weights are
        generated on chip (an LLS generator steps input by input)."""
        return not self.generated

    def period(self, drained_rows: int, k: int | None = None) -> int:
        """Cycles of one tile: label words + max(streamed entries, drained rows); ``k``
        the pass's stream length under zero skipping (:func:`skip_length`), else ``k``."""
        return self.label_words + max(self.k if k is None else k, drained_rows)

    def drained(self, batch: int | None) -> tuple[int, ...]:
        if self.groups is not None:
            return self.groups
        if batch is None:
            raise ValueError(f"{self.kind} pass of layer {self.layer + 1}: an OP pass needs the batch size")
        return (batch,)

    def _streamed(self, batch: int | None, groups, k) -> list[tuple[int, int]]:
        """(drained rows, stream length) of each copy group streamed: ``k`` one length
        for all, or one per group of ``groups`` (MP zero skipping: each group streams the
        non-zero map of its own samples)."""
        d = self.drained(batch)
        gs = list(range(len(d))) if groups is None else list(groups)
        ks = list(k) if isinstance(k, (tuple, list)) else [k] * len(gs)
        if len(ks) != len(gs):
            raise ValueError(f"{self.kind} pass of layer {self.layer + 1}: {len(ks)} stream lengths for "
                             f"{len(gs)} copy groups")
        return [(d[g], self.k if kk is None else kk) for g, kk in zip(gs, ks)]

    def stream_cycles(self, batch: int | None = None, k=None, groups=None, group_wait: bool = False) -> int:
        """Cycles of the pass's tiles: ``groups`` the copy groups it streams (MP batches:
        :meth:`Schedule.live_groups`; None: all); ``k`` as for :meth:`_streamed`;
        ``group_wait`` (:attr:`Schedule.group_wait`): the first tile of each copy group
        after the first waits ``n - 1`` cycles, ``n`` the rows the previous group drains."""
        streamed = self._streamed(batch, groups, k)
        wait = sum(n - 1 for n, _ in streamed[:-1]) if group_wait else 0
        return self.tiles * sum(self.period(n, kk) for n, kk in streamed) + wait

    def flush_cycles(self, batch: int | None, post: int, k=None, groups=None) -> int:
        """Cycles of FLUSH after the last tile: the last tile's streaming tail beyond its
        period, its drain, and the post-processing latency ``post`` (``k`` and ``groups``
        as for :meth:`stream_cycles`)."""
        n, kk = self._streamed(batch, groups, k)[-1]
        return kk + self.label_words + n + post - self.period(n, kk)

    def pe_ops(self, cols: int, batch: int | None = None) -> int:
        en = self.enabled_rows if self.enabled_rows is not None else self.drained(batch)
        return self.tiles * self.k * cols * sum(en)


def live_samples(exits, layer: int) -> list[int]:
    """The samples of a batch (by their exit layers, 1-based) still in it when layer
    ``layer`` (0-based) runs: those that exit after it or later."""
    return [b for b, e in enumerate(exits) if e > layer]


def word_span(lo: int, hi: int, cols: int) -> tuple[int, int, int, int]:
    """The words of ``cols`` inputs that inputs ``lo..hi-1`` occupy: (first word, last word,
    the lanes of the first word in the range, the lanes of the last word in the range) as
    lane masks; the zero-skipping controller and :func:`skip_entries` both walk them."""
    full = (1 << cols) - 1
    return lo // cols, (hi - 1) // cols, full & ~((1 << (lo % cols)) - 1), (1 << ((hi - 1) % cols + 1)) - 1


def label_slot_nonzero(cfg: AccelConfig) -> bool:
    """Zero skipping: whether the first layer's operand at a label slot (an input below
    ``classes``) is non-zero in some row: in MP some label copy holds the label value
    there, in OP every row holds the neutral value."""
    return cfg.mode == "mp" or cfg.neutral_value != 0


def skip_entries(nonzero, lo: int, hi: int, cols: int) -> np.ndarray:
    """The stream of one tile under zero skipping (docs/architecture.md, "Zero skipping"),
    as the controller issues it: inputs ``lo..hi-1`` go by words of ``cols`` (word ``w``
    holds inputs ``w*cols .. w*cols+cols-1``); a word streams one entry per input that is
    non-zero in ``nonzero`` (a boolean sequence over the inputs: the pass's non-zero
    map), lowest first, and a word without one streams a single empty entry (no weight
    read, operand 0), marked -1."""
    if not 0 <= lo < hi <= len(nonzero):
        raise ValueError(f"skip_entries: inputs {lo}..{hi - 1} is not a range of the {len(nonzero)} inputs")
    w0, w1, lo_lanes, hi_lanes = word_span(lo, hi, cols)
    lanes = np.arange(cols)
    bits = np.zeros((w1 - w0 + 1, cols + 1), dtype=bool)
    padded = np.zeros((w1 + 1) * cols, dtype=bool)
    padded[: min(len(nonzero), len(padded))] = np.asarray(nonzero[: len(padded)], dtype=bool)
    bits[:, :cols] = padded[w0 * cols:].reshape(-1, cols)
    bits[0, :cols] &= (lo_lanes >> lanes) & 1 == 1
    bits[-1, :cols] &= (hi_lanes >> lanes) & 1 == 1
    bits[:, cols] = ~bits[:, :cols].any(axis=1)          # the empty entry of an all-zero word
    w, c = np.nonzero(bits)                               # word by word, lanes in order
    return np.where(c == cols, -1, (w0 + w) * cols + c)


def skip_length(nonzero, lo: int, hi: int, cols: int) -> int:
    """Entries per tile under zero skipping: ``len(skip_entries(...))``."""
    return len(skip_entries(nonzero, lo, hi, cols))


# ---------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    cfg: AccelConfig
    banks: int                    # activation banks per set (MP: one per label copy of the batch; OP: one per row)
    bank_depth: int               # words of ``cols`` activations per bank
    group_rows: tuple[int, ...]   # rows of each copy group (MP: label copies ``rows`` at a time)
    memory: MemoryMap
    regs: RegisterMap
    layer_passes: tuple[PassPlan, ...]
    head_passes: tuple[PassPlan, ...]
    latency: Latencies = LATENCY
    ports: tuple[PortPlan | None, ...] = ()     # per layer: the port of its physical block

    @property
    def copy_groups(self) -> int:
        return len(self.group_rows)

    @property
    def live_rows(self) -> int:
        """Array rows that ever hold an operand: MP the most rows a copy group uses (rows
        beyond the classes never hold a label copy), OP every row (``group_rows`` is
        ``(rows,)``). The array builds PEs for these rows only."""
        return max(self.group_rows)

    @property
    def share(self) -> bool:
        """MP layer-1 label sharing (``AccelConfig.share_layer1``)."""
        return self.cfg.share_layer1

    @property
    def exit_latency(self) -> int:
        """Cycles from a score vector into the exit comparator to its decision
        (:meth:`Latencies.exit_cmp`)."""
        return self.latency.exit_cmp(self.cfg.classes)

    # -------------------------------------------------------------- batching
    @property
    def batch_size(self) -> int:
        """Samples per inference: MP ``batch`` (their label copies fill the rows, copy
        group by copy group); OP ``rows``."""
        return self.cfg.batch if self.cfg.mode == "mp" else self.cfg.rows

    @property
    def group_wait(self) -> bool:
        """Whether a copy group's first tile waits ``n - 1`` cycles (``n`` the previous
        group's drained rows) before it streams: MP batches with zero skipping, where each
        group streams its own samples' non-zero map, so a group may stream fewer entries
        than the one before. A tile's drain reads its ``n`` rows from the shadow registers
        in the cycles after its last entry; the next tile's last entry (and with it the
        next shadow load) must come ``n`` cycles after this one's at the earliest. Within a
        group the period ``max(K, n) >= n`` keeps that; at a group change the next group's
        ``K`` is not known before it streams, and the wait covers any ``K >= 1``."""
        return self.cfg.mode == "mp" and self.cfg.zero_skip and self.cfg.batch > 1 and self.copy_groups > 1

    @property
    def tags(self) -> int:
        """Sample tags (a result's ``row``, the exit comparator's tag): ``rows`` at least."""
        return max(self.cfg.rows, self.batch_size)

    # MP: the batch's label copies, ``b * classes + c`` being sample b's copy of label c
    # (its bank in each set, its row (copy % rows) in copy group copy // rows)
    def copy_of(self, sample: int, label: int) -> int:
        """MP: the copy index of ``sample``'s copy of ``label``."""
        return sample * self.cfg.classes + label

    def sample_of(self, copy: int) -> int:
        """MP: the sample of the batch a copy belongs to."""
        return copy // self.cfg.classes

    def label_of(self, copy: int) -> int:
        """MP: the label a copy carries."""
        return copy % self.cfg.classes

    def group_samples(self, g: int) -> range:
        """MP: the samples of the batch whose label copies copy group ``g`` holds."""
        lo = g * self.cfg.rows
        return range(self.sample_of(lo), self.sample_of(lo + self.group_rows[g] - 1) + 1)

    def live_groups(self, layer: int, live) -> tuple[int, ...]:
        """MP: the copy groups layer ``layer``'s pass streams when the samples ``live`` (of
        the batch) are still in it: every group holding a copy of a live sample (the shared
        layer 1 streams its one group, all samples at once). None: every sample."""
        p = self.layer_passes[layer]
        if p.shared or live is None:
            return tuple(range(len(p.groups)))
        live = set(live)
        return tuple(g for g in range(len(p.groups)) if live.intersection(self.group_samples(g)))

    def batches(self, n: int) -> list[tuple[int, int]]:
        """(first sample, size) of every inference over ``n`` samples, in input order."""
        b = self.batch_size
        return [(s, min(b, n - s)) for s in range(0, n, b)]

    # -------------------------------------------------------------- cycles
    @property
    def cos_cycles(self) -> int:
        """The cosine engine's COS phase: one step per copy (bank), the last step's score
        written ``Latencies.cos`` cycles after it; EXIT reads the scores from the next cycle."""
        return self.banks - 1 + self.latency.cos

    def setup_cycles(self) -> int:
        """START (1), and in OP the first NORM over the batch's rows (a physical layer 1's
        NORM follows its port, in the layer's phases)."""
        return 1 if self.cfg.mode == "mp" or self.ports[0] is not None else 1 + self.cfg.rows

    def stream_weights(self, layer: int, w: np.ndarray) -> np.ndarray:
        """A layer's weights ``(n_out, fan_in)`` with their columns in the order its pass
        streams its inputs: behind a physical block :meth:`PortPlan.input_order`, else ``w``."""
        p = self.ports[layer]
        if p is None:
            return w
        return w[:, p.input_order()]

    def port_copies(self, live, batch: int | None) -> int:
        """Copies a port transfers: those of the live samples (MP: every label copy of
        each; OP: its row); ``live`` None: the batch's ``batch`` samples (MP default: a
        full batch)."""
        n = (self.batch_size if batch is None or self.cfg.mode == "mp" else batch) if live is None else len(live)
        return n * self.cfg.copies if self.cfg.mode == "mp" else n

    def port_cycles(self, layer: int, live=None, batch: int | None = None) -> int:
        """The PORT phase of ``layer`` (0 without a physical block)."""
        p = self.ports[layer]
        if p is None:
            return 0
        return p.cycles(self.port_copies(live, batch), self.cfg.port_latency, self.latency.port)

    def layer_phases(self, layer: int, batch: int | None = None,
                     kept: tuple[int | None, int | None] | None = None, live=None) -> list[tuple[str, int]]:
        """(phase, cycles) of one layer (0-based) as the controller runs it; ``kept``: the
        stream lengths of its pass and OP head pass under zero skipping (None: every
        input; ``ffaccel.perf.cycles.stream_lengths`` computes them from the data).

        MP: NORM (one cycle per bank), STREAM (the copy groups of the samples ``live`` in
        the batch, :meth:`live_groups`), FLUSH, EXIT (one sample's score vector enters the
        exit comparator per cycle, ``batch`` of them, the last one's decision comes out
        ``exit_latency`` cycles later); the cosine engine: NORM (the first layer only),
        STREAM, FLUSH, COS (:attr:`cos_cycles`), EXIT. OP (``batch``
        samples): STREAM, FLUSH, NORM, head STREAM, head FLUSH, EXIT (one row enters the
        comparator per cycle, the last row's decision ``exit_latency`` cycles after it), EXIT2;
        the first layer's NORM is part of the set-up.
        """
        p = self.layer_passes[layer]
        kl, kh = kept if kept is not None else (None, None)
        phys = self.ports[layer] is not None
        # a physical block: its port, then the NORM of the input it made
        port = [("port", self.port_cycles(layer, live, batch))] if phys else []
        if self.cfg.mode == "mp":
            g = self.live_groups(layer, live)
            passes = [("stream", p.stream_cycles(None, kl, g, self.group_wait)),
                      ("flush", p.flush_cycles(None, self.latency.post, kl, g))]
            done = [("exit", self.batch_size + self.exit_latency)]
            if self.cfg.cos_engine:
                # COS normalises the next layer's input after the pass (so the score can
                # use the factors): only the first layer has a NORM of its own
                norm = [("norm", self.banks)] * (layer == 0 or phys)
                return port + norm + passes + [("cos", self.cos_cycles)] + done
            return port + [("norm", self.banks)] + passes + done
        b = self.cfg.rows if batch is None else batch
        h = self.head_passes[layer]
        R = self.cfg.rows
        post = self.latency.post
        return port + [("norm", R)] * phys + [
            ("stream", p.stream_cycles(b, kl)), ("flush", p.flush_cycles(b, post, kl)), ("norm", R),
            ("head_stream", h.stream_cycles(b, kh)), ("head_flush", h.flush_cycles(b, post, kh)),
            ("exit", R + self.exit_latency), ("exit2", 1)]

    @property
    def every_input(self) -> list[tuple[None, None]]:
        """``kept`` for :meth:`inference_cycles` when every pass streams every input (the
        most a zero-skipping engine takes)."""
        return [(None, None)] * self.cfg.n_layers

    def inference_cycles(self, exit_layer: int, batch: int | None = None,
                         kept: list[tuple[int | None, int | None]] | None = None, exits=None) -> dict:
        """Cycles of one inference (an MP or OP batch whose deepest exit is
        ``exit_layer``), from START to the final exit decision, as the RTL's cycle counter
        reports them: ``{"total", "setup", "layers": [...]}``. Under zero skipping the
        cycles depend on the data: ``kept`` gives each visited layer's stream lengths
        (:meth:`layer_phases`); a zero-skipping config refuses to go without them. MP
        batches: ``exits``, each sample's exit layer (its length the samples loaded;
        None: ``batch`` samples, all exiting at ``exit_layer``), decides the copy groups
        each layer streams."""
        if exits is not None:
            exits = [int(e) for e in exits]
            if not exits or max(exits) != exit_layer or len(exits) > self.batch_size:
                raise ValueError(f"exits={exits}: expected 1..{self.batch_size} exit layers, the deepest "
                                 f"{exit_layer}")
        if not 1 <= exit_layer <= self.cfg.n_layers:
            raise ValueError(f"exit_layer={exit_layer} out of range 1..{self.cfg.n_layers}")
        if self.cfg.zero_skip and (kept is None or len(kept) < exit_layer):
            raise ValueError("inference_cycles: a zero-skipping engine's cycles depend on the data "
                             "(pass the stream lengths, ffaccel.perf.cycles.stream_lengths)")
        layers = []
        for layer in range(exit_layer):
            live = None if exits is None else live_samples(exits, layer)
            ph = self.layer_phases(layer, batch, kept[layer] if kept is not None else None, live)
            layers.append({"layer": layer + 1, "phases": dict(ph), "cycles": sum(c for _, c in ph)})
        setup = self.setup_cycles()
        return {"total": setup + sum(x["cycles"] for x in layers), "setup": setup, "layers": layers}

    # -------------------------------------------------------------- geometry for the RTL
    @property
    def max_stream(self) -> int:
        """Largest number of inputs a pass streams (bounds the input-index counter)."""
        return max((self.cfg.inputs,) + self.cfg.layers + self.cfg.fan_in)

    @property
    def max_position(self) -> int:
        """Largest bank position a pass reads, plus one (:meth:`PassPlan.position`)."""
        return max(p.position(p.k_first + p.k - 1) + 1 for p in self.layer_passes + self.head_passes)

    @property
    def max_tiles(self) -> int:
        return max(self.memory.tiles + (self.memory.head_tiles,))

    @property
    def max_period(self) -> int:
        """Longest tile period of any pass (bounds the controller's tile-cycle counter)."""
        return max([p.period(max(self.cfg.rows, self.cfg.batch_copies))
                    for p in self.layer_passes + self.head_passes])

    @property
    def copy_index(self) -> range:
        """Range of a copy/row index carried through drain, post-processing and
        accumulators (MP: a label copy of any group; OP: a batch row)."""
        return range(max(self.banks, self.cfg.rows) + self.cfg.rows)

    def as_dict(self) -> dict:
        def pdict(p: PassPlan) -> dict:
            return {"kind": p.kind, "layer": p.layer, "tiles": p.tiles, "k": p.k, "k_first": p.k_first,
                    "label_words": p.label_words, "groups": list(p.groups) if p.groups else None,
                    "src_set": p.src, "generated": p.generated, "biased": p.biased, "act_base": p.act_base,
                    "image_end": p.image_end, "gap_at": p.gap_at, "gap": p.gap}
        return {"banks": self.banks, "bank_depth": self.bank_depth, "copy_groups": self.copy_groups,
                "group_rows": list(self.group_rows), "live_rows": self.live_rows, "label_share": self.share,
                "batch_size": self.batch_size, "group_samples": [[r.start, r.stop] for r in
                                                                 map(self.group_samples, range(self.copy_groups))]
                if self.cfg.mode == "mp" else None, "post_latency": self.latency.post,
                "exit_latency": self.exit_latency,
                "cos_cycles": self.cos_cycles if self.cfg.cos_engine else None,
                "setup_cycles": self.setup_cycles(),
                "passes": [pdict(p) for p in self.layer_passes + self.head_passes],
                # physical layers: the external-layer port of each block (P's side of the contract)
                "ports": [None if p is None else
                          {"layer": p.layer, "n_u": p.n_u, "n_p": p.n_p, "concat": p.concat,
                           "out_words": p.out_words, "in_words": p.in_words, "answer_word": p.pbase,
                           "src_set": p.src, "embedded": p.embedded} for p in self.ports],
                "port_latency": self.cfg.port_latency if any(self.ports) else None,
                "port_fixed_cycles": self.latency.port if any(self.ports) else None}


def _build(cfg: AccelConfig) -> Schedule:
    R, C, NC = cfg.rows, cfg.cols, cfg.classes
    mp = cfg.mode == "mp"
    ports = tuple(_port(cfg, l) for l in range(cfg.n_layers))
    mm = _memory_map(cfg)
    NCB = cfg.batch_copies                  # MP: the label copies of the batch
    G = ceil_div(NCB, R) if mp else 1
    group_rows = tuple([R] * (G - 1) + [NCB - (G - 1) * R]) if mp else (R,)
    share = cfg.share_layer1
    layer_passes, head_passes = [], []
    for l, (n_in, n_out) in enumerate(zip(cfg.fan_in, cfg.layers)):
        shared = share and l == 0
        port = ports[l]
        if shared:
            # each sample's image on a row of its own; every copy of the batch drained
            p = PassPlan("layer", l, mm.tiles[l], n_in, n_in - NC, NC, NC, (NCB,), (cfg.batch,),
                         mm.wbase[l], mm.bbase[l], 0, True, image_end=n_in)
        else:
            # behind a physical block: P's answer sits after the block input (concat: both
            # stream, u from word 0, then p from its word: a gap of u's last word's spare
            # lanes); layer 1 reads the embedded sample up to image_end
            cat = port is not None and port.concat
            act_base = port.pbase if port is not None and not cat else 0
            image_end = (n_in if port is None else port.n_u if cat else 0) if l == 0 else 0
            gap = port.out_words * C - port.n_u if cat else 0
            p = PassPlan("layer", l, mm.tiles[l], n_in, n_in, 0, 0, group_rows if mp else None,
                         None, mm.wbase[l], mm.bbase[l], l % 2, False, act_base=act_base, image_end=image_end,
                         gap_at=port.n_u if cat else 0, gap=gap)
        layer_passes.append(p)
        if not mp:
            lls = cfg.exit_head != "learned"
            head_passes.append(PassPlan("head", l, mm.head_tiles, n_out, n_out, 0, 0, None, None,
                                        0 if lls else mm.hbase[l], 0 if lls else mm.hbbase[l], (l + 1) % 2,
                                        False, generated=lls, biased=not lls))
    depth = max([ceil_div(max((cfg.inputs,) + cfg.layers), C)] + [p.pbase + p.in_words for p in ports if p])
    return Schedule(cfg=cfg, banks=NCB, bank_depth=depth,
                    group_rows=group_rows, memory=mm,
                    regs=_register_map(cfg), layer_passes=tuple(layer_passes), head_passes=tuple(head_passes),
                    latency=latencies(cfg), ports=ports)


@lru_cache(maxsize=256)
def schedule(cfg: AccelConfig) -> Schedule:
    """The schedule of ``cfg`` (cached: configs are frozen and hashable)."""
    return _build(cfg)
