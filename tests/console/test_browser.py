"""The console in a real browser (Debian's Chromium driven by Playwright): sign in, work tickets by keyboard.

Set CONSOLE_SCREENSHOT_DIR to keep the queue and ticket screenshots (the README's come from this test).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import PASSWORD, ConsoleServer, seed_queue
from tests.console.test_api import _deliver, _events
from triage import db

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("needs the Debian package chromium (make .venv/.chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _off_loop(fn: Any, *args: Any) -> Any:
    """Run `fn(*args)` in another thread: Playwright's sync API holds this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=120)


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    keep = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / name, Path(keep) / name)


def test_a_reviewer_clears_tickets_with_the_keyboard_only(console: ConsoleServer, browser: Any, tmp_path: Path,
                                                          tiny_model: Path) -> None:
    from ml import registry

    registry.register(console.url, tiny_model, name=console.settings.model_name, status="champion",
                      changed_by="test", reason="explains the intent", models_dir=tmp_path / "models")
    seeded = seed_queue(console.url, 6)
    page = browser.new_page(viewport={"width": 1360, "height": 860})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "Failed to load" not in m.text
            else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    page.goto(console.base + "/")
    assert page.url.endswith("/login?next=/")
    page.keyboard.type("ana")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#rows tr")
    assert page.locator("#rows tr").count() == 6

    # Live: a ticket queued after the page loaded appears without a reload.
    later = seed_queue(console.url, 1, seed=11).ticket_ids[0]
    page.wait_for_selector(f'#rows tr[data-id="{later}"]', timeout=10_000)
    _shot(page, tmp_path, "console-queue.png")

    page.keyboard.press("?")
    assert page.locator("#help").is_visible() and "claim and open" in page.locator("#help-keys").inner_text()
    page.keyboard.press("Escape")
    first = page.locator("#rows tr.selected").get_attribute("data-id")
    page.keyboard.press("j")
    second = page.locator("#rows tr.selected").get_attribute("data-id")
    assert second != first
    page.keyboard.press("k")
    assert page.locator("#rows tr.selected").get_attribute("data-id") == first

    # Find a ticket with a draft: move down until the selected row is one, then claim and open it (c).
    queue = console.login("ana").get("/api/queue").json()["items"]
    target = next(i for i in queue if i["has_draft"])
    for _ in range([i["ticket_id"] for i in queue].index(target["ticket_id"])):
        page.keyboard.press("j")
    assert page.locator("#rows tr.selected").get_attribute("data-id") == target["ticket_id"]
    page.keyboard.press("c")
    page.wait_for_url(f"**/tickets/{target['ticket_id']}")
    page.wait_for_selector("#reply")
    page.keyboard.press("w")  # the words that drove the intent, from the champion's own ONNX model
    page.wait_for_selector("#salience b")
    assert page.locator("#salience").inner_text().startswith("For ")
    _shot(page, tmp_path, "console-ticket.png")

    page.keyboard.press("e")  # edit the draft, then Ctrl+Enter approves the edited reply
    page.keyboard.press("End")
    page.keyboard.type(" Your replacement card ships today.")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda u: target["ticket_id"] not in u, timeout=10_000)  # on to the next ticket

    with db.connect(console.url) as conn:
        review = conn.execute("SELECT kind, reviewer, reply, reply_edited FROM triage.reviews WHERE ticket_id = %s",
                              (target["ticket_id"],)).fetchone()
    assert review["kind"] == "confirm" and review["reviewer"] == "ana" and review["reply_edited"] is True
    assert review["reply"].endswith("Your replacement card ships today.")
    (event,) = _off_loop(lambda: asyncio.run(_events(console.bootstrap, {target["ticket_id"]})))
    assert event["kind"] == "confirm" and event["reviewer"] == "ana"
    assert _off_loop(_deliver, console.url) == 1
    with db.connect(console.url) as conn:
        (sent,) = conn.execute("SELECT body FROM triage.replies WHERE ticket_id = %s",
                               (target["ticket_id"],)).fetchall()
    assert sent["body"] == review["reply"]

    # The next ticket is open; escalate it by keyboard (x), and the queue no longer lists either.
    nxt = page.url.rsplit("/", 1)[-1]
    assert nxt in seeded.ticket_ids + [later]
    page.wait_for_selector("#reply")
    page.keyboard.press("x")
    page.wait_for_url(lambda u: nxt not in u, timeout=10_000)
    left = {i["ticket_id"] for i in console.login("ana").get("/api/queue").json()["items"]}
    assert target["ticket_id"] not in left and nxt not in left and len(left) == 5
    assert not problems, problems
