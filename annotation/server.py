"""A Label Studio server for one dataset: its own virtual environment, start, health, stop, credentials.

The server runs from ``.venv-labelstudio`` (its pins conflict with ours), bound to 127.0.0.1, with its data dir
inside the dataset folder (``<dataset>/labelstudio/``) and the dataset's clip files served through Local Files
storage. The admin user and API token are generated at the first start and kept in ``credentials.json`` (mode
0600, never printed, never logged); legacy tokens are enabled at that first start, the only moment Label Studio
reads the flag (see environment.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from dvtr_data.dataset import Dataset, atomic_write_bytes
from dvtr_data.errors import ServiceError, UsageError

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
ADMIN_EMAIL = "admin@dvtr.local"
VENV_ENV = "DVTR_LABELSTUDIO_VENV"
HEALTH_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0
_HERE = Path(__file__).resolve().parent

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------------------------------------------
# where things live
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerPaths:
    """The server's files inside a dataset folder."""

    root: Path

    @classmethod
    def of(cls, dataset: Dataset) -> ServerPaths:
        return cls(dataset.root / "labelstudio")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def state(self) -> Path:
        """pid, port and URL of the running server (written by `start_server`, removed by `stop_server`)."""
        return self.root / "server.json"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def sqlite(self) -> Path:
        return self.data_dir / "label_studio.sqlite3"


@dataclass(frozen=True)
class Credentials:
    """The admin login and API token of a served dataset. ``repr`` never shows the secrets."""

    username: str
    password: str = field(repr=False)
    api_key: str = field(repr=False)

    def __str__(self) -> str:
        return f"Credentials(username={self.username!r})"


@dataclass(frozen=True)
class ServerInfo:
    url: str
    port: int
    pid: int
    username: str
    credentials_path: Path
    log_path: Path
    already_running: bool = False
    started_in_s: float | None = None


def labelstudio_venv() -> Path:
    """The server's virtual environment: $DVTR_LABELSTUDIO_VENV, else beside the repo's .venv, else per user."""
    env = os.environ.get(VENV_ENV)
    if env:
        return Path(env).expanduser().resolve()
    repo = _HERE.parent
    if (repo / "pyproject.toml").is_file():
        return repo / ".venv-labelstudio"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "dvtr-data" / "venv-labelstudio"


def lock_file() -> Path:
    return _HERE / "requirements-labelstudio.lock"


def venv_ready(venv: Path | None = None) -> bool:
    """True when the venv holds label-studio and was built from the current lock (its stamp matches)."""
    venv = venv or labelstudio_venv()
    stamp = venv / ".dvtr-lock-sha256"
    if not (venv / "bin" / "label-studio").is_file() or not stamp.is_file():
        return False
    want = hashlib.sha256(lock_file().read_bytes()).hexdigest()
    return stamp.read_text().strip() == want


def ensure_venv(say: Say = _quiet, venv: Path | None = None) -> Path:
    """Create the server's virtual environment from the pinned lock when missing or stale (about 2 minutes)."""
    venv = venv or labelstudio_venv()
    if venv_ready(venv):
        return venv
    script = _HERE / "install_labelstudio.sh"
    say(f"creating the Label Studio environment {venv} from the pinned lock (about 2 minutes, once)")
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable if sys.version_info[:2] == (3, 11) else "python3")}
    try:
        proc = subprocess.run(
            ["bash", str(script), str(venv)], env=env, capture_output=True, text=True, timeout=1800, check=False
        )
    except subprocess.TimeoutExpired:
        raise ServiceError("creating the Label Studio environment took over 30 minutes", hint="check pip's network access") from None
    if proc.returncode != 0 or not venv_ready(venv):
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[:400]
        raise ServiceError(
            f"could not create the Label Studio environment {venv}: {tail}",
            hint=f"run `bash {script} {venv}` to see the whole pip output",
        )
    return venv


# ----------------------------------------------------------------------------------------------------------------
# credentials
# ----------------------------------------------------------------------------------------------------------------
def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_credentials(path: Path, creds: Credentials) -> None:
    """Write the credentials file readable only by this user (created 0600, never world-readable for a moment)."""
    _private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"username": creds.username, "password": creds.password, "api_key": creds.api_key}, fh)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    os.chmod(path, 0o600)


def read_credentials(path: Path) -> Credentials | None:
    if not path.is_file():
        return None
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone widened it: narrow it again before reading
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(raw["username"], raw["password"], raw["api_key"])
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"{path} is not a valid credentials file", hint="restore it, or delete the labelstudio folder to start over") from None


def new_credentials() -> Credentials:
    return Credentials(username=ADMIN_EMAIL, password=secrets.token_urlsafe(18), api_key=secrets.token_hex(20))


# ----------------------------------------------------------------------------------------------------------------
# ports, processes, health
# ----------------------------------------------------------------------------------------------------------------
def port_in_use(port: int) -> bool:
    """Whether anything listens on ``port`` on the loopback addresses Label Studio itself checks."""
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((addr, port)) == 0:
                    return True
        except OSError:
            continue
    # Bind the way the server will: Django's runserver and uvicorn set SO_REUSEADDR, so a port whose last
    # connections linger in TIME-WAIT (for about a minute after a crash) is free to them and must be free here too.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
    except OSError:
        return True
    return False


