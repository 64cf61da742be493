"""Voice bridging benchmark: the passthrough bridge vs aiortc's default MediaRelay bridge.

    python bench/voice.py [--quick] [--server-cpu 0] [--load-cpu 1]

A server process (this file with --serve, pinned to one core) bridges N concurrent calls
either with channels.voice (encoded Opus forwarded between legs) or with aiortc's default
path (MediaRelay: decode each leg, re-encode for the other). This process (pinned to the
other core) drives both legs of every call with aiortc peers that send PRE-ENCODED Opus
and never decode what they receive (their receivers are tapped like the server's, and
they send and receive RTP through the same direct paths as the server's legs, egress.py
and ingress.py), so the load generator stays cheap and the server is what saturates.

Each client sends a 1 s loop: 200 ms of tone, 800 ms of digital silence. Opus codes
silence in 3 bytes and tone in ~70, so the far client spots each tone onset by packet size
alone (this survives the relay's re-encoding) and the onset-to-onset time is the one-way
latency. The same measurement on a direct client-to-client connection gives the baseline,
and "added latency" is the difference.

Reported per step: server CPU (from /proc/<pid>/stat) per bridged call, frames delivered
(%), latency; and per bridge the largest N that kept >= 99% of frames. Prints one JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/voice.py`, bench/ comes first on sys.path and bench/email.py would
# shadow the standard library's `email` package (which aiortc's cryptography imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from bench.measure import proc_cpu_seconds  # noqa: E402
from channels.voice.codec import OPUS, SAMPLE_RATE, encode_loop  # noqa: E402
from channels.voice.egress import RtpWriter, install_writer  # noqa: E402
from channels.voice.hold import tone  # noqa: E402
from channels.voice.ingress import install_ingress  # noqa: E402
from channels.voice.leg import negotiated_codec  # noqa: E402
from channels.voice.media import MediaEngine  # noqa: E402
from channels.voice.tap import EncodedFrame, install_tap  # noqa: E402

FRAME = 0.02
TONE_FRAMES = 10  # 200 ms tone per second
BIG = 20  # bytes: tone frames are larger, silence frames smaller
TARGET_DELIVERED = 99.0

# --------------------------------------------------------------------------- server


class Server:
    """Bridges calls in the server process, answering offers read from stdin."""

    def __init__(self) -> None:
        self.engine = MediaEngine(ice_servers=[])
        self.relay = MediaRelay()
        self.relay_pcs: list[Any] = []
        self.n = 0

    async def call(self, bridge: str, offers: list[str]) -> list[str]:
        self.n += 1
        if bridge == "passthrough":
            call = self.engine.call(f"c{self.n}")
            a = await call.add_leg("customer", offers[0], role="customer")
            b = await call.add_leg("agent", offers[1], role="agent")
            call.bridge("customer", "agent")
            return [a, b]
        pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in offers]
        for pc, sdp in zip(pcs, offers, strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        tracks = [pc.getTransceivers()[0].receiver.track for pc in pcs]
        pcs[0].addTrack(self.relay.subscribe(tracks[1]))
        pcs[1].addTrack(self.relay.subscribe(tracks[0]))
        answers = []
        for pc in pcs:
            await pc.setLocalDescription(await pc.createAnswer())
            answers.append(pc.localDescription.sdp)
        self.relay_pcs += pcs
        return answers

    def stats(self) -> dict[str, int]:
        fills = dropped = 0
        for call in self.engine.calls.values():
            for leg in call.legs.values():
                fills += leg.track.frames_filled
                dropped += leg.track.frames_dropped
        return {"fills": fills, "dropped": dropped}

    async def hangup(self) -> None:
        await self.engine.close()
        for pc in self.relay_pcs:
            await pc.close()
        self.relay_pcs = []
        self.relay = MediaRelay()


async def serve() -> None:
    server = Server()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    while line := await reader.readline():
        req = json.loads(line)
        op, rid = req["op"], req.get("id")
        try:
            if op == "call":
                reply({"id": rid, "answers": await server.call(req["bridge"], req["offers"])})
            elif op == "stats":
                reply({"id": rid, **server.stats()})
            elif op == "hangup":
                await server.hangup()
                reply({"id": rid, "ok": True})
        except Exception as exc:  # report, keep serving
            reply({"id": rid, "error": repr(exc)})


# --------------------------------------------------------------------------- load generator


class PreEncodedTrack(MediaStreamTrack):
    """Plays a loop of encoded Opus payloads at 20 ms pace.

    Like the server's legs, it writes them straight to the wire (channels.voice.egress)
    once aiortc starts the sender, instead of handing aiortc a packet per frame: the load
    generator's one core then drives as many calls as the passthrough server's one core
    can bridge. Both bridges are driven by exactly these peers.
    """

    kind = "audio"

    def __init__(self, payloads: list[bytes], onset: int, phase: float) -> None:
        super().__init__()
        self.payloads = payloads
        self.onset = onset
        self.phase = phase
        self.n = 0
        self.sent: list[float] = []
        self.onsets: list[float] = []
        self.writer: RtpWriter | None = None
        self.payload_type: int | None = None  # known once the answer is in

    async def recv(self) -> Any:
        if self.readyState != "live" or self.writer is None or self.payload_type is None:
            raise MediaStreamError
        self.writer.start(self.payload_type)
        start = time.monotonic() + self.phase
        while self.readyState == "live":
            wait = start + self.n * FRAME - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            i = self.n % len(self.payloads)
            self.writer.write(self.payloads[i], self.n * 960)
            self.n += 1
            now = time.monotonic()
            self.sent.append(now)
            if i == self.onset:
                self.onsets.append(now)
        raise MediaStreamError


@dataclass
class ClientLeg:
    pc: Any
    track: PreEncodedTrack
    received: list[float] = field(default_factory=list)
    onsets: list[float] = field(default_factory=list)
    _big: bool = False

    def on_frame(self, codec: str, frame: EncodedFrame) -> None:
        now = time.monotonic()
        self.received.append(now)
        big = len(frame.data) > BIG
        if big and not self._big:
            self.onsets.append(now)
        self._big = big


def make_loop(freq: float) -> tuple[list[bytes], int]:
    pcm = np.zeros(SAMPLE_RATE, dtype=np.int16)
    pcm[: TONE_FRAMES * 960] = tone(freq, TONE_FRAMES * FRAME, level=0.3)
    payloads = encode_loop(pcm, OPUS)
    sizes = [len(p) > BIG for p in payloads]
    onset = next(i for i in range(len(sizes)) if sizes[i] and not sizes[i - 1])
    return payloads, onset


LOOPS: dict[str, tuple[list[bytes], int]] = {}


def new_leg(which: str, phase: float) -> ClientLeg:
    payloads, onset = LOOPS[which]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = PreEncodedTrack(payloads, onset, phase)
    leg = ClientLeg(pc, track)
    transceiver = pc.addTransceiver(track, direction="sendrecv")
    install_tap(transceiver.receiver, leg.on_frame)
    track.writer = install_writer(transceiver.sender)
    install_ingress(transceiver.receiver.transport)  # receive as cheaply as the server
    return leg


async def accept(leg: ClientLeg, answer: str) -> None:
    leg.track.payload_type = negotiated_codec(answer).payload_type
    await leg.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def offer(leg: ClientLeg) -> str:
    await leg.pc.setLocalDescription(await leg.pc.createOffer())
    return str(leg.pc.localDescription.sdp)


class ServerProc:
    def __init__(self, cpu: int | None, nice: int) -> None:
        self.cpu = cpu
        self.nice = nice
        self.proc: asyncio.subprocess.Process | None = None
        self._id = 0
        self._lock = asyncio.Lock()  # one request in flight: replies are read in order

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            "--nice",
            str(self.nice),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=1 << 22,
        )
        if self.cpu is not None:
            os.sched_setaffinity(self.proc.pid, {self.cpu})
        assert self.proc.stdout is not None
        await self.proc.stdout.readline()  # {"ready": true}

    async def request(self, **req: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        async with self._lock:
            self._id += 1
            req["id"] = self._id
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            await self.proc.stdin.drain()
            reply: dict[str, Any] = json.loads(await self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return proc_cpu_seconds(self.proc.pid)

    async def stop(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def runqueue_wait_seconds(pid: int | str) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (contention)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def one_way_latencies(sender: ClientLeg, receiver: ClientLeg) -> list[float]:
    """Match each received tone onset with the latest one sent before it (1 s apart)."""
    sent = sender.track.onsets
    out = []
    j = 0
    for r in receiver.onsets:
        while j + 1 < len(sent) and sent[j + 1] <= r:
            j += 1
        if sent and sent[j] <= r and r - sent[j] < 0.9:
            out.append(r - sent[j])
    return out


def count_between(times: list[float], t0: float, t1: float) -> int:
    return int(np.searchsorted(times, t1) - np.searchsorted(times, t0))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)) * 1000, 1)


async def close_legs(legs: list[ClientLeg]) -> None:
    for leg in legs:
        leg.track.stop()
    await asyncio.gather(*(leg.pc.close() for leg in legs), return_exceptions=True)


async def wait_connected(legs: list[ClientLeg], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while any(leg.pc.connectionState != "connected" for leg in legs):
        if time.monotonic() > deadline:
            states = [leg.pc.connectionState for leg in legs]
            raise RuntimeError(f"legs not connected: {states}")
        await asyncio.sleep(0.05)


async def direct_baseline(seconds: float) -> dict[str, Any]:
    """Latency of one client-to-client connection, no server in between."""
    a, b = new_leg("customer", 0.0), new_leg("agent", 0.37)
    await b.pc.setRemoteDescription(RTCSessionDescription(sdp=await offer(a), type="offer"))
    # new_leg already added b's transceiver; the offer's m-line reuses it.
    await b.pc.setLocalDescription(await b.pc.createAnswer())
    b.track.payload_type = negotiated_codec(b.pc.localDescription.sdp).payload_type
    await accept(a, b.pc.localDescription.sdp)
    await wait_connected([a, b])
    await asyncio.sleep(seconds)
    lat = one_way_latencies(a, b) + one_way_latencies(b, a)
    await close_legs([a, b])
    return {"latency_ms_p50": pct(lat, 50), "latency_ms_p95": pct(lat, 95), "samples": len(lat)}


async def run_step(
    server: ServerProc, bridge: str, n: int, warmup: float, window: float
) -> dict[str, Any]:
    pairs: list[tuple[ClientLeg, ClientLeg]] = []
    rng = np.random.default_rng(n)

    async def setup_call() -> None:
        c = new_leg("customer", float(rng.uniform(0, 1)))
        a = new_leg("agent", float(rng.uniform(0, 1)))
        pairs.append((c, a))
        offers = [await offer(c), await offer(a)]
        answers = (await server.request(op="call", bridge=bridge, offers=offers))["answers"]
        for leg, sdp in zip((c, a), answers, strict=True):
            await accept(leg, sdp)

    # The server answers one request at a time; set calls up in small concurrent batches.
    for i in range(0, n, 4):
        await asyncio.gather(*(setup_call() for _ in range(min(4, n - i))))
    legs = [leg for pair in pairs for leg in pair]
    await wait_connected(legs)
    await asyncio.sleep(warmup)

    s0 = await server.request(op="stats")
    assert server.proc is not None
    pid = server.proc.pid
    t0, cpu0, load0 = time.monotonic(), server.cpu_seconds(), proc_cpu_seconds("self")
    wait0, lwait0 = runqueue_wait_seconds(pid), runqueue_wait_seconds("self")
    await asyncio.sleep(window)
    t1, cpu1, load1 = time.monotonic(), server.cpu_seconds(), proc_cpu_seconds("self")
    wait1, lwait1 = runqueue_wait_seconds(pid), runqueue_wait_seconds("self")
    s1 = await server.request(op="stats")
    await asyncio.sleep(1.0)  # let frames sent before t1 arrive

    latencies: list[float] = []
    sent = received = 0
    for c, a in pairs:
        for src, dst in ((c, a), (a, c)):
            lat = [x for x in one_way_latencies(src, dst)]
            latencies += lat
            offset = statistics.median(lat) if lat else 0.05
            sent += count_between(src.track.sent, t0, t1)
            received += count_between(dst.received, t0 + offset, t1 + offset)
    # Silence the passthrough bridge inserted for stalled legs is not delivered audio.
    fills = s1["fills"] - s0["fills"]
    delivered = 100.0 * (received - fills) / sent if sent else 0.0
    server_cores = (cpu1 - cpu0) / (t1 - t0)
    step = {
        "calls": n,
        "server_cpu_cores": round(server_cores, 3),
        "server_cpu_per_call": round(server_cores / n, 4),
        "loadgen_cpu_cores": round((load1 - load0) / (t1 - t0), 3),
        # Fraction of the window our processes sat runnable without a CPU: other work on
        # the same cores. High values mean the step measured the machine, not the bridge.
        "server_runqueue_wait": round((wait1 - wait0) / (t1 - t0), 3),
        "loadgen_runqueue_wait": round((lwait1 - lwait0) / (t1 - t0), 3),
        "frames_sent": sent,
        "frames_delivered_pct": round(min(delivered, 100.0), 2),
        "silence_fills": fills,
        "latency_ms_p50": pct(latencies, 50),
        "latency_ms_p95": pct(latencies, 95),
    }
    await close_legs(legs)
    await server.request(op="hangup")
    await asyncio.sleep(0.5)
    return step


async def sweep(
    server: ServerProc, bridge: str, ns: list[int], warmup: float, window: float, direct: float
) -> dict[str, Any]:
    steps = []
    best: dict[str, Any] | None = None
    for n in ns:
        step = await run_step(server, bridge, n, warmup, window)
        if step["latency_ms_p50"] is not None:
            step["added_latency_ms_p50"] = round(step["latency_ms_p50"] - direct, 1)
        steps.append(step)
        print(json.dumps({"bridge": bridge, **step}), file=sys.stderr)
        if step["frames_delivered_pct"] < TARGET_DELIVERED:
            break
        best = step
    result: dict[str, Any] = {"steps": steps, "max_calls_at_99pct": best["calls"] if best else 0}
    if best is not None:
        result["cpu_per_call_at_max"] = best["server_cpu_per_call"]
        result["calls_per_core"] = round(1 / best["server_cpu_per_call"], 1)
        result["added_latency_ms_p50_at_max"] = best.get("added_latency_ms_p50")
        result["loadgen_cpu_at_max"] = best["loadgen_cpu_cores"]
    return result


AUTOGROUP = Path("/proc/self/autogroup")


def raise_priority(nice: int) -> Callable[[], None] | None:
    """Renice this process and its session's autogroup; returns how to undo the latter.

    With autogroup scheduling, nice only ranks threads inside one session; the session's
    own weight is what competes with other sessions on a shared box. The autogroup outlives
    this process (it is the whole shell session's), so it is restored afterwards.
    """
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        before = AUTOGROUP.read_text().split("nice")[-1].strip()
        AUTOGROUP.write_text(str(nice))
    except (OSError, ValueError):
        return None
    return lambda: AUTOGROUP.write_text(before)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    LOOPS["customer"] = make_loop(300.0)
    LOOPS["agent"] = make_loop(1000.0)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = load_cpu = None
    if len(cpus) >= 2:
        server_cpu, load_cpu = args.server_cpu, args.load_cpu
        os.sched_setaffinity(0, {load_cpu})
    if args.quick:
        relay_ns, pass_ns, warmup, window, direct_s = [1, 3], [5, 15], 1.0, 3.0, 3.0
    else:
        relay_ns = [1, 2, 3, 4, 5, 6, 8]
        pass_ns = [10, 20, 30, 40, 50, 60]
        warmup, window, direct_s = 2.0, 5.0, 4.0
    if args.relay_calls:
        relay_ns = [int(x) for x in args.relay_calls.split(",")]
    if args.passthrough_calls:
        pass_ns = [int(x) for x in args.passthrough_calls.split(",")]

    restore_autogroup = raise_priority(args.nice) if args.nice else None
    server = ServerProc(server_cpu, args.nice)
    await server.start()
    try:
        direct = await direct_baseline(direct_s)
        base = direct["latency_ms_p50"] or 0.0
        relay = await sweep(server, "relay", relay_ns, warmup, window, base)
        passthrough = await sweep(server, "passthrough", pass_ns, warmup, window, base)
    finally:
        await server.stop()
        if restore_autogroup is not None:
            restore_autogroup()

    out: dict[str, Any] = {
        "bench": "voice",
        "what": "N bridged calls (2 legs each), 20 ms Opus frames both ways",
        "cpus": len(cpus),
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "quick": args.quick,
        "nice": args.nice,
        "window_s": window,
        "direct_latency": direct,
        "passthrough": passthrough,
        "relay_default": relay,
    }
    if passthrough.get("calls_per_core") and relay.get("calls_per_core"):
        gain = passthrough["calls_per_core"] / relay["calls_per_core"]
        out["ratio_calls_per_core"] = round(gain, 1)
    if relay["max_calls_at_99pct"]:
        out["ratio_max_calls_at_99pct"] = round(
            passthrough["max_calls_at_99pct"] / relay["max_calls_at_99pct"], 1
        )
    last = passthrough["steps"][-1] if passthrough["steps"] else None
    if last is not None and last["loadgen_cpu_cores"] > 0.9:
        out["note"] = (
            "the load generator's core was saturated at the last passthrough step: "
            "max_calls_at_99pct is a lower bound for the passthrough bridge; "
            "calls_per_core (from server CPU per call) is the capacity estimate"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two short steps per bridge")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority for server and load generator (e.g. -10 on a shared box)",
    )
    parser.add_argument("--relay-calls", help="comma-separated N steps for the default bridge")
    parser.add_argument("--passthrough-calls", help="comma-separated N steps for passthrough")
    args = parser.parse_args()
    if args.serve:
        if args.nice:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
        return
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
