"""Early-exit comparator: max / argmax / top-2 margin over the score registers."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import EXIT_POLICIES


class ExitCmp(wiring.Component):
    """Combinational. ``label``: argmax of ``scores`` (lowest index wins ties); ``top1``,
    ``top2``; ``fire`` = ``last`` or (policy "max": top1 >= threshold; "margin":
    top1 - top2 >= threshold; "none": never before the last layer). Subclasses may override
    :meth:`better` and :meth:`meets` (mutation tests only)."""

    def __init__(self, n: int, bits: int, policy: str):
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"ExitCmp: n={n!r} must be an integer >= 2")
        if policy not in EXIT_POLICIES:
            raise ValueError(f"ExitCmp: policy={policy!r} (allowed: {', '.join(EXIT_POLICIES)})")
        self.n, self.bits, self.policy = n, bits, policy
        super().__init__({
            "scores": In(signed(bits)).array(n), "threshold": In(signed(bits)), "last": In(1),
            "label": Out(range(n)), "top1": Out(signed(bits)), "top2": Out(signed(bits)),
            "fire": Out(1),
        })

    def better(self, score, best):
        """Whether ``score`` displaces the best so far (strict: the lowest index wins ties)."""
        return score > best

    def meets(self, value, threshold):
        """Whether ``value`` reaches the threshold."""
        return value >= threshold

    def elaborate(self, platform):
        m = Module()
        lo = -(1 << (self.bits - 1))
        t1, t2, lab = self.scores[0], lo, 0
        for i in range(1, self.n):               # a scan chain: strict > keeps the lowest index
            s = self.scores[i]
            nt1, nt2, nlab = (Signal(signed(self.bits), name=f"t1_{i}"), Signal(signed(self.bits), name=f"t2_{i}"),
                              Signal(range(self.n), name=f"lab_{i}"))
            with m.If(self.better(s, t1)):
                m.d.comb += [nt1.eq(s), nt2.eq(t1), nlab.eq(i)]
            with m.Elif(s > t2):
                m.d.comb += [nt1.eq(t1), nt2.eq(s), nlab.eq(lab)]
            with m.Else():
                m.d.comb += [nt1.eq(t1), nt2.eq(t2), nlab.eq(lab)]
            t1, t2, lab = nt1, nt2, nlab
        m.d.comb += [self.top1.eq(t1), self.top2.eq(t2), self.label.eq(lab)]
        if self.policy == "max":
            rule = self.meets(t1, self.threshold)
        elif self.policy == "margin":
            rule = self.meets(t1 - t2, self.threshold)
        else:
            rule = 0
        m.d.comb += self.fire.eq(self.last | rule)
        return m
