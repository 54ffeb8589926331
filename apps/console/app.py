"""The review console: the web app where people work the tickets the model hands to them.

FastAPI with server-rendered Jinja2 pages and a little JavaScript (`static/console.js`: live queue,
keyboard, review calls); every page's data comes from the JSON API under `/api/`, which machines call
with `Authorization: Bearer TOKEN`. Sessions are Starlette's signed cookies (HttpOnly, SameSite=Lax),
CSRF is asgi-csrf's double-submit token (form field or `x-csrftoken` header; bearer calls are exempt),
login attempts are rate-limited with `limits`. Without a valid session or token an API call gets 401 and
a page redirects to the login page.

A review becomes a feedback event on `tickets.feedback` (the worker stores it as the production label)
and, with a reply, an action in the outbox that the reply adapter delivers once (see `store`).
"""

from __future__ import annotations

import html
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from apps.console import store, users
from apps.console.store import ConsoleError, QueueFilter, ReviewRequest
from apps.console.users import User
from triage.errors import TriageError
from triage.keyfile import read_or_create
from triage.labels import FEEDBACK_KINDS, ROUTES
from triage.names import TOPIC_FEEDBACK
from triage.settings import Settings
from triage.taxonomy import Taxonomy, workspace_taxonomy

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "triage_session"
SESSION_HOURS = 12
LOGIN_LIMIT = parse("5/minute")  # per name and client address

Publish = Callable[[str, bytes, bytes], Awaitable[None]]


def local_path(target: str) -> str:
    """Where to go after signing in: a path on this site, never another ('//host', '/\\host', 'https:')."""
    ok = target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target[:3]
    return target if ok else "/"


def session_secret(settings: Settings) -> str:
    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value()
    return read_or_create(settings.console_secret_file, lambda: secrets.token_urlsafe(48).encode()).decode()


class Console:
    """What the handlers share: settings, the database URL, the publisher and the loaded model (salience)."""

    def __init__(self, settings: Settings, publish: Publish | None) -> None:
        self.settings = settings
        self.url = settings.db_url()
        self.publish = publish
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self._classifier: tuple[str, Any] | None = None

    def taxonomy(self) -> Taxonomy:
        return workspace_taxonomy(self.settings.taxonomy_file)

    def adapter(self) -> str:
        from streams.actions import reply_adapter

        return reply_adapter(self.settings.webhook_url is not None)

    def classifier(self) -> Any:
        """The champion's classifier, loaded once per version (for the words that drove the intent)."""
        from ml import registry
        from ml.serving import Classifier

        mv = registry.champion(self.url, self.settings.model_name)
        if mv is None:
            raise ConsoleError("no champion model to explain with; promote one (`triage models promote`)", 409)
        key = f"{mv.name}:{mv.version}"
        if self._classifier is None or self._classifier[0] != key:
            self._classifier = (key, Classifier.load(Path(mv.artifact_path), threads=1))
        return self._classifier[1]


class _SignInFirst(Exception):
    """An API call without a signed-in user: answered 401 with how to sign in."""


def _user_from_request(console: Console, request: Request) -> User | None:
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return users.user_for_token(console.url, auth.removeprefix("Bearer ").strip())
    name = request.session.get("user")
    if not name:
        return None
    user = users.get_user(console.url, str(name))
    if user is None or user.disabled:
        request.session.clear()
        return None
    return user


