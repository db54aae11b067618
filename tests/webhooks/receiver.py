"""A webhook receiver process for tests: `python -m tests.webhooks.receiver DIR`.

Listens on 127.0.0.1 (port written to DIR/port), verifies each request's signature with
the secret of its path in DIR/secrets.json (re-read per request; 401 when it does not
verify) and appends one JSON line per request to DIR/requests.jsonl. The path picks the
behaviour:

    /ok               200
    /fail-first/N     500 for the first N requests of each event id, then 200
    /sleep/S          sleeps S seconds, then 200 (a receiver that times out)
    /status/C         answers C forever
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shared.webhook_signing import verify


def main(directory: Path) -> None:
    lock = threading.Lock()
    seen: Counter[tuple[str, str]] = Counter()
    log = (directory / "requests.jsonl").open("a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            secrets_file = directory / "secrets.json"
            secrets = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
            timestamp = self.headers.get("X-Dataplane-Timestamp", "")
            signature = self.headers.get("X-Dataplane-Signature", "")
            verified = self.path in secrets and verify(secrets[self.path], timestamp, body,
                                                       signature)
            event_id = self.headers.get("X-Dataplane-Event-Id", "")
            with lock:
                seen[(self.path, event_id)] += 1
                count = seen[(self.path, event_id)]
            parts = self.path.strip("/").split("/")
            status = 200
            if not verified:
                status = 401
            elif parts[0] == "fail-first" and count <= int(parts[1]):
                status = 500
            elif parts[0] == "status":
                status = int(parts[1])
            # Logged on arrival (before a /sleep/ path's wait), as received.
            record = {"path": self.path, "event_id": event_id, "arrived": arrived,
                      "verified": verified, "status": status,
                      "content_type": self.headers.get("Content-Type"),
                      "host": self.headers.get("Host"),
                      "body": json.loads(body) if body else None}
            with lock:
                log.write(json.dumps(record) + "\n")
            if verified and parts[0] == "sleep":
                time.sleep(float(parts[1]))
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the sender gave up (timeout) and closed the connection
                pass

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    (directory / "port.tmp").write_text(str(server.server_address[1]))
    (directory / "port.tmp").rename(directory / "port")
    server.serve_forever()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
