"""A loopback HTTP server that answers 200 at once, for the peer SDKs (Opik, Langfuse).

Why a separate process: `time.process_time()` counts every thread of the measured process, so a
server thread inside it would bill the peers for the server's work. `LoopbackServer.start()`
runs `python -m benchmarks.loopback` and reads the port it prints. Every request is answered
`200 {}` (HTTP/1.1, keep-alive), bodies are read and counted, never stored; `GET /__stats`
returns the counts so a benchmark can check that a peer really sent its data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackServer"]

STATS_PATH = "/__stats"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == STATS_PATH:
            with self.server.lock:
                body = json.dumps(self.server.counts).encode()
        else:
            with self.server.lock:
                self.server.counts["requests"] += 1
                self.server.counts["bytes"] += length
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "bytes": 0}


class LoopbackServer:
    """Handle on the server subprocess; `base_url` is `http://127.0.0.1:PORT`."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loopback"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"loopback server did not start (printed {line!r})")
        self.port = int(line)
        return self

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.base_url + STATS_PATH, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the server exits when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve() -> None:
    server = _Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.shutdown()


if __name__ == "__main__":
    _serve()
