"""Voice channel: WebRTC call legs terminated with aiortc (media layer in media.py)."""
