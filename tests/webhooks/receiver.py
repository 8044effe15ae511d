"""A webhook receiver for Taskflow's tests: verifies every request with the Standard
Webhooks reference library for Python (`standardwebhooks` from PyPI, an implementation
independent of the Rust one that signs), and answers as told.

Environment:
  WEBHOOK_SECRET   the endpoint's `whsec_...` secret (may be set later: see below)
  FAIL_FIRST       answer 500 to this many requests first (default 0)
  MODE             `ok` (default) or `hang`: accept, never answer (a dead receiver)

Prints `PORT <n>` once listening, then one JSON line per request:
  {"id", "timestamp", "verified", "type", "status", "error"}
A line `SECRET <whsec_...>` on stdin sets (or replaces) the secret.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

state = {
    "secret": os.environ.get("WEBHOOK_SECRET", ""),
    "fail_first": int(os.environ.get("FAIL_FIRST", "0")),
    "mode": os.environ.get("MODE", "ok"),
    "seen": 0,
}
lock = threading.Lock()


def emit(record):
    with lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if state["mode"] == "hang":
            time.sleep(3600)
            return
        record = {
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "signatures": len((self.headers.get("webhook-signature") or "").split(" ")),
            "verified": False,
            "type": None,
            "error": None,
        }
        try:
            payload = Webhook(state["secret"]).verify(body, dict(self.headers))
            record["verified"] = True
            record["type"] = payload.get("type")
            record["data"] = payload.get("data")
        except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
            record["error"] = f"{type(e).__name__}: {e}"
        with lock:
            state["seen"] += 1
            failing = state["seen"] <= state["fail_first"]
        status = 500 if failing or not record["verified"] else 204
        record["status"] = status
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()
        emit(record)


def read_stdin():
    for line in sys.stdin:
        if line.startswith("SECRET "):
            state["secret"] = line.split(" ", 1)[1].strip()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=read_stdin, daemon=True).start()
emit_port = server.server_address[1]
sys.stdout.write(f"PORT {emit_port}\n")
sys.stdout.flush()
server.serve_forever()
