"""A throwaway local Redis for tests and notebooks (``rl.SharedRateLimit``'s store).

    with rl.redis_server.start() as redis:          # 127.0.0.1, a free port, no persistence
        shared = SharedRateLimit(20, redis=redis.url)
        ...

:func:`start` runs the ``redis-server`` binary (Debian/Ubuntu: ``apt-get install
redis-server``; macOS: ``brew install redis``) bound to 127.0.0.1 only, with no RDB
snapshots and no AOF, in a temporary directory that is removed on :meth:`RedisHandle.stop`.
It returns once the server answers ``PING``. The server runs in its own session (a
terminal's Ctrl-C or a Jupyter interrupt does not reach it) and is stopped by ``stop()``,
by leaving the ``with`` block, when the handle is garbage-collected, or at interpreter exit.

:func:`ping` is the raw RESP ``PING`` (no client library needed) that both use to tell
whether a Redis answers at a URL.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlsplit

from ratelab.errors import ConfigError, RatelabError

__all__ = ["BINARY", "RedisHandle", "available", "ping", "start"]

#: The executable :func:`start` runs (looked up on ``PATH``).
BINARY = "redis-server"
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_INSTALL_HINT = (
    "install it: `apt-get install redis-server` (Debian/Ubuntu; the package is "
    "redis-server), `brew install redis` (macOS), or run one in Docker: "
    "`docker run --rm -p 6379:6379 redis:7`"
)


def available() -> bool:
    """Whether the ``redis-server`` binary is on ``PATH``."""
    return shutil.which(BINARY) is not None


def _address(url: str) -> tuple[int, object]:
    """``(socket family, address)`` of a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    parts = urlsplit(url.removeprefix("async+"))
    if parts.scheme in ("unix", "redis+unix"):
        return socket.AF_UNIX, unquote(parts.path)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("redis", url, "must be a redis://host:port/db URL")
    return socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET, (
        parts.hostname or "127.0.0.1",
        parts.port or 6379,
    )


def ping(url: str, *, timeout_s: float = 1.0) -> bool:
    """True if something answers a RESP ``PING`` at ``url`` within ``timeout_s``.

    Any Redis reply counts (``+PONG``, or ``-NOAUTH`` from a server that wants a password:
    it is there). For ``rediss://`` (TLS) only the TCP connection is checked.
    """
    family, address = _address(url)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(address)  # type: ignore[arg-type]
            if url.removeprefix("async+").startswith("rediss:"):
                return True
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply[:1] in (b"+", b"-")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes], directory: str) -> None:
    """SIGTERM (Redis exits at once: nothing to save), then SIGKILL; remove the directory."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_handles: weakref.WeakSet[RedisHandle] = weakref.WeakSet()


class RedisHandle:
    """A running throwaway ``redis-server``: ``url``, ``port``, ``pid``; :meth:`stop`."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, directory: str) -> None:
        self._proc = proc
        self.port = port
        self.host = "127.0.0.1"
        self.url = f"redis://127.0.0.1:{port}/0"
        self.directory = Path(directory)
        self._finalizer = weakref.finalize(self, _stop_process, proc, directory)
        _handles.add(self)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may still not answer, e.g. when stopped)."""
        return self._proc.poll() is None

    def ping(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers ``PING``."""
        return ping(self.url, timeout_s=timeout_s)

    def stop(self) -> None:
        """Stop the server and remove its directory. Idempotent."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisHandle {self.url} pid={self.pid} {state}>"


def start(port: int = 0, *, timeout_s: float = STARTUP_TIMEOUT_S) -> RedisHandle:
    """Start ``redis-server`` on 127.0.0.1 (``port=0``: a free port), without persistence,
    in a temporary directory; return once it answers ``PING``.

    Raises :class:`~ratelab.errors.RatelabError` naming the package to install when the
    binary is missing, and with the server's log when it does not come up.
    """
    binary = shutil.which(BINARY)
    if binary is None:
        raise RatelabError(f"{BINARY} is not on PATH: {_INSTALL_HINT}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 2**16:
        raise ConfigError("port", port, "must be an integer in 0..65535 (0: a free port)")
    attempts = 3 if port == 0 else 1  # a free port can be taken between the probe and the bind
    last_log = ""
    for _ in range(attempts):
        p = port or _free_port()
        directory = tempfile.mkdtemp(prefix="ratelab-redis-")
        log_path = Path(directory) / "redis.log"
        cmd = [binary, "--port", str(p), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", directory, "--daemonize", "no",
               "--logfile", str(log_path)]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C / a kernel interrupt stays with the caller
            cwd=directory,
        )
        handle = RedisHandle(proc, p, directory)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if handle.ping(timeout_s=0.5):
                return handle
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            last_log = log_path.read_text(errors="replace")[-2000:]
        handle.stop()
        if "in use" not in last_log or port != 0:
            break
    raise RatelabError(
        f"{BINARY} did not answer PING on 127.0.0.1:{p} within {timeout_s:g} s; its log:\n"
        f"{last_log.strip() or '(empty)'}"
    )


@atexit.register
def _stop_all() -> None:
    for handle in list(_handles):
        handle.stop()
