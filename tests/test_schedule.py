"""The schedule (ffaccel.schedule): memory and register maps, passes and the cycle formula
worked out by hand for small configs (the RTL's agreement is tests/test_engine.py and
tests/test_controller.py), and the structure rules of ffaccel/hw that it makes possible."""

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.schedule import schedule


def test_memory_map_by_hand():
    # 10 inputs -> 5 -> 3 on 2 columns: layer tiles 3 and 2
    mp = schedule(AccelConfig(inputs=10, layers=(5, 3), classes=3, rows=3, cols=2)).memory
    assert (mp.tiles, mp.wbase, mp.weight_words) == ((3, 2), (0, 30), 30 + 2 * 5)
    assert (mp.bbase, mp.bias_words, mp.head_tiles, mp.hbase) == ((0, 3), 5, 0, ())
    op = schedule(AccelConfig(inputs=10, layers=(5, 3), classes=3, rows=3, cols=2, mode="op")).memory
    # heads (3 classes -> 2 tiles) follow the layers: 2 tiles x 5 inputs, then 2 x 3
    assert (op.head_tiles, op.hbase, op.weight_words) == (2, (40, 50), 56)
    assert (op.hbbase, op.bias_words) == ((5, 7), 9)
    assert op.waddr_bits == 6 and op.baddr_bits == 4


def test_register_map_by_hand():
    cfg = AccelConfig(inputs=10, layers=(5, 3, 4), classes=3, thresholds=(7, -2))
    regs = schedule(cfg).regs
    # MP: no heads, so no head shift bases (their slots 6..8 stay free)
    assert [(r.name, r.addr) for r in regs.registers] == [
        ("threshold0", 0), ("threshold1", 1), ("shift0", 3), ("shift1", 4), ("shift2", 5), ("exit_enable", 9),
        ("score_mask", 10)]
    op = schedule(cfg.replace(mode="op")).regs
    assert [r.addr for r in op.group("head_shift")] == [6, 7, 8] and op.group("exit_enable")[0].addr == 9
    assert [r.reset for r in regs.group("threshold")] == [7, -2] and regs.group("exit_enable")[0].reset == 1
    assert regs.group("shift")[0].reset == 12 + 7 - 4        # rsqrt_frac + wfrac - afrac of the defaults
    assert regs.addr_bits == 4 and regs.data_bits == max(cfg.score_bits, 7)
    assert schedule(cfg.replace(thresholds=())).regs.group("exit_enable")[0].reset == 0
    # every layer scored unless the config skips some: bit l for layer l+1
    assert regs.group("score_mask")[0].reset == 0b111 and regs.score_mask == 10
    assert schedule(cfg.replace(score_mask=(1, 0, 1))).regs.group("score_mask")[0].reset == 0b101


def test_passes_by_hand():
    share = schedule(AccelConfig(inputs=10, layers=(5, 3), classes=3, rows=2, cols=2))
    p0, p1 = share.layer_passes
    # layer 1 shared: the image (inputs 3..9) through row 0, then 3 label words per tile
    assert (p0.k, p0.k_first, p0.label_words, p0.groups, p0.shared, p0.src) == (7, 3, 3, (3,), True, 0)
    assert p0.period(3) == 3 + 7
    # layer 2: 3 copies on 2 rows -> groups of 2 and 1, reading bank set 1
    assert (p1.k, p1.groups, p1.src, share.copy_groups, share.banks) == (5, (2, 1), 1, 2, 3)
    noshare = schedule(AccelConfig(inputs=10, layers=(5, 3), classes=3, rows=2, cols=2, label_share=False))
    assert (noshare.layer_passes[0].k, noshare.layer_passes[0].label_words) == (10, 0)
    op = schedule(AccelConfig(inputs=10, layers=(5, 3), classes=3, rows=4, cols=2, mode="op"))
    assert [h.src for h in op.head_passes] == [1, 0] and [p.src for p in op.layer_passes] == [0, 1]
    assert op.banks == 4 and op.batch_size == 4 and op.head_passes[1].n_in == 3


def test_cycle_formula_by_hand():
    # MP, 6 inputs -> 4 on a 2x4 array, 2 classes, shared: one tile, k 4, 2 label words
    # period 2 + max(4, 2) = 6; FLUSH 4 + 2 + 2 + 17 - 6 = 19 (post = 17: command, read-data, operand,
    # product and shadow registers, drain stages A1 and A2, 9 post-processing stages, the flush test);
    # NORM 2 + 6 + 19 + EXIT 1 + 2
    # (the exit comparator over 2 classes: one tree level and the threshold stage)
    s = schedule(AccelConfig(inputs=6, layers=(4,), classes=2, rows=2, cols=4))
    assert s.exit_latency == 2 and schedule(AccelConfig(inputs=16, layers=(4,), classes=10)).exit_latency == 5
    assert s.latency.post == 17 and s.latency.tile_go == 4
    assert s.inference_cycles(1) == {"total": 31, "setup": 1,
                                     "layers": [{"layer": 1, "cycles": 30,
                                                 "phases": {"norm": 2, "stream": 6, "flush": 19, "exit": 3}}]}
    # OP, batch of 3 on 3 rows: layer 6 -> 4 (1 tile, period max(6, 3) = 6, FLUSH 6+3+17-6 = 20),
    # head 4 -> 2 classes (1 tile, period max(4, 3) = 4, FLUSH 4+3+17-4 = 20), NORM 3, EXIT 3 + 2, EXIT2 1
    s = schedule(AccelConfig(inputs=6, layers=(4,), classes=2, rows=3, cols=4, mode="op"))
    assert s.inference_cycles(1, 3)["total"] == (1 + 3) + (6 + 20 + 3 + 4 + 20 + 5 + 1)
    # a batch of 1 (drained rows 1): periods are the streamed inputs alone
    assert s.inference_cycles(1, 1)["layers"][0]["phases"]["flush"] == 6 + 1 + 17 - 6
    with pytest.raises(ValueError, match="exit_layer"):
        s.inference_cycles(2)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 50), rows=st.integers(1, 9), mode=st.sampled_from(["mp", "op"]))
