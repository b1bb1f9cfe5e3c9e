"""Reusable cocotb drivers and monitors for valid/ready streams and register ports.

Signals are found as ``<prefix><name>`` on the DUT handle (``valid``, ``ready``,
``payload``: the names Amaranth gives a ``stream.Signature`` port, e.g. ``pixels__valid``).
A struct payload travels as one packed vector; :class:`PackedLayout` packs and unpacks it
from the field list that ``ffaccel.gen`` writes into the manifest
(``{"name", "offset", "width", "signed"}`` per field), so beats are plain dicts.

Timing discipline (the same on Icarus and Verilator, whose value-change callbacks see the
clock edge at different points of the delta cycle): every component drives its outputs
just after the FALLING edge, then waits for ``ReadOnly`` of the same time step and samples
there. A beat is transferred at the next rising edge exactly when ``valid & ready`` is
seen at that ReadOnly point, so a DUT whose ready (valid) depends combinationally on the
bench's valid (ready) is handled too. Nothing is sampled at the rising edge itself.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable, Iterable, Sequence

from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge
from cocotb.types import Logic


def _sig(dut, prefix: str, name: str):
    full = prefix + name
    try:
        return getattr(dut, full)
    except AttributeError:
        raise AttributeError(f"DUT has no signal {full!r}") from None


def _mask(value: int, width: int) -> int:
    return int(value) & ((1 << width) - 1)


def _read(handle, signed: bool = False) -> int:
    v = handle.value
    if isinstance(v, Logic):                      # 1-bit signals read as Logic
        return int(v)
    try:
        return v.to_signed() if signed else v.to_unsigned()
    except ValueError:
        raise ValueError(f"{handle} = {v} is not a 0/1 value") from None


class PackedLayout:
    """Bit fields of a packed payload. ``fields``: dicts with ``name``, ``offset``,
    ``width`` and ``signed`` (array elements are named ``scores.0``, ``scores.1`` ...)."""

    def __init__(self, fields: Sequence[dict]):
        self.fields = [dict(f) for f in fields]
        for f in self.fields:
            if not {"name", "offset", "width", "signed"} <= set(f):
                raise ValueError(f"layout field {f!r} needs name, offset, width and signed")
        self.width = max((f["offset"] + f["width"] for f in self.fields), default=0)

    def pack(self, beat: dict) -> int:
        word = 0
        for f in self.fields:
            word |= _mask(beat.get(f["name"], 0), f["width"]) << f["offset"]
        return word

    def unpack(self, word: int) -> dict:
        out = {}
        for f in self.fields:
            v = (word >> f["offset"]) & ((1 << f["width"]) - 1)
            if f["signed"] and v >> (f["width"] - 1):
                v -= 1 << f["width"]
            out[f["name"]] = v
        return out


class _Coroutine:
    """start() runs ``self._run()`` as a cocotb task; stop() cancels it."""

    _task = None

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class _StreamEnd(_Coroutine):
    """The handles of one end of a stream (``<prefix>valid/ready/payload``), its payload
    layout, a seeded random source for stalls and the per-beat callback."""

    def __init__(self, dut, clk, prefix: str, layout: PackedLayout, *, payload: str, valid: str, ready: str,
                 prob_name: str, prob: float, rng: random.Random | None, on_beat):
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"{prob_name}={prob} must lie in [0, 1)")
        self.clk = clk
        self.valid = _sig(dut, prefix, valid)
        self.ready = _sig(dut, prefix, ready)
        self.payload = _sig(dut, prefix, payload)
        self.layout = layout
        self.rng = rng or random.Random(0)
        self.on_beat = on_beat


class StreamDriver(_StreamEnd):
    """Drives ``valid`` + payload signals of a stream, honouring ``ready``.

    Beats are dicts ``{field name: int}`` packed by ``layout``; ``send_data``
    builds them for the usual ``data``/``last`` pair. Before each NEW beat the driver idles
    for one cycle with probability ``idle_prob`` (then repeats the draw), using the seeded
    ``rng``; an offered beat stays valid until accepted (AXI-stream rule). With
    ``garbage=True`` idle cycles drive random payload values, so a DUT that samples the
    payload without looking at ``valid`` reads junk.
    """

    def __init__(self, dut, clk, prefix: str, layout: PackedLayout, *, payload: str = "payload",
                 valid: str = "valid", ready: str = "ready", idle_prob: float = 0.0,
                 rng: random.Random | None = None, garbage: bool = True,
                 on_beat: Callable[[dict], Any] | None = None):
        super().__init__(dut, clk, prefix, layout, payload=payload, valid=valid, ready=ready,
                         prob_name="idle_prob", prob=idle_prob, rng=rng, on_beat=on_beat)
        self.idle_prob = idle_prob
        self.garbage = garbage
        self.queue: deque[dict] = deque()
        self.sent = 0
        self.idle_cycles = 0
        self._wake = Event()
        self._empty = Event()
        self._empty.set()
        self._task = None
        self.valid.value = 0


    def send(self, beats: Iterable[dict]) -> None:
        """Queue beats (non-blocking)."""
        n = len(self.queue)
        self.queue.extend(beats)
        if len(self.queue) > n:
            self._empty.clear()
            self._wake.set()

    def send_data(self, values: Iterable[int], last_on_final: bool = True) -> None:
        """Queue one packet: ``data`` beats, ``last`` on the final one."""
        vals = list(values)
        self.send({"data": v, "last": int(last_on_final and i == len(vals) - 1)} for i, v in enumerate(vals))

    async def wait_idle(self) -> None:
        """Until every queued beat has been accepted."""
        if self.queue:
            await self._empty.wait()

    def _drive(self, beat: dict) -> None:
        self.payload.value = _mask(self.layout.pack(beat), len(self.payload))

    async def _run(self) -> None:
        offered = False
        while True:
            await FallingEdge(self.clk)
            if not self.queue:
                self.valid.value = 0
                offered = False
                self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not offered and self.idle_prob and self.rng.random() < self.idle_prob:
                self.valid.value = 0
                self.idle_cycles += 1
                if self.garbage:
                    self.payload.value = self.rng.getrandbits(len(self.payload))
                continue
            beat = self.queue[0]
            self._drive(beat)
            self.valid.value = 1
            offered = True
            await ReadOnly()
            if self.ready.value == 1:
                self.queue.popleft()
                self.sent += 1
                offered = False
                if self.on_beat is not None:
                    self.on_beat(beat)


class StreamSink(_StreamEnd):
    """Drives ``ready`` of a stream with random back-pressure (``ready`` low with
    probability ``stall_prob`` each cycle, seeded ``rng``) and collects the beats.

    The payload is unpacked by ``layout`` (signed fields as two's complement). Each beat is a dict of ints plus ``"_time_ns"`` (simulation time of the
    cycle it was accepted in). ``on_beat(beat)`` is called for each one. While ``valid``
    is low the sink sleeps until it rises (no wake-up per cycle; ``ready`` is held low).
    """

    def __init__(self, dut, clk, prefix: str, layout: PackedLayout, *, payload: str = "payload",
                 valid: str = "valid", ready: str = "ready",
                 stall_prob: float = 0.0, rng: random.Random | None = None,
                 on_beat: Callable[[dict], Any] | None = None):
        super().__init__(dut, clk, prefix, layout, payload=payload, valid=valid, ready=ready,
                         prob_name="stall_prob", prob=stall_prob, rng=rng, on_beat=on_beat)
        self.stall_prob = stall_prob
        self.beats: list[dict] = []
        self.stall_cycles = 0
        self._waiters: list[tuple[int, Event]] = []
        self._task = None
        self.ready.value = 0

    @property
    def count(self) -> int:
        return len(self.beats)

    def stop(self) -> None:
        super().stop()
        self.ready.value = 0

    def count_event(self, n: int) -> Event:
        """An Event set once at least ``n`` beats have been collected (usable in ``First``)."""
        ev = Event()
        if self.count >= n:
            ev.set()
        else:
            self._waiters.append((n, ev))
        return ev

    async def wait_count(self, n: int) -> None:
        """Until at least ``n`` beats have been collected."""
        await self.count_event(n).wait()

    async def _run(self) -> None:
        valid = self.valid
        while True:
            await FallingEdge(self.clk)
            if valid.value != 1:
                # nothing offered: sleep until valid rises (ready is irrelevant meanwhile),
                # then act at the falling edge of that cycle
                self.ready.value = 0
                await RisingEdge(valid)
                continue
            rdy = 0 if (self.stall_prob and self.rng.random() < self.stall_prob) else 1
            self.ready.value = rdy
            if not rdy:
                self.stall_cycles += 1
                continue
            await ReadOnly()
            if valid.value == 1:
                beat = self.layout.unpack(_read(self.payload))
                beat["_time_ns"] = get_sim_time("ns")
                self.beats.append(beat)
                if self.on_beat is not None:
                    self.on_beat(beat)
                for n, ev in list(self._waiters):
                    if self.count >= n:
                        ev.set()
                        self._waiters.remove((n, ev))


class ProbeMonitor(_Coroutine):
    """Collects every cycle's beat of a valid-only (no ready) monitor stream.

    Samples after the falling edge, when every signal is stable; while ``valid`` is low it
    sleeps until it rises (no wake-up per idle cycle). ``tag()`` (optional) is
    called per beat and its value stored under ``"_tag"`` (e.g. which batch is in flight).
    """

    def __init__(self, dut, clk, prefix: str, layout: PackedLayout, *, payload: str = "payload",
                 valid: str = "valid", tag: Callable[[], Any] | None = None):
        self.clk = clk
        self.valid = _sig(dut, prefix, valid)
        self.payload = _sig(dut, prefix, payload)
        self.layout = layout
        self.tag = tag
        self.beats: list[dict] = []
        self._task = None


    async def _run(self) -> None:
        valid = self.valid
        while True:
            await FallingEdge(self.clk)
            if valid.value != 1:
                await RisingEdge(valid)        # idle: no wake-up per cycle
                continue
            beat = self.layout.unpack(_read(self.payload))
            if self.tag is not None:
                beat["_tag"] = self.tag()
            self.beats.append(beat)


class ConfigWriter:
    """Writes run-time registers through a ``we``/``addr``/``data`` port: one register per
    cycle, ``we`` high for exactly one rising edge per write; negative data is written in
    two's complement of the port width."""

    def __init__(self, dut, clk, prefix: str = "regs__", *, we: str = "we", addr: str = "addr",
                 data: str = "data"):
        self.clk = clk
        self.we = _sig(dut, prefix, we)
        self.addr = _sig(dut, prefix, addr)
        self.data = _sig(dut, prefix, data)
        self.writes: list[tuple[int, int]] = []
        self.we.value = 0

    async def write(self, addr: int, value: int) -> None:
        await self.write_many([(addr, value)])

    async def write_many(self, regs: Iterable[tuple[int, int]]) -> None:
        for addr, value in regs:
            await FallingEdge(self.clk)
            self.we.value = 1
            self.addr.value = _mask(addr, len(self.addr))
            self.data.value = _mask(value, len(self.data))
            self.writes.append((int(addr), int(value)))
        await FallingEdge(self.clk)
        self.we.value = 0


