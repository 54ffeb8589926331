"""Clear the console's queue on a live stack with the keyboard only, in Debian's Chromium (issue 14's done-when).

    .venv/bin/python -m bench.console_live --user ana --password-file PW [--tickets 20]

Signs in at TRIAGE_CONSOLE_PORT, then per ticket: `c` on the queue (claim and open the first), `a` on the ticket
(approve: its draft is sent, or a confirmation without one), and the page moves on by itself. Prints one JSON
object: tickets cleared, seconds, and what the database shows for them afterwards (feedback rows stored by the
worker, reviews, delivered replies).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from triage import db
from triage.settings import get_settings


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console_live")
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", type=Path, required=True)
    p.add_argument("--tickets", type=int, default=20)
    p.add_argument("--screenshots", type=Path, default=None)
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    settings = get_settings()
    base = f"http://127.0.0.1:{settings.console_port}"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    cleared: list[str] = []
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(base + "/")
        page.keyboard.type(a.user)
        page.keyboard.press("Tab")
        page.keyboard.type(a.password_file.read_text().strip())
        page.keyboard.press("Enter")
        page.wait_for_selector("#rows")
        for n in range(a.tickets):
            page.wait_for_selector("#rows tr, #empty:not([hidden])")
            if page.locator("#rows tr").count() == 0:
                break
            if a.screenshots and n == 0:
                page.screenshot(path=str(a.screenshots / "live-queue.png"), full_page=True)
            page.keyboard.press("c")
            page.wait_for_url("**/tickets/**")
            page.wait_for_selector("#ticket")
            tid = page.url.rsplit("/", 1)[-1]
            page.keyboard.press("a")
            page.wait_for_function(f"!location.pathname.endsWith({json.dumps('/tickets/' + tid)})", timeout=15_000)
            cleared.append(tid)
            if "/tickets/" in page.url:
                page.goto(base + "/")
        browser.close()
    seconds = time.monotonic() - started
    time.sleep(8)  # the worker stores the feedback; the drafting worker's dispatcher delivers the replies
    with db.connect(settings.db_url()) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM triage.feedback WHERE reviewer = %(u)s AND ticket_id = ANY(%(t)s)) AS fb, "
            "(SELECT count(*) FROM triage.reviews WHERE reviewer = %(u)s AND ticket_id = ANY(%(t)s)) AS reviews, "
            "(SELECT count(reply_action_key) FROM triage.reviews WHERE ticket_id = ANY(%(t)s)) AS replies, "
            "(SELECT count(*) FROM triage.replies r JOIN triage.reviews v ON v.reply_action_key = r.idempotency_key "
            " WHERE v.ticket_id = ANY(%(t)s)) AS sent", {"u": a.user, "t": cleared}).fetchone() or {}
    print(json.dumps({"cleared": len(cleared), "seconds": round(seconds, 1), "feedback_rows": row.get("fb"),
                      "reviews": row.get("reviews"), "replies_queued": row.get("replies"),
                      "replies_delivered": row.get("sent")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
