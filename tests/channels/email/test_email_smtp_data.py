"""The listener reads DATA in large pieces (`smtp_in.DataReader`); what a client sees
and what the handler gets must be exactly what aiosmtpd's line-by-line DATA gives.

Both protocols serve the same byte streams, sent in awkward chunks; small limits make
every stream meet the line and size limits in different orders."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.smtp_in import DataReader, _TrackedSMTP

LINE_LIMIT = 64
SIZE_LIMIT = 300


class Capture:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.contents.append(envelope.original_content)
        return "250 2.0.0 kept"


class PlainSMTP(SMTP):
    line_length_limit = LINE_LIMIT


class FastSMTP(_TrackedSMTP):
    line_length_limit = LINE_LIMIT


async def converse(protocol: type[SMTP], bodies: list[bytes], seed: int) -> tuple[bytes, Any]:
    """Send every body in one session; the replies and what the handler received."""
    handler = Capture()

    def factory() -> SMTP:
        kwargs: dict[str, Any] = {"data_size_limit": SIZE_LIMIT, "hostname": "test"}
        if protocol is FastSMTP:
            return FastSMTP(set(), handler, **kwargs)
        return protocol(handler, **kwargs)

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = b"EHLO client\r\n"
    for body in bodies:
        stream += b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n" + body
    stream += b"QUIT\r\n"
    rng = random.Random(seed)
    replies = b""
    try:
        # Commands are pipelined (no PIPELINING check in aiosmtpd): DATA must leave
        # the next command in the stream. Sent in random chunks, so pieces split CRLFs.
        offset = 0
        while offset < len(stream):
            size = rng.choice([1, 2, 3, 7, 64, 500])
            writer.write(stream[offset : offset + size])
            offset += size
            await writer.drain()
            if rng.random() < 0.2:
                await asyncio.sleep(0.001)
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            replies += chunk
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    # The EHLO answer differs on purpose (the listener offers AUTH to loopback peers).
    return replies.split(b"250 HELP\r\n", 1)[1], handler.contents


def random_body(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randrange(0, 12)):
        kind = rng.random()
        if kind < 0.15:
            line = b"." * rng.randrange(1, 4) + b"x"
        elif kind < 0.25:
            line = b"end of sentence."
        elif kind < 0.35:
            line = b"y" * rng.randrange(LINE_LIMIT - 4, LINE_LIMIT + 4)
        elif kind < 0.4:
            line = b"z" * rng.randrange(LINE_LIMIT, 3 * LINE_LIMIT)
        elif kind < 0.5:
            line = b"bare\nnewline and bare\rreturn."
        elif kind < 0.55:
            line = b""
        else:
            line = b"w" * rng.randrange(1, 40)
        lines.append(line + b"\r\n")
    return b"".join(lines) + b".\r\n"


async def test_data_pieces_match_aiosmtpd_line_by_line() -> None:
    rng = random.Random(20261127)
    fixed = [
        b".\r\n",  # empty message
        b"..\r\n.\r\n",  # a lone dot, stuffed
        b".x\r\n..y\r\nend.\r\n.\r\n",
        b"a\r\n\r\n.\r\n",
        b"y" * (LINE_LIMIT - 2) + b"\r\n.\r\n",  # exactly at the line limit
        b"y" * (LINE_LIMIT - 1) + b"\r\n.\r\n",
        b"y" * LINE_LIMIT + b"\r\n.\r\n",
        (b"w" * 30 + b"\r\n") * 12 + b".\r\n",  # over the size limit
        (b"w" * 30 + b"\r\n") * 9 + b"y" * (LINE_LIMIT + 10) + b"\r\n.\r\n",
    ]
    plain = await converse(PlainSMTP, fixed, 0)
    assert b"\r\n500 " in plain[0] and b"\r\n552 " in plain[0]  # both limits are met
    assert await converse(FastSMTP, fixed, 0) == plain
    for seed in range(1, 40):
        bodies = [random_body(rng) for _ in range(4)]
        plain = await converse(PlainSMTP, bodies, seed)
        assert await converse(FastSMTP, bodies, seed) == plain, (seed, bodies)


def feed_all(stream: bytes, cuts: list[int]) -> tuple[str | None, bytes | None]:
    """Feed `stream` to a `DataReader` cut where readuntil(b".\\r\\n") could cut it."""
    reader = DataReader(SIZE_LIMIT, LINE_LIMIT)
    start = 0
    while not reader.done:
        stop = stream.find(b".\r\n", start) + 3
        # A piece without ".<CRLF>" leaves two bytes in the buffer: never cut into one.
        cut = next((c for c in cuts if start < c <= stop - 3), None)
        if cut is None:
            reader.feed(stream[start:stop], maybe_end=True)
            start = stop
        else:
            reader.feed(stream[start:cut], maybe_end=False)
            start = cut
    return reader.error, reader.content() if reader.error is None else None


def test_where_the_pieces_are_cut_does_not_matter() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        stream = random_body(rng)
        lines = [i + 2 for i in range(len(stream)) if stream.startswith(b"\r\n", i)]
        expected = feed_all(stream, lines)  # one piece per line, as aiosmtpd reads
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, 6)))
        assert feed_all(stream, cuts) == expected, (stream, cuts)
