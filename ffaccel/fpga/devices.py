"""FPGA devices the flow knows: nextpnr's device flag, packages, speed grades and the
resources each has (the pre-check that refuses a design that cannot fit before placement).

Capacities from the vendor data sheets: Lattice ECP5 and ECP5-5G Family Data Sheet
(FPGA-DS-02012), table 1.1 (LUTs, 18x18 multipliers, EBR blocks of 18 kbit = DP16KD);
nextpnr-ecp5 reports the same numbers as "available" (checked on LFE5U-85F: 83,640
TRELLIS_COMB, 83,640 TRELLIS_FF, 156 MULT18X18D). iCE40 UltraPlus Family Data Sheet
(FPGA-DS-02008), table 1.1: the UP5K's 5,280 logic cells (a LUT4 and a flip-flop each),
8 DSP blocks (SB_MAC16), 30 EBR blocks of 4 kbit (SB_RAM40_4K); one speed grade.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FFAccelError


@dataclass(frozen=True)
class Device:
    name: str
    family: str                 # "ecp5"
    flag: str                   # nextpnr's device option
    luts: int                   # LUT4 (TRELLIS_COMB)
    ffs: int
    dsps: int                   # MULT18X18D
    brams: int                  # DP16KD (18 kbit)
    packages: tuple[str, ...]
    speeds: tuple[int, ...]      # () where the family has one speed grade (iCE40)

    @property
    def default_package(self) -> str:
        return "CABGA381" if "CABGA381" in self.packages else self.packages[0]


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("LFE5U-12F", "ecp5", "--12k", 12_096, 12_096, 28, 32, ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
           (6, 7, 8)),
    Device("LFE5U-25F", "ecp5", "--25k", 24_288, 24_288, 28, 56, ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
           (6, 7, 8)),
    Device("LFE5U-45F", "ecp5", "--45k", 43_848, 43_848, 72, 108, ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285",
                                                                  "TQFP144"), (6, 7, 8)),
    Device("LFE5U-85F", "ecp5", "--85k", 83_640, 83_640, 156, 208, ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285"),
           (6, 7, 8)),
    Device("iCE40UP5K", "ice40", "--up5k", 5_280, 5_280, 8, 30, ("sg48", "uwg30"), ()),
)}


def lookup(name: str, package: str | None = None, speed: int | None = None) -> tuple[Device, str, int]:
    """The device, package and speed grade for the user's names; a clear error otherwise
    (checked before any work)."""
    key = {k.upper(): k for k in DEVICES}.get(str(name).upper())
    if key is None:
        raise FFAccelError(f"--device {name!r} is not a device this flow knows (known: {', '.join(DEVICES)})")
    dev = DEVICES[key]
    pkg = dev.default_package if package is None else {p.upper(): p for p in dev.packages}.get(str(package).upper())
    if pkg not in dev.packages:
        raise FFAccelError(f"--package {package!r}: {dev.name} comes in {', '.join(dev.packages)}")
    if not dev.speeds:
        if speed is not None:
            raise FFAccelError(f"--speed {speed!r}: {dev.name} has one speed grade (leave --speed out)")
        return dev, pkg, None
    sp = dev.speeds[0] if speed is None else speed
    if sp not in dev.speeds:
        raise FFAccelError(f"--speed {speed!r}: {dev.name} has speed grades {', '.join(map(str, dev.speeds))}")
    return dev, pkg, sp
