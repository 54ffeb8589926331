"""One client for the OpenAI-compatible chat-completions protocol (llama.cpp's server, vLLM, Ollama, OpenAI, xAI).

`chat()` sends one request and returns the reply with its metadata envelope (provider, model, prompt id and
version, temperature, tokens in and out, cost from the price table, latency, finish reason). Only 429 and
5xx answers are retried, with jittered exponential backoff (a 429's Retry-After is honoured), and the whole
call never takes longer than its deadline. Every failed attempt is reported to the backend's circuit
breaker; while it is open, calls fail at once with `LLMUnavailable`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from streams.breaker import CircuitBreaker
from streams.budgets import price
from triage.backoff import retry_delay
from triage.errors import TriageError
from triage.settings import ModelPrice, Settings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class LLMError(TriageError, RuntimeError):
    """The call failed; `reason` is short and safe to store (no request text)."""

    def __init__(self, reason: str, *, attempts: int = 0, latency_ms: float = 0.0, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.attempts, self.latency_ms, self.status = reason, attempts, latency_ms, status


class LLMUnavailable(LLMError):
    """The backend's breaker is open: no request was sent."""


@dataclass(frozen=True)
class Completion:
    """A reply and its envelope."""

    text: str
    provider: str
    model: str
    prompt_id: str
    prompt_version: str
    temperature: float
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    latency_ms: float
    finish_reason: str | None
    attempts: int
    usage_reported: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class LLMClient:
    """Async client for one backend (one base URL and model); share one per worker."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        provider: str,
        prices: dict[str, ModelPrice],
        breaker: CircuitBreaker,
        api_key: str | None = None,
        timeout_s: float = 8.0,
        max_retries: int = 2,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 4.0,
    ) -> None:
        self.base_url, self.model, self.provider = base_url.rstrip("/"), model, provider
        self.prices, self.breaker = prices, breaker
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings, breaker: CircuitBreaker) -> LLMClient | None:
        """The configured backend, or None when no LLM is configured (the template drafter serves)."""
        url = settings.llm_url
        if url is None:
            return None
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return cls(
            url,
            settings.llm_model,
            provider=settings.llm_provider,
            prices=settings.llm_prices,
            breaker=breaker,
            api_key=key,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def estimate_cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        return price(self.prices, self.model, tokens_in, tokens_out)

    async def chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        prompt_id: str,
        prompt_version: str,
        temperature: float,
        max_tokens: int,
        deadline_s: float | None = None,
    ) -> Completion:
        """One chat completion with retries on 429/5xx, within `deadline_s` (default: the retries' worst case)."""
        self.estimate_cost(0, 0)  # refuse an unpriced model before anything is sent
        body = {
            "model": self.model,
            "messages": list(messages),
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
        }
        started = time.monotonic()
        deadline = started + (deadline_s if deadline_s is not None else self.timeout_s * (self.max_retries + 1) + 5)
        attempt = 0
        while True:
            elapsed_ms = (time.monotonic() - started) * 1000
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMError("deadline exceeded", attempts=attempt, latency_ms=elapsed_ms)
            if not self.breaker.allow():
                snap = self.breaker.snapshot()
                raise LLMUnavailable(f"breaker {snap.name} {snap.state}", attempts=attempt, latency_ms=elapsed_ms)
            attempt += 1
            try:
                resp = await self._http.post("/chat/completions", json=body, timeout=min(self.timeout_s, remaining))
            except asyncio.CancelledError:
                self.breaker.release()
                raise
            except httpx.TimeoutException:
                self.breaker.failure("timeout")
                raise LLMError("timeout", attempts=attempt, latency_ms=_ms(started)) from None
            except httpx.HTTPError as exc:
                reason = f"transport error: {type(exc).__name__}"
                self.breaker.failure(reason)
                raise LLMError(reason, attempts=attempt, latency_ms=_ms(started)) from None
            if resp.status_code == 200:
                try:
                    completion = self._parse(
                        resp.json(), prompt_id, prompt_version, temperature, messages, started, attempt
                    )
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    self.breaker.failure("malformed response")
                    raise LLMError(
                        f"malformed response: {type(exc).__name__}",
                        attempts=attempt,
                        latency_ms=_ms(started),
                        status=200,
                    ) from None
                self.breaker.success()
                return completion
            reason = f"HTTP {resp.status_code}"
            if resp.status_code not in RETRY_STATUSES:
                self.breaker.success()  # the backend answered: it is up, the request is wrong
                raise LLMError(reason, attempts=attempt, latency_ms=_ms(started), status=resp.status_code)
            self.breaker.failure(reason)
            if attempt > self.max_retries:
                raise LLMError(
                    f"{reason} after {attempt} attempts",
                    attempts=attempt,
                    latency_ms=_ms(started),
                    status=resp.status_code,
                )
            delay = retry_delay(attempt - 1, self.backoff_base_s, self.backoff_cap_s)
            hinted = retry_after(resp) if resp.status_code == 429 else None
            if hinted is not None:
                delay = min(max(delay, hinted), self.backoff_cap_s)
            if time.monotonic() + delay >= deadline:
                raise LLMError(
                    f"{reason}; no time left to retry",
                    attempts=attempt,
                    latency_ms=_ms(started),
                    status=resp.status_code,
                )
            await asyncio.sleep(delay)

    def _parse(
        self,
        data: dict[str, Any],
        prompt_id: str,
        prompt_version: str,
        temperature: float,
        messages: Sequence[dict[str, str]],
        started: float,
        attempts: int,
    ) -> Completion:
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not text")
        usage = data.get("usage") or {}
        reported = "prompt_tokens" in usage and "completion_tokens" in usage
        tokens_in = int(usage["prompt_tokens"]) if reported else sum(len(m["content"]) // 4 + 4 for m in messages)
        tokens_out = int(usage["completion_tokens"]) if reported else len(text) // 4 + 1
        return Completion(
            text=text,
            provider=self.provider,
            model=self.model,
            prompt_id=prompt_id,
            prompt_version=prompt_version,
            temperature=temperature,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=self.estimate_cost(tokens_in, tokens_out),
            latency_ms=_ms(started),
            finish_reason=choice.get("finish_reason"),
            attempts=attempts,
            usage_reported=reported,
            extra={"served_model": data.get("model")},
        )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
