"""A scripted OpenAI-compatible Chat Completions server on loopback, for fault and CLI tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(message: dict) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "stub",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def tool_call_message(name: str, arguments: str, call_id: str = "call_1") -> dict:
    return {
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
    }


class Stub:
    """Replies to /v1/chat/completions from a script; records every request body."""

    def __init__(self, replies: list, delay: float = 0.0):
        self.replies, self.delay, self.requests = list(replies), delay, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                time.sleep(stub.delay)
                reply = stub.replies.pop(0) if stub.replies else completion({"content": "(script ended)"})
                try:
                    if body.get("stream"):
                        self._stream(reply)
                        return
                    data = json.dumps(reply).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _stream(self, reply: dict) -> None:
                """Send the scripted reply as Server-Sent Events, as servers do for stream=true."""
                msg = reply["choices"][0]["message"]
                base = {k: reply[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
                delta: dict = {"role": "assistant"}
                if msg.get("content"):
                    delta["content"] = msg["content"]
                if msg.get("tool_calls"):
                    delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(msg["tool_calls"])]
                events = [
                    base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                    base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    base | {"choices": [], "usage": reply["usage"]},
                ]
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for ev in events:
                    self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
