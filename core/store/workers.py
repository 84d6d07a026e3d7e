"""Who holds a run: a driver's identity (``host:pid:tag``) and whether that process still lives."""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import socket
from pathlib import Path


def worker_id() -> str:
    """This process's identity as the holder of runs: ``host:pid:tag``, unique across machines,
    containers and time.

    The tag is ``SCOPE-START``: SCOPE a hash of the boot id and the pid namespace, START the
    process's start time (clock ticks since boot), so two drivers that are both PID 1 of their
    container, or a process that reuses a dead driver's pid, never share an identity. Without
    /proc the tag is a random token.
    """
    pid = os.getpid()
    if pid not in _IDENTITY:
        start = _start_time(pid) if _proc_is_ours() else None
        tag = f"{_scope()}-{start}" if start else f"r{secrets.token_hex(8)}"
        _IDENTITY[pid] = f"{socket.gethostname()}:{pid}:{tag}"
    return _IDENTITY[pid]


_IDENTITY: dict[int, str] = {}


@functools.lru_cache(maxsize=1)
def _scope() -> str:
    """A hash of the boot id and this process's pid namespace: pids mean the same within one."""
    parts = []
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("/pid") else Path(source).read_text())
        except OSError:
            parts.append("?")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def _proc_is_ours() -> bool:
    """Whether /proc shows this process's pid namespace (not so in a container given the host's
    /proc): only then do the pids of /proc mean what ``os.getpid()`` means."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return fields[19] if len(fields) > 19 else None


def worker_host(worker: str | None) -> str:
    """The host part of a holder identity (``host:pid`` or ``host:pid:tag``)."""
    return (worker or "").split(":", 1)[0]


def _pid_alive(worker: str | None) -> bool:
    """Whether the holder ``worker`` of this host may still be running (True when unknowable).

    A ``host:pid:tag`` identity of this boot and pid namespace is alive only while its pid is
    the very process that made it (same start time): a reused pid does not fool it. One from
    another pid namespace (a container with the same host name) cannot be checked from here and
    is left to the heartbeat timeout. The ``host:pid`` form of older pairs: the pid exists.
    """
    if not worker or ":" not in worker:
        return True
    _, _, rest = worker.partition(":")
    pid_text, _, tag = rest.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if tag:
        scope, _, start = tag.partition("-")
        if not start or scope != _scope() or not _proc_is_ours():
            return True
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
