"""Deliberate bugs for mutation testing of the benches: substitute units, never used by
the generator's command line. Each entry names the units it replaces; every one must be
caught by the verification (tests/test_verify.py)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, unsigned

from ..hw.accum import Accumulators
from ..hw.basis import LLSBasis
from ..hw.controller import Controller
from ..hw.drain import Drain
from ..hw.exitcmp import ExitCmp
from ..hw.nzmap import NonzeroMap
from ..hw.port import ExternalPort
from ..hw.postproc import PostProc
from ..hw.rng import RandomSource


class RoundAtWrongBit(PostProc):
    """Requantisation rounds at bit shift-2 instead of shift-1."""
    def half(self, shift, width):
        return (Const(1, unsigned(width + 1)) << shift) >> 2


class WrongProbeTile(PostProc):
    """Activation probe beats carry the next tile's number."""
    def probe_tile(self, tile):
        return tile + 1


class TakesInvalidPixels(Controller):
    """LOAD takes input beats without looking at ``valid``."""
    def accept(self, valid):
        return 1


class HighestIndexWinsTies(ExitCmp):
    """argmax ties go to the highest index instead of the lowest."""
    def better(self, score, best):
        return score >= best


class ThresholdOffByOne(ExitCmp):
    """Exit only when the score exceeds the threshold (> instead of >=)."""
    def meets(self, value, threshold):
        return value > threshold


class LabelTermOffByOne(Drain):
    """MP label sharing adds (label_value - 1) times the label weight."""
    def label_value(self):
        return self.sched.cfg.label_value - 1


class HeadIncrementDropsLastLane(Accumulators):
    """OP head logits ignore the increment of the last lane."""
    def logit_lanes(self):
        return range(self.sched.cfg.cols - 1) if self.sched.cfg.cols > 1 else range(0)


class ScoresEveryLayer(Accumulators):
    """The scores take every layer's increment, ignoring the score mask."""
    def score_enable(self, layer):
        return 1


class PhaseNeverRestarts(LLSBasis):
    """The LLS basis phase runs on across tiles instead of restarting at each tile's first input."""
    def restart(self, first):
        return 0


class OnesCountAsZero(NonzeroMap):
    """Zero skipping: an activation of 1 counts as zero (its input is skipped)."""
    def nonzero(self, value):
        return value > 1


class MapNeverClears(NonzeroMap):
    """Zero skipping: the non-zero map keeps the bits of earlier layers and samples."""
    def clears(self, clear):
        return 0


class ResultTagSwapped(Controller):
    """Results of a batch carry the tag of the neighbouring row (rows 0 and 1 swapped, ...)."""
    def result_row(self, idx):
        return idx ^ 1


class StreamsExitedSamples(Controller):
    """MP batches: a pass also streams the copy groups of samples that have exited."""
    def streamed_samples(self):
        st = self._state
        return Cat(*[b < st.nrows for b in range(self.sched.batch_size)])


class StreamsTheBatchMap(Controller):
    """MP batches, zero skipping: every copy group streams the union of the batch's
    non-zero maps instead of its own samples'."""
    def map_samples(self):
        return self._live()


class EpochNeverSteps(RandomSource):
    """BSFF: the random source's epoch stays at the seed: every inference draws the same bits."""
    def step(self, epoch):
        return epoch


class TiedBiasesRotated(PostProc):
    """BSFF: tied unit k of a column adds the bias of unit k + 1 (mod k)."""
    def bias_lane(self, c, k):
        cfg = self.sched.cfg
        return c * cfg.bias_lanes + (k + 1) % cfg.unit_lanes


class CosRefLaneIsTheBias(PostProc):
    """Cosine engine: stage D reads the reference code from the column's bias lane."""
    def ref_lane(self, c):
        return c * self.sched.cfg.bias_lanes


class CosineTruncates(Accumulators):
    """Cosine engine: the COS pipeline's shift truncates instead of rounding half up."""
    def cos_half(self, shift, width):
        return 0


class PortAnswerShifted(ExternalPort):
    """Physical layers: P's answer is written one word after where the pass reads it."""
    def answer_addr(self, pbase, widx):
        return pbase + widx + 1


class PortSendsNoLabel(ExternalPort):
    """Physical layers: layer 1's words go to P without the label (or neutral) pixels."""
    def outgoing(self, word, idx, cp, embedded, n_u):
        return super().outgoing(word, idx, cp, 0, n_u)


FAULTS = {
    "requant_round": {"postproc": RoundAtWrongBit},
    "probe_tile": {"postproc": WrongProbeTile},
    "input_stall": {"controller": TakesInvalidPixels},
    "exit_tie": {"exitcmp": HighestIndexWinsTies},
    "threshold_off_by_one": {"exitcmp": ThresholdOffByOne},
    "label_share_term": {"drain": LabelTermOffByOne},
    "op_head_increment": {"accum": HeadIncrementDropsLastLane},
    "lls_phase_restart": {"basis": PhaseNeverRestarts},
    "score_mask_ignored": {"accum": ScoresEveryLayer},
    "skip_ones": {"nzmap": OnesCountAsZero},
    "skip_map_stale": {"nzmap": MapNeverClears},
    "result_tag": {"controller": ResultTagSwapped},
    "exited_groups_streamed": {"controller": StreamsExitedSamples},
    "skip_batch_map": {"controller": StreamsTheBatchMap},
    "bsff_epoch_frozen": {"rng": EpochNeverSteps},
    "bsff_tied_bias": {"postproc": TiedBiasesRotated},
    "cos_ref_lane": {"postproc": CosRefLaneIsTheBias},
    "cos_rounding": {"accum": CosineTruncates},
    "port_answer_addr": {"port": PortAnswerShifted},
    "port_no_label": {"port": PortSendsNoLabel},
}


def fault_units(fault: str | None) -> dict | None:
    if fault is None:
        return None
    if fault not in FAULTS:
        raise ValueError(f"fault={fault!r} (allowed: {', '.join(FAULTS)})")
    return FAULTS[fault]


def unbuilt_unit(fault: str, cfg) -> str | None:
    """The unit ``fault`` replaces when ``cfg``'s engine does not build it (the fault would
    change nothing), with the option that builds it; else None."""
    needs = {"nzmap": ("zero skipping", cfg.zero_skip), "basis": ("LLS heads", cfg.exit_head != "learned"),
             "rng": ("--neuron bsff", cfg.bsff), "port": ("--physical", bool(cfg.physical))}
    if fault == "port_no_label" and not (cfg.physical_at[0]):
        return "port in front of layer 1 (--physical with at=1 or none)"
    if fault in ("cos_ref_lane", "cos_rounding") and not cfg.cos_engine:
        return "cosine unit (--goodness cos with --mode mp)"
    if fault == "bsff_tied_bias" and not (cfg.bsff and cfg.bsff_k > 1):
        return "postproc (--neuron bsff with --bsff-k 2 or more)"
    batch = cfg.mode == "mp" and cfg.batch > 1
    if fault == "skip_batch_map" and not (cfg.zero_skip and batch):
        return "MP batch (--infer-batch) with zero skipping"
    if fault == "exited_groups_streamed" and not batch:
        return "MP batch (--infer-batch)"
    for unit in FAULTS[fault]:
        if unit in needs and not needs[unit][1]:
            return f"{unit} ({needs[unit][0]})"
    return None

