"""The controller: loads samples, sequences layers, copy groups, tiles and OP heads as the
schedule lists them, decides exits and returns results."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule, word_span
from .accum import load_layout, norm_layout
from .actbanks import write_layout
from .interfaces import _idx, const_mul, drained_rows, issue_layout, pass_field, pixel_layout, result_layout


class ResultBuffer(wiring.Component):
    """One result (label, exit layer, scores) per sample of a batch (the schedule's batch
    size: MP ``batch``, OP ``rows``), written at the sample's exit decision, read while the
    results stream out."""

    def __init__(self, sched: Schedule):
        self.sched = sched
        cfg = sched.cfg
        sc = signed(cfg.score_bits)
        super().__init__({
            "we": In(1), "wrow": In(_idx(sched.batch_size)), "label": In(range(cfg.classes)),
            "exit_layer": In(range(cfg.n_layers + 1)), "scores": In(sc).array(cfg.classes),
            "rrow": In(_idx(sched.batch_size)), "r_label": Out(range(cfg.classes)),
            "r_exit_layer": Out(range(cfg.n_layers + 1)), "r_scores": Out(sc).array(cfg.classes),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.sched.cfg
        R, NC = self.sched.batch_size, cfg.classes
        lab = Array(Signal(range(NC), name=f"olab{r}") for r in range(R))
        ex = Array(Signal(range(cfg.n_layers + 1), name=f"oexit{r}") for r in range(R))
        sc = Array(Array(Signal(signed(cfg.score_bits), name=f"osc{r}_{c}") for c in range(NC)) for r in range(R))
        with m.If(self.we):
            m.d.sync += [lab[self.wrow].eq(self.label), ex[self.wrow].eq(self.exit_layer)]
            m.d.sync += [sc[self.wrow][c].eq(self.scores[c]) for c in range(NC)]
        m.d.comb += [self.r_label.eq(lab[self.rrow]), self.r_exit_layer.eq(ex[self.rrow])]
        m.d.comb += [self.r_scores[c].eq(sc[self.rrow][c]) for c in range(NC)]
        return m


class Controller(wiring.Component):
    """The state machine LOAD -> SETTLE -> START -> NORM -> (STREAM -> FLUSH [-> NORM_OP -> STREAM
    (head) -> FLUSH] [-> COS] -> EXIT [-> EXIT_OP2] -> NORM or STREAM ...) -> RESULT -> LOAD
    (COS: the cosine engine, whose EXIT goes to STREAM; a physical block's PORT comes before
    its layer's NORM, after START, EXIT or EXIT_OP2).

    Per-pass constants (streamed inputs, tiles, label words, bank set, sharing) are read
    from the schedule's passes; the tile period is ``label_words + max(k, drained rows)``
    (:meth:`ffaccel.schedule.PassPlan.period`). ``cycles`` counts from START to the final
    exit decision (the cycle model's figure). Subclasses may override :meth:`accept`,
    :meth:`result_row`, :meth:`streamed_samples` and :meth:`map_samples` (mutation tests only).
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"Controller: sched={sched!r} must be a Schedule")
        self.sched = sched
        cfg = sched.cfg
        members = {
            "pixels": In(stream.Signature(pixel_layout(sched))),
            "result": Out(stream.Signature(result_layout(sched))),
            "issue": Out(issue_layout(sched)),
            "nrows": Out(range(sched.batch_size + 1)), "exited": Out(sched.batch_size),
            "load_bank": Out(write_layout(sched)), "load": Out(load_layout(sched)),
            "start": Out(1), "norm": Out(norm_layout(sched)),
            "layer": Out(_idx(cfg.n_layers)), "last_layer": Out(1),
            "score_row": Out(_idx(sched.tags)), "scores": In(signed(cfg.score_bits)).array(cfg.classes),
            "cmp_valid": Out(1), "cmp_tag": Out(range(sched.tags)),
            "cmp_o_valid": In(1), "cmp_o_tag": In(range(sched.tags)),
            "cmp_fire": In(1), "cmp_label": In(range(cfg.classes)), "exit_enable": In(1),
            "score_mask": In(cfg.n_layers),
            "pipe_busy": In(1), "macs": In(48), "busy": Out(1),
        }
        if any(sched.ports):    # the external-layer port: a copy at a time
            members.update({"port_start": Out(1), "port_cp": Out(range(sched.banks)), "port_done": In(1)})
        if cfg.zero_skip:       # the non-zero map: read the words to stream, clear the sets
            members.update({"nz_mask": In(cfg.cols), "nz_rset": Out(1), "nz_raddr": Out(_idx(sched.bank_depth)),
                            "nz_rsel": Out(sched.batch_size if cfg.mode == "mp" else 1), "nz_clear": Out(2)})
        super().__init__(members)

    def accept(self, valid):
        """Whether LOAD takes the pixel on offer (a correct engine: exactly when valid)."""
        return valid

    def result_row(self, idx):
        """The tag of the result read from result-buffer row ``idx`` (a correct engine: ``idx``)."""
        return idx

    def streamed_samples(self):
        """The samples whose copy groups a pass streams (a correct engine: those still in
        the batch, :meth:`_live`)."""
        return self._live()

    def elaborate(self, platform):
        m = Module()
        s, cfg = self.sched, self.sched.cfg
        st = self._state = _State(s)
        # the issue command is formed here each cycle and registered on its way out
        # (Latencies.command): the pass tables and counter compares stay out of the issue
        # stage's address and read-enable logic
        self._cmd = Signal(issue_layout(s))
        m.d.sync += self.issue.eq(self._cmd)
        m.submodules.results = self._rb = ResultBuffer(s)
        m.d.comb += [self.busy.eq(st.counting), self.nrows.eq(st.nrows), self.exited.eq(st.exited),
                     self.layer.eq(st.layer),
                     # the decision layer: the last one, or the last scored one
                     self.last_layer.eq((st.layer == cfg.n_layers - 1) | ((self.score_mask >> (st.layer + 1)) == 0)),
                     self.score_row.eq(st.ecnt), self.cmp_tag.eq(st.ecnt), self.norm.idx.eq(st.nb_i)]
        with m.If(st.counting):
            m.d.sync += st.cycles.eq(st.cycles + 1)
        self._issue(m)
        with m.FSM(name="ctrl"):
            with m.State("LOAD"):
                self._load(m)
            with m.State("SETTLE"):
                # the accumulators add the last pixels' squares Latencies.load cycles late
                m.d.sync += st.settle.eq(st.settle + 1)
                with m.If(st.settle == s.latency.load - 1):
                    m.d.sync += st.settle.eq(0)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.start.eq(1)
                m.d.sync += [st.counting.eq(1), st.cycles.eq(1), st.layer.eq(0), st.head.eq(0),
                             st.nb_i.eq(0), st.exited.eq(0)]
                m.next = "PORT" if s.ports[0] is not None else "NORM"
            with m.State("NORM"):
                self._norm(m, head=0)
            with m.State("STREAM"):
                m.d.sync += st.pstart.eq(0)
                self._stream_skip(m) if cfg.zero_skip else self._stream(m)
            with m.State("FLUSH"):
                # (the registered command of STREAM's last cycle is still on its way out)
                with m.If(~self.pipe_busy & ~self.issue.valid & ~self.issue.lab):
                    if cfg.cos_engine:
                        m.next = "COS"
                    elif cfg.mode == "mp":
                        m.next = "EXIT"
                    else:
                        with m.If(st.head):
                            m.next = "EXIT"
                        with m.Else():
                            m.next = "NORM_OP"
            if cfg.mode == "op":
                with m.State("NORM_OP"):
                    self._norm(m, head=1)
            if cfg.cos_engine:
                with m.State("COS"):
                    self._cos(m)
            if any(s.ports):
                with m.State("PORT"):
                    self._port(m)
            with m.State("EXIT"):
                self._exit_mp(m) if cfg.mode == "mp" else self._exit_op(m)
            if cfg.mode == "op":
                with m.State("EXIT_OP2"):
                    self._exit_op2(m)
            with m.State("RESULT"):
                self._result(m)
        return m

    # ------------------------------------------------------------------ datapath commands
    def _issue(self, m: Module) -> None:
        """The current pass's geometry and the issue command of this cycle."""
        s, cfg, st, iss = self.sched, self.sched.cfg, self._state, self._cmd
        field = lambda name, shape: pass_field(s, name, shape, st.layer, st.head)   # noqa: E731
        st.K = field("k", range(s.max_stream + 1))
        st.ntiles = field("tiles", range(s.max_tiles + 1))
        st.label_words = field("label_words", range(cfg.classes + 1))
        st.shared = field("shared", 1)
        drows = st.drows = drained_rows(s, m, st.shared, st.grp, st.nrows)
        # the tile period of PassPlan.period: label words + max(streamed inputs, drained rows)
        st.period = Signal.like(st.tcnt)
        m.d.comb += st.period.eq(st.label_words + Mux(st.K > drows, st.K, drows))
        m.d.comb += [iss.k.eq(st.k + Mux(st.labph, 0, field("k_first", range(cfg.classes + 1)))),
                     iss.tag.grp.eq(st.grp), iss.tag.src.eq(field("src", 1)), iss.tag.tile.eq(st.tile),
                     iss.tag.layer.eq(st.layer), iss.tag.head.eq(st.head), iss.tag.shared.eq(st.shared)]

    def _stream(self, m: Module) -> None:
        """One tile: K streamed inputs (+ label words when shared), padded to the period."""
        s, st, iss = self.sched, self._state, self._cmd
        m.d.sync += st.tcnt.eq(st.tcnt + 1)
        with m.If(~st.labph & (st.tcnt < st.K)):
            m.d.comb += [iss.valid.eq(1), iss.first.eq(st.k == 0), iss.last.eq(st.k == st.K - 1)]
            m.d.sync += st.k.eq(st.k + 1)
            with m.If((st.k == st.K - 1) & st.shared):
                m.d.sync += [st.labph.eq(1), st.k.eq(0)]
        with m.If(st.labph & (st.k < st.label_words)):
            m.d.comb += [iss.lab.eq(1), iss.lab_last.eq(st.k == st.label_words - 1)]
            m.d.sync += st.k.eq(st.k + 1)
        with m.If(st.tcnt == st.period - 1):
            m.d.sync += [st.tcnt.eq(0), st.k.eq(0), st.labph.eq(0)]
            self._next_tile(m)

    def _stream_skip(self, m: Module) -> None:
        """One tile under zero skipping (docs/architecture.md, "Zero skipping"): the pass's
        inputs word by word (``st.k`` counts words from the pass's first); a word streams
        one entry per input set in the non-zero map, lowest first, or one empty entry when
        none is; then the label words (MP sharing); the tile ends when both are done and
        ``label_words + drained rows`` cycles have passed (``PassPlan.period`` of the
        stream length). A pass that does not skip (``PassPlan.skips``) streams every input."""
        s, cfg, st, iss = self.sched, self.sched.cfg, self._state, self._cmd
        C = cfg.cols
        field = lambda f, shape: pass_field(s, f, shape, st.layer, st.head)   # noqa: E731
        src, skips = field("src", 1), field("skips", 1)
        span = lambda i, shape: field(lambda p: word_span(p.k_first, p.k_first + p.k, C)[i], shape)  # noqa: E731
        w_lo, w_hi = span(0, range(s.bank_depth)), span(1, range(s.bank_depth))
        lo_lanes, hi_lanes = span(2, C), span(3, C)
        wp = Signal(range(s.bank_depth + 1))
        m.d.comb += [wp.eq(w_lo + st.k), self.nz_rset.eq(src), self.nz_raddr.eq(wp),
                     self.nz_rsel.eq(self.map_samples())]
        # a layer pass writes the other set: empty its map first (its writes come
        # Latencies.tile_go cycles later at the earliest)
        with m.If(~st.head & st.pstart):
            m.d.comb += self.nz_clear.eq(Mux(src, 0b01, 0b10))
        lanes = Signal(C)
        m.d.comb += lanes.eq(Mux(skips, self.nz_mask, (1 << C) - 1) & Mux(wp == w_lo, lo_lanes, (1 << C) - 1)
                             & Mux(wp == w_hi, hi_lanes, (1 << C) - 1) & ~st.used)
        low = Signal(C)                        # the lowest input left in this word
        m.d.comb += low.eq(lanes & -lanes)
        lane = self._lowest(m, low, "lane")
        word_done, finish = Signal(), Signal()
        m.d.comb += word_done.eq((lanes & ~low) == 0)
        args = (src, skips, wp, w_lo, w_hi, lanes, low, lane, word_done, finish)
        if s.group_wait:                # a copy group's first tile waits (Schedule.group_wait)
            with m.If(st.gwait != 0):
                m.d.sync += st.gwait.eq(st.gwait - 1)
            with m.Else():
                self._stream_skip_cycle(m, *args)
        else:
            self._stream_skip_cycle(m, *args)

    def _stream_skip_cycle(self, m: Module, src, skips, wp, w_lo, w_hi, lanes, low, lane, word_done, finish):
        """One streaming cycle of :meth:`_stream_skip`."""
        s, cfg, st, iss = self.sched, self.sched.cfg, self._state, self._cmd
        C = cfg.cols
        m.d.sync += st.tcnt.eq(st.tcnt + 1)
        with m.If(~st.labph & ~st.sdone):
            m.d.comb += [iss.valid.eq(1), iss.first.eq(st.tcnt == 0), iss.last.eq(word_done & (wp == w_hi)),
                         iss.zero.eq(lanes == 0), iss.fresh.eq((lanes != 0) & (st.used == 0)),
                         iss.k.eq(const_mul(wp, C) + lane)]
            with m.If(word_done):
                m.d.sync += [st.k.eq(st.k + 1), st.used.eq(0)]
                with m.If(wp == w_hi):
                    m.d.sync += st.sdone.eq(1)
                    with m.If(st.shared):
                        m.d.sync += [st.labph.eq(1), st.k.eq(0)]
                    with m.Else():
                        m.d.comb += finish.eq(1)
            with m.Else():
                m.d.sync += st.used.eq(st.used | low)
        with m.If(st.labph & (st.k < st.label_words)):
            m.d.comb += [iss.lab.eq(1), iss.lab_last.eq(st.k == st.label_words - 1), iss.k.eq(st.k)]
            m.d.sync += st.k.eq(st.k + 1)
            with m.If(st.k == st.label_words - 1):
                m.d.comb += finish.eq(1)
        over = (st.sdone & ~st.labph) | (st.labph & (st.k >= st.label_words)) | finish
        with m.If(over & (st.tcnt >= st.label_words + st.drows - 1)):
            m.d.sync += [st.tcnt.eq(0), st.k.eq(0), st.labph.eq(0), st.sdone.eq(0), st.used.eq(0)]
            self._next_tile(m)

    def _next_tile(self, m: Module) -> None:
        """The tile's last cycle: the next tile, the next copy group holding a copy of a
        live sample (``Schedule.live_groups``), or FLUSH."""
        s, st = self.sched, self._state
        with m.If(st.tile == st.ntiles - 1):
            m.d.sync += st.tile.eq(0)
            if s.copy_groups > 1:
                glive = self._live_groups()
                # (group 0 is never after the current one)
                later = Cat(0, *[glive[g] & (st.grp < g) for g in range(1, s.copy_groups)])
                with m.If(st.shared | (later == 0)):
                    m.next = "FLUSH"
                with m.Else():
                    m.d.sync += st.grp.eq(self._lowest(m, later, "next_grp"))
                    if s.group_wait:    # the next group's first tile waits (Schedule.group_wait)
                        m.d.sync += st.gwait.eq(st.drows - 1)
            else:
                m.next = "FLUSH"
        with m.Else():
            m.d.sync += st.tile.eq(st.tile + 1)

    def _live(self):
        """The samples of the batch still in it: loaded and not exited."""
        st = self._state
        return Cat(*[(b < st.nrows) & ~st.exited[b] for b in range(self.sched.batch_size)])

    def _live_groups(self):
        """MP: a bit per copy group, set when the group holds a copy of a live sample."""
        s, live = self.sched, self.streamed_samples()
        return Cat(*[Cat(*[live[b] for b in s.group_samples(g)]).any() for g in range(s.copy_groups)])

    def map_samples(self):
        """Zero skipping: the samples whose non-zero maps the current pass streams (MP:
        the live samples of the copy group, all of them in the shared layer 1; OP: its
        one map). Mutation tests override it."""
        s, st = self.sched, self._state
        if s.cfg.mode != "mp":
            return 1
        live = self._live()
        if s.copy_groups == 1:
            return live
        in_group = Array(Const(sum(1 << b for b in s.group_samples(g)), s.batch_size)
                         for g in range(s.copy_groups))[st.grp]
        return live & Mux(st.shared, (1 << s.batch_size) - 1, in_group)

    def _lowest(self, m: Module, bits, name: str):
        """The index of the lowest set bit of ``bits`` (0 when none is)."""
        idx = Signal(range(max(len(bits), 2)), name=name)
        for i in reversed(range(len(bits))):
            with m.If(bits[i]):
                m.d.comb += idx.eq(i)
        return idx

    def _norm(self, m: Module, head: int) -> None:
        """rsqrt of the pass input's goodness, one copy per cycle (the accumulators clear it)."""
        st = self._state
        m.d.comb += self.norm.en.eq(1)
        m.d.sync += st.nb_i.eq(st.nb_i + 1)
        with m.If(st.nb_i == self.sched.banks - 1):
            self._begin_pass(m, head, st.shared)
            m.next = "STREAM"

    def _begin_pass(self, m: Module, head: int, shared) -> None:
        """The pass's counters at their start; MP: its first copy group, the first holding a
        copy of a live sample (the shared layer's one group holds them all)."""
        st = self._state
        m.d.sync += [st.nb_i.eq(0), st.tile.eq(0), st.k.eq(0), st.tcnt.eq(0), st.head.eq(head), st.pstart.eq(1)]
        if not head:
            first = self._lowest(m, self._live_groups(), "first_grp") if self.sched.copy_groups > 1 else 0
            m.d.sync += [st.grp.eq(Mux(shared, 0, first)), st.labph.eq(0)]

    def _next_layer(self, m: Module, digital) -> None:
        """On to the next layer: its PORT when a physical block is in front of it (then
        the NORM of P's answer), else ``digital()`` says where."""
        s, st = self.sched, self._state
        if not any(s.ports):
            digital()
            return
        phys = Array(Const(int(l + 1 < len(s.ports) and s.ports[l + 1] is not None), 1)
                     for l in range(len(s.ports)))[st.layer]
        with m.If(phys):
            m.next = "PORT"
        with m.Else():
            digital()

    def _port(self, m: Module) -> None:
        """The physical block's PORT (``Schedule.port_cycles``): each live copy through the
        external-layer port in turn, the lowest first (a start, then the port's done);
        NORM when none is left."""
        s, st = self.sched, self._state
        live = self._live()
        if s.cfg.mode == "mp":
            copies = Cat(*[live[s.sample_of(c)] for c in range(s.banks)])
        else:
            copies = live
        left = Signal(s.banks)
        m.d.comb += left.eq(copies & ~st.pdone)
        with m.If(~st.pwait):
            with m.If(left != 0):
                cp = self._lowest(m, left, "port_next")
                m.d.comb += [self.port_start.eq(1), self.port_cp.eq(cp)]
                m.d.sync += [st.pdone.eq(st.pdone | (1 << cp)), st.pwait.eq(1)]
            with m.Else():
                m.d.sync += [st.pdone.eq(0), st.nb_i.eq(0)]
                m.next = "NORM"
        with m.Elif(self.port_done):
            m.d.sync += st.pwait.eq(0)

    def _cos(self, m: Module) -> None:
        """The cosine engine's COS phase (``Schedule.cos_cycles``): a NORM step per copy
        that also scores the layer's cosine goodness (``Accumulators``), then the wait for
        the last score; EXIT follows."""
        st, s = self._state, self.sched
        m.d.comb += [self.norm.en.eq(st.nb_i < s.banks), self.norm.cos.eq(1), self.norm.layer.eq(st.layer)]
        m.d.sync += st.nb_i.eq(st.nb_i + 1)
        with m.If(st.nb_i == s.cos_cycles - 1):
            m.d.sync += st.nb_i.eq(0)
            m.next = "EXIT"

    # ------------------------------------------------------------------ load / exit / result
    def _load(self, m: Module) -> None:
        """Each sample of a batch into its bank of set 0 (MP and OP: bank = its row in the
        batch); the batch ends on a beat with ``last`` or when it holds ``batch_size``
        samples."""
        s, cfg, st = self.sched, self.sched.cfg, self._state
        C, px = cfg.cols, self.pixels.payload
        m.d.comb += self.pixels.ready.eq(1)
        with m.If(self.accept(self.pixels.valid)):
            lb, ld = self.load_bank, self.load
            m.d.comb += [lb.lanes.eq(1 << (st.pix % C)), lb.set.eq(0), lb.bank.eq(st.lrow),
                         lb.addr.eq(st.pix // C), lb.data.eq(Cat(*([px.data] * C))),
                         ld.valid.eq(1), ld.pixel.eq(px.data), ld.label_px.eq(st.pix < cfg.classes),
                         ld.last.eq(st.pix == cfg.inputs - 1), ld.row.eq(st.lrow)]
            m.d.sync += st.pix.eq(st.pix + 1)
            with m.If(st.pix == cfg.inputs - 1):
                m.d.sync += [st.pix.eq(0), st.lrow.eq(st.lrow + 1)]
                with m.If(px.last | (st.lrow == s.batch_size - 1)):
                    m.d.sync += [st.nrows.eq(st.lrow + 1), st.lrow.eq(0)]
                    m.next = "SETTLE"

    def _fire(self):
        """With exits disabled, or after a layer the score skips, only the decision layer decides."""
        scored = self.score_mask.bit_select(self._state.layer, 1)
        return Mux(self.exit_enable & scored, self.cmp_fire, self.last_layer)

    def _record(self, m: Module, row) -> None:
        rb = self._rb
        m.d.comb += [rb.we.eq(1), rb.wrow.eq(row), rb.label.eq(self.cmp_label),
                     rb.exit_layer.eq(self._state.layer + 1)]
        m.d.comb += [rb.scores[c].eq(self.scores[c]) for c in range(self.sched.cfg.classes)]

    def _exit_mp(self, m: Module) -> None:
        """One sample's score vector enters the comparator per cycle, ``batch_size`` of
        them; as each decision comes out, a live sample whose rule fires leaves the batch
        (its result recorded). With the last decision (``batch_size + exit_latency`` cycles):
        RESULT when no sample is left or the layer was the decision layer, else the next
        layer."""
        st, B, E = self._state, self.sched.batch_size, self.sched.exit_latency
        m.d.comb += self.cmp_valid.eq(st.ecnt < B)
        m.d.sync += st.ecnt.eq(st.ecnt + 1)
        row, live = self.cmp_o_tag, self._live()
        leaves = Signal(B)
        with m.If(self.cmp_o_valid & live.bit_select(row, 1) & self._fire()):
            self._record(m, row)
            m.d.comb += leaves.eq(1 << row)
            m.d.sync += st.exited.eq(st.exited | (1 << row))
        with m.If(st.ecnt == B + E - 1):
            m.d.sync += [st.ecnt.eq(0), st.nb_i.eq(0)]
            with m.If(((live & ~leaves) == 0) | self.last_layer):
                m.d.sync += st.counting.eq(0)
                m.next = "RESULT"
            with m.Else():
                m.d.sync += st.layer.eq(st.layer + 1)

                def digital():
                    if self.sched.cfg.cos_engine:
                        # COS has normalised the next layer's input: its pass starts now (a
                        # later layer is never shared). The first group is that of the lowest
                        # live sample: the one leaving in this cycle is the batch's last, whose
                        # group is never below that of a sample staying
                        self._begin_pass(m, 0, 0)
                        m.next = "STREAM"
                    else:
                        m.next = "NORM"
                self._next_layer(m, digital)

    def _exit_op(self, m: Module) -> None:
        """One row enters the comparator per cycle; as each row's decision comes out, a live
        row whose rule fires leaves the batch."""
        st, R, L = self._state, self.sched.cfg.rows, self.sched.exit_latency
        m.d.comb += self.cmp_valid.eq(st.ecnt < R)
        row = self.cmp_o_tag
        live = (row < st.nrows) & ~Array(st.exited[r] for r in range(R))[row]
        with m.If(self.cmp_o_valid & live & self._fire()):
            self._record(m, row)
            m.d.sync += st.exited.bit_select(row, 1).eq(1)
        m.d.sync += st.ecnt.eq(st.ecnt + 1)
        with m.If(st.ecnt == R + L - 1):
            m.d.sync += [st.ecnt.eq(0), st.head.eq(0), st.nb_i.eq(0)]
            m.next = "EXIT_OP2"

    def _exit_op2(self, m: Module) -> None:
        """All rows of the batch decided (the last layer always decides)?"""
        st, cfg = self._state, self.sched.cfg
        live = Cat(*[(r < st.nrows) & ~st.exited[r] for r in range(cfg.rows)])
        with m.If((live == 0) | self.last_layer):
            m.d.sync += [st.counting.eq(0), st.nb_i.eq(0)]
            m.next = "RESULT"
        with m.Else():
            m.d.sync += [st.layer.eq(st.layer + 1), st.tile.eq(0), st.k.eq(0), st.tcnt.eq(0), st.grp.eq(0),
                         st.labph.eq(0), st.pstart.eq(1)]
            def digital():
                m.next = "STREAM"
            self._next_layer(m, digital)

    def _result(self, m: Module) -> None:
        st, rb, res = self._state, self._rb, self.result
        m.d.comb += [rb.rrow.eq(st.nb_i), res.valid.eq(1), res.payload.label.eq(rb.r_label),
                     res.payload.exit_layer.eq(rb.r_exit_layer), res.payload.row.eq(self.result_row(st.nb_i)),
                     res.payload.cycles.eq(st.cycles), res.payload.macs.eq(self.macs)]
        m.d.comb += [res.payload.scores[c].eq(rb.r_scores[c]) for c in range(self.sched.cfg.classes)]
        with m.If(res.ready):
            m.d.sync += st.nb_i.eq(st.nb_i + 1)
            with m.If(st.nb_i == st.nrows - 1):
                m.d.sync += [st.nb_i.eq(0), st.layer.eq(0)]
                if self.sched.cfg.zero_skip:      # the next load writes set 0: empty its map
                    m.d.comb += self.nz_clear.eq(0b01)
                m.next = "LOAD"


class _State:
    """The controller's registers (loop counters of the schedule, batch bookkeeping)."""

    def __init__(self, s: Schedule):
        cfg = s.cfg
        R = cfg.rows
        self.layer = Signal(_idx(cfg.n_layers))
        self.head = Signal()                       # OP: streaming / draining a head
        self.grp = Signal(_idx(s.copy_groups))
        self.tile = Signal(_idx(s.max_tiles))
        self.k = Signal(range(s.max_stream + 1))
        self.tcnt = Signal(range(s.max_period + 1))
        self.labph = Signal()                      # MP sharing: label-weight phase of a tile
        B = s.batch_size
        self.nrows = Signal(range(B + 1))          # samples in the batch
        self.exited = Signal(B)
        # NORM / COS / RESULT index
        self.nb_i = Signal(range(max(s.banks, R, s.cos_cycles if cfg.cos_engine else 0) + 1))
        self.ecnt = Signal(range(s.tags + s.exit_latency + 1))   # EXIT: rows into the comparator
        self.pix = Signal(range(cfg.inputs + 1))
        self.lrow = Signal(range(B + 1))
        self.pstart = Signal()                     # the first cycle of a layer pass is next
        if s.group_wait:
            self.gwait = Signal(range(max(R, 2)))  # cycles a copy group's first tile still waits
        self.settle = Signal(range(s.latency.load + 1))   # SETTLE: the last squares on their way
        if any(s.ports):
            self.pdone = Signal(s.banks)           # PORT: copies started
            self.pwait = Signal()                  # PORT: a copy in the port
        self.counting = Signal()
        self.cycles = Signal(32)
        if cfg.zero_skip:
            self.used = Signal(cfg.cols)           # inputs of the current word already streamed
            self.sdone = Signal()                  # the tile's stream entries are all issued