class ExternalLayer(_Coroutine):
    """A black box behind a request/answer pair of streams (a physical layer P behind the
    engine's external-layer port): it takes a request's beats from ``<out>`` (``ready``
    low with probability ``stall_prob`` each cycle), and when the beat with ``last`` has
    been taken it calls ``answer(beats)`` for the answer's payloads (packed ints) and
    offers them on ``<inp>``: the first ``latency`` cycles after the request's last beat
    (with stalls: a latency drawn from ``latency .. 4 * latency``), then one per cycle,
    pausing before a word with probability ``stall_prob``. Every request is kept in
    ``requests`` (its beats, unpacked)."""

    def __init__(self, dut, clk, out_prefix: str, in_prefix: str, out_layout: PackedLayout,
                 answer: Callable[[list[dict]], Sequence[int]], *, latency: int = 1, stall_prob: float = 0.0,
                 rng: random.Random | None = None):
        if latency < 1:
            raise ValueError(f"latency={latency} must be >= 1")
        if not 0.0 <= stall_prob < 1.0:
            raise ValueError(f"stall_prob={stall_prob} must lie in [0, 1)")
        self.clk = clk
        self.o_valid, self.o_ready = _sig(dut, out_prefix, "valid"), _sig(dut, out_prefix, "ready")
        self.o_payload = _sig(dut, out_prefix, "payload")
        self.i_valid, self.i_ready = _sig(dut, in_prefix, "valid"), _sig(dut, in_prefix, "ready")
        self.i_payload = _sig(dut, in_prefix, "payload")
        self.layout, self.answer = out_layout, answer
        self.latency, self.stall_prob = latency, stall_prob
        self.rng = rng or random.Random(0)
        self.requests: list[list[dict]] = []
        self.stall_cycles = 0
        self._task = None
        self.o_ready.value = 0
        self.i_valid.value = 0

    def _stall(self) -> bool:
        if self.stall_prob and self.rng.random() < self.stall_prob:
            self.stall_cycles += 1
            return True
        return False

    async def _run(self) -> None:
        while True:
            beats: list[dict] = []
            while True:                                   # the request, beat by beat
                await FallingEdge(self.clk)
                self.o_ready.value = 0 if self._stall() else 1
                await ReadOnly()
                if self.o_valid.value == 1 and self.o_ready.value == 1:
                    beats.append(self.layout.unpack(_read(self.o_payload)))
                    if beats[-1].get("last"):
                        break
            self.requests.append(beats)
            words = list(self.answer(beats))
            await FallingEdge(self.clk)
            self.o_ready.value = 0
            wait = self.latency if not self.stall_prob else self.rng.randint(self.latency, 4 * self.latency)
            for _ in range(wait - 1):
                await FallingEdge(self.clk)
            for k, w in enumerate(words):                 # the answer, a word per cycle
                if k:
                    await FallingEdge(self.clk)
                while self._stall():
                    self.i_valid.value = 0
                    await FallingEdge(self.clk)
                self.i_payload.value = _mask(int(w), len(self.i_payload))
                self.i_valid.value = 1
                await ReadOnly()
                while self.i_ready.value != 1:            # held until taken
                    await FallingEdge(self.clk)
                    await ReadOnly()
            await FallingEdge(self.clk)
            self.i_valid.value = 0
