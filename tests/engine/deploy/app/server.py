"""A tiny versioned web service for deploy tests: GET /version, GET /health.

Usage: server.py PORT [RELEASE_DIR]. The release directory decides its behaviour: `version`
is served at /version; `health_status` (e.g. 500) is /health's status (default 200); a file
`crash` makes it exit with status 3 before listening.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

port = int(sys.argv[1])
root = Path(sys.argv[2] if len(sys.argv) > 2 else ".")
if (root / "crash").exists():
    print("crashing on purpose", flush=True)
    sys.exit(3)
version = (root / "version").read_text().strip()
status_file = root / "health_status"
health = int(status_file.read_text()) if status_file.exists() else 200


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/version":
            code, body = 200, version
        elif self.path == "/health":
            code, body = health, "ok" if health == 200 else "unhealthy"
        else:
            code, body = 404, "not found"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
