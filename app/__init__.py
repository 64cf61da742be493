"""Omnichannel help desk: one ticket stream for live chat, voice and email."""

from __future__ import annotations

__version__ = "0.1.0"
