"""Energy coefficients: one table, every row with its source; users override any row from a
TOML or JSON file (validated: unknown names and non-positive values are refused).

Per-operation energies are Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, 45 nm, 0.9 V. Everything ffaccel derives from them (per-toggle energies,
memory sizes between the quoted points, other nodes) is a stated assumption, listed here
too, so a user can replace it with their own library's numbers.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..config import parse_error_text
from ..errors import FFAccelError

HOROWITZ = "Horowitz, ISSCC 2014, 45nm 0.9V"

# name: (value, unit, source)
DEFAULTS: dict[str, tuple[float, str, str]] = {
    "add_int8_pj": (0.03, "pJ/op", HOROWITZ),
    "add_int32_pj": (0.1, "pJ/op", HOROWITZ),
    "mult_int8_pj": (0.2, "pJ/op", HOROWITZ),
    "mult_int32_pj": (3.1, "pJ/op", HOROWITZ),
    "sram_8kb_64b_pj": (10.0, "pJ/64-bit access", HOROWITZ),
    "sram_32kb_64b_pj": (20.0, "pJ/64-bit access", HOROWITZ),
    "sram_1mb_64b_pj": (100.0, "pJ/64-bit access", HOROWITZ),
    "dram_64b_pj": (1950.0, "pJ/64-bit access",
                    HOROWITZ + ": 1.3-2.6 nJ per 64 bits, midpoint (the popular 640 pJ is per 32 bits)"),
    "activity": (0.5, "toggled fraction of input bits per op",
                 "ffaccel assumption: Horowitz's per-op energies are taken as random-data averages"),
    "reg_bit_toggle_pj": (0.1 / 32 / 0.5, "pJ/bit toggle",
                          "ffaccel assumption: one register or bus bit toggle ~ one bit of a 32-bit add"),
    "leak_nw_per_cell": (2.0, "nW/cell at 45nm",
                         "ffaccel assumption (generic-gate leakage), scaled with the node like dynamic energy"),
    "sram_leak_pw_bit": (20.0, "pW/bit at 45nm",
                         "Wang et al., JSSC 2008 (Intel 65nm ultra-low-power 1 Mb macro): 12 uA/Mb at the "
                         "0.5 V retention voltage, ~6 pW/bit; ffaccel assumes ~3x that at the operating voltage"),
    "sram_um2_bit": (0.5, "um^2/bit at 45nm",
                     "Mistry et al., IEDM 2007 (Intel 45nm): 0.346 um^2 6T cell; ffaccel assumes 70% array "
                     "efficiency (decoders, sense amplifiers)"),
    "wire_pj_bit_mm": (0.1, "pJ/bit/mm at 45nm",
                       "Borkar and Chien, CACM 54(5) 2011, fig. 11: on-die interconnect energy at 45nm "
                       "(read from the plot)"),
    "gate_pj": (0.1 / 32 / 4, "pJ/op at 45nm",
                "ffaccel assumption: a 2-input gate (AND, XOR, one bit of a 2:1 choice) ~ 1/4 of one bit of a "
                "32-bit add (about 6 of a full adder's 28 transistors)"),
    "pbit_ratio": (0.01, "x the CMOS sampler's energy",
                   "Kobayashi, Singh et al., Nat. Commun. 2024 (arXiv 2304.05949): sMTJ p-bits dissipate two "
                   "orders of magnitude less energy than the CMOS p-bits (random source, lookup, comparator) they "
                   "replace"),
    "converter_fj_step": (10.0, "fJ per conversion step",
                          "Walden figure of merit, energy = FoM x 2^bits per conversion: Murmann, 'ADC "
                          "Performance Survey 1997-2024' (the best low-speed ADCs near 1 fJ/step, most designs "
                          "10-100); ffaccel takes 10 for the ADC reading P's answer and for the DAC driving P, "
                          "alike (an assumption for the DAC)"),
    "logic_um2_cell": (1.0, "um^2/cell at 45nm",
                       "ffaccel assumption: a generic cell ~ NanGate 45nm NAND2_X1 (0.80 um^2), rounded up "
                       "for the mix with flip-flops"),
}

# Nominal supply per node for first-order dynamic-energy scaling E ~ C V^2, C ~ feature size.
NODE_VDD = {"45nm": 0.9, "32nm": 0.9, "28nm": 0.9, "22nm": 0.8, "16nm": 0.8, "7nm": 0.7}
SCALING_SOURCE = ("ffaccel assumption: first-order constant-field scaling, energy ~ (node/45nm) x "
                  "(Vdd/0.9V)^2 with nominal Vdd per node; replace with your library's figures")


def node_factor(tech: str) -> float:
    if tech not in NODE_VDD:
        raise FFAccelError(f"--tech {tech!r} unknown (allowed: {', '.join(NODE_VDD)})")
    nm = float(tech.removesuffix("nm"))
    return (nm / 45.0) * (NODE_VDD[tech] / 0.9) ** 2


@dataclass(frozen=True)
class Coeffs:
    values: dict
    sources: dict
    tech: str

    @property
    def scale(self) -> float:
        return node_factor(self.tech)

    @property
    def shrink(self) -> float:
        """Feature size against 45 nm (lengths scale with it, areas with its square)."""
        return float(self.tech.removesuffix("nm")) / 45.0

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    # ---------------------------------------------------------------- derived energies (at the node)
    def mult_pj(self, a_bits: int, b_bits: int) -> float:
        """An a x b array multiplier: energy ~ a*b (Horowitz: 8x8 0.2 pJ, 32x32 3.1 ~ 16 x 0.2)."""
        return self["mult_int8_pj"] * a_bits * b_bits / 64.0 * self.scale

    def converter_pj(self, bits: int) -> float:
        """A data converter (ADC or DAC) of ``bits``: FoM x 2**bits per conversion (Walden;
        not scaled with the node: the survey's figure spans nodes)."""
        return self["converter_fj_step"] * (1 << bits) / 1000.0

    def add_pj(self, bits: int) -> float:
        """A ripple adder: energy ~ bits (Horowitz: 32-bit 0.1 pJ)."""
        return self["add_int32_pj"] * bits / 32.0 * self.scale

    def mult_operand_toggle_pj(self, a_bits: int, b_bits: int) -> float:
        """Multiplier energy per toggle of one operand bit, at the stated activity."""
        return self.mult_pj(a_bits, b_bits) / (self["activity"] * (a_bits + b_bits))

    def select_add_pj(self, a_bits: int, b_bits: int) -> float:
        """BSFF's multiplier-free product of an ``a_bits`` count and a ``b_bits`` weight: a
        gate per weight bit and input bit, and ``a_bits - 1`` adds of the shifted weights
        (one input bit: a choice, no adder)."""
        return (a_bits * b_bits * self["gate_pj"] * self.scale
                + (a_bits - 1) * self.add_pj(a_bits + b_bits))

    def select_operand_toggle_pj(self, a_bits: int, b_bits: int) -> float:
        """:meth:`select_add_pj` per toggle of one operand bit, at the stated activity."""
        return self.select_add_pj(a_bits, b_bits) / (self["activity"] * (a_bits + b_bits))

    def add_toggle_pj(self, bits: int) -> float:
        """Accumulator energy per toggled result bit: the adder's share plus the register bit."""
        return self.add_pj(bits) / (self["activity"] * bits) + self.reg_toggle_pj()

    def reg_toggle_pj(self) -> float:
        return self["reg_bit_toggle_pj"] * self.scale

    def sram_access_pj(self, size_bytes: float, word_bits: int) -> float:
        """Per access of a ``word_bits`` word in an SRAM of ``size_bytes``: log-log
        interpolation through Horowitz's 8 KB / 32 KB / 1 MB points, extended with the
        nearest segment's slope; energy proportional to the word width."""
        pts = [(8 * 1024, self["sram_8kb_64b_pj"]), (32 * 1024, self["sram_32kb_64b_pj"]),
               (1024 * 1024, self["sram_1mb_64b_pj"])]
        s = max(float(size_bytes), 64.0)
        (x0, y0), (x1, y1) = (pts[0], pts[1]) if s <= pts[1][0] else (pts[1], pts[2])
        slope = math.log(y1 / y0) / math.log(x1 / x0)
        e64 = y0 * math.exp(slope * math.log(s / x0))
        return e64 * word_bits / 64.0 * self.scale

    def dram_access_pj(self, word_bits: int) -> float:
        return self["dram_64b_pj"] * word_bits / 64.0 * self.scale

    def leak_pw(self, cells: float, sram_bits: float = 0.0) -> float:
        """Leakage power in pW of ``cells`` generic cells and ``sram_bits`` SRAM bits."""
        return (self["leak_nw_per_cell"] * 1000.0 * cells + self["sram_leak_pw_bit"] * sram_bits) * self.scale

    def wire_pj(self, bits: int, mm: float) -> float:
        """Moving ``bits`` bits ``mm`` millimetres across the die."""
        return self["wire_pj_bit_mm"] * bits * mm * self.scale

    def sram_side_mm(self, bits: float) -> float:
        """Side of a square SRAM array of ``bits`` bits (area shrinks with the node squared)."""
        return math.sqrt(bits * self["sram_um2_bit"]) * self.shrink / 1000.0

    def area_mm2(self, cells: float, sram_bits: float) -> float:
        """Die area of ``cells`` generic cells and ``sram_bits`` SRAM bits (45nm figures
        scaled with the node squared)."""
        return (cells * self["logic_um2_cell"] + sram_bits * self["sram_um2_bit"]) * self.shrink ** 2 / 1e6

    def table(self) -> list[dict]:
        rows = [{"name": k, "value": v, "unit": DEFAULTS[k][1], "source": self.sources[k]}
                for k, v in self.values.items()]
        rows.append({"name": "node_factor", "value": self.scale, "unit": f"x vs 45nm ({self.tech})",
                     "source": SCALING_SOURCE})
        return rows


def load_coeffs(path: str | Path | None = None, tech: str = "45nm") -> Coeffs:
    """Defaults, overridden by a TOML/JSON file of ``name = value`` (45 nm values)."""
    node_factor(tech)
    values = {k: v[0] for k, v in DEFAULTS.items()}
    sources = {k: v[2] for k, v in DEFAULTS.items()}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FFAccelError(f"--coeffs {str(p)!r} does not exist")
        try:
            text = p.read_text()
            data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (ValueError, RecursionError) as e:   # parse errors, 5000-digit integers, deep nesting
            why = parse_error_text(e)
            raise FFAccelError(f"--coeffs {str(p)!r} does not parse: {why}") from None
        if not isinstance(data, dict):
            raise FFAccelError(f"--coeffs {str(p)!r} must hold name = value pairs")
        for k, v in data.items():
            if k not in values:
                raise FFAccelError(f"--coeffs: unknown coefficient {k!r} (allowed: {', '.join(values)})")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e30:   # NaN, 10**400
                raise FFAccelError(f"--coeffs: {k}={v!r} must be a positive number")
            if k == "activity" and v > 1:
                raise FFAccelError(f"--coeffs: activity={v} must be in (0, 1]")
            values[k] = float(v)
            sources[k] = f"user file {p.name}"
    return Coeffs(values, sources, tech)
