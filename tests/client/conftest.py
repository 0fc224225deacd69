"""Network tests talk to a real server started by ``live_server`` (see tests/live_server.py)."""

from live_server import live_server  # noqa: F401  (re-exported fixture)
