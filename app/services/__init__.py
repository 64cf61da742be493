"""The domain. `check_*` validates, `do_*` writes and publishes after commit.

Nothing here imports starlette, fastapi or channels: every transport calls in.
"""
