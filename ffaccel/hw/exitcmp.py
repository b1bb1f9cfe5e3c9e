"""Early-exit comparator: max / argmax / top-2 margin over the score registers, pipelined."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import EXIT_POLICIES
from ..schedule import LATENCY


class ExitCmp(wiring.Component):
    """A score vector enters with ``valid`` (and its ``tag``, the batch row); ``latency``
    cycles later (:meth:`ffaccel.schedule.Latencies.exit_cmp`) ``o_valid`` carries its
    ``label`` (argmax, the lowest index wins ties), ``top1``, ``top2``, the vector itself
    (``o_scores``, for the result buffer) and ``fire`` = ``last`` or (policy "max":
    top1 >= threshold; "margin": top1 - top2 >= threshold; "none": never before the last
    layer). One vector may enter every cycle.

    The argmax is a tree of pairwise comparisons, one registered level per cycle (the lower
    half of the indices on the left, so a tie keeps the lower index), then a registered
    threshold test: the longest path is one ``bits``-wide comparison and a multiplexer,
    where the scan it replaces chained ``n`` of them. ``threshold`` and ``last`` are read
    at the last stage (the controller holds them through EXIT). Subclasses may override
    :meth:`better` and :meth:`meets` (mutation tests only)."""

    def __init__(self, n: int, bits: int, policy: str, rows: int = 1):
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"ExitCmp: n={n!r} must be an integer >= 2")
        if policy not in EXIT_POLICIES:
            raise ValueError(f"ExitCmp: policy={policy!r} (allowed: {', '.join(EXIT_POLICIES)})")
        if not isinstance(rows, int) or rows < 1:
            raise ValueError(f"ExitCmp: rows={rows!r} must be an integer >= 1")
        self.n, self.bits, self.policy, self.rows = n, bits, policy, rows
        self.latency = LATENCY.exit_cmp(n)
        super().__init__({
            "valid": In(1), "tag": In(range(rows)), "scores": In(signed(bits)).array(n),
            "threshold": In(signed(bits)), "last": In(1),
            "o_valid": Out(1), "o_tag": Out(range(rows)), "o_scores": Out(signed(bits)).array(n),
            "label": Out(range(n)), "top1": Out(signed(bits)), "top2": Out(signed(bits)), "fire": Out(1),
        })

    def better(self, score, best):
        """Whether ``score`` (from higher indices) displaces ``best`` (strict: the lowest
        index wins ties)."""
        return score > best

    def meets(self, value, threshold):
        """Whether ``value`` reaches the threshold."""
        return value >= threshold

    def elaborate(self, platform):
        m = Module()
        bits, n = self.bits, self.n
        lo = -(1 << (bits - 1))
        # nodes of the current level: (top1, top2, label)
        nodes = [(self.scores[i], lo, i) for i in range(n)]
        valid, tag, vec = self.valid, self.tag, list(self.scores)
        level = 0
        while len(nodes) > 1:
            nxt = []
            for j in range(0, len(nodes), 2):
                t1, t2, lab = (Signal(signed(bits), name=f"t1_l{level}_{j // 2}"),
                               Signal(signed(bits), name=f"t2_l{level}_{j // 2}"),
                               Signal(range(n), name=f"lab_l{level}_{j // 2}"))
                if j + 1 == len(nodes):                     # odd one out: passes through
                    a = nodes[j]
                    m.d.sync += [t1.eq(a[0]), t2.eq(a[1]), lab.eq(a[2])]
                else:
                    a, b = nodes[j], nodes[j + 1]
                    # second of the pair's four: the loser's top against the winner's second
                    second_b, second_a = _max(m, a[0], b[1], bits), _max(m, b[0], a[1], bits)
                    with m.If(self.better(b[0], a[0])):
                        m.d.sync += [t1.eq(b[0]), lab.eq(b[2]), t2.eq(second_b)]
                    with m.Else():
                        m.d.sync += [t1.eq(a[0]), lab.eq(a[2]), t2.eq(second_a)]
                nxt.append((t1, t2, lab))
            nodes = nxt
            valid, tag, vec = _delay(m, valid, tag, vec, level)
            level += 1
        t1, t2, lab = nodes[0]
        if self.policy == "max":
            rule = self.meets(t1, self.threshold)
        elif self.policy == "margin":
            rule = self.meets(t1 - t2, self.threshold)
        else:
            rule = 0
        m.d.sync += [self.top1.eq(t1), self.top2.eq(t2), self.label.eq(lab), self.fire.eq(self.last | rule)]
        valid, tag, vec = _delay(m, valid, tag, vec, level)
        m.d.comb += [self.o_valid.eq(valid), self.o_tag.eq(tag)] + [o.eq(v) for o, v in zip(self.o_scores, vec)]
        assert level + 1 == self.latency, (level, self.latency)
        return m


def _max(m: Module, a, b, bits: int):
    """The larger of two signed values (a combinational helper of one tree node)."""
    out = Signal(signed(bits))
    m.d.comb += out.eq(a)
    with m.If(b > a):
        m.d.comb += out.eq(b)
    return out


def _delay(m: Module, valid, tag, vec, level: int):
    """One pipeline register for the side band: valid, tag and the score vector."""
    v = Signal(name=f"valid_s{level}")
    t = Signal.like(tag, name=f"tag_s{level}")
    s = [Signal.like(x, name=f"sc_s{level}_{i}") for i, x in enumerate(vec)]
    m.d.sync += [v.eq(valid), t.eq(tag)] + [a.eq(b) for a, b in zip(s, vec)]
    return v, t, s