def test_batches_partition_the_samples_in_order(n, rows, mode):
    s = schedule(AccelConfig(inputs=20, layers=(4,), classes=3, rows=rows, mode=mode))
    b = s.batches(n)
    assert [i for s0, k in b for i in range(s0, s0 + k)] == list(range(n))
    assert all(1 <= k <= s.batch_size for _, k in b) and s.batch_size == (1 if mode == "mp" else rows)


def test_schedule_is_computed_once_per_config():
    cfg = AccelConfig(inputs=20, layers=(4,), classes=3)
    assert schedule(cfg) is schedule(AccelConfig(inputs=20, layers=(4,), classes=3))


def test_no_hardware_function_needs_a_scroll_bar():
    """One unit per module, logic in short functions: none in ffaccel/hw over 80 lines."""
    hw = Path(__file__).resolve().parents[1] / "ffaccel" / "hw"
    long = []
    for path in sorted(hw.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.name} {n} lines")
    assert not long, long


def test_skip_entries_by_hand():
    """Zero skipping's stream, worked out by hand: inputs 2..19 in words of 4; word 0
    (inputs 2, 3 in range) has 3 set, word 1 has 5, word 2 none (one empty entry), word 3
    has 12, word 4 has 19."""
    from ffaccel.schedule import skip_entries, skip_length, word_span
    nz = np.zeros(20, dtype=bool)
    nz[[0, 3, 5, 12, 19]] = True                 # input 0 is outside the range
    assert skip_entries(nz, 2, 20, 4).tolist() == [3, 5, -1, 12, 19]
    assert skip_length(nz, 2, 20, 4) == 5
    assert skip_entries(nz, 13, 19, 4).tolist() == [-1, -1]          # 12 and 19 are outside
    assert skip_entries(np.ones(7, dtype=bool), 2, 7, 4).tolist() == [2, 3, 4, 5, 6]
    assert word_span(2, 20, 4) == (0, 4, 0b1100, 0b1111)
    assert word_span(13, 19, 4) == (3, 4, 0b1110, 0b0111)
    with pytest.raises(ValueError, match="range"):
        skip_entries(nz, 5, 5, 4)


def test_zero_skipping_cycles_need_the_data():
    cfg = AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=2, cols=4, zero_skip=True)
    with pytest.raises(ValueError, match="depend on the data"):
        schedule(cfg).inference_cycles(2)
    every = schedule(cfg).inference_cycles(2, kept=[(None, None)] * 2)["total"]
    assert every == schedule(cfg.replace(zero_skip=False)).inference_cycles(2)["total"]
    # layer 1 (shared): 3 tiles of 3 label words + max(17 image inputs, 3 rows) = 20 cycles;
    # with 4 entries 3 + max(4, 3) = 7; FLUSH k + w + n + post - P is post + 3 either way
    fewer = schedule(cfg).inference_cycles(2, kept=[(4, None), (None, None)])["total"]
    assert every - fewer == 3 * (20 - 7)


def test_group_wait_of_mp_batches_with_zero_skipping():
    """MP batches with zero skipping: each copy group streams its own samples' map, so its
    stream length may be shorter than the previous group's; the first tile of each group
    after the first waits n - 1 cycles (n: the previous group's drained rows)."""
    cfg = AccelConfig(inputs=20, layers=(9, 7), classes=2, rows=3, cols=4, abits=5, afrac=2, batch=3,
                      zero_skip=True)
    s = schedule(cfg)
    assert s.group_wait and s.group_rows == (3, 3)
    assert not schedule(cfg.replace(batch=1)).group_wait          # one sample's map for every group
    assert not schedule(cfg.replace(zero_skip=False)).group_wait  # every group streams every input
    p = s.layer_passes[1]
    # tiles x (max(k, n) per group) + (3 - 1) before the second group
    assert p.stream_cycles(None, (5, 2), (0, 1), True) == p.tiles * (5 + 3) + 2
    assert p.stream_cycles(None, (5,), (1,), True) == p.tiles * 5
    assert p.stream_cycles(None, (5, 2), (0, 1), False) == p.tiles * (5 + 3)
