"""The servers the browser tests drive: JupyterLab (conftest.py) and Voila
(test_present_page.py), each a :class:`Server`.

A server runs on 127.0.0.1 on a free port with a random token and NST_QUICK=1, in its own
process group, with its own runtime, config, data and IPython folders under ``home``; its
output goes to a log file. :meth:`Server.stop` ends it and every kernel it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

SERVER_START_S = 180  # a server's start on a busy two-core machine can take a minute


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc; empty elsewhere). Kernels run in sessions
    of their own, so killing the server's process group alone would not reach them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Server:
    """A Jupyter server started with :meth:`command` in ``root``; ``name`` names its log."""

    name = "server"

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.log_path = home / f"{self.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
        env.pop("MPLBACKEND", None)  # as for a student: the notebook's %matplotlib inline
        env.update(
            NST_QUICK="1",
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_DATA_DIR=str(home / "data"),
            IPYTHONDIR=str(home / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
        )
        self.prepare(home)
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(), cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # its own process group
        )

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self, home: Path) -> None:
        """Anything to write under ``home`` before the server starts."""

    def ready(self) -> bool:
        """True once the server answers."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """A polite end before the signals (e.g. the kernels shut down)."""

    def wait_ready(self, timeout: float = SERVER_START_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n"
                                   + self.log_tail())
            if self.ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} did not answer within {timeout:.0f} s:\n"
                           + self.log_tail())

    def log_tail(self, chars: int = 4000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """:meth:`shutdown`, then the server's process group; kill what is left below it."""
        pids = descendants(self.process.pid)
        if self.process.poll() is None:
            try:
                self.shutdown()
            except Exception:  # the server may be stuck: the signals below still work
                pass
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
            except ProcessLookupError:
                pass
        for pid in pids:  # kernels (own sessions) that outlived the server
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
