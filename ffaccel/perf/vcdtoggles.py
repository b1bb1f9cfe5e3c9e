"""Bit toggles per component counted from an RTL VCD (the reference for the activity
model's predictions), with a small streaming reader of its own (see :func:`count_toggles`).

Components are matched by scope and variable name as the engine names them: PE scopes
``pe_<r>_<c>`` (``prod`` product register, ``acc`` accumulator, ``result`` shadow; the
operand copies ``a_q`` and ``b_q`` of its ``mul`` unit), the array's row operands
``x__<r>`` and weight operands ``w__<c>`` (the weight-memory data, or the LLS basis
generator's output while an LLS head streams), and the activation-bank
memories ``act<s>_<b>`` (their read-port data, then write-port data).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path



def _match(scopes: tuple[str, ...], name: str, order: int) -> str | None:
    leaf = scopes[-1] if scopes else ""
    if re.fullmatch(r"pe_\d+_\d+", leaf):
        if name == "acc":
            return "pe_acc"
        if name == "prod":
            return "pe_product"
        if name == "result":
            return "pe_shadow"
    if leaf == "mul" and len(scopes) > 1 and re.fullmatch(r"pe_\d+_\d+", scopes[-2]) and name in ("a_q", "b_q"):
        return "pe_operand"
    if leaf == "array" and re.fullmatch(r"x__\d+", name):
        return "array_x"
    if leaf == "array" and re.fullmatch(r"w__\d+", name):
        return "weight_bus"
    if re.fullmatch(r"act\d_\d+", leaf) and "data" in name:
        return "act_read" if order == 0 else "act_write"
    return None


def count_toggles(path: str | Path) -> dict[str, int]:
    """Total bit toggles per component over the whole VCD (initial values excluded;
    one value per signal per time step).

    Not pyvcd: its tokenizer rejects the ``$``-prefixed variable names that Amaranth's
    simulator writes (``$signature__data``), so the few VCD constructs needed here (scope,
    var, value changes) are read directly.
    """
    comp_of: dict[str, str] = {}
    scopes: list[str] = []
    data_order: dict[tuple, int] = defaultdict(int)
    last: dict[str, int] = {}
    totals: dict[str, int] = defaultdict(int)

    pending: dict[str, int] = {}

    def change(code: str, val: int) -> None:
        # several changes in one time step are delta-cycle glitches of the simulator:
        # only the value the step settles on counts
        if code in comp_of:
            pending[code] = val

    def settle() -> None:
        for code, val in pending.items():
            prev = last.get(code)
            if prev is not None:
                totals[comp_of[code]] += (prev ^ val).bit_count()
            last[code] = val
        pending.clear()

    with open(path, "r", errors="replace") as f:
        in_header = True
        for line in f:
            if in_header:
                toks = line.split()
                if not toks:
                    continue
                if toks[0] == "$scope":
                    scopes.append(toks[2])
                elif toks[0] == "$upscope":
                    scopes.pop()
                elif toks[0] == "$var":
                    code, name, key = toks[3], toks[4], tuple(scopes)
                    order = 0
                    if "data" in name:
                        order = data_order[key]
                        data_order[key] += 1
                    comp = _match(key, name, order)
                    if comp and code not in comp_of:
                        comp_of[code] = comp
                elif toks[0] == "$enddefinitions":
                    in_header = False
                continue
            c = line[:1]
            if c == "#":
                settle()
            elif c in ("b", "B"):
                bits, code = line[1:].split()
                val = int(bits.replace("x", "0").replace("z", "0").replace("X", "0").replace("Z", "0"), 2)
                change(code, val)
            elif c in ("0", "1", "x", "z", "X", "Z"):
                change(line[1:].strip(), 1 if c == "1" else 0)
    settle()
    return dict(totals)
