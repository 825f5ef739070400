"""A process that hammers `/internal/v1/auth/lookup` over HTTP (no Django here: it is the
stand-in for the proxy fleet). Used by test_lookup_race.py through multiprocessing (spawn)."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from typing import Any


def hammer(port: int, service_token: str, commands: Any, events: Any, threads: int = 4) -> None:
    """Look up the current target key from `threads` connections until told to stop.

    commands: ("target", idx, plaintext) | ("stop",).  events: ("ok", idx) on the first 200 of
    a target, ("refused", idx, t_send, t_recv, status) on its first non-200, and at the end
    ("records", [(idx, t_send, status), ...]) then ("done",). Times are time.monotonic().
    """
    state: dict[str, Any] = {"target": None, "stop": False}
    changed = threading.Condition()
    seen_ok: set[int] = set()
    seen_refused: set[int] = set()
    lock = threading.Lock()
    records: list[tuple[int, float, int]] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"}
        while True:
            with changed:
                while state["target"] is None and not state["stop"]:
                    changed.wait()
                if state["stop"]:
                    break
                idx, plaintext = state["target"]
            body = json.dumps({"authorization": f"Bearer {plaintext}"})
            t_send = time.monotonic()
            try:
                conn.request("POST", "/internal/v1/auth/lookup", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = -1
            t_recv = time.monotonic()
            with lock:
                records.append((idx, t_send, status))
                if status == 200 and idx not in seen_ok:
                    seen_ok.add(idx)
                    events.put(("ok", idx))
                elif status not in (200, -1) and idx not in seen_refused:
                    seen_refused.add(idx)
                    events.put(("refused", idx, t_send, t_recv, status))
        conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    while True:
        try:
            command = commands.get(timeout=60)
        except queue.Empty:
            command = ("stop",)
        with changed:
            if command[0] == "target":
                state["target"] = (command[1], command[2])
            else:
                state["stop"] = True
            changed.notify_all()
        if command[0] != "target":
            break
    for t in pool:
        t.join(30)
    for start in range(0, len(records), 5000):
        events.put(("records", records[start : start + 5000]))
    events.put(("done",))