def create_app(settings: Settings, publish: Publish | None = None) -> Any:
    """The console app; `publish(topic, key, value)` sends feedback events (default: an aiokafka producer)."""
    import asgi_csrf

    console = Console(settings, publish)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        producer = None
        if console.publish is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                        request_timeout_ms=10_000)
            await producer.start()

            async def send(topic: str, key: bytes, value: bytes) -> None:
                await producer.send_and_wait(topic, value, key=key)

            console.publish = send
        try:
            yield
        finally:
            if producer is not None:
                await producer.stop()

    app = FastAPI(title="Triage review console", lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.console = console
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
                       max_age=SESSION_HOURS * 3600, same_site="lax", https_only=settings.console_secure_cookies)

    async def who(request: Request) -> User | None:
        return await run_in_threadpool(_user_from_request, console, request)

    def denied_api() -> JSONResponse:
        return JSONResponse({"detail": "sign in first: send Authorization: Bearer TOKEN (`triage users token NAME`) "
                                       "or use the console's session"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def error(exc: ConsoleError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(_SignInFirst)
    async def signed_out(_request: Request, _exc: _SignInFirst) -> JSONResponse:
        return denied_api()

    @app.exception_handler(ConsoleError)
    async def console_error(_request: Request, exc: ConsoleError) -> JSONResponse:
        return error(exc)

    async def api_user(request: Request) -> User:
        """The signed-in user of an API call (session or bearer token); 401 with how to sign in otherwise."""
        user = await who(request)
        if user is None:
            raise _SignInFirst
        return user

    def api_role(role: str, what: str) -> Callable[[Request], Awaitable[User]]:
        """An API user who may act as `role`; 403 naming `what` is for whom otherwise."""
        async def check(request: Request) -> User:
            user = await api_user(request)
            if not user.can(role):
                raise ConsoleError(what, 403)
            return user
        return check

    def page(request: Request, name: str, user: User | None, **ctx: Any) -> HTMLResponse:
        token = request.scope["csrftoken"]()
        return templates.TemplateResponse(request, name, {"user": user, "csrftoken": token, **ctx})

    # ---- pages ------------------------------------------------------------------------------------------------

    def login_form(request: Request, nxt: str, message: str | None, status: int = 200) -> HTMLResponse:
        response = page(request, "login.html", None, next=nxt, message=message)
        response.status_code = status
        return response

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> Response:
        return login_form(request, local_path(next), None)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        nxt = str(form.get("next", "/"))
        nxt = local_path(nxt)
        client = request.client.host if request.client else "?"
        if not console.limiter.hit(LOGIN_LIMIT, "login", client, name.lower()):
            return login_form(request, nxt, "Too many sign-in attempts for this name: wait a minute and try again.",
                              429)
        user = await run_in_threadpool(users.authenticate, console.url, name, password)
        if user is None:
            return login_form(request, nxt, "Wrong name or password, or the account is disabled.", 401)
        request.session.clear()
        request.session["user"] = user.name
        return RedirectResponse(nxt, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    async def queue_page(request: Request) -> Response:
        user = await who(request)
        if user is None:
            return to_login(request)
        tax = console.taxonomy()
        return page(request, "queue.html", user, taxonomy=tax, routes=ROUTES)

    @app.get("/tickets/{ticket_id}", response_class=HTMLResponse)
    async def ticket_page(request: Request, ticket_id: str) -> Response:
        user = await who(request)
        if user is None:
            return to_login(request)
        try:
            t = await run_in_threadpool(store.ticket, console.url, ticket_id, console.taxonomy())
        except ConsoleError as exc:
            return HTMLResponse(f"<p>{html.escape(str(exc))}</p><p><a href='/'>Back to the queue</a></p>",
                                status_code=exc.status)
        tax = console.taxonomy()
        return page(request, "ticket.html", user, t=t, taxonomy=tax, routes=ROUTES,
                    kinds=FEEDBACK_KINDS)

    @app.get("/bulk", response_class=HTMLResponse)
    async def bulk_page(request: Request) -> Response:
        user = await who(request)
        if user is None:
            return to_login(request)
        return page(request, "bulk.html", user, taxonomy=console.taxonomy())

    @app.get("/lead", response_class=HTMLResponse)
    async def lead_page(request: Request) -> Response:
        user = await who(request)
        if user is None:
            return to_login(request)
        if not user.can("lead"):
            return HTMLResponse("<p>The lead's view is for leads and admins.</p><p><a href='/'>Queue</a></p>",
                                status_code=403)
        stats = await run_in_threadpool(store.lead_stats, console.url, datetime.now(UTC) - timedelta(days=1))
        return page(request, "lead.html", user, stats=stats)

    # ---- API --------------------------------------------------------------------------------------------------

    @app.get("/api/me")
    async def me(request: Request, user: User = Depends(api_user)) -> Response:
        return JSONResponse({"name": user.name, "role": user.role})

    @app.get("/api/queue")
    async def api_queue(request: Request, route: str | None = None, intent: str | None = None,
                        urgency: str | None = None, channel: str | None = None, claimed: str | None = None,
                        min_confidence: float | None = None, max_confidence: float | None = None,
                        user: User = Depends(api_user)) -> Response:
        if claimed not in (None, "yes", "no", "mine"):
            return error(ConsoleError(f"claimed={claimed!r}: use yes, no or mine"))
        f = QueueFilter(route or None, intent or None, urgency or None, channel or None, claimed,
                        min_confidence, max_confidence)
        items = await run_in_threadpool(store.queue, console.url, console.taxonomy(), user, f)
        return JSONResponse({"count": len(items), "items": items, "now": datetime.now(UTC).isoformat()})

    @app.get("/api/tickets/{ticket_id}")
    async def api_ticket(request: Request, ticket_id: str, user: User = Depends(api_user)) -> Response:
        return JSONResponse(await run_in_threadpool(store.ticket, console.url, ticket_id, console.taxonomy()))

    @app.get("/api/tickets/{ticket_id}/salience")
    async def api_salience(request: Request, ticket_id: str, user: User = Depends(api_user)) -> Response:
        from ml.salience import word_salience

        t = await run_in_threadpool(store.ticket, console.url, ticket_id, console.taxonomy())
        clf = await run_in_threadpool(console.classifier)
        label = (t["explanation"]["heads"].get("intent") or {}).get("label")
        return JSONResponse(await run_in_threadpool(word_salience, clf, t["masked_text"], "intent", label))

    @app.post("/api/tickets/{ticket_id}/claim")
    async def api_claim(request: Request, ticket_id: str, user: User = Depends(api_user)) -> Response:
        return JSONResponse(await run_in_threadpool(store.claim, console.url, ticket_id, user,
                                                    settings.console_claim_minutes))

    @app.post("/api/tickets/{ticket_id}/release")
    async def api_release(request: Request, ticket_id: str, user: User = Depends(api_user)) -> Response:
        released = await run_in_threadpool(store.release, console.url, ticket_id, user)
        return JSONResponse({"ticket_id": ticket_id, "released": released})

    async def do_review(user: User, ticket_id: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        from ml.registry import live_labels

        req = ReviewRequest(kind=str(body.get("kind", "")), intent=body.get("intent") or None,
                            urgency=body.get("urgency") or None, route=body.get("route") or None,
                            reply=body.get("reply"), comment=str(body.get("comment") or ""))
        known = await run_in_threadpool(live_labels, console.url)
        prepared = await run_in_threadpool(store.prepare_review, console.url, ticket_id, key, req, user, known)
        if prepared.replayed is not None:
            return prepared.replayed
        assert prepared.feedback is not None and console.publish is not None
        try:
            await console.publish(TOPIC_FEEDBACK, ticket_id.encode(), prepared.feedback.model_dump_json().encode())
        except Exception as exc:  # noqa: BLE001 - the broker's error, named; nothing was written
            raise ConsoleError(f"could not publish the review on {TOPIC_FEEDBACK} ({type(exc).__name__}: {exc}); "
                               "nothing was saved, try again", 503) from None
        return await run_in_threadpool(store.record_review, console.url, prepared, req, user, console.adapter())

    @app.post("/api/tickets/{ticket_id}/review")
    async def api_review(request: Request, ticket_id: str, user: User = Depends(api_user)) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error(ConsoleError("send the review as a JSON object: {\"kind\": ..., \"intent\": ..., ...}"))
        if not isinstance(body, dict):
            return error(ConsoleError("send the review as a JSON object: {\"kind\": ..., \"intent\": ..., ...}"))
        try:
            result = await do_review(user, ticket_id, request.headers.get("idempotency-key", ""), body)
        except ConsoleError:
            raise
        except TriageError as exc:
            return error(ConsoleError(str(exc)))
        return JSONResponse(result, status_code=200 if result.get("replayed") else 201)

    @app.get("/api/lead")
    async def api_lead(request: Request, hours: float = 24.0,
                       user: User = Depends(api_role("lead", "the lead's numbers are for leads and admins"))
                       ) -> Response:
        since = datetime.now(UTC) - timedelta(hours=hours)
        stats = await run_in_threadpool(store.lead_stats, console.url, since)
        return JSONResponse(json.loads(json.dumps(stats, default=str)))

    @app.get("/api/users")
    async def api_users(request: Request,
                        user: User = Depends(api_role("admin", "managing users is for admins"))) -> Response:
        rows = await run_in_threadpool(users.list_users, console.url)
        return JSONResponse(json.loads(json.dumps(rows, default=str)))

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    # The ASGI app served: FastAPI inside the CSRF check (`.app` is the FastAPI app, for tests).
    protected = asgi_csrf.asgi_csrf(app, signing_secret=session_secret(settings), always_protect={"/login", "/logout"},
                                    cookie_secure=settings.console_secure_cookies)
    protected.app = app
    return protected


def serve(settings: Settings, host: str = "127.0.0.1") -> None:
    """Run the console on `host`:`console_port` (uvicorn) until stopped."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=settings.console_port, log_level="info", proxy_headers=False)
