"""Issue / operand-select stage: weight and activation reads (cycle t), the read data
registered (t+1), row operands of the MAC array selected (t+2) and registered at the
array edge."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .interfaces import REPLICA, MemRead, _idx, issue_layout, pass_field, tag_layout


def p1_layout(sched: Schedule) -> data.StructLayout:
    """The issue command one cycle later (when the data of its reads arrive)."""
    fields = {"valid": 1, "first": 1, "last": 1, "lab": 1, "lab_last": 1,
              "lane": _idx(sched.cfg.cols), "k": range(sched.max_stream + 1), "tag": tag_layout(sched)}
    if sched.cfg.zero_skip:
        fields["zero"] = 1                   # an empty entry (zero skipping): operand 0
    return data.StructLayout(fields)


class Issue(wiring.Component):
    """Cycle t (``cmd``): read the weight word ``wbase + tile * n_in + k`` of the current
    pass, and the activation word ``k // cols`` of the banks the pass needs (a new word
    only every ``cols`` inputs). Cycle t+1 (``p1``): the read data is registered (the block
    RAMs' output registers, ``Latencies.read_reg``). Cycle t+2: select the array's operands: weight
    lanes down the columns, each row's operand (the activation lane, or the generated
    label / neutral pixel of layer 1), row enables with operand isolation (a gated row
    sees 0); they reach the array through a register stage (``Latencies.operand``), so no
    memory output or operand multiplexer is in the multiplier's path. MP label sharing:
    the label-weight words of a tile are captured in ``wlab`` for the drain.
    Passes whose weights are generated (LLS heads) read no weight memory: their lanes come
    from ``gen_w``.
    Zero skipping: the controller's command marks empty entries (``zero``: no weight read,
    every row's operand 0) and the first entry of each word (``fresh``: read the
    activation word; the inputs of a word no longer all stream).
    ``macs`` counts the PE operations (enabled rows x cols per streamed input, empty
    entries not counted) since ``clear``.
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"Issue: sched={sched!r} must be a Schedule")
        if (sched.latency.read_reg, sched.latency.operand) != (1, 1):
            raise ValueError(f"Issue: the schedule asks for {sched.latency.read_reg} read-data and "
                             f"{sched.latency.operand} operand register stages (this unit has 1 and 1)")
        self.sched = sched
        cfg, mm = sched.cfg, sched.memory
        R, C, NB = cfg.rows, cfg.cols, sched.banks
        members = {
            "cmd": In(issue_layout(sched)),
            "nrows": In(range(sched.batch_size + 1)), "exited": In(sched.batch_size),
            "raddr": Out(_idx(sched.bank_depth)),
            "ren": Out(1).array(2, NB),
            "rdata": In(unsigned(cfg.act_word_bits)).array(2, NB),
            "wmem": Out(MemRead(mm.waddr_bits, mm.weight_word_bits)),
            "x": Out(unsigned(cfg.abits)).array(R), "w": Out(signed(cfg.wbits)).array(C),
            "row_en": Out(R), "valid": Out(1), "first": Out(1), "last": Out(1),
            "p1": Out(p1_layout(sched)),
            "clear": In(1), "macs": Out(48),
        }
        if sched.share:
            members["wlab"] = Out(signed(cfg.wbits)).array(cfg.classes, C)
        if cfg.exit_head != "learned":
            members["gen_w"] = In(signed(cfg.wbits)).array(C)      # LLS head weights, made on chip
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        s, cfg = self.sched, self.sched.cfg
        C, mm, cmd = cfg.cols, s.memory, self.cmd
        # ---- cycle t: reads
        wbase = pass_field(s, "wbase", unsigned(mm.waddr_bits), cmd.tag.layer, cmd.tag.head)
        n_in = pass_field(s, "n_in", range(s.max_stream + 1), cmd.tag.layer, cmd.tag.head)
        generated = pass_field(s, "generated", 1, cmd.tag.layer, cmd.tag.head)
        skip = cfg.zero_skip
        read_w = (cmd.valid | cmd.lab) & ~generated
        with m.If(read_w & ~cmd.zero if skip else read_w):
            m.d.comb += [self.wmem.en.eq(1), self.wmem.addr.eq(wbase + cmd.tag.tile * n_in + cmd.k)]
        new_word = Signal()
        # (zero skipping: the controller marks the first entry of each word it streams)
        # the input's bank position (behind a physical block: P's answer from act_base
        # without concat; with it, after u's last word: the gap, PassPlan.position)
        act_base = pass_field(s, "act_base", range(s.bank_depth + 1), cmd.tag.layer, cmd.tag.head)
        pos = Signal(range(s.max_position + 1))
        if any(p.gap for p in s.layer_passes):
            gap_at = pass_field(s, "gap_at", range(s.max_stream + 1), cmd.tag.layer, cmd.tag.head)
            gap = pass_field(s, "gap", range(C), cmd.tag.layer, cmd.tag.head)
            m.d.comb += pos.eq(cmd.k + Mux((gap != 0) & (cmd.k >= gap_at), gap, 0))
        else:
            m.d.comb += pos.eq(cmd.k)
        m.d.comb += [new_word.eq(cmd.valid & (cmd.fresh if skip else (pos % C == 0) | cmd.first)),
                     self.raddr.eq(pos // C + act_base)]
        self._in_image_cmd = self._in_image(m, cmd.k, cmd.tag, "in_image_cmd")
        for st in range(2):
            for b in range(s.banks):
                m.d.comb += self.ren[st][b].eq(new_word & (cmd.tag.src == st) & self._needed(b))
        p1 = self.p1
        m.d.sync += [p1.valid.eq(cmd.valid), p1.first.eq(cmd.first), p1.last.eq(cmd.last),
                     p1.lab.eq(cmd.lab), p1.lab_last.eq(cmd.lab_last), p1.lane.eq(pos % C),
                     p1.k.eq(cmd.k), p1.tag.eq(cmd.tag)]
        if skip:
            m.d.sync += p1.zero.eq(cmd.valid & cmd.zero)
        # ---- cycle t+1: the read data registered (the block RAMs' output registers)
        p2 = self._p = Signal.like(p1, name="p2")
        self._rd = [[Signal.like(self.rdata[st][b], name=f"rd{st}_{b}") for b in range(s.banks)] for st in range(2)]
        wd = Signal.like(self.wmem.data, name="wd")
        m.d.sync += [p2.eq(p1), wd.eq(self.wmem.data)]
        # each row's copy of the source-set and lane selects (``REPLICA``): one register
        # each would steer every row's operand multiplexer (1,115 loads on a 10x16 engine)
        # (live rows only: the others never get an operand, and kept copies would stay)
        self._src = [Signal(name=f"src{r}", attrs=REPLICA) for r in range(s.live_rows)]
        self._lanesel = [Signal.like(p1.lane, name=f"lane{r}", attrs=REPLICA) for r in range(s.live_rows)]
        m.d.sync += [self._src[r].eq(p1.tag.src) for r in range(s.live_rows)]
        m.d.sync += [self._lanesel[r].eq(p1.lane) for r in range(s.live_rows)]
        m.d.sync += [self._rd[st][b].eq(self.rdata[st][b]) for st in range(2) for b in range(s.banks)]
        if cfg.exit_head != "learned":
            gw = [Signal.like(self.gen_w[c], name=f"gw{c}") for c in range(C)]
            m.d.sync += [gw[c].eq(self.gen_w[c]) for c in range(C)]
        # ---- cycle t+2: the array's operands, registered at the array edge
        lanes = []
        for c in range(C):
            lane = wd[c * cfg.wbits:(c + 1) * cfg.wbits].as_signed()
            if cfg.exit_head != "learned":       # every OP head pass is generated
                lane = Mux(p2.tag.head, gw[c], lane)
            lanes.append(lane)
            m.d.sync += self.w[c].eq(lane)
        m.d.sync += [self.valid.eq(p2.valid), self.first.eq(p2.first), self.last.eq(p2.last)]
        enables = []
        self._in_image_p2 = self._in_image(m, p2.k, p2.tag, "in_image_p2")
        real = p2.valid & ~p2.zero if skip else p2.valid      # an empty entry has operand 0
        for r in range(s.live_rows):                # (rows beyond: x and row_en stay 0)
            x, en = self._operand(m, r)
            enables.append(en)
            # operand isolation: a gated row sees 0, so its multipliers do not toggle
            m.d.sync += [self.row_en[r].eq(en), self.x[r].eq(Mux(en & real, x, 0))]
        with m.If(self.clear):
            m.d.sync += self.macs.eq(0)
        with m.Elif(real):
            m.d.sync += self.macs.eq(self.macs + sum(enables) * C)
        if s.share:
            with m.If(p2.lab):
                for j in range(cfg.classes):
                    with m.If(p2.k == j):
                        m.d.sync += [self.wlab[j][c].eq(lanes[c]) for c in range(C)]
        return m

    def _live(self, b: int):
        """Whether sample b of the batch is in it (loaded, not exited)."""
        return (b < self.nrows) & ~self.exited[b]

    def _needed(self, b: int):
        """Whether bank b holds an operand of the current pass (read only those): OP the
        rows still in the batch; MP layer 1 the images of the samples in flight (bank =
        the sample), later layers the copies of the current group whose sample is live."""
        s, cfg, tag = self.sched, self.sched.cfg, self.cmd.tag
        if cfg.mode == "op":
            return self._live(b)
        in_image = self._in_image_cmd
        NC, R = cfg.classes, cfg.rows
        if b < s.batch_size:                    # a sample's image (layer 1)
            if s.share:
                image = self._live(b)
            else:                               # the samples of the group's copies
                image = Array(Const(b in s.group_samples(g), 1) for g in range(s.copy_groups))[tag.grp] \
                    & self._live(b) if s.copy_groups > 1 else self._live(b)
        else:
            image = 0
        group = (tag.grp == b // R) if s.copy_groups > 1 else 1
        return Mux(in_image, image, group & self._live(s.sample_of(b)))

    def _in_image(self, m: Module, k, tag, name: str):
        """Whether input ``k`` of the pass is the embedded sample (``PassPlan.image_end``:
        layer 1's inputs, up to a physical block's answer); one signal for every row and
        bank (without physical layers: layer 1's pass)."""
        s = self.sched
        sig = Signal(name=name)
        if any(s.ports):
            m.d.comb += sig.eq(k < pass_field(s, "image_end", range(s.max_stream + 1), tag.layer, tag.head))
        else:
            m.d.comb += sig.eq((tag.layer == 0) & ~tag.head)
        return sig

    def _lane(self, word, r: int):
        cfg = self.sched.cfg
        return Array(word[c * cfg.abits:(c + 1) * cfg.abits] for c in range(cfg.cols))[self._lanesel[r]]

    def _operand(self, m: Module, r: int):
        """(operand, enable) of array row r in cycle t+2, from the registered read data."""
        s, cfg, p1 = self.sched, self.sched.cfg, self._p
        rdata = self._rd
        R, NC, A = cfg.rows, cfg.classes, cfg.abits
        x = Signal(unsigned(A), name=f"x{r}")
        in_image = self._in_image_p2
        if cfg.mode == "op":
            word = Mux(self._src[r], rdata[1][r], rdata[0][r])
            m.d.comb += x.eq(Mux(in_image & (p1.k < NC), cfg.neutral_value, self._lane(word, r)))
            return x, (r < self.nrows) & ~self.exited[r]
        # MP: row r holds copy grp * rows + r (sample copy // classes, label copy % classes),
        # read from its bank in the source set; layer 1 reads the sample's image (bank =
        # the sample), the shared layer 1 streams sample r's image through row r
        NCB, B = s.banks, s.batch_size
        cands = [(g, g * R + r) for g in range(s.copy_groups) if g * R + r < NCB]
        word = Signal(unsigned(cfg.act_word_bits), name=f"xword{r}")
        image = Signal(unsigned(cfg.act_word_bits), name=f"ximage{r}")
        label = Signal(range(NC), name=f"xlabel{r}")
        live = Signal(name=f"xlive{r}")
        words = {b: Mux(self._src[r], rdata[1][b], rdata[0][b]) for _, b in cands}
        def pick(cp):
            return [word.eq(words[cp]), image.eq(rdata[0][s.sample_of(cp)]), label.eq(s.label_of(cp)),
                    live.eq(self._live(s.sample_of(cp)))]
        if s.copy_groups == 1:
            m.d.comb += pick(cands[0][1])
        else:                           # (a group without a copy on this row: disabled)
            with m.Switch(p1.tag.grp):
                for g, cp in cands:
                    with m.Case(g):
                        m.d.comb += pick(cp)
        shared_x = self._lane(rdata[0][r], r) if r < B else 0
        with m.If(in_image):
            with m.If(p1.tag.shared):
                m.d.comb += x.eq(shared_x)
            with m.Elif(p1.k < NC):
                m.d.comb += x.eq(Mux(p1.k == label, cfg.label_value, 0))
            with m.Else():
                m.d.comb += x.eq(self._lane(image, r))
        with m.Else():
            m.d.comb += x.eq(self._lane(word, r))
        shared_en = self._live(r) if r < B else 0
        copy_en = live if cands else 0
        return x, Mux(p1.tag.shared, shared_en, copy_en)
