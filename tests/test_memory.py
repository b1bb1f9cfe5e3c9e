"""Weight memory model (ffaccel.energy.memory): placement under an on-chip budget, banked
access energy worked out by hand from the coefficient table, the monolithic model it
replaces, leakage and area of the bits that exist, and bad sizes refused."""

import math
import subprocess
import sys

import pytest

from ffaccel.config import AccelConfig, ConfigError
from ffaccel.energy.coeffs import load_coeffs
from ffaccel.energy.memory import layer_words, weight_memory
from ffaccel.energy.model import EnergyModel

C = load_coeffs()
# 784-2x500 MP on a 10x16 array, W4: 16 lanes of 4 bits = 64-bit words
NET = dict(inputs=784, layers=(500, 500), classes=10, rows=10, cols=16, wbits=4, weight_mem="sram")


def test_words_follow_the_memory_map():
    cfg = AccelConfig(**NET)
    assert layer_words(cfg) == (32 * 784, 32 * 500)          # ceil(500 / 16) tiles x fan-in
    op = AccelConfig(**{**NET, "mode": "op"})
    assert layer_words(op) == (32 * 784 + 500, 32 * 500 + 500)  # one head tile per layer (10 classes)
    lls = AccelConfig(**{**NET, "mode": "op", "exit_head": "lls"})
    assert layer_words(lls) == (32 * 784, 32 * 500)          # generated heads are not stored


def test_monolithic_is_the_size_interpolated_sram():
    cfg = AccelConfig(**NET, sram_kib=1)
    m = weight_memory(cfg, C)
    size = (32 * 784 + 32 * 500) * 8
    assert m.banks == 1 and m.sram_bytes == size and m.e_wire_pj == 0
    # between Horowitz's 32 KB (20 pJ) and 1 MB (100 pJ) points, log-log, 64-bit words
    slope = math.log(100 / 20) / math.log(32)
    assert m.e_word_pj == pytest.approx((20 * (size / 32768) ** slope,) * 2)
    small = AccelConfig(**{**NET, "layers": (16,), "sram_kib": 512})
    assert weight_memory(small, C).sram_bytes == 512 * 1024      # at least sram_kib


def test_banked_access_by_hand():
    cfg = AccelConfig(**NET, sram_bank_kib=8)
    m = weight_memory(cfg, C)
    words = 32 * 784 + 32 * 500
    banks = math.ceil(words * 8 / 8192)
    assert m.banks == banks == 41 and m.sram_bytes == banks * 8192
    # a bank: Horowitz's 8 KB point, 10 pJ per 64 bits
    assert m.e_bank_pj == pytest.approx(10.0)
    side = math.sqrt(banks * 8192 * 8 * 0.5) / 1000          # mm, 0.5 um^2 per bit
    bank_side = math.sqrt(8192 * 8 * 0.5) / 1000
    mm = 0.75 * (side - bank_side)
    assert m.wire_mm == pytest.approx(mm)
    # 64 data bits and 16 address bits (41,088 words) at 0.1 pJ per bit and mm
    assert m.e_wire_pj == pytest.approx(0.1 * (64 + 16) * mm)
    assert m.e_word_pj == pytest.approx((10.0 + 0.1 * 80 * mm,) * 2)
    # one bank: no wires
    one = weight_memory(AccelConfig(**{**NET, "layers": (16,)}, sram_bank_kib=64), C)
    assert one.banks == 1 and one.e_wire_pj == 0 and one.sram_bytes == 65536


def test_banking_and_the_node():
    """Smaller banks cost less per read until the wires dominate; a finer node scales both."""
    e = {b: weight_memory(AccelConfig(**NET, sram_bank_kib=b), C).e_sram_pj for b in (2, 8, 32, 256)}
    mono = weight_memory(AccelConfig(**NET), C).e_sram_pj
    assert e[2] < e[8] < e[32] < e[256] < mono
    c28 = load_coeffs(tech="28nm")
    m28 = weight_memory(AccelConfig(**NET, sram_bank_kib=8), c28)
    assert m28.e_sram_pj < weight_memory(AccelConfig(**NET, sram_bank_kib=8), C).e_sram_pj


def test_budget_places_layers_in_order():
    # layer 1: 25,088 words x 8 B = 196 KiB; layer 2: 125 KiB; a third of 16 -> 16 words
    cfg = AccelConfig(**{**NET, "layers": (500, 500, 16)}, sram_bank_kib=8, onchip_kib=200)
    m = weight_memory(cfg, C)
    assert m.onchip == (True, False, True)        # layer 2 does not fit; layer 3 still does
    assert m.e_word_pj[1] == pytest.approx(1950.0)       # 64-bit DRAM access
    assert m.e_word_pj[0] == m.e_word_pj[2] == m.e_sram_pj
    assert m.sram_bytes == math.ceil((25088 + 500 * 1) * 8 / 8192) * 8192
    dram = weight_memory(AccelConfig(**{**NET, "weight_mem": "dram"}), C)
    assert dram.onchip == (False, False) and dram.sram_bytes == 0


def test_weight_sram_leaks_and_takes_area():
    on = EnergyModel(AccelConfig(**NET, sram_bank_kib=8), C)
    off = EnergyModel(AccelConfig(**{**NET, "weight_mem": "dram"}), C)
    assert on.sram_bits - off.sram_bits == 41 * 8192 * 8
    assert on.leak_pw - off.leak_pw == pytest.approx(20.0 * 41 * 8192 * 8)
    assert on.area_mm2 - off.area_mm2 == pytest.approx(41 * 8192 * 8 * 0.5 / 1e6)


@pytest.mark.parametrize("bad", [{"sram_bank_kib": 3}, {"sram_bank_kib": 2048}, {"onchip_kib": -1}])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ConfigError):
        AccelConfig(**NET, **bad)


def test_cli_refuses_a_bank_size_in_one_line():
    r = subprocess.run([sys.executable, "-m", "ffaccel.energy", "--layers", "2x16", "--inputs", "32",
                        "--sram-bank-kib", "12"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "sram_bank_kib=12 must be a power of two" in r.stderr and len(r.stderr.strip().splitlines()) == 1
