"""The FF layer engine: controller, activation buffers, array, post-processing, exit.

Timing contract (docs/architecture.md section 4, implemented by ``ffaccel.perf``):
reads issued in cycle t return data in t+1, when the array multiplies; a tile's sums are
in the PE shadow registers the cycle after its last MAC; the drain then reads one row
per cycle through a 4-stage post-processing pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from .array import MacArray
from .exitcmp import ExitCmp
from .memmap import ceil_div, memory_map
from .rsqrt import RSqrt



def engine_signature(cfg: AccelConfig) -> dict:
    mm = memory_map(cfg)
    nl = cfg.n_layers
    return {
        # input samples: one pixel per beat; OP: `last` on the final pixel of a batch
        "in_valid": In(1), "in_ready": Out(1), "in_data": In(unsigned(cfg.abits)), "in_last": In(1),
        # results: one per sample
        "res_valid": Out(1), "res_ready": In(1),
        "res_label": Out(range(cfg.classes)), "res_exit_layer": Out(range(nl + 1)),
        "res_row": Out(range(max(cfg.rows, 2))),
        "res_scores": Out(signed(cfg.score_bits)).array(cfg.classes),
        "res_cycles": Out(32), "res_macs": Out(48),
        # weight and bias memories: synchronous read, data one cycle after the address
        "w_en": Out(1), "w_addr": Out(unsigned(mm.waddr_bits)),
        "w_data": In(unsigned(cfg.cols * cfg.wbits)),
        "b_en": Out(1), "b_addr": Out(unsigned(mm.baddr_bits)),
        "b_data": In(unsigned(cfg.cols * mm.bias_lane_bits)),
        # run-time registers: thresholds, exit enable, shift bases
        "cfg_we": In(1), "cfg_addr": In(range(3 * nl + 1)), "cfg_data": In(signed(cfg.score_bits)),
        # activation probe (monitor only): one word of `cols` activations per beat
        "probe_valid": Out(1), "probe_layer": Out(range(max(nl, 2))),
        "probe_copy": Out(range(max(cfg.rows, cfg.classes, 2))),
        "probe_tile": Out(range(max(max(mm.tiles), 2))),
        "probe_data": Out(unsigned(cfg.cols * cfg.abits)),
        "busy": Out(1),
    }


def cfg_register_map(cfg: AccelConfig) -> dict:
    """Addresses of the run-time registers written through the cfg port."""
    nl = cfg.n_layers
    return {"threshold": 0, "shift": nl, "head_shift": 2 * nl, "exit_enable": 3 * nl}


FAULTS = ("requant_round", "input_stall")


class Engine(wiring.Component):
    """The FF engine. ``fault`` injects a deliberate bug for verification of the benches
    (mutation testing): "requant_round" rounds at the wrong bit, "input_stall" takes
    input beats without looking at ``in_valid``. Never used by the generator's CLI."""

    def __init__(self, cfg: AccelConfig, fault: str | None = None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError("Engine needs an AccelConfig")
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"Engine: fault={fault!r} (allowed: {', '.join(FAULTS)})")
        self.fault = fault
        self.cfg = cfg
        self.mm = memory_map(cfg)
        super().__init__(engine_signature(cfg))

    def elaborate(self, platform):  # noqa: C901 - one controller, kept in one place
        cfg, mm = self.cfg, self.mm
        m = Module()
        R, C, A, W, L, NC = cfg.rows, cfg.cols, cfg.abits, cfg.wbits, cfg.n_layers, cfg.classes
        mp = cfg.mode == "mp"
        D = cfg.inputs
        NB = NC if mp else R                         # activation banks (copies)
        G = ceil_div(NC, R) if mp else 1             # copy groups per layer
        depth = ceil_div(max((D,) + cfg.layers), C)
        SB, GB = cfg.score_bits, cfg.goodness_bits
        ACC = cfg.accbits
        BL = mm.bias_lane_bits
        share = mp and cfg.label_share
        regs = cfg_register_map(cfg)

        # ------------------------------------------------------------ run-time registers
        thr = Array(Signal(signed(SB), name=f"thr{i}", init=(cfg.thresholds[i] if cfg.thresholds else 0))
                    for i in range(max(L - 1, 1)))
        shb = Array(Signal(range(64), name=f"shb{i}", init=cfg.rsqrt_frac + cfg.wfrac[i] - cfg.afrac)
                    for i in range(L))
        hshb = Array(Signal(range(64), name=f"hshb{i}", init=max(0, cfg.rsqrt_frac + cfg.hfrac[i] - cfg.lfrac))
                     for i in range(L))
        exit_en = Signal(init=int(bool(cfg.thresholds) and cfg.exit_policy != "none"))
        with m.If(self.cfg_we):
            for i in range(L - 1):
                with m.If(self.cfg_addr == regs["threshold"] + i):
                    m.d.sync += thr[i].eq(self.cfg_data)
            for i in range(L):
                with m.If(self.cfg_addr == regs["shift"] + i):
                    m.d.sync += shb[i].eq(self.cfg_data)
                with m.If(self.cfg_addr == regs["head_shift"] + i):
                    m.d.sync += hshb[i].eq(self.cfg_data)
            with m.If(self.cfg_addr == regs["exit_enable"]):
                m.d.sync += exit_en.eq(self.cfg_data[0])

        # ------------------------------------------------------------ activation banks
        banks = [[Memory(shape=unsigned(C * A), depth=depth, init=[]) for _ in range(NB)] for _ in range(2)]
        rports, wports = [], []
        for s in range(2):
            rp_s, wp_s = [], []
            for b in range(NB):
                m.submodules[f"act{s}_{b}"] = banks[s][b]
                rp_s.append(banks[s][b].read_port())
                wp_s.append(banks[s][b].write_port(granularity=A))
            rports.append(rp_s)
            wports.append(wp_s)

        arr = m.submodules.array = MacArray(R, C, A, W, ACC)
        rs = m.submodules.rsqrt = RSqrt(GB + 1, cfg.rsqrt_frac, cfg.rsqrt_index)
        cmp_ = m.submodules.exitcmp = ExitCmp(NC, SB, cfg.exit_policy)

        # ------------------------------------------------------------ state
        layer = Signal(range(max(L, 2)))
        head = Signal()                               # OP: streaming / draining a head
        grp = Signal(range(max(G, 2)))
        tile = Signal(range(max(max(mm.tiles + (mm.head_tiles,)), 2)))
        k = Signal(range(max((D,) + cfg.layers) + 1))
        tcnt = Signal(range(2 * max((D,) + cfg.layers) + 2 * NC + R + 8))
        labph = Signal()                              # MP share: label-weight phase of a tile
        nrows = Signal(range(R + 1))                  # OP: samples in the batch
        exited = Signal(R)
        g_cur = Array(Signal(unsigned(GB + 1), name=f"g{b}") for b in range(NB))
        m_r = Array(Signal(rs.m.shape(), name=f"m{b}") for b in range(NB))
        s_r = Array(Signal(rs.s.shape(), name=f"s{b}") for b in range(NB))
        score = Array(Signal(signed(SB), name=f"score{c}") for c in range(NC))
        logits = Array(Array(Signal(signed(SB), name=f"lg{r}_{c}") for c in range(NC)) for r in range(R)) \
            if not mp else None
        out_label = Array(Signal(range(NC), name=f"olab{r}") for r in range(R))
        out_exit = Array(Signal(range(L + 1), name=f"oexit{r}") for r in range(R))
        out_scores = Array(Array(Signal(signed(SB), name=f"osc{r}_{c}") for c in range(NC)) for r in range(R))
        cycles = Signal(32)
        macs = Signal(48)
        counting = Signal()
        nb_i = Signal(range(max(NB, R) + 1))          # NORM / EXIT-OP / RESULT-OP index
        g_img = Signal(unsigned(GB + 1))              # input goodness of the sample being loaded
        pix = Signal(range(D + 1))
        lrow = Signal(range(R + 1))
        wlab = Array(Array(Signal(signed(W), name=f"wl{j}_{c}") for c in range(C)) for j in range(NC)) \
            if share else None

        m.d.comb += self.busy.eq(counting)
        with m.If(counting):
            m.d.sync += cycles.eq(cycles + 1)

        # layer geometry, muxed by the current layer
        n_in_l = Array(Const(v, range(max((D,) + cfg.layers) + 1)) for v in cfg.fan_in)[layer]
        n_out_l = Array(Const(v, range(max(cfg.layers) + 1)) for v in cfg.layers)[layer]
        tiles_l = Array(Const(v, range(max(mm.tiles) + 1)) for v in mm.tiles)[layer]
        wbase_l = Array(Const(v, unsigned(mm.waddr_bits)) for v in mm.wbase)[layer]
        if not mp:
            hbase_l = Array(Const(v, unsigned(mm.waddr_bits)) for v in mm.hbase)[layer]
        shared_now = Signal()
        m.d.comb += shared_now.eq(share & (layer == 0) & ~head)
        # streamed inputs per tile: K (image part only when shared)
        K = Signal(range(max((D,) + cfg.layers) + 1))
        m.d.comb += K.eq(Mux(head, n_out_l, Mux(shared_now, D - NC, n_in_l)))
        ntiles = Signal(range(max(mm.tiles + (mm.head_tiles,)) + 1))
        m.d.comb += ntiles.eq(Mux(head, mm.head_tiles, tiles_l))
        # rows drained per tile and the tile period
        rows_g = Signal(range(R + 1))
        if mp:
            m.d.comb += rows_g.eq(Mux(grp == G - 1, NC - (G - 1) * R, R))
        else:
            m.d.comb += rows_g.eq(nrows)
        drows = Signal(range(max(R, NC) + 1))
        m.d.comb += drows.eq(Mux(shared_now, NC, rows_g))
        period = Signal.like(tcnt)
        if share:
            m.d.comb += period.eq(Mux(shared_now, NC + Mux(K > NC, K, NC), Mux(K > drows, K, drows)))
        else:
            m.d.comb += period.eq(Mux(K > drows, K, drows))
        src = Signal()                                # bank set read by the current pass
        m.d.comb += src.eq(Mux(head, (layer + 1)[0], layer[0]))

        # ------------------------------------------------------------ issue stage (cycle t)
        iss_valid, iss_first, iss_last, iss_lab, iss_lab_last = Signal(), Signal(), Signal(), Signal(), Signal()
        kk = Signal.like(k)                           # input index being read
        m.d.comb += kk.eq(Mux(shared_now & ~labph, k + NC, k))
        # a bank is read only when its word is needed: a new word every `cols` inputs (the
        # read port holds its data while disabled), only in the source set, only for the
        # copies in flight
        new_word = Signal()
        m.d.comb += new_word.eq(iss_valid & ((kk % C == 0) | iss_first))
        for s in range(2):
            for b in range(NB):
                if mp:
                    need = Mux((layer == 0) & ~head, b == 0, (grp == b // R) if G > 1 else 1)
                else:
                    need = (b < nrows) & ~exited[b]
                m.d.comb += [rports[s][b].addr.eq(kk // C), rports[s][b].en.eq(new_word & (src == s) & need)]
        p1 = dict(valid=Signal(), first=Signal(), last=Signal(), lab=Signal(), lab_last=Signal(),
                  lane=Signal(range(C)), k=Signal.like(k), grp=Signal.like(grp), src=Signal(),
                  tile=Signal.like(tile), layer=Signal.like(layer), head=Signal(), shared=Signal())
        m.d.sync += [p1["valid"].eq(iss_valid), p1["first"].eq(iss_first), p1["last"].eq(iss_last),
                     p1["lab"].eq(iss_lab), p1["lab_last"].eq(iss_lab_last),
                     p1["lane"].eq(kk % C), p1["k"].eq(kk), p1["grp"].eq(grp), p1["src"].eq(src),
                     p1["tile"].eq(tile), p1["layer"].eq(layer), p1["head"].eq(head),
                     p1["shared"].eq(shared_now)]
        with m.If(iss_valid | iss_lab):
            m.d.comb += [self.w_en.eq(1),
                         self.w_addr.eq(Mux(head, hbase_l, wbase_l) + tile * Mux(head, n_out_l, n_in_l) + kk)
                         if not mp else self.w_addr.eq(wbase_l + tile * n_in_l + kk)]

        # ------------------------------------------------------------ MAC stage (cycle t+1)
        wl = [self.w_data[c * W:(c + 1) * W].as_signed() for c in range(C)]
        for c in range(C):
            m.d.comb += arr.w[c].eq(wl[c])
        m.d.comb += [arr.valid.eq(p1["valid"]), arr.first.eq(p1["first"]), arr.last.eq(p1["last"])]
        for r in range(R):
            if mp:
                # row r holds copy grp*R + r; its bank in the source set
                words = [Mux(p1["src"], rports[1][b].data, rports[0][b].data) for b in range(NB)]
                cands = [(g, g * R + r) for g in range(G) if g * R + r < NC]
                word = Signal(unsigned(C * A), name=f"xword{r}")
                if len(cands) == 1:
                    m.d.comb += word.eq(words[cands[0][1]])
                else:
                    with m.Switch(p1["grp"]):
                        for g, b in cands:
                            with m.Case(g):
                                m.d.comb += word.eq(words[b])
                img_word = rports[0][0].data
                copy = Signal(range(NC + R), name=f"copy{r}")
                m.d.comb += copy.eq(p1["grp"] * R + r)
                x_layer = Array(word[c * A:(c + 1) * A] for c in range(C))[p1["lane"]]
                x_img = Array(img_word[c * A:(c + 1) * A] for c in range(C))[p1["lane"]]
                x = Signal(unsigned(A), name=f"x{r}")
                with m.If(p1["layer"] == 0):
                    with m.If(p1["k"] < NC):
                        m.d.comb += x.eq(Mux(p1["k"] == copy, cfg.label_value, 0))
                    with m.Else():
                        m.d.comb += x.eq(x_img)
                with m.Else():
                    m.d.comb += x.eq(x_layer)
                en = (copy < NC) & Mux(p1["shared"], r == 0, 1)
                # operand isolation: a gated row sees 0, so its multipliers do not toggle
                m.d.comb += [arr.row_en[r].eq(en), arr.x[r].eq(Mux(en & p1["valid"], x, 0))]
            else:
                word = Mux(p1["src"], rports[1][r].data, rports[0][r].data)
                x_layer = Array(word[c * A:(c + 1) * A] for c in range(C))[p1["lane"]]
                x = Signal(unsigned(A), name=f"x{r}")
                m.d.comb += x.eq(Mux((p1["layer"] == 0) & ~p1["head"] & (p1["k"] < NC), cfg.neutral_value, x_layer))
                en = (r < nrows) & ~exited[r]
                m.d.comb += [arr.row_en[r].eq(en), arr.x[r].eq(Mux(en & p1["valid"], x, 0))]
        with m.If(p1["valid"]):
            m.d.sync += macs.eq(macs + sum(arr.row_en[r] for r in range(R)) * C)
        if share:
            with m.If(p1["lab"]):
                for j in range(NC):
                    with m.If(p1["k"] == j):
                        for c in range(C):
                            m.d.sync += wlab[j][c].eq(wl[c])

        # ------------------------------------------------------------ drain + post-processing
        drain_go = Signal()
        m.d.sync += drain_go.eq((p1["valid"] & p1["last"] & ~p1["shared"]) | p1["lab_last"])
        # the bias word of the tile is read in the cycle before drain_go
        bb_p1 = Array(Const(v, unsigned(mm.baddr_bits)) for v in mm.bbase)[p1["layer"]]
        if not mp:
            hbb_p1 = Array(Const(v, unsigned(mm.baddr_bits)) for v in mm.hbbase)[p1["layer"]]
            bb_p1 = Mux(p1["head"], hbb_p1, bb_p1)
        with m.If((p1["valid"] & p1["last"] & ~p1["shared"]) | p1["lab_last"]):
            m.d.comb += [self.b_en.eq(1), self.b_addr.eq(bb_p1 + p1["tile"])]
        d_act, d_j = Signal(), Signal(range(max(R, NC) + 1))
        d_n = Signal.like(drows)
        d_info = dict(tile=Signal.like(tile), grp=Signal.like(grp), layer=Signal.like(layer), head=Signal(),
                      shared=Signal())
        bias_reg = Signal(unsigned(C * BL))
        # p1 has moved on by drain_go: d_tag is p1 one cycle late (the tile's final element)
        d_tag = {k_: Signal.like(v, name=f"dtag_{k_}") for k_, v in p1.items()}
        m.d.sync += [d_tag[k_].eq(v) for k_, v in p1.items()]
        n_go = Signal.like(drows)
        if mp:
            m.d.comb += n_go.eq(Mux(d_tag["shared"], NC, Mux(d_tag["grp"] == G - 1, NC - (G - 1) * R, R)))
        else:
            m.d.comb += n_go.eq(nrows)
        with m.If(drain_go):
            m.d.sync += [d_act.eq(n_go > 1), d_j.eq(1), d_n.eq(n_go), bias_reg.eq(self.b_data)]
        with m.If(drain_go):
            m.d.sync += [d_info["tile"].eq(d_tag["tile"]), d_info["grp"].eq(d_tag["grp"]),
                         d_info["layer"].eq(d_tag["layer"]), d_info["head"].eq(d_tag["head"]),
                         d_info["shared"].eq(d_tag["shared"])]
        with m.Elif(d_act):
            m.d.sync += d_j.eq(d_j + 1)
            with m.If(d_j == d_n - 1):
                m.d.sync += d_act.eq(0)
        # row being drained this cycle
        cur = dict(valid=Signal(), j=Signal.like(d_j), tile=Signal.like(tile), grp=Signal.like(grp),
                   layer=Signal.like(layer), head=Signal(), shared=Signal(), bias=Signal(unsigned(C * BL)))
        with m.If(drain_go):
            m.d.comb += [cur["valid"].eq(1), cur["j"].eq(0), cur["tile"].eq(d_tag["tile"]),
                         cur["grp"].eq(d_tag["grp"]), cur["layer"].eq(d_tag["layer"]),
                         cur["head"].eq(d_tag["head"]), cur["shared"].eq(d_tag["shared"]),
                         cur["bias"].eq(self.b_data)]
        with m.Else():
            m.d.comb += [cur["valid"].eq(d_act & (d_j < d_n)), cur["j"].eq(d_j), cur["tile"].eq(d_info["tile"]),
                         cur["grp"].eq(d_info["grp"]), cur["layer"].eq(d_info["layer"]),
                         cur["head"].eq(d_info["head"]), cur["shared"].eq(d_info["shared"]),
                         cur["bias"].eq(bias_reg)]
        cp_cur = Signal(range(max(NB, R) + R))
        m.d.comb += cp_cur.eq(Mux(cur["shared"], cur["j"], cur["grp"] * R + cur["j"]) if mp else cur["j"])
        row_ok = Signal()
        if mp:
            m.d.comb += row_ok.eq(1)
        else:
            m.d.comb += row_ok.eq(~Array(exited[r] for r in range(R))[cur["j"]])

        # stage A: select the row's sums (MP share: image row 0 + label_value * label weights)
        # `valid` marks a drained row (data-independent timing); `live` whether it counts
        # (OP: rows whose sample already exited are drained but neither written nor added)
        sa = dict(valid=Signal(), live=Signal(), cp=Signal.like(cp_cur), tile=Signal.like(tile), layer=Signal.like(layer),
                  head=Signal(), bias=Signal(unsigned(C * BL)), m=Signal(rs.m.shape()), s=Signal(rs.s.shape()))
        sa_acc = [Signal(signed(ACC + 1), name=f"sa_acc{c}") for c in range(C)]
        rowsel = Array(Array(arr.result[r][c] for c in range(C)) for r in range(R))
        for c in range(C):
            if share:
                lab_term = Array(wlab[j][c] for j in range(NC))[cur["j"]] * cfg.label_value
                m.d.sync += sa_acc[c].eq(Mux(cur["shared"], rowsel[0][c] + lab_term, rowsel[cur["j"]][c]))
            else:
                m.d.sync += sa_acc[c].eq(rowsel[cur["j"]][c])
        m.d.sync += [sa["valid"].eq(cur["valid"]), sa["live"].eq(row_ok), sa["cp"].eq(cp_cur), sa["tile"].eq(cur["tile"]),
                     sa["layer"].eq(cur["layer"]), sa["head"].eq(cur["head"]), sa["bias"].eq(cur["bias"]),
                     sa["m"].eq(m_r[cp_cur]), sa["s"].eq(s_r[cp_cur])]
        # stage B: normalisation product and shift amount
        PB = ACC + 1 + rs.m.shape().width + 1
        sb_prod = [Signal(signed(PB), name=f"sb_prod{c}") for c in range(C)]
        sb = dict(valid=Signal(), live=Signal(), cp=Signal.like(sa["cp"]), tile=Signal.like(tile), layer=Signal.like(layer),
                  head=Signal(), bias=Signal(unsigned(C * BL)), shift=Signal(range(64 + (1 << rs.s.shape().width))))
        for c in range(C):
            m.d.sync += sb_prod[c].eq(sa_acc[c] * sa["m"])
        m.d.sync += [sb["valid"].eq(sa["valid"]), sb["live"].eq(sa["live"]), sb["cp"].eq(sa["cp"]), sb["tile"].eq(sa["tile"]),
                     sb["layer"].eq(sa["layer"]), sb["head"].eq(sa["head"]), sb["bias"].eq(sa["bias"]),
                     sb["shift"].eq(Mux(sa["head"], hshb[sa["layer"]], shb[sa["layer"]]) + sa["s"])]
        # stage C: round-half-up shift, bias, clamp (layers) / logit increment (heads)
        sc_h = [Signal(unsigned(A), name=f"sc_h{c}") for c in range(C)]
        sc_inc = [Signal(signed(SB), name=f"sc_inc{c}") for c in range(C)]
        sc = dict(valid=Signal(), live=Signal(), cp=Signal.like(sa["cp"]), tile=Signal.like(tile), layer=Signal.like(layer),
                  head=Signal())
        # 2**(shift-1) (0 for shift 0), as wide as the largest shift so it never truncates
        SHW = max(PB, (1 << sb["shift"].shape().width))
        half = Signal(unsigned(SHW))
        m.d.comb += half.eq((Const(1, unsigned(SHW + 1)) << sb["shift"]) >> (2 if self.fault == "requant_round" else 1))
        for c in range(C):
            rnd = Signal(signed(SHW + 2), name=f"rnd{c}")
            z = Signal(signed(SHW + 3), name=f"z{c}")
            m.d.comb += rnd.eq((sb_prod[c] + half) >> sb["shift"])
            m.d.comb += z.eq(rnd + sb["bias"][c * BL:(c + 1) * BL].as_signed())
            m.d.sync += sc_h[c].eq(Mux(z < 0, 0, Mux(z > cfg.amax, cfg.amax, z)))
            m.d.sync += sc_inc[c].eq(z)
        m.d.sync += [sc["valid"].eq(sb["valid"]), sc["live"].eq(sb["live"]), sc["cp"].eq(sb["cp"]), sc["tile"].eq(sb["tile"]),
                     sc["layer"].eq(sb["layer"]), sc["head"].eq(sb["head"])]
        # stage D: write activations, probe, square-sum (layers); add logits (heads)
        dst = Signal()
        m.d.comb += dst.eq(~sc["layer"][0])          # layer l writes set (l+1) % 2
        hword = Cat(*sc_h)
        sq = sum(h * h for h in sc_h)
        sd = dict(valid=Signal(), live=Signal(), cp=Signal.like(sa["cp"]), sum=Signal(unsigned(GB + 1)))
        with m.If(sc["valid"] & sc["live"] & ~sc["head"]):
            for s in range(2):
                for b in range(NB):
                    with m.If((dst == s) & (sc["cp"] == b)):
                        m.d.comb += [wports[s][b].addr.eq(sc["tile"]), wports[s][b].data.eq(hword),
                                     wports[s][b].en.eq((1 << C) - 1)]
            m.d.comb += [self.probe_valid.eq(1), self.probe_layer.eq(sc["layer"]), self.probe_copy.eq(sc["cp"]),
                         self.probe_tile.eq(sc["tile"]), self.probe_data.eq(hword)]
        m.d.sync += [sd["valid"].eq(sc["valid"]), sd["live"].eq(sc["live"] & ~sc["head"]), sd["cp"].eq(sc["cp"]),
                     sd["sum"].eq(sq)]
        if not mp:
            with m.If(sc["valid"] & sc["live"] & sc["head"]):
                for c in range(C):
                    for cls in range(NC):
                        if cls % C == c:
                            with m.If(sc["tile"] == cls // C):
                                m.d.sync += logits[sc["cp"]][cls].eq(logits[sc["cp"]][cls] + sc_inc[c])
        # stage E: goodness and MP score accumulation
        with m.If(sd["valid"] & sd["live"]):
            m.d.sync += g_cur[sd["cp"]].eq(g_cur[sd["cp"]] + sd["sum"])
            if mp:
                m.d.sync += score[sd["cp"]].eq(score[sd["cp"]] + sd["sum"])
        pipe_busy = Signal()
        m.d.comb += pipe_busy.eq(drain_go | d_act | sa["valid"] | sb["valid"] | sc["valid"] | sd["valid"]
                                 | p1["valid"] | p1["lab"])

        # ------------------------------------------------------------ exit comparator
        cmp_row = Signal(range(max(R, 2)))
        if mp:
            for c in range(NC):
                m.d.comb += cmp_.scores[c].eq(score[c])
        else:
            for c in range(NC):
                m.d.comb += cmp_.scores[c].eq(Array(logits[r][c] for r in range(R))[cmp_row])
        m.d.comb += [cmp_.threshold.eq(thr[layer]), cmp_.last.eq(layer == L - 1)]
        # with exits disabled only the last layer fires
        fire = Signal()
        m.d.comb += fire.eq(Mux(exit_en, cmp_.fire, layer == L - 1))

        # ------------------------------------------------------------ controller
        m.d.comb += rs.g.eq(g_cur[nb_i])
        with m.FSM(name="ctrl"):
            with m.State("LOAD"):
                m.d.comb += self.in_ready.eq(1)
                with m.If(1 if self.fault == "input_stall" else self.in_valid):
                    lanes = 1 << (pix % C)
                    b_load = 0 if mp else lrow
                    for b in range(NB):
                        with m.If(b_load == b):
                            m.d.comb += [wports[0][b].addr.eq(pix // C), wports[0][b].en.eq(lanes),
                                         wports[0][b].data.eq(Cat(*([self.in_data] * C)))]
                    with m.If(pix >= NC):
                        m.d.sync += g_img.eq(g_img + self.in_data * self.in_data)
                    m.d.sync += pix.eq(pix + 1)
                    with m.If(pix == D - 1):
                        m.d.sync += pix.eq(0)
                        g0 = g_img + self.in_data * self.in_data + (cfg.label_value ** 2 if mp else NC * cfg.neutral_value ** 2)
                        if mp:
                            for b in range(NB):
                                m.d.sync += g_cur[b].eq(g0)
                            m.next = "START"
                        else:
                            m.d.sync += [g_cur[lrow].eq(g0), g_img.eq(0), lrow.eq(lrow + 1)]
                            with m.If(self.in_last | (lrow == R - 1)):
                                m.d.sync += [nrows.eq(lrow + 1), lrow.eq(0)]
                                m.next = "START"
            with m.State("START"):
                m.d.sync += [counting.eq(1), cycles.eq(1), macs.eq(0), layer.eq(0), head.eq(0), nb_i.eq(0),
                             exited.eq(0), g_img.eq(0)]
                for c in range(NC):
                    m.d.sync += score[c].eq(0)
                if not mp:
                    for r in range(R):
                        for c in range(NC):
                            m.d.sync += logits[r][c].eq(0)
                m.next = "NORM"
            with m.State("NORM"):
                # (m, s) = rsqrt(goodness of the pass input), one copy per cycle; then clear
                m.d.sync += [m_r[nb_i].eq(rs.m), s_r[nb_i].eq(rs.s), g_cur[nb_i].eq(0), nb_i.eq(nb_i + 1)]
                with m.If(nb_i == NB - 1):
                    m.d.sync += [nb_i.eq(0), grp.eq(0), tile.eq(0), k.eq(0), tcnt.eq(0), labph.eq(0)]
                    m.d.sync += head.eq(0)
                    m.next = "STREAM"
            with m.State("STREAM"):
                # one tile: K streamed inputs (+ NC label words when shared), padded to `period`
                m.d.sync += tcnt.eq(tcnt + 1)
                with m.If(~labph & (tcnt < K)):
                    m.d.comb += [iss_valid.eq(1), iss_first.eq(k == 0), iss_last.eq(k == K - 1)]
                    m.d.sync += k.eq(k + 1)
                    with m.If((k == K - 1) & shared_now):
                        m.d.sync += [labph.eq(1), k.eq(0)]
                with m.If(labph & (k < NC)):
                    m.d.comb += [iss_lab.eq(1), iss_lab_last.eq(k == NC - 1)]
                    m.d.sync += k.eq(k + 1)
                with m.If(tcnt == period - 1):
                    m.d.sync += [tcnt.eq(0), k.eq(0), labph.eq(0)]
                    with m.If(tile == ntiles - 1):
                        m.d.sync += tile.eq(0)
                        if mp and G > 1:
                            with m.If(shared_now | (grp == G - 1)):
                                m.next = "FLUSH"
                            with m.Else():
                                m.d.sync += grp.eq(grp + 1)
                        else:
                            m.next = "FLUSH"
                    with m.Else():
                        m.d.sync += tile.eq(tile + 1)
            with m.State("FLUSH"):
                with m.If(~pipe_busy):
                    if mp:
                        m.next = "EXIT"
                    else:
                        with m.If(head):
                            m.d.sync += cmp_row.eq(0)
                            m.next = "EXIT"
                        with m.Else():
                            m.next = "NORM_OP"
            if not mp:
                with m.State("NORM_OP"):
                    m.d.sync += [m_r[nb_i].eq(rs.m), s_r[nb_i].eq(rs.s), g_cur[nb_i].eq(0), nb_i.eq(nb_i + 1)]
                    with m.If(nb_i == NB - 1):
                        m.d.sync += [nb_i.eq(0), tile.eq(0), k.eq(0), tcnt.eq(0), head.eq(1)]
                        m.next = "STREAM"
            with m.State("EXIT"):
                if mp:
                    with m.If(fire):
                        m.d.sync += [out_label[0].eq(cmp_.label), out_exit[0].eq(layer + 1), counting.eq(0)]
                        for c in range(NC):
                            m.d.sync += out_scores[0][c].eq(score[c])
                        m.d.sync += nb_i.eq(0)
                        m.next = "RESULT"
                    with m.Else():
                        m.d.sync += [layer.eq(layer + 1), nb_i.eq(0)]
                        m.next = "NORM"
                else:
                    # one row per cycle
                    row_live = (cmp_row < nrows) & ~Array(exited[r] for r in range(R))[cmp_row]
                    with m.If(row_live & fire):
                        m.d.sync += [out_label[cmp_row].eq(cmp_.label), out_exit[cmp_row].eq(layer + 1),
                                     exited.bit_select(cmp_row, 1).eq(1)]
                        for c in range(NC):
                            m.d.sync += out_scores[cmp_row][c].eq(Array(logits[r][c] for r in range(R))[cmp_row])
                    m.d.sync += cmp_row.eq(cmp_row + 1)
                    with m.If(cmp_row == R - 1):
                        m.d.sync += [cmp_row.eq(0), head.eq(0), nb_i.eq(0)]
                        m.next = "EXIT_OP2"
            if not mp:
                with m.State("EXIT_OP2"):
                    # all rows of the batch decided (the last layer always decides)?
                    live = Cat(*[(r < nrows) & ~exited[r] for r in range(R)])
                    with m.If((live == 0) | (layer == L - 1)):
                        m.d.sync += [counting.eq(0), nb_i.eq(0)]
                        m.next = "RESULT"
                    with m.Else():
                        m.d.sync += [layer.eq(layer + 1), tile.eq(0), k.eq(0), tcnt.eq(0), grp.eq(0), labph.eq(0)]
                        m.next = "STREAM"
            with m.State("RESULT"):
                m.d.comb += [self.res_valid.eq(1), self.res_label.eq(out_label[nb_i]),
                             self.res_exit_layer.eq(out_exit[nb_i]), self.res_row.eq(nb_i),
                             self.res_cycles.eq(cycles), self.res_macs.eq(macs)]
                for c in range(NC):
                    m.d.comb += self.res_scores[c].eq(out_scores[nb_i][c])
                with m.If(self.res_ready):
                    m.d.sync += nb_i.eq(nb_i + 1)
                    with m.If(nb_i == (0 if mp else nrows - 1)):
                        m.d.sync += [nb_i.eq(0), layer.eq(0)]
                        m.next = "LOAD"
        return m
