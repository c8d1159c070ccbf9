"""A JSON-RPC proxy on 127.0.0.1 in front of a test chain node that behaves like Besu where
anvil and Hardhat do not: it refuses `eth_getLogs` over more than `max_logs_range` blocks
(Besu's `--rpc-max-logs-range`, 1,000 by default) with Besu's error, and records every
`eth_getLogs` range it was asked for. `hold_sends` keeps `eth_sendRawTransaction` answers
back (the transaction is still forwarded) for tests of a sender that never hears back."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

BESU_RANGE_ERROR = {"code": -32005, "message": "Requested range exceeds maximum RPC range limit"}


class LogsRangeProxy:
    def __init__(self, target_url: str, max_logs_range: int = 1_000) -> None:
        self.target_url = target_url
        self.max_logs_range = max_logs_range
        #: (fromBlock, toBlock) of every eth_getLogs seen, "latest" resolved.
        self.log_ranges: list[tuple[int, int]] = []
        self.refused = 0
        self._session = requests.Session()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = proxy._answer(json.loads(body))
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, request: Any) -> Any:
        return self._session.post(self.target_url, json=request, timeout=30).json()

    def _block(self, tag: Any) -> int:
        if tag in (None, "latest", "pending", "safe", "finalized"):
            head = self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber",
                                  "params": []})
            return int(head["result"], 16)
        if tag == "earliest":
            return 0
        return int(str(tag), 16)

    def _answer(self, request: Any) -> Any:
        if isinstance(request, list):
            return [self._answer(r) for r in request]
        if request.get("method") == "eth_getLogs":
            params = (request.get("params") or [{}])[0]
            lo, hi = self._block(params.get("fromBlock", "latest")), self._block(
                params.get("toBlock", "latest")
            )
            with self._lock:
                self.log_ranges.append((lo, hi))
            if hi - lo + 1 > self.max_logs_range:
                with self._lock:
                    self.refused += 1
                return {"jsonrpc": "2.0", "id": request.get("id"), "error": BESU_RANGE_ERROR}
        return self._forward(request)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
