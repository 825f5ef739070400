"""Free TCP ports for servers a test starts (a live gunicorn, a private redis-server).

`BUDDY_PORT_RANGE` ("18500-18599") confines them to a range when the machine is shared; without it
the OS picks any free port.
"""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    low, _, high = os.environ.get("BUDDY_PORT_RANGE", "").partition("-")
    candidates = range(int(low), int(high or low) + 1) if low else [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in BUDDY_PORT_RANGE={os.environ['BUDDY_PORT_RANGE']}")
