"""Talking to a Label Studio server through label-studio-sdk 2.x, with one clear line for every failure.

Which server: ``--url`` (or ``$LABEL_STUDIO_URL``) with a key from ``--api-key`` or ``$LABEL_STUDIO_API_KEY`` (a
legacy token or a personal access token, a JWT: the SDK tells them apart), else the server `annotate serve` runs
for the dataset, with the key from its credentials file. The key never appears in a message: every error text
passes through `redact` first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from dvtr_data.annotation import server
from dvtr_data.dataset import Dataset, atomic_write_bytes
from dvtr_data.errors import ServiceError, UsageError
from dvtr_data.text import redact_url_passwords

URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"
T = TypeVar("T")


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to authenticate. ``local``: the server `annotate serve` runs for the dataset."""

    url: str
    api_key: str = field(repr=False)
    local: bool = False
    log_path: Path | None = None
    key_source: str = "--api-key"  # where the key came from, for the hint when the server refuses it

    @property
    def state_key(self) -> str:
        """Key of this server in the dataset's annotation state (a local server keeps it across port changes)."""
        return "local" if self.local else self.url

    def __str__(self) -> str:
        return f"Connection(url={self.url!r}, local={self.local})"


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url {url!r} is not an http(s) URL", hint="e.g. --url http://127.0.0.1:8080")
    return url


def resolve_connection(dataset: Dataset, url: str | None = None, api_key: str | None = None) -> Connection:
    """Pick the server and key: explicit options, then the environment, then the dataset's own server."""
    url = url or os.environ.get(URL_ENV) or None
    source = "--api-key" if api_key else f"${KEY_ENV}"
    api_key = api_key or os.environ.get(KEY_ENV) or None
    paths = server.ServerPaths.of(dataset)
    running = server.running_server(dataset)
    if url is None:
        if running is None:
            raise ServiceError(
                f"no Label Studio server is running for {dataset.root}",
                hint=f"start one with `dvtr-data annotate serve --dataset {dataset.root} --detach`, "
                f"or pass --url and set {KEY_ENV} for a team server",
            )
        url = running.url
    url = normalise_url(url)
    local = running is not None and _same_server(url, running.url)
    if api_key is None and local:
        creds = server.read_credentials(paths.credentials)
        api_key = creds.api_key if creds else None
        source = "credentials"
    if not api_key:
        raise ServiceError(
            f"no API key for {url}",
            hint=f"set {KEY_ENV} to a legacy token or a personal access token (Account & Settings in Label Studio)",
        )
    return Connection(url, api_key.strip(), local=local, log_path=paths.log if local else None, key_source=source)


