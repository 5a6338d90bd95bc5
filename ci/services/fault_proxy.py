"""A fault-injecting HTTP proxy on 127.0.0.1 for S3, registries, channels and indexes (issue 10).

It extends registry_proxy.Proxy (same rules, counters and `seen` log; the Host header is
forwarded unchanged, so SigV4 signatures and registry Location URLs stay valid) with faults
that happen on the way back, after the upstream server has acted:

    Rule(method, path_regex, action, times)   # times=-1: every match
    action: "drop"          close before forwarding (the request never reaches the server)
            "<status>[:body]" answer that status instead of the server (e.g. "503")
            "drop-after"    forward, then close without answering (applied, but unknown
                            to the client: a retried write-once PUT meets its own object)
            "reset"         forward, send the status line and headers, close (no body)
            "truncate"      forward, send the full Content-Length but half the body, close
            "slow:<secs>"   forward, then dribble the body out over <secs> seconds

    p = FaultProxy("127.0.0.1:9000").start(); p.rules.append(Rule("PUT", r"/pkgs/", "503", 2))
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

try:
    from ci.services.registry_proxy import Proxy, Rule, _read_body
except ImportError:  # imported as `services.fault_proxy` (ci/ on sys.path)
    from services.registry_proxy import Proxy, Rule, _read_body  # type: ignore[no-redef]

__all__ = ["FaultProxy", "Rule"]

_AFTER = ("drop-after", "reset", "truncate")


class FaultProxy(Proxy):
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        rule = self._match(h)
        action = rule.action if rule else ""
        if action == "drop":
            self._record(h, 0, len(body))
            self._close(h)
            return
        if action and action[0].isdigit():
            self._answer(h, action, len(body))
            return
        try:
            status, headers, data = self._forward(h, body)
        except OSError:
            self._record(h, 0, len(body))
            self._close(h)
            return
        self._record(h, status, len(body))
        if action == "drop-after":
            self._close(h)
            return
        self._send_head(h, status, headers, len(data), close=action in _AFTER)
        if h.command == "HEAD" or action == "reset":
            if action == "reset":
                self._close(h)
            return
        if action == "truncate":
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            self._close(h)
            return
        if action.startswith("slow:"):
            secs = float(action.split(":", 1)[1])
            steps = 10
            step = max(1, -(-len(data) // steps))
            for i in range(0, len(data), step):
                h.wfile.write(data[i : i + step])
                h.wfile.flush()
                time.sleep(secs / steps)
            return
        h.wfile.write(data)

    def hits(self) -> int:
        """How many requests a rule acted on (a scenario whose fault never fired proves
        nothing)."""
        with self._lock:
            return sum(r.hits for r in self.rules)
