"""Scoreboard: a bench run of the engine (the JSON :mod:`ffaccel.sim.bench_engine` writes) against
the bit-exact golden model, in plain Python outside the simulator.

Results are matched to samples by their tag: a batch's results (MP ``batch`` samples, OP
``rows``) are the next results of the stream, each carrying its sample's ``row`` in the
batch; a row out of the batch, a row given twice or a row missing is an error. Per
sample it checks the label, the exit layer, the final scores, the result's ``cycles``
against the schedule's cycle model (the batch's exits and size) and every activation
word the probe showed for the sample's layers
(values of the real neurons, zeros in the padding lanes of the last tile, no beat
missing, duplicated or extra). Whole-run checks: no timeout, no spurious result or probe
beat once the inputs ran out.

Probe beats carry the number of results accepted when they were seen (``_tag``): a batch's
beats all come before its first result and after the previous batch's last result, so
the tag is the index of the batch's first sample, whatever the stalls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..hw.port import word_codes


@dataclass
class SampleOutcome:
    index: int
    label: int | None
    exit_layer: int | None
    cycles: int | None
    match: bool
    errors: list[str] = field(default_factory=list)
    expected: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"label": self.label, "exit_layer": self.exit_layer, "cycles": self.cycles, "match": self.match}


@dataclass
class Report:
    samples: list[SampleOutcome]
    run_errors: list[str]
    sim_cycles: int = 0
    sim_seconds: float = 0.0

    @property
    def mismatches(self) -> int:
        """Mismatching samples (a run-level error, e.g. spurious output, counts as one more)."""
        return sum(1 for s in self.samples if not s.match) + (1 if self.run_errors else 0)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def summary(self, limit: int = 8) -> str:
        lines = [f"{self.mismatches} mismatches in {len(self.samples)} samples"]
        lines += [f"run: {e}" for e in self.run_errors[:limit]]
        bad = [s for s in self.samples if not s.match]
        for s in bad[:limit]:
            lines.append(f"sample {s.index}: " + "; ".join(s.errors[:4]))
        return "\n".join(lines)


def _check_port(cfg, x, gold, batches, requests: list, errs: dict) -> None:
    """The requests the bench's P got, ``[batch, layer, copy, [words]]``: exactly one per
    live copy and physical layer, each carrying the golden model's block input (layer 1:
    the embedded sample; later: the previous layer's activations)."""
    from ..model.embed import embed_all, embed_neutral
    from ..schedule import schedule
    sched = schedule(cfg)
    emb = embed_all(x, cfg) if cfg.mode == "mp" else embed_neutral(x, cfg)[:, None, :]
    want = {}
    for b, (s0, nb) in enumerate(batches):
        for j in range(nb):
            for layer, port in enumerate(sched.ports):
                if port is None or layer >= gold.exit_layer[s0 + j]:
                    continue
                for c in range(cfg.copies):
                    cp = sched.copy_of(j, c) if cfg.mode == "mp" else j
                    u = emb[s0 + j, c] if layer == 0 else gold.activations[layer - 1][s0 + j, c]
                    want[(b, layer, cp)] = (s0 + j, [int(v) for v in u])
    seen = set()
    for b, layer, cp, words in requests:
        key = (b, layer, cp)
        if key not in want:
            errs[batches[min(b, len(batches) - 1)][0]].append(f"P got an unexpected request: batch {b}, "
                                                             f"layer {layer + 1}, copy {cp}")
            continue
        i, u = want[key]
        if key in seen:
            errs[i].append(f"P got copy {cp}'s layer-{layer + 1} input twice")
        seen.add(key)
        got = [v for w in words for v in word_codes(w, cfg.cols, cfg.abits)]
        if got[:len(u)] != u or any(got[len(u):]):
            errs[i].append(f"P got layer {layer + 1} copy {cp}'s input {got[:len(u)]} != {u}")
    for key in sorted(set(want) - seen):
        errs[want[key][0]].append(f"P never got layer {key[1] + 1} copy {key[2]}'s input")