def _same_server(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    loop = {"127.0.0.1", "localhost", "::1", "[::1]"}
    host_a = "loop" if pa.hostname in loop else pa.hostname
    host_b = "loop" if pb.hostname in loop else pb.hostname
    return host_a == host_b and _port(pa) == _port(pb)


def _port(parts: Any) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def redact(text: str, *secrets_: str) -> str:
    """``text`` without the given secrets (tokens) and without any password written into a URL."""
    text = redact_url_passwords(text)
    for secret in secrets_:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


class Studio:
    """A thin wrapper over the SDK client: every call goes through `call`, which turns failures into ServiceError."""

    def __init__(self, conn: Connection, *, timeout_s: float = 120.0, sdk: Any = None) -> None:
        self.conn = conn
        if sdk is not None:
            self.sdk = sdk
        else:
            try:
                self.sdk = LabelStudio(base_url=conn.url, api_key=conn.api_key, timeout=timeout_s)
            except ApiError as exc:  # an expired or malformed personal access token fails here
                raise self._api_error(exc, "reading the API key") from None

    # errors ------------------------------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise self._api_error(exc, what) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from None
        except ValueError as exc:  # not JSON, or JSON of another shape: not a Label Studio API answering
            raise ServiceError(
                f"{self.conn.url} answered with something that is not Label Studio's API while {what} "
                f"({type(exc).__name__})",
                hint="check --url: it must be the server's base URL, e.g. http://127.0.0.1:8080",
            ) from None

    def _transport_error(self, what: str, exc: httpx.HTTPError) -> ServiceError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._down(what, exc)
        return ServiceError(
            f"Label Studio at {self.conn.url} stopped answering while {what} ({type(exc).__name__})",
            hint="check that it still runs (restart it with `dvtr-data annotate serve`), then re-run the same "
            "command: finished work is found again, nothing is duplicated",
        )

    def once(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call` for requests that create something: sent once, never retried by the SDK.

        The SDK re-sends a request whose connection dropped; for an import the server may already have committed,
        and the re-send would duplicate it. A dropped create fails instead, and the re-run finds what was made.
        """
        return self.call(what, fn, *args, request_options={"max_retries": 0}, **kwargs)

    def _down(self, what: str, exc: Exception) -> ServiceError:
        hint = (
            "start it with `dvtr-data annotate serve --dataset DIR --detach`"
            if self.conn.local or urlsplit(self.conn.url).hostname in ("127.0.0.1", "localhost")
            else f"check --url / ${URL_ENV} and that the server is up"
        )
        return ServiceError(f"no Label Studio answers at {self.conn.url} (while {what})", hint=hint)

    def _api_error(self, exc: ApiError, what: str) -> ServiceError:
        status = exc.status_code
        detail = _detail(exc.body)
        detail = redact(detail, self.conn.api_key)
        if status in (401, 403):
            hint = (
                "the token in the dataset's labelstudio/credentials.json no longer matches its server: restore the file"
                if self.conn.key_source == "credentials"
                else f"check the key given by {self.conn.key_source}: a valid legacy token or personal access token "
                "(Account & Settings in the web UI)"
            )
            if "legacy" in detail.lower():
                hint = "this server disabled legacy tokens: use a personal access token (Account & Settings)"
            return ServiceError(f"Label Studio at {self.conn.url} refused the API key while {what} (HTTP {status}: {detail})", hint=hint)
        if status == 404:
            return ServiceError(f"Label Studio at {self.conn.url} found nothing while {what} (HTTP 404: {detail})")
        if status is not None and status >= 500:
            where = f"see {self.conn.log_path}" if self.conn.log_path else "see the server's log"
            return ServiceError(f"Label Studio at {self.conn.url} failed while {what} (HTTP {status}: {detail})", hint=where)
        return ServiceError(f"Label Studio at {self.conn.url} rejected a request while {what} (HTTP {status}: {detail})")

    # calls ---------------------------------------------------------------------------------------------------
    def check(self) -> dict[str, Any]:
        """Fail early with a clear line when the server is down or the key is wrong; return the current user."""
        user = self.call("checking the API key", self.sdk.users.whoami, request_options={"max_retries": 0})
        return plain(user)

    def projects(self) -> list[dict[str, Any]]:
        pager = self.call("listing projects", self.sdk.projects.list, page_size=100)
        items: list[Any] = self.call("listing projects", list, pager)  # the pager's pages, fetched here
        return [plain(p) for p in items]

    def project(self, project_id: int) -> dict[str, Any] | None:
        """The project, or None when it no longer exists (deleted in the UI: the caller looks for it or recreates it)."""
        try:
            return plain(self.sdk.projects.get(project_id))
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise self._api_error(exc, f"reading project {project_id}") from None
        except httpx.HTTPError as exc:
            raise self._transport_error(f"reading project {project_id}", exc) from None

    def tasks(self, project_id: int, *, with_annotations: bool = False) -> Iterator[dict[str, Any]]:
        pager = self.call(
            "listing tasks", self.sdk.tasks.list, project=project_id, fields="all" if with_annotations else "task_only",
            page_size=500,
        )
        it = iter(pager)
        while True:
            item = self.call("listing tasks", next, it, None)
            if item is None:
                return
            yield plain(item)

    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        return [plain(p) for p in self.call("listing predictions", self.sdk.predictions.list, project=project_id)]

    def users(self) -> list[dict[str, Any]]:
        return [plain(u) for u in self.call("listing users", self.sdk.users.list)]

    def user_emails(self) -> dict[int, str]:
        """User id -> the name a row records as its annotator or reviewer: email, else username, else ``user-<id>``."""
        return {int(u["id"]): u.get("email") or u.get("username") or f"user-{u['id']}" for u in self.users()}

    def export(self, project_id: int) -> list[dict[str, Any]]:
        chunks = self.call(
            "exporting the project", self.sdk.projects.exports.download_sync, project_id, export_type="JSON",
            download_all_tasks=True,
        )
        data = self.call("exporting the project", b"".join, chunks)
        try:
            tasks = json.loads(data)
        except ValueError:
            raise ServiceError(f"Label Studio at {self.conn.url} sent an export that is not JSON") from None
        if not isinstance(tasks, list):
            raise ServiceError(f"Label Studio at {self.conn.url} sent an export that is not a list of tasks")
        return tasks


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        parts = []
        for key in ("detail", "validation_errors", "message", "error"):
            value = body.get(key)
            if value:
                parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        text = "; ".join(parts) if parts else json.dumps(body, ensure_ascii=False)
        return " ".join(text.split())[:300]
    return " ".join(str(body).split())[:300] if body is not None else "no detail"


def plain(obj: Any) -> Any:
    """SDK models -> plain dicts (the models are pydantic; older/newer SDKs name the method differently)."""
    if obj is None or isinstance(obj, (dict, list, str, int, float, bool)):
        return obj
    for name in ("model_dump", "dict"):
        fn = getattr(obj, name, None)
        if callable(fn):
            return fn()
    return obj


def batched(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ----------------------------------------------------------------------------------------------------------------
# per-dataset annotation state: which project on which server, what was pushed under which guidelines
# ----------------------------------------------------------------------------------------------------------------
class AnnotationState:
    """``<dataset>/.work/annotate.json``: a cache of what the server already knows, never the source of truth.

    Push and pull always re-read the server (tasks by clip id, predictions by model version), so a lost or stale
    state file costs a lookup, not a duplicate.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.path = dataset.work_dir / "annotate.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}
        except ValueError:
            self.data = {}

    def server(self, key: str) -> dict[str, Any]:
        return self.data.setdefault("servers", {}).setdefault(key, {})

    def note_guidelines(self, key: str, version: str) -> None:
        history = self.server(key).setdefault("guidelines", [])
        if not history or history[-1]["version"] != version:
            history.append({"version": version, "since": datetime.now(UTC).isoformat(timespec="seconds")})

    def guideline_at(self, key: str, when: datetime | None) -> str | None:
        history = self.server(key).get("guidelines") or []
        chosen = history[0]["version"] if history else None
        if when is None:
            return history[-1]["version"] if history else None
        for entry in history:
            if datetime.fromisoformat(entry["since"]) <= when:
                chosen = entry["version"]
        return chosen

    def save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())