def health(url: str, timeout: float = 2.0) -> bool:
    try:
        resp = httpx.get(f"{url}/health", timeout=timeout)
        return resp.status_code == 200 and resp.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not a server
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _is_our_server(pid: int, data_dir: Path) -> bool:
    """Guard against a recycled pid: the process must be label-studio started on this data dir."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)
    text = [part.decode(errors="replace") for part in cmdline]
    return any("label-studio" in part for part in text) and str(data_dir) in text


def running_server(dataset: Dataset) -> ServerInfo | None:
    """The server `start_server` left running for this dataset, if it is still alive."""
    paths = ServerPaths.of(dataset)
    if not paths.state.is_file():
        return None
    try:
        state = json.loads(paths.state.read_text(encoding="utf-8"))
        pid, port, url = int(state["pid"]), int(state["port"]), str(state["url"])
    except (ValueError, KeyError, TypeError):
        paths.state.unlink(missing_ok=True)
        return None
    if not (_pid_alive(pid) and _is_our_server(pid, paths.data_dir)):
        paths.state.unlink(missing_ok=True)
        return None
    creds = read_credentials(paths.credentials)
    return ServerInfo(url, port, pid, creds.username if creds else "?", paths.credentials, paths.log, already_running=True)


def _log_tail(path: Path, secrets_: list[str], lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    keep = [ln.strip() for ln in text.splitlines() if ln.strip() and "Warning" not in ln][-lines:]
    out = " | ".join(keep)
    for secret in secrets_:
        out = out.replace(secret, "***")
    return out[:500]


_CLIENT_OR_SECRET_ENV = frozenset({
    "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_URL", "LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "LABEL_STUDIO_BASE_DATA_DIR", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
})


def _no_call_outs() -> dict[str, str]:
    """Settings that keep the server and the annotator's browser from calling any host but this one.

    Label Studio's own settings default to reporting errors to sentry.io from the server and, through a script
    tag, from every annotator's browser; it reads each setting under three names (``LABEL_STUDIO_X``,
    ``HEARTEX_X``, ``X``; the first one set wins), so all three are set empty, which its templates and
    ``init_sentry`` read as off. The version check and analytics are off too.
    """
    out: dict[str, str] = {}
    for name, value in (("SENTRY_DSN", ""), ("FRONTEND_SENTRY_DSN", ""), ("SENTRY_RATE", "0"),
                        ("FRONTEND_SENTRY_RATE", "0"), ("LATEST_VERSION_CHECK", "false"), ("COLLECT_ANALYTICS", "false")):
        for prefix in ("LABEL_STUDIO_", "HEARTEX_", ""):
            out[prefix + name] = value
    return out


NO_CALL_OUTS = _no_call_outs()


def _server_env(paths: ServerPaths, document_root: Path, creds: Credentials | None) -> dict[str, str]:
    # the client's key and URL never reach the server; first-start secrets are set below, and only then
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_OR_SECRET_ENV}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(paths.data_dir),
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
    )
    env.update(NO_CALL_OUTS)
    if creds is not None:  # first start only: creates the admin, fixes its token, enables legacy tokens
        env.update(
            LABEL_STUDIO_USERNAME=creds.username,
            LABEL_STUDIO_PASSWORD=creds.password,
            LABEL_STUDIO_USER_TOKEN=creds.api_key,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        )
    return env


def _uses_external_db() -> bool:
    return os.environ.get("DJANGO_DB", "").lower() == "default"


def moved_since_push(dataset: Dataset) -> str | None:
    """The clip folder the last push gave the local server as storage, when the dataset's clips are elsewhere now.

    Label Studio serves a task's video only from a storage folder it was given; a moved or copied dataset keeps
    tasks that point into the old folder, so every video answers 404 until `push` adds the new one.
    """
    try:
        state = json.loads((dataset.work_dir / "annotate.json").read_text(encoding="utf-8"))
        old = state["servers"]["local"]["storage_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(old, str) or Path(old) == dataset.clips_dir:
        return None
    return old


# ----------------------------------------------------------------------------------------------------------------
# start / stop
# ----------------------------------------------------------------------------------------------------------------
def start_server(
    dataset_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    say: Say = _quiet,
    timeout_s: float = HEALTH_TIMEOUT_S,
    install: bool = True,
) -> tuple[ServerInfo, subprocess.Popen | None]:
    """Start Label Studio for a dataset (or find the one already running) and wait until it is healthy.

    Returns the server's info and the process when this call started it (None when it was already running). The
    process runs in its own session, so it outlives this one: `stop_server` (or the caller) ends it.
    """
    dataset = Dataset(dataset_dir).require()
    paths = ServerPaths.of(dataset)
    existing = running_server(dataset)
    if existing is not None:
        if not health(existing.url):
            raise ServiceError(
                f"a Label Studio server for this dataset runs (pid {existing.pid}) but does not answer at {existing.url}",
                hint=f"wait for it, or stop it with `dvtr-data annotate stop --dataset {dataset.root}`",
            )
        return existing, None
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port")
    moved = moved_since_push(dataset)
    if moved is not None:
        say(f"warning: the last push served clips from {moved}, but this dataset's clips are in {dataset.clips_dir} "
            "(moved or copied): its tasks' videos answer 404 until you run "
            f"`dvtr-data annotate push --dataset {dataset.root}`, which adds the new folder as storage")
    if port_in_use(port):
        raise ServiceError(
            f"port {port} on {HOST} is already in use by another program",
            hint="pass another --port, or stop the program using it",
        )
    venv = ensure_venv(say) if install else labelstudio_venv()
    binary = venv / "bin" / "label-studio"
    if not binary.is_file():
        raise ServiceError(f"Label Studio is not installed in {venv}", hint="run `make labelstudio` (or annotation/install_labelstudio.sh)")

    _private_dir(paths.root)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.data_dir, 0o700)
    creds = read_credentials(paths.credentials)
    fresh_db = not paths.sqlite.exists() and not _uses_external_db()
    first_start = False
    if creds is None:
        if not fresh_db:
            raise ServiceError(
                f"{paths.credentials} is missing but the server's database exists, so its API token cannot be recovered",
                hint=f"restore the file, or delete {paths.data_dir} to start a new server (its projects are lost)",
            )
        creds = new_credentials()
        write_credentials(paths.credentials, creds)
        first_start = True
    elif fresh_db:
        first_start = True  # database deleted by hand: recreate the same admin and token

    url = f"http://{HOST}:{port}"
    say(f"starting Label Studio on {url} (data in {paths.data_dir}){'; first start takes about a minute' if first_start else ''}")
    with open(paths.log, "ab") as log:
        os.chmod(paths.log, 0o600)
        log.write(f"\n=== dvtr-data annotate serve {datetime.now(UTC).isoformat(timespec='seconds')} port {port}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [str(binary), "start", "--no-browser", "--internal-host", HOST, "--port", str(port), "--data-dir", str(paths.data_dir)],
            env=_server_env(paths, dataset.root, creds if first_start else None),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=paths.root,
        )
    started = time.monotonic()
    state = {"pid": proc.pid, "port": port, "url": url, "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_bytes(paths.state, json.dumps(state).encode())
    try:
        _wait_healthy(url, proc, paths, creds, timeout_s)
    except BaseException:
        _terminate(proc.pid)
        paths.state.unlink(missing_ok=True)
        raise
    info = ServerInfo(url, port, proc.pid, creds.username, paths.credentials, paths.log, started_in_s=time.monotonic() - started)
    return info, proc


def _wait_healthy(url: str, proc: subprocess.Popen, paths: ServerPaths, creds: Credentials, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise ServiceError(
                f"Label Studio exited with code {code} during start-up: {_log_tail(paths.log, [creds.api_key, creds.password])}",
                hint=f"see {paths.log}",
            )
        if health(url):
            actual = _bound_port(paths.log)
            if actual is not None and actual != int(url.rsplit(":", 1)[1]):
                raise ServiceError(f"Label Studio moved to port {actual} instead of the one asked for", hint="pass a free --port")
            return
        time.sleep(0.5)
    raise ServiceError(
        f"Label Studio did not become healthy at {url} within {timeout_s:.0f} s",
        hint=f"see {paths.log}; a slow first start can be given more time with --wait",
    )


def _bound_port(log: Path) -> int | None:
    """The port Label Studio's last start says it serves on (it silently moves when the port is busy)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    last = text.rsplit("=== dvtr-data annotate serve", 1)[-1]
    marker = "Starting development server at http://"
    for line in reversed(last.splitlines()):
        if marker in line:
            tail = line.split(marker, 1)[1].split("/", 1)[0]
            try:
                return int(tail.rsplit(":", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


def _terminate(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it is still there after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    return
            except ChildProcessError:
                pass  # not our child: poll liveness instead
            if not _pid_alive(pid):
                return
            time.sleep(0.2)


def stop_server(dataset_dir: Path) -> ServerInfo | None:
    """Stop the server `start_server` started for this dataset. Returns its info, or None when none ran."""
    dataset = Dataset(dataset_dir).require()
    info = running_server(dataset)
    paths = ServerPaths.of(dataset)
    if info is None:
        return None
    _terminate(info.pid)
    paths.state.unlink(missing_ok=True)
    return info


def serve_foreground(proc: subprocess.Popen, dataset_dir: Path, say: Say = _quiet) -> int:
    """Keep a server started by `start_server` in the foreground until Ctrl-C (then stop it) or until it exits."""
    paths = ServerPaths.of(Dataset(dataset_dir))
    try:
        code = proc.wait()
        paths.state.unlink(missing_ok=True)
        return code
    except KeyboardInterrupt:
        say("stopping Label Studio")
        _terminate(proc.pid)
        paths.state.unlink(missing_ok=True)
        return 0
