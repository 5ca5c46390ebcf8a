"""What a process tree listens on: the check that a Ray started on one machine binds loopback only (issue 29).

`SocketWatch(processes)` polls, on a thread, every listening TCP socket (IPv4 and IPv6) of the processes that
`processes()` names (`process_tree(pid)`: a process and its descendants; `processes_mentioning(text)`: the nodes of
cluster/local.sh, found by their state dir, and their descendants) while the code under test runs; `assert_loopback_only` then fails on any address that is not
loopback and on a watch that saw none of the servers it was meant to see (a check that looked at nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from makd_sweep.loopback import is_loopback_host


@dataclass(frozen=True)
class Listener:
    process: str  # psutil's name: gcs_server, raylet, ray::IDLE, ray::ImplicitFunc, python, ...
    pid: int
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.process} (pid {self.pid}) on {self.ip}:{self.port}"


def process_tree(root: int) -> set[int]:
    try:
        parent = psutil.Process(root)
        return {root, *(p.pid for p in parent.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def processes_mentioning(text: str) -> set[int]:
    """Processes whose command line contains `text`, and all their descendants."""
    pids = set()
    for proc in psutil.process_iter(["cmdline"]):
        if text in " ".join(proc.info["cmdline"] or []):
            pids |= process_tree(proc.pid)
    return pids


def listeners(pids: set[int]) -> set[Listener]:
    """Listening TCP sockets of these processes, from one system-wide read (/proc/net/tcp and tcp6)."""
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or conn.pid not in pids or conn.type != 1:  # SOCK_STREAM
            continue
        try:
            name = psutil.Process(conn.pid).name()
        except psutil.NoSuchProcess:
            continue
        found.add(Listener(name, conn.pid, conn.laddr.ip, conn.laddr.port))
    return found


class SocketWatch:
    """A context manager: every listener of `processes()` seen between enter and exit, polled every `interval_s`."""

    def __init__(self, processes: Callable[[], set[int]], interval_s: float = 0.5):
        self.processes, self.interval_s = processes, interval_s
        self.seen: set[Listener] = set()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="socket-watch", daemon=True)

    def poll(self) -> None:
        self.seen |= listeners(self.processes())
        self.polls += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> SocketWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def exposed(self) -> list[Listener]:
        return sorted((s for s in self.seen if not is_loopback_host(s.ip)), key=str)

    def assert_loopback_only(self, servers: tuple[str, ...] = ("gcs_server", "raylet"), min_raylets: int = 1,
                             trial_workers: bool = True) -> None:
        """No listener off loopback; and the watch saw Ray's servers (and a trial's worker) listening at all."""
        exposed = self.exposed()
        assert not exposed, "listening off loopback:\n" + "\n".join(map(str, exposed))
        names = {s.process for s in self.seen}
        missing = [name for name in servers if name not in names]
        assert not missing, f"the watch never saw {missing} listening ({self.polls} polls; saw {sorted(names)})"
        raylets = {s.pid for s in self.seen if s.process == "raylet"}
        assert len(raylets) >= min_raylets, f"saw {len(raylets)} raylet(s), expected {min_raylets}"
        if trial_workers:
            workers = {s.process for s in self.seen if s.process.startswith("ray::") and "Agent" not in s.process}
            assert workers, f"the watch saw no Ray worker process listening (saw {sorted(names)})"
