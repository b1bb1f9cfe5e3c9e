"""Activity of the engine from the real data: MACs, memory accesses and bit toggles per
component, computed from the golden model's activations with numpy, without simulating
the RTL. It follows the RTL's streaming order exactly (docs/architecture.md, sections 4 and 6):

- ``weight_bus``: the array's weight operand (``cols*wbits``): the weight-port data
  register, one word per read, or (LLS heads) the basis generator's register.
- ``act_read``: the activation-bank read registers (``cols*abits``), one word per ``cols`` inputs.
- ``array_x``: the row operand buses (``abits`` each); 0 when the row is idle or gated.
- ``pe_product``: the PE product registers (``abits + wbits``): ``x * w`` per streamed
  input, 0 while the row's operand is isolated (gaps, label words, gated rows).
- ``pe_acc``: the PE accumulators (``accbits``), one update per streamed input.
- ``pe_operand``: the PEs' own copies of their row operand and weight lane
  (``AccelConfig.fpga_regs``; 0 without): each copies its bus a cycle later, so
  ``cols`` x the row operand toggles plus ``live_rows`` x the weight operand toggles.
- ``pe_shadow``: the PE shadow (result) registers: one load per tile, then the drain's
  shifts (every column's registers move up a row after each drained row but the last).
- ``act_write``: the activation-bank write data (0 -> word -> 0 per drained row, and the
  input pixels while a sample loads, assuming an unstalled input stream; with
  ``fpga_regs`` each bank's write register, which holds its last word).

Toggles are Hamming distances between successive values of each register or bus
(two's complement at the register's width).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import AccelConfig
from ..hw.images import tile_weights
from ..model.embed import embed_all, embed_neutral
from ..model.exits import layer_macs
from ..model.golden import QuantModel
from ..schedule import live_samples, schedule
from .cycles import lengths_of, nonzero_maps, pass_entries

COMPONENTS = ("weight_bus", "act_read", "array_x", "pe_operand", "pe_product", "pe_acc", "pe_shadow", "act_write")


def popcount(a: np.ndarray, bits: int) -> int:
    """Total set bits of ``a`` at ``bits`` width (two's complement)."""
    if a.dtype == np.int32 and bits <= 32:
        mask = np.uint32((1 << bits) - 1) if bits < 32 else np.uint32(0xFFFFFFFF)
        return int(np.bitwise_count(a.view(np.uint32) & mask).sum())
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return int(np.bitwise_count(a.astype(np.int64).view(np.uint64) & mask).sum())


def hamming(a: np.ndarray, b: np.ndarray, bits: int) -> int:
    if a.dtype == b.dtype == np.int32:
        return popcount(np.bitwise_xor(a, b), bits)
    return popcount(np.bitwise_xor(a.astype(np.int64), b.astype(np.int64)), bits)


@dataclass
class Counters:
    cycles: int = 0
    macs: int = 0                  # useful MACs (the model's, with layer-1 sharing)
    pe_ops: int = 0                # PE operations issued (enabled rows x cols x streamed inputs)
    weight_reads: int = 0
    basis_words: int = 0           # weight words generated on chip (LLS heads) instead of read
    bias_reads: int = 0
    act_reads: int = 0
    act_writes: int = 0
    drained_rows: int = 0
    layer_rows: int = 0            # drained rows of layer passes (not heads): BSFF samples these
    port_copies: int = 0           # copies sent through a physical layer P (the external-layer port)
    port_values: int = 0           # values across the port (each copy's n_u out, n_p back)
    toggles: dict = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0))
    layer_toggles: list = field(default_factory=list)     # per visited layer: component -> toggles
    layer_counts: list = field(default_factory=list)      # per visited layer: counter -> count

    def add(self, other: "Counters") -> None:
        for k in ("cycles", "macs", "pe_ops", "weight_reads", "basis_words", "bias_reads", "act_reads",
                  "act_writes", "drained_rows", "layer_rows", "port_copies", "port_values"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k, v in other.toggles.items():
            self.toggles[k] += v
        for i, lt in enumerate(other.layer_toggles):
            if i >= len(self.layer_toggles):
                self.layer_toggles.append(dict.fromkeys(COMPONENTS, 0))
            for k, v in lt.items():
                self.layer_toggles[i][k] += v

    COUNTS = ("pe_ops", "weight_reads", "basis_words", "bias_reads", "act_reads", "act_writes", "drained_rows",
              "layer_rows", "port_copies", "port_values")

    def snapshot(self) -> dict:
        return {k: getattr(self, k) for k in self.COUNTS}

    def _close_layer(self, before: dict, cbefore: dict) -> None:
        self.layer_toggles.append({k: self.toggles[k] - before[k] for k in COMPONENTS})
        self.layer_counts.append({k: getattr(self, k) - cbefore[k] for k in self.COUNTS})

    def as_dict(self) -> dict:
        return {"cycles": self.cycles, "macs": self.macs, "pe_ops": self.pe_ops,
                "weight_reads": self.weight_reads, "basis_words": self.basis_words, "bias_reads": self.bias_reads,
                "act_reads": self.act_reads, "act_writes": self.act_writes,
                "drained_rows": self.drained_rows, "layer_rows": self.layer_rows, "port_copies": self.port_copies,
                "port_values": self.port_values, "toggles": dict(self.toggles)}


class _State:
    """Register values that carry over from pass to pass (and sample to sample)."""

    def __init__(self, cfg: AccelConfig):
        self.w = np.zeros(cfg.cols, dtype=np.int64)       # weight-memory data register
        self.acc = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
        self.shadow = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
        self.bank = np.zeros((2, schedule(cfg).banks, cfg.cols), dtype=np.int64)
        self.x = np.zeros(cfg.rows, dtype=np.int64)               # row operand buses
        self.wreg = np.zeros((2, schedule(cfg).banks, cfg.cols), dtype=np.int64)   # fpga_regs: bank writes
        self.prod = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)   # product registers


