"""Throwaway servers the tests start (Dovecot, coturn): stopping them for sure."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, and SIGKILL if it is still there after `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
