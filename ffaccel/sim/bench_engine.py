"""cocotb bench of the whole engine (``ffaccel_top``: engine + $readmemh ROMs).

Runs inside the simulator; imports only the standard library, cocotb and
ffaccel.sim.drivers. Its job comes from the JSON file named by ``$FFACCEL_SIM_JOB``
(written by :func:`ffaccel.sim.runner.run_engine_job`)::

    {"out": "result.json", "classes": NC, "batches": [[[pixel, ...], ...], ...],
     "layouts": {"pixels": [field, ...], "result": [...], "probe": [...]},   # from the manifest
     "cfg_writes": [[addr, value], ...],                   # thresholds / exit enable
     "in_stall": p, "out_stall": p, "seed": s, "max_cycles": N, "quiet_cycles": M,
     "port": {"answers": {"batch:layer:copy": [word, ...]}, "in_words": [per layer],
              "latency": cycles, "stall": p}}                      # physical layers only

It resets the DUT, writes the registers through the cfg port, streams every batch
(``last`` on the final pixel of a batch) with random idle cycles, accepts results with
random back-pressure, records the activation probe beats, plays P behind the external-layer
port (physical layers: the recorded answers, after a latency, with random stalls), then watches ``quiet_cycles``
more cycles with no input (an engine must stay idle: anything it emits then is spurious).
Everything goes to ``out``; the comparison with the golden model happens outside the
simulator (:mod:`ffaccel.sim.scoreboard`). The test itself fails only if the bench cannot run.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, Timer

from ffaccel.sim.drivers import ConfigWriter, ExternalLayer, PackedLayout, ProbeMonitor, StreamDriver, StreamSink

JOB_ENV = "FFACCEL_SIM_JOB"
PERIOD_NS = 10


def _load_job() -> dict:
    path = os.environ.get(JOB_ENV)
    if not path:
        raise RuntimeError(f"${JOB_ENV} is not set: the bench needs a job file (see ffaccel.sim.runner)")
    with open(path) as f:
        return json.load(f)


def _sim_cycles() -> int:
    from cocotb.simtime import get_sim_time
    return int(get_sim_time("ns") // PERIOD_NS)


def _external_layer(dut, clk, job: dict, lay: dict, sink, sizes: list, rng: random.Random):
    """P behind the external-layer port: it answers each request with the job's recorded
    answer for (batch, layer, copy), the batch being the one whose results are not all
    out yet (a batch's requests all come before its results)."""
    port = job["port"]
    answers = port["answers"]                      # "batch:layer:copy" -> answer words
    ends = [sum(sizes[:i + 1]) for i in range(len(sizes))]
    calls = []

    def answer(beats):
        batch = sum(1 for e in ends if e <= sink.count)
        layer, copy = int(beats[0]["layer"]), int(beats[0]["copy"])
        calls.append([batch, layer, copy, [int(b["data"]) for b in beats]])
        return answers.get(f"{batch}:{layer}:{copy}", [0] * int(port["in_words"][layer]))

    p = ExternalLayer(dut, clk, "port_out__", "port_in__", lay["port_out"], answer,
                      latency=int(port["latency"]), stall_prob=float(port["stall"]), rng=rng)
    p.calls = calls
    return p.start()


@cocotb.test()
async def engine_job(dut):
    """Stream the job's samples through the engine and record results and probes."""
    job = _load_job()
    t_wall = time.perf_counter()
    rng = random.Random(int(job.get("seed", 0)))
    nc = int(job["classes"])
    clk = dut.clk
    Clock(clk, PERIOD_NS, unit="ns", impl="gpi").start()   # C clock (Icarus would get a Python one)

    # quiet inputs, then a synchronous reset
    dut.pixels__valid.value = 0
    dut.pixels__payload.value = 0
    dut.result__ready.value = 0
    dut.regs__we.value = 0
    dut.regs__addr.value = 0
    dut.regs__data.value = 0
    if "port" in job:
        dut.port_out__ready.value = 0
        dut.port_in__valid.value = 0
        dut.port_in__payload.value = 0
    dut.rst.value = 1
    await ClockCycles(clk, 3)
    await FallingEdge(clk)
    dut.rst.value = 0
    c0 = _sim_cycles()

    cfgw = ConfigWriter(dut, clk, "regs__")
    await cfgw.write_many([(int(a), int(v)) for a, v in job.get("cfg_writes", [])])

    lay = {k: PackedLayout(v) for k, v in job["layouts"].items()}
    sink = StreamSink(dut, clk, "result__", lay["result"],
                      stall_prob=float(job.get("out_stall", 0.0)), rng=random.Random(rng.getrandbits(32)))
    probe = ProbeMonitor(dut, clk, "probe__", lay["probe"], tag=lambda: sink.count)
    drv = StreamDriver(dut, clk, "pixels__", lay["pixels"], idle_prob=float(job.get("in_stall", 0.0)),
                       rng=random.Random(rng.getrandbits(32)))
    batches = job["batches"]
    phys = _external_layer(dut, clk, job, lay, sink, [len(b) for b in batches], random.Random(rng.getrandbits(32))) \
        if "port" in job else None
    probe.start()
    sink.start()
    drv.start()

    expected = sum(len(b) for b in batches)
    beats = []
    for batch in batches:
        for j, sample in enumerate(batch):
            for i, px in enumerate(sample):
                beats.append({"data": int(px), "last": int(j == len(batch) - 1 and i == len(sample) - 1)})
    drv.send(beats)

    max_cycles = int(job.get("max_cycles", 1_000_000))
    # a Timer, not ClockCycles: the latter wakes Python on every clock edge
    await First(sink.count_event(expected).wait(), Timer(max_cycles * PERIOD_NS, unit="ns"))
    timeout = sink.count < expected
    n_probe = len(probe.beats)

    # watch for spurious activity with no input (in_valid low after the last beat)
    quiet = int(job.get("quiet_cycles", 0))
    if quiet and not timeout:
        await Timer(quiet * PERIOD_NS, unit="ns")
    await FallingEdge(clk)
    busy = int(dut.busy.value == 1)
    drv.stop()
    sink.stop()
    probe.stop()
    if phys is not None:
        phys.stop()
    cycles = _sim_cycles() - c0

    out = {
        "results": [dict(b) for b in sink.beats],
        "probes": [[b["layer"], b["copy"], b["tile"], b["data"], b["_tag"]] for b in probe.beats],
        "expected_results": expected,
        "timeout": timeout,
        "probe_beats_before_quiet": n_probe,
        "busy_at_end": busy,
        "sent_beats": drv.sent,
        "total_beats": len(beats),
        "in_idle_cycles": drv.idle_cycles,
        "out_stall_cycles": sink.stall_cycles,
        "cfg_writes": cfgw.writes,
        "cycles": cycles,
        "sim_seconds": time.perf_counter() - t_wall,
    }
    if phys is not None:
        # each request to P: [batch, layer, copy, [words]]; the scoreboard checks them
        out["port_requests"] = phys.calls
        out["port_stall_cycles"] = phys.stall_cycles
    for r in out["results"]:
        r["scores"] = [r.pop(f"scores.{c}") for c in range(nc)]
    with open(job["out"], "w") as f:
        json.dump(out, f)
    await Timer(1, unit="ns")