class PerfModel:
    """Exact activity of the engine for a quantised model (one instance per model)."""

    def __init__(self, qm: QuantModel):
        self.qm, self.cfg = qm, qm.cfg
        self.sched = schedule(self.cfg)
        self.mm = self.sched.memory
        cfg = self.cfg
        # weights of every pass as (tiles, n_in, cols): word t*n_in + k of the memory map
        self._wt = [tile_weights(self.sched.stream_weights(l, w), cfg.cols) for l, w in enumerate(qm.weights)]
        self._ht = [tile_weights(h, cfg.cols) for h in qm.heads]
        self._macs = layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, cfg.share_layer1)
        self.state = _State(cfg)

    # ------------------------------------------------------------------ one pass
    def _pass(self, wt: np.ndarray, X: np.ndarray, rows: list[int], banks: list[tuple[int, np.ndarray]], *,
              entries: np.ndarray, label_words: int, set_: int, drained: int, toggles: bool,
              cnt: Counters, plan, generated: bool = False, biased: bool = True, follows: bool = False,
              shifts: int | None = None) -> None:
        """Stream ``wt`` (tiles, n_in, cols) over the inputs ``entries`` for one copy group:
        the tile's stream in order (every input ``k_first..k_first+k-1``, or under zero
        skipping :func:`ffaccel.schedule.skip_entries`, -1 an empty entry).

        ``X`` (rows, n_in): the operands of the enabled array ``rows``; ``banks``: (bank, the
        vector it holds by bank position[, the positions lo..hi it serves]) for the
        activation banks this pass reads from set ``set_`` (positions:
        :meth:`ffaccel.schedule.PassPlan.position`);
        ``drained``: rows the drain reads per tile (it shifts the shadow registers
        ``drained - 1`` times; ``shifts`` when given: the shared layer 1 shifts after each
        sample of the batch but the last); ``plan`` the schedule's pass;
        ``follows``: the next pass (copy group) starts the cycle after this one's last tile.
        """
        cfg, st = self.cfg, self.state
        C, A, W, ACC = cfg.cols, cfg.abits, cfg.wbits, cfg.accbits
        tiles = wt.shape[0]
        K = len(entries)                              # entries per tile
        real = entries >= 0
        ks = entries[real]                            # the inputs streamed (weights read)
        period = plan.period(drained, K)
        nrows = len(rows)
        if generated:
            cnt.basis_words += tiles * K
        else:
            cnt.weight_reads += tiles * (len(ks) + label_words)
        cnt.bias_reads += tiles if biased else 0
        cnt.pe_ops += tiles * len(ks) * C * nrows
        read_words = np.unique(plan.position(ks) // C)   # one activation word read per word streamed
        nwords = len(read_words)
        served = [(e[0], e[1], read_words[(read_words >= e[2] // C) & (read_words < -(-e[3] // C))])
                  if len(e) > 2 else (e[0], e[1], read_words) for e in banks]
        cnt.act_reads += tiles * sum(len(w) for _, _, w in served)
        if not toggles:
            return
        tg = cnt.toggles
        bus0 = (tg["weight_bus"], tg["array_x"])
        # weight bus: stream words then label words, tile after tile (an empty entry reads
        # nothing: the bus holds)
        seq = []
        for t in range(tiles):
            seq.append(wt[t, ks])
            if label_words:
                seq.append(wt[t, :label_words])
        seq = np.concatenate(seq)
        if generated:
            # the array's weight operand switches from the held memory word to the
            # generator's first word (both change on the same edge), and back to the held
            # memory word after the pass
            tg["weight_bus"] += (hamming(seq[0], st.w, W) + hamming(seq[1:], seq[:-1], W)
                                 + hamming(seq[-1], st.w, W))
        elif len(seq):                  # (zero skipping may read no word at all)
            tg["weight_bus"] += hamming(seq[0], st.w, W) + hamming(seq[1:], seq[:-1], W)
            st.w = seq[-1].copy()
        # activation-bank read registers: one read per word streamed
        # (a bank may serve two regions: layer 1's image and, in its copy's own words, P's
        # answer; its read register sees both in word order)
        by_bank: dict[int, list] = {}
        for b, X_r, rw in served:
            by_bank.setdefault(b, []).append((X_r, rw))
        for b, parts in by_bank.items():
            rw = np.unique(np.concatenate([w for _, w in parts]))
            if not len(rw):
                continue
            lanes = np.zeros((rw[-1] + 1) * C, dtype=np.int64)
            for X_r, w in parts:
                mine = np.zeros(len(lanes), dtype=np.int64)
                src = X_r[: len(lanes)]
                mine[: len(src)] = src
                sel = (np.repeat(np.isin(np.arange(rw[-1] + 1), w), C))
                lanes[sel] = mine[sel]
            words = lanes.reshape(-1, C)[rw]
            prev = st.bank[set_, b]
            one = hamming(words[1:], words[:-1], A) if len(rw) > 1 else 0
            wrap = hamming(words[0], words[-1], A)
            tg["act_read"] += hamming(words[0], prev, A) + tiles * one + (tiles - 1) * wrap
            st.bank[set_, b] = words[-1]
        # row operand buses: x during streaming, 0 in gaps (label phase, period > K) and
        # on empty entries
        Xs = np.where(real[None, :], X[:, np.maximum(entries, 0)], 0)
        within = hamming(Xs[:, 1:], Xs[:, :-1], A) if K > 1 else 0
        gap = period > K or label_words > 0
        # the buses and product registers carry over into a pass that follows back to
        # back (the next copy group); otherwise they return to 0 after the pass
        follows = follows and not gap
        ridx = np.asarray(rows)
        others = np.setdiff1d(np.arange(cfg.rows), ridx)
        prev_x, prev_p = st.x.copy(), st.prod.copy()
        st.x[:], st.prod[:] = 0, 0
        edge = popcount(Xs[:, 0], A) + popcount(Xs[:, -1], A)
        boundary = edge if gap else hamming(Xs[:, -1], Xs[:, 0], A)
        start = hamming(Xs[:, 0], prev_x[ridx], A) + popcount(prev_x[others], A)
        end = 0 if follows else popcount(Xs[:, -1], A)
        if follows:
            st.x[ridx] = Xs[:, -1]
        tg["array_x"] += tiles * within + (tiles - 1) * boundary + start + end
        if cfg.fpga_regs:          # every live PE copies its row's and column's bus
            tg["pe_operand"] += (self.sched.live_rows * (tg["weight_bus"] - bus0[0])
                                 + C * (tg["array_x"] - bus0[1]))
        # PE product registers, accumulators and shadow registers, chunked over tiles
        PB = A + W
        prev_acc = st.acc[ridx].copy()
        shifts = drained - 1 if shifts is None else shifts
        chunk = max(1, (1 << 22) // max(1, nrows * K * C))
        # partial sums fit int32 when the accumulator does (half the memory traffic)
        dt = np.int32 if ACC <= 31 else np.int64
        Xd = Xs.astype(dt)
        prev_acc = prev_acc.astype(dt)
        prev_prod = prev_p[ridx].astype(dt)                     # what the previous pass left
        tg["pe_product"] += popcount(prev_p[others], PB)          # rows this pass gates: to 0
        if gap:                                                   # the first tile starts from it
            first = Xd[:, 0, None] * wt[0, max(int(entries[0]), 0)].astype(dt)[None, :]
            tg["pe_product"] += hamming(first, prev_prod, PB) - popcount(first, PB)
        for t0 in range(0, tiles, chunk):
            wc = wt[t0:t0 + chunk, np.maximum(entries, 0)].astype(dt)   # (tc, K, C); x = 0 on empties
            prod = Xd[None, :, :, None] * wc[:, None, :, :]        # (tc, rows, K, C)
            if K > 1:
                tg["pe_product"] += hamming(prod[:, :, 1:, :], prod[:, :, :-1, :], PB)
            if gap:                                               # 0 -> first ... last -> 0
                tg["pe_product"] += popcount(prod[:, :, 0, :], PB) + popcount(prod[:, :, -1, :], PB)
            else:                                                 # tiles back to back
                tg["pe_product"] += hamming(prod[:, :, 0, :],
                                            np.concatenate([prev_prod[None], prod[:-1, :, -1, :]], axis=0), PB)
                prev_prod = prod[-1, :, -1, :]
            acc = np.cumsum(prod, axis=2, dtype=dt)               # (tc, rows, K, C)
            fin = acc[:, :, -1, :]                                # (tc, rows, C)
            starts = np.concatenate([prev_acc[None], fin[:-1]], axis=0)
            tg["pe_acc"] += hamming(acc[:, :, 0, :], starts, ACC)
            if K > 1:
                tg["pe_acc"] += hamming(acc[:, :, 1:, :], acc[:, :, :-1, :], ACC)
            tg["pe_shadow"] += self._shadow(fin, ridx, shifts)
            prev_acc = fin[-1]
        st.acc[ridx] = prev_acc
        if follows:
            st.prod[ridx] = prev_prod
        elif not gap:
            tg["pe_product"] += popcount(prev_prod, PB)           # back to 0 after the pass

    def _shadow(self, fins: np.ndarray, ridx: np.ndarray, shifts: int) -> int:
        """Shadow-register toggles of tiles ``fins`` (tiles, len(ridx), cols): each tile
        loads rows ``ridx``, then every row but the bottom one takes the next row's value
        ``shifts`` times; the state carries over (``state.shadow``)."""
        st, ACC = self.state, self.cfg.accbits
        S = st.shadow
        if shifts == 0:                               # loads alone: one vector over the tiles
            prev = np.concatenate([S[ridx][None], fins[:-1].astype(np.int64)], axis=0)
            tog = hamming(fins, prev, ACC)
            S[ridx] = fins[-1]
            return tog
        R = S.shape[0]
        # shift s moves pair (q+1, q) into row q+1-s: it toggles min(q+1, shifts) times
        weight = np.minimum(np.arange(1, R), shifts)
        end = np.minimum(np.arange(R) + shifts, R - 1)  # row r ends holding loaded row end[r]
        mask = np.uint64((1 << ACC) - 1)
        tog = 0
        for f in fins.astype(np.int64):
            new = S.copy()
            new[ridx] = f
            tog += hamming(new[ridx], S[ridx], ACC)
            d = np.bitwise_count((new[1:] ^ new[:-1]).view(np.uint64) & mask).sum(axis=1)
            tog += int(d @ weight)
            S = new[end]
        st.shadow = S
        return tog

    def _load_toggles(self, x: np.ndarray, bank: int) -> int:
        """Input bank write data while a sample loads into ``bank`` of set 0: the pixel on
        every lane, one beat per cycle (an unstalled input stream), 0 before and after; with
        ``fpga_regs`` the bank's write register, which holds its last word instead."""
        A, C = self.cfg.abits, self.cfg.cols
        if not self.cfg.fpga_regs:
            return C * (popcount(x[:1], A) + hamming(x[1:], x[:-1], A) + popcount(x[-1:], A))
        return self._written(np.repeat(np.asarray(x)[:, None], C, axis=1), 0, bank)

    def _written(self, words: np.ndarray, set_: int, bank: int) -> int:
        """Toggles of a bank's write register (``fpga_regs``) over ``words`` (n, cols)
        written in order: it holds each word until the next write to the bank."""
        A, st = self.cfg.abits, self.state
        tog = hamming(words[0], st.wreg[set_, bank], A) + (hamming(words[1:], words[:-1], A) if len(words) > 1 else 0)
        st.wreg[set_, bank] = words[-1]
        return tog

    def _drain_toggles(self, rows: list[int], h: np.ndarray, layer: int) -> int:
        """Write data of layer ``layer``'s drained rows: ``h`` (len(rows), n) into banks
        ``rows`` of set ``(layer + 1) % 2``, tile after tile (0 -> word -> 0 each, or with
        ``fpga_regs`` each bank's write register holding its last word)."""
        A, C = self.cfg.abits, self.cfg.cols
        tiles = self.mm.tiles[layer]
        pad = np.zeros((len(rows), tiles * C), dtype=np.int64)
        pad[:, : h.shape[1]] = h
        if not self.cfg.fpga_regs:
            return 2 * popcount(pad, A)
        return sum(self._written(pad[i].reshape(tiles, C), (layer + 1) % 2, r) for i, r in enumerate(rows))

    def shape_counters(self, exit_layers) -> Counters:
        """Counters (no toggles) of one inference (an MP or OP batch of
        ``len(exit_layers)``) from its exit layers alone: without zero skipping the data
        does not change them."""
        cfg = self.cfg
        if cfg.zero_skip:
            raise ValueError("shape_counters: a zero-skipping engine's counters depend on the data")
        exits = np.asarray(exit_layers)
        zeros = np.zeros((len(exits), cfg.inputs), dtype=np.int64)
        if cfg.mode == "mp":
            return self.mp_batch(zeros, [], exits, toggles=False)
        return self.op_batch(zeros, [], exits, toggles=False)

    # ------------------------------------------------------------------ inference
    def _maps(self, xs, acts, exits, maps, toggles: bool) -> list:
        """The non-zero maps of an inference's passes under zero skipping (given, or from
        the activations), else a None pair per layer."""
        if not self.cfg.zero_skip:
            return [(None, None)] * int(np.max(exits))
        if maps is not None:
            return list(maps)
        if not toggles and not acts:
            raise ValueError("zero skipping: the counters need the activations or the non-zero maps")
        return nonzero_maps(self.cfg, xs, acts, exits)

    def _entries(self, layer: int, head: bool, maps: list) -> np.ndarray:
        return pass_entries(self.cfg, layer, head, maps[layer][int(head)])

    def _block(self, layer: int, u: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Behind a physical block: one copy's pass operands (in stream order) and what its
        bank holds by position: with concat ``[u, p]`` and ``[u, its last word's spare
        lanes as 0, p]``, else P's answer ``p`` for both."""
        port = self.sched.ports[layer]
        if not port.concat:
            return p, p
        held = np.zeros(port.out_words * self.cfg.cols + port.n_p, dtype=np.int64)
        held[:port.n_u] = u
        held[port.out_words * self.cfg.cols:] = p
        return np.concatenate([u, p]), held

    def _port(self, cnt: Counters, layer: int, copies: list, toggles: bool) -> None:
        """A physical block's PORT: each live copy (``copies``: (the bank its input is read
        from, what that bank holds, the copy's bank, P's answer), in the engine's order)
        reads its input's words from the input set and writes P's answer back (an
        unstalled P answering a word per cycle)."""
        cfg, st, port = self.cfg, self.state, self.sched.ports[layer]
        C, A, src = cfg.cols, cfg.abits, port.src
        for rb, held, cp, p in copies:
            cnt.port_copies += 1
            cnt.port_values += port.n_u + port.n_p
            cnt.act_reads += port.out_words
            cnt.act_writes += port.in_words
            if not toggles:
                continue
            lanes = np.zeros(port.out_words * C, dtype=np.int64)
            lanes[:min(len(held), len(lanes))] = held[:len(lanes)]
            words = lanes.reshape(-1, C)
            cnt.toggles["act_read"] += hamming(words[0], st.bank[src, rb], A) + hamming(words[1:], words[:-1], A)
            st.bank[src, rb] = words[-1]
            ans = np.zeros(port.in_words * C, dtype=np.int64)
            ans[:port.n_p] = p
            aw = ans.reshape(-1, C)
            if cfg.fpga_regs:
                cnt.toggles["act_write"] += self._written(aw, src, cp)
            else:                       # the port's write data: 0 -> the words back to back -> 0
                cnt.toggles["act_write"] += popcount(aw[0], A) + hamming(aw[1:], aw[:-1], A) + popcount(aw[-1], A)

    def mp_batch(self, xs: np.ndarray, acts: list[np.ndarray], exit_layers, toggles: bool = True,
                 maps: list | None = None, responses: list | None = None) -> Counters:
        """One MP inference of a batch: ``xs`` (b, D) input codes, ``acts[l]`` (b, classes,
        n_l) golden activations, per-sample exit layers; ``maps`` the non-zero maps of zero
        skipping (``perf.cycles.nonzero_maps``) where the activations are not given. Copy
        ``s * classes + c`` (sample s, label c) is bank ``s*classes + c`` and row
        ``(s*classes + c) % rows`` of copy group ``(s*classes + c) // rows``; the shared
        layer 1 streams sample s's image through row s. Physical layers: ``responses[l]``
        (b, classes, n_p), P's answers (``GoldenResult.responses``)."""
        cfg, sched = self.cfg, self.sched
        R, NC = cfg.rows, cfg.classes
        exits = np.asarray(exit_layers)
        b = len(xs)
        deepest = int(exits.max())
        cnt = Counters()
        maps = self._maps(xs, acts, exits, maps, toggles)
        kept = lengths_of(cfg, maps) if cfg.zero_skip else None
        cnt.cycles = sched.inference_cycles(deepest, b, kept, exits)["total"]
        cnt.macs = int(sum(sum(self._macs[:e]) for e in exits))
        copies0 = embed_all(xs, cfg)                                     # (b, NC, D)
        if toggles:
            cnt.toggles["act_write"] += sum(self._load_toggles(x, s) for s, x in enumerate(xs))
        for layer in range(deepest):
            before, cbefore = dict(cnt.toggles), cnt.snapshot()
            live = live_samples(exits, layer)
            p = sched.layer_passes[layer]
            # zero skipping: each streamed group's stream from its own samples' map
            group_maps = maps[layer][0] if cfg.zero_skip else None

            def entries(i):
                return pass_entries(cfg, layer, False, group_maps[i] if group_maps is not None else None)
            port = sched.ports[layer]

            # without toggles only the shapes matter: the operands need not be known
            def block_in(s, c):
                if layer == 0 or not toggles:
                    return copies0[s, c]
                return acts[layer - 1][s, c]

            def answer(s, c):
                if responses is None or not toggles:
                    return np.zeros(port.n_p, dtype=np.int64)
                return np.asarray(responses[layer][s, c], dtype=np.int64)

            def operand(s, c):
                return block_in(s, c) if port is None else self._block(layer, block_in(s, c), answer(s, c))[0]

            def held(cp):             # what copy cp's bank holds in the input set, by position
                s, c = sched.sample_of(cp), sched.label_of(cp)
                return self._block(layer, block_in(s, c), answer(s, c))[1]
            if port is not None:
                # each live copy through P, the lowest first (layer 1: read from the sample's bank)
                self._port(cnt, layer, [((s if layer == 0 else cp), (xs[s] if layer == 0 else block_in(s, c)), cp,
                                         answer(s, c))
                                        for cp in range(sched.banks)
                                        for s, c in [(sched.sample_of(cp), sched.label_of(cp))] if s in live],
                           toggles)
            if p.shared:
                # sample s's image through row s; the label words follow each tile; the
                # drain reads every copy of the batch, shifting after each sample's last
                self._pass(self._wt[0], xs[live], live, [(s, xs[s]) for s in live], entries=entries(0),
                           label_words=p.label_words, set_=p.src, plan=p, drained=p.groups[0], toggles=toggles,
                           cnt=cnt, shifts=sched.batch_size - 1)
                streamed = p.groups[0]
            else:
                groups = sched.live_groups(layer, live)
                streamed = 0
                for i, g in enumerate(groups):
                    n = p.groups[g]
                    cps = [g * R + r for r in range(n)]
                    rows = [r for r, cp in zip(range(n), cps) if sched.sample_of(cp) in live]
                    Xg = np.array([operand(sched.sample_of(cp), sched.label_of(cp)) for cp in (g * R + r for r in rows)]).reshape(
                        len(rows), -1)
                    live_cps = [g * R + r for r in rows]
                    if layer == 0 and (port is None or port.concat):
                        # the images of the group's live samples (up to P's answer)
                        end = p.image_end if port is None else port.out_words * cfg.cols
                        banks = [(s, xs[s], 0, end) for s in sched.group_samples(g) if s in live]
                        if port is not None:     # P's answers, in the copies' own banks
                            banks += [(cp, held(cp), end, end + port.n_p) for cp in live_cps]
                    elif port is not None:
                        banks = [(cp, held(cp)) for cp in live_cps]
                    else:
                        banks = [(g * R + r, Xg[i_]) for i_, r in enumerate(rows)]
                    # (the next group follows back to back, unless its first tile waits)
                    self._pass(self._wt[layer], Xg, rows, banks, entries=entries(i), label_words=0,
                               set_=p.src, plan=p, drained=n, toggles=toggles, cnt=cnt,
                               follows=i < len(groups) - 1 and not (sched.group_wait and n > 1))
                    streamed += n
            cnt.drained_rows += streamed * self.mm.tiles[layer]
            cnt.layer_rows += streamed * self.mm.tiles[layer]
            cnt.act_writes += NC * len(live) * self.mm.tiles[layer]
            if toggles:
                banks = [sched.copy_of(s, c) for s in live for c in range(NC)]
                h = np.concatenate([acts[layer][s] for s in live])
                cnt.toggles["act_write"] += self._drain_toggles(banks, h, layer)
            cnt._close_layer(before, cbefore)
        return cnt

    def op_batch(self, xs: np.ndarray, acts: list[np.ndarray], exit_layers: np.ndarray,
                 toggles: bool = True, maps: list | None = None, responses: list | None = None) -> Counters:
        """One OP batch: ``xs`` (b, D), ``acts[l]`` (b, n_l), per-sample exit layers;
        ``maps`` as for :meth:`mp_batch`; ``responses[l]`` (b, 1, n_p) P's answers."""
        cfg, sched = self.cfg, self.sched
        C, A = cfg.cols, cfg.abits
        b = len(xs)
        deepest = int(exit_layers.max())
        cnt = Counters()
        maps = self._maps(xs, acts, exit_layers, maps, toggles)
        cnt.cycles = sched.inference_cycles(deepest, b, lengths_of(cfg, maps) if cfg.zero_skip else None,
                                            exit_layers)["total"]
        cnt.macs = int(sum(sum(self._macs[:e]) for e in exit_layers))
        x0 = embed_neutral(xs, cfg)
        if toggles:
            cnt.toggles["act_write"] += sum(self._load_toggles(xr, r) for r, xr in enumerate(xs))
        for layer in range(deepest):
            before, cbefore = dict(cnt.toggles), cnt.snapshot()
            live = live_samples(exit_layers, layer)
            X = x0 if layer == 0 or not toggles else acts[layer - 1]
            held = xs if layer == 0 or not toggles else acts[layer - 1]
            hacts = acts[layer] if toggles else np.zeros((b, cfg.layers[layer]), dtype=np.int64)
            p, h = sched.layer_passes[layer], sched.head_passes[layer]
            port = sched.ports[layer]
            if port is not None:
                ans = np.zeros((b, port.n_p), dtype=np.int64) if responses is None or not toggles \
                    else np.asarray(responses[layer], dtype=np.int64)[:, 0, :]
                self._port(cnt, layer, [(r, held[r], r, ans[r]) for r in live], toggles)
                # (the banks hold the raw image at layer 1: its neutral pixels are made on the way)
                X = np.array([self._block(layer, X[r], ans[r])[0] for r in range(b)])
                held = [self._block(layer, held[r], ans[r])[1] for r in range(b)]
            self._pass(self._wt[layer], X[live], live, [(r, held[r]) for r in live],
                       entries=self._entries(layer, False, maps), label_words=0, set_=p.src, plan=p, drained=b,
                       toggles=toggles, cnt=cnt)
            self._pass(self._ht[layer], hacts[live], live, [(r, hacts[r]) for r in live],
                       entries=self._entries(layer, True, maps), label_words=0, set_=h.src, plan=h, drained=b,
                       toggles=toggles, cnt=cnt, generated=h.generated, biased=h.biased)
            drained = b * (self.mm.tiles[layer] + self.mm.head_tiles)
            cnt.drained_rows += drained
            cnt.layer_rows += b * self.mm.tiles[layer]
            cnt.act_writes += len(live) * self.mm.tiles[layer]
            if toggles:
                cnt.toggles["act_write"] += self._drain_toggles(live, acts[layer][live], layer)
            cnt._close_layer(before, cbefore)
        return cnt


def dense_model(qm: QuantModel) -> PerfModel:
    """The activity model of ``qm``'s engine streaming every input (zero skipping off):
    the reference zero skipping's savings are measured against."""
    return PerfModel(QuantModel(qm.cfg.replace(zero_skip=False), qm.weights, qm.biases, qm.heads, qm.head_biases))
