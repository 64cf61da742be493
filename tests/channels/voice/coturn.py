"""A throwaway coturn TURN server for tests: loopback, UDP, ephemeral ports, the TURN
REST API's shared secret (`--use-auth-secret`), no config file."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
INSTALLED = Path(TURNSERVER).exists()


@dataclass
class Coturn:
    port: int
    secret: str

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    """A STUN binding request on `port` gets an answer."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        try:
            probe.sendto(request, ("127.0.0.1", port))
            return probe.recv(2048)[:2] == b"\x01\x01"
        except OSError:
            return False


@contextlib.contextmanager
def running_coturn(log_dir: Path) -> Iterator[Coturn]:
    port = _free_udp_port()
    secret = secrets.token_hex(16)
    relay_low = 49152 + port % 10000
    log = (log_dir / "turnserver.log").open("wb")
    process = subprocess.Popen(
        [
            TURNSERVER,
            "-n",  # no configuration file
            "--listening-ip=127.0.0.1",
            f"--listening-port={port}",
            "--relay-ip=127.0.0.1",
            f"--min-port={relay_low}",
            f"--max-port={relay_low + 50}",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            "--realm=helpdesk.test",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--no-cli",
            "--allow-loopback-peers",
            "--log-file=stdout",
            "--simple-log",
            f"--pidfile={log_dir / 'turnserver.pid'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "turnserver did not start: " + (log_dir / "turnserver.log").read_text()[-2000:]
                )
            time.sleep(0.05)
        yield Coturn(port, secret)
    finally:
        stop(process, grace=5)
        log.close()
