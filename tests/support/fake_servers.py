"""Real local HTTP servers for the drafting and action tests (threads on 127.0.0.1, free ports).

`FakeLLM` speaks the OpenAI chat-completions protocol and fails on command (HTTP status, 429 with
Retry-After, a slow answer, a scripted reply). `WebhookSink` counts deliveries per Idempotency-Key and
applies each key's effect once, like a well-behaved ticketing API.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _body(h: BaseHTTPRequestHandler) -> bytes:
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


def _send(h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(payload).encode()
    try:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class _LLMHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        fake: FakeLLM = self.server.owner  # type: ignore[attr-defined]
        _send(self, 200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        fake: FakeLLM = self.server.owner  # type: ignore[attr-defined]
        request = json.loads(_body(self))
        with fake.lock:
            fake.requests.append(request)
            step = fake.script.popleft() if fake.script else fake.default
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._answer(fake, request, step)
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _answer(self, fake: FakeLLM, request: dict[str, Any], step: str) -> None:
        kind, _, arg = step.partition(":")
        if kind == "status":
            _send(self, int(arg), {"error": {"message": "scripted failure"}})
        elif kind == "429":
            _send(self, 429, {"error": {"message": "slow down"}}, {"Retry-After": arg or "0"})
        elif kind == "sleep":
            time.sleep(float(arg))
            _send(self, 200, fake.answer(request))
        elif kind == "garbage":
            _send(self, 200, {"nope": True})
        else:
            _send(self, 200, fake.answer(request, arg or None))


class FakeLLM(_Server):
    """Script steps: `ok`, `ok:<reply>`, `status:500`, `429:<retry-after>`, `sleep:<seconds>`, `garbage`."""

    def __init__(self, model: str = "fake-model", reply: str | None = None) -> None:
        super().__init__(_LLMHandler)
        self.model = model
        self.reply = reply
        self.script: deque[str] = deque()
        self.default = "ok"
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __enter__(self) -> FakeLLM:
        super().__enter__()
        return self

    def then(self, *steps: str) -> FakeLLM:
        with self.lock:
            self.script.extend(steps)
        return self

    def answer(self, request: dict[str, Any], reply: str | None = None) -> dict[str, Any]:
        text = (
            reply
            or self.reply
            or (
                "Thank you for getting in touch. We have looked into your request and a member of our team will "
                "follow up with the next steps shortly."
            )
        )
        prompt_chars = sum(len(m["content"]) for m in request["messages"])
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_chars // 4,
                "completion_tokens": len(text) // 4,
                "total_tokens": prompt_chars // 4 + len(text) // 4,
            },
        }


class _HookHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        sink: WebhookSink = self.server.owner  # type: ignore[attr-defined]
        key = self.headers.get("Idempotency-Key") or ""
        raw = _body(self)
        payload = json.loads(raw)
        with sink.lock:
            sink.bodies.append(raw.decode())
            sink.deliveries[key] += 1
            step = sink.script.popleft() if sink.script else "ok"
            if step == "ok" and key and key not in sink.effects:
                sink.effects[key] = payload
        if step.startswith("status:"):
            _send(self, int(step.split(":")[1]), {"error": "scripted"})
        elif not key:
            _send(self, 400, {"error": "Idempotency-Key header required"})
        else:
            _send(self, 200, {"ok": True})


class WebhookSink(_Server):
    """Counts POSTs per Idempotency-Key; `effects` holds the first successful payload of each key."""

    def __init__(self) -> None:
        super().__init__(_HookHandler)
        self.deliveries: Counter[str] = Counter()
        self.effects: dict[str, dict[str, Any]] = {}
        self.bodies: list[str] = []
        self.script: deque[str] = deque()

    def __enter__(self) -> WebhookSink:
        super().__enter__()
        return self

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.lock:
            self.script.extend([f"status:{status}"] * n)


def make_decision(
    ticket_id: str,
    route: str = "draft_for_review",
    text: str = "Where is my new card?",
    intent: str = "card_arrival",
    urgency: str = "normal",
    confidence: float = 0.8,
) -> Any:
    """A routed decision as the worker publishes it on triage.decisions."""
    from datetime import UTC, datetime

    from triage.schemas import Decision, HeadPrediction, LabelScore, Prediction

    heads = {
        "intent": HeadPrediction(
            label=intent, confidence=confidence, top_k=[LabelScore(label=intent, score=confidence)]
        ),
        "urgency": HeadPrediction(label=urgency, confidence=0.9, top_k=[LabelScore(label=urgency, score=0.9)]),
    }
    return Decision(
        ticket_id=ticket_id,
        channel="email",
        route=route,  # type: ignore[arg-type]
        rule_id="draft-when-fairly-sure",
        policy_version="test@0",
        reason="test",
        model_name="triage-classifier",
        model_version=1,
        prediction=Prediction(model_name="triage-classifier", model_version=1, heads=heads),
        masked_text=text,
        received_at=datetime.now(UTC),
    )