def compare(qm, x, out: dict, responses=None, exact_cycles: bool = True) -> Report:
    """Score one bench output against ``GoldenModel(qm)`` on samples ``x`` (N, inputs).
    Physical layers: ``responses`` are P's answers the bench replayed; the requests P got
    are checked (every live copy once per physical layer, its block input the golden
    model's); ``exact_cycles=False`` (a P with random latency and stalls): the cycles are
    at least the cycle model's fixed-latency figure."""
    from ..model.golden import GoldenModel
    from ..perf.cycles import unit_stream_lengths
    from ..schedule import schedule

    cfg = qm.cfg
    sched = schedule(cfg)
    x = np.asarray(x, dtype=np.int64)
    n = len(x)
    gold = GoldenModel(qm).run(x, probe=True, responses=responses)
    results = out.get("results", [])
    run_errors: list[str] = []
    if out.get("timeout"):
        run_errors.append(f"timeout: {len(results)} of {n} results")
    if len(results) > n:
        run_errors.append(f"{len(results) - n} results more than samples")
    probes = out.get("probes", [])
    n_before = int(out.get("probe_beats_before_quiet", len(probes)))
    if len(probes) > n_before:
        run_errors.append(f"{len(probes) - n_before} probe beats with no input (spurious inference)")
    if out.get("busy_at_end"):
        run_errors.append("engine busy with no input left")

    errs: dict[int, list[str]] = {i: [] for i in range(n)}
    samples: list[SampleOutcome] = []
    batches = sched.batches(n)

    # results, matched by tag (the row in the batch), cycles
    r0 = 0
    for s0, nb in batches:
        exits = gold.exit_layer[s0:s0 + nb]
        # zero skipping: the stream lengths from the golden activations
        kept = unit_stream_lengths(cfg, x[s0:s0 + nb], [a[s0:s0 + nb] for a in gold.activations], exits) \
            if cfg.zero_skip else None
        want_cyc = sched.inference_cycles(int(exits.max()), nb, kept, exits)["total"]
        got: dict[int, dict] = {}
        for r in results[r0:r0 + nb]:
            j = r.get("row", 0)
            if not 0 <= j < nb:
                for i in range(s0, s0 + nb):
                    errs[i].append(f"a result tagged row {j}, outside the batch of {nb}")
            elif j in got:
                errs[s0 + j].append(f"two results tagged row {j}")
            else:
                got[j] = r
        r0 += nb
        for j in range(nb):
            i = s0 + j
            if j not in got:
                errs[i].append("no result")
                continue
            r = got[j]
            exp = (int(gold.label[i]), int(gold.exit_layer[i]), [int(v) for v in gold.scores[i]])
            if r["label"] != exp[0]:
                errs[i].append(f"label {r['label']} != {exp[0]}")
            if r["exit_layer"] != exp[1]:
                errs[i].append(f"exit_layer {r['exit_layer']} != {exp[1]}")
            if r["scores"] != exp[2]:
                errs[i].append(f"scores {r['scores']} != {exp[2]}")
            if r["cycles"] != want_cyc if exact_cycles else r["cycles"] < want_cyc:
                errs[i].append(f"cycles {r['cycles']} {'!=' if exact_cycles else '<'} {want_cyc} (perf model)")
    if any(cfg.physical_at):
        _check_port(cfg, x, gold, batches, out.get("port_requests", []), errs)

    # activations from the probe beats, grouped by batch (tag = first sample of the batch)
    got: dict[int, list] = {s0: [] for s0, _ in batches}
    for beat in probes[:n_before]:
        lay, cp, t, word, tag = beat
        if tag not in got:
            run_errors.append(f"probe beat (layer {lay}, copy {cp}, tile {t}) outside any batch (tag {tag})")
            continue
        got[tag].append((lay, cp, t, word))
    C, A = cfg.cols, cfg.abits
    # a probe's copy: MP b * classes + c (sample b of the batch, label copy c), OP the row
    per = cfg.classes if cfg.mode == "mp" else 1
    for s0, nb in batches:
        expected: dict[tuple, tuple[int, list[int]]] = {}
        for j in range(nb):
            i = s0 + j
            for lay in range(int(gold.exit_layer[i])):
                n_out = cfg.layers[lay]
                tiles = sched.memory.tiles[lay]
                for copy in range(per):
                    cp = j * per + copy
                    act = gold.activations[lay][i, copy]
                    for t in range(tiles):
                        lo, hi = t * C, min(n_out, (t + 1) * C)
                        vals = [int(v) for v in act[lo:hi]] + [0] * (C - (hi - lo))
                        expected[(lay, cp, t)] = (i, vals)
        seen: set = set()
        for lay, cp, t, word in got[s0]:
            key = (lay, cp, t)
            owner = s0 + cp // per if 0 <= cp // per < nb else s0
            if key not in expected:
                for j in range(nb):
                    errs[s0 + j].append(f"unexpected probe beat layer {lay + 1} copy {cp} tile {t}")
                continue
            if key in seen:
                errs[owner].append(f"duplicate probe beat layer {lay + 1} copy {cp} tile {t}")
                continue
            seen.add(key)
            i, vals = expected[key]
            have = word_codes(word, C, A)
            if have != vals:
                errs[i].append(f"layer {lay + 1} copy {cp} tile {t}: activations {have} != {vals}")
        for key in sorted(set(expected) - seen):
            i, _ = expected[key]
            errs[i].append(f"missing probe beat layer {key[0] + 1} copy {key[1]} tile {key[2]}")

    for i in range(n):
        r = results[i] if i < len(results) else None
        samples.append(SampleOutcome(
            index=i, label=None if r is None else r["label"], exit_layer=None if r is None else r["exit_layer"],
            cycles=None if r is None else r["cycles"], match=not errs[i], errors=errs[i],
            expected={"label": int(gold.label[i]), "exit_layer": int(gold.exit_layer[i])}))
    return Report(samples=samples, run_errors=run_errors, sim_cycles=int(out.get("cycles", 0)),
                  sim_seconds=float(out.get("sim_seconds", 0.0)))
