"""A pin-level top for FPGAs whose place-and-route has no out-of-context mode (iCE40): the
engine with its weights and biases in on-chip ROMs, the pixel stream on ``abits + 3``
pins, and each result shifted out one bit per cycle, so the whole design needs
``abits + 6`` I/O pins whatever the config.

Pins: ``px`` (``abits``), ``px_valid``, ``px_last``, ``px_ready`` (the engine's pixel
stream, unchanged); ``res_bit`` and ``res_frame``: a result's payload (the engine's
``result`` layout, LSB first) while ``res_frame`` is high, one bit per cycle, the engine
held by back-pressure meanwhile; ``busy``. The run-time registers keep their reset values
(the config's thresholds, shift bases and score mask): the register port is tied off, as
is the activation probe.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import AccelConfig
from ..model.golden import QuantModel

TOP = "ffaccel_serial"


class SerialTop(wiring.Component):
    """``cfg``'s engine behind pins (see the module docstring); weights from ``qm`` or, by
    default, a random model of seed 0 (resources and timing do not depend on the values
    beyond the ROM contents)."""

    def __init__(self, cfg: AccelConfig, qm: QuantModel | None = None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"SerialTop: cfg={cfg!r} must be an AccelConfig")
        self.cfg = cfg
        self.qm = qm if qm is not None else QuantModel.random(cfg, np.random.default_rng(0))
        super().__init__({
            "px": In(unsigned(cfg.abits)), "px_valid": In(1), "px_last": In(1), "px_ready": Out(1),
            "res_bit": Out(1), "res_frame": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        from ..hw.simtop import EngineWithRoms
        m = Module()
        eng = m.submodules.engine = EngineWithRoms(self.qm)
        pix, res = eng.pixels, eng.result
        m.d.comb += [pix.valid.eq(self.px_valid), pix.payload.data.eq(self.px), pix.payload.last.eq(self.px_last),
                     self.px_ready.eq(pix.ready), self.busy.eq(eng.busy),
                     eng.regs.we.eq(0), eng.regs.addr.eq(0), eng.regs.data.eq(0)]
        width = len(res.payload.as_value())
        sr = Signal(width)
        left = Signal(range(width + 1))
        m.d.comb += [res.ready.eq(left == 0), self.res_bit.eq(sr[0]), self.res_frame.eq(left != 0)]
        with m.If(res.valid & res.ready):
            m.d.sync += [sr.eq(res.payload.as_value()), left.eq(width)]
        with m.Elif(left != 0):
            m.d.sync += [sr.eq(sr >> 1), left.eq(left - 1)]
        return m


def serial_verilog(cfg: AccelConfig) -> str:
    from amaranth.back import verilog
    return verilog.convert(SerialTop(cfg), name=TOP, emit_src=False)
