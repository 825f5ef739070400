"""TCP ports for the servers a test starts (a private Redis, a browser driver).

Several suites may share a machine: `BUDDY_TEST_PORT_BASE` gives this run a range of its own
(`base + offset`); without it a free port is picked at run time.
"""

from __future__ import annotations

import os
import socket


def server_port(offset: int) -> int:
    base = os.environ.get("BUDDY_TEST_PORT_BASE")
    if base:
        return int(base) + offset
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
