"""The lock file a writer holds on a session folder for the whole recording (docs/recording-format.md).

``recording.lock`` in the session folder holds one JSON object: ``pid``, ``host``, ``started_utc``
(and ``started_epoch_s``, ``purpose``, ``software``). The recorder creates it before anything
else and removes it as its very last step; ``forget``, ``repair`` and a second writer refuse a
folder whose lock is *held*. A lock is **stale** when its writer is gone: its host is this
machine and its process no longer runs (or the pid now belongs to a process started after the
lock, a reused pid). A lock from another host cannot be checked and counts as held.

``repair`` takes over a stale lock: it writes its own lock beside it and renames it over the
stale one (an atomic replace), then reads it back; a second repair that raced it finds the
other's lock and refuses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import __version__
from ..errors import SessionLockedError

__all__ = ["LOCK_FILE", "LockInfo", "SessionLock", "read_lock", "refuse_if_locked", "pid_alive"]

LOCK_FILE = "recording.lock"
_FORMAT = "emer_live.lock"
# A lock file that cannot be read was either being written this very moment or left half-written
# by a crash; after this long it is the crash.
_UNREADABLE_GRACE_S = 10.0


def _host() -> str:
    return socket.gethostname().lower()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (psutil; POSIX signal 0 or the Windows API
    where psutil is missing)."""
    if pid <= 0:
        return False
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return bool(psutil.pid_exists(pid))
    if sys.platform == "win32":  # pragma: no cover - Windows without psutil
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)   # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return bool(ok) and code.value == 259             # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # someone else's process: alive
    return True


def _started_after(pid: int, epoch_s: float) -> bool:
    """True when process ``pid`` started clearly after ``epoch_s``: the pid was reused."""
    try:
        import psutil

        return psutil.Process(pid).create_time() > epoch_s + 2.0
    except Exception:  # noqa: BLE001 - no psutil, no access, gone: cannot tell, so not reused
        return False


@dataclass(frozen=True)
class LockInfo:
    """A lock file as found on disk."""

    path: Path
    pid: Optional[int]
    host: Optional[str]
    started_utc: Optional[str]
    purpose: str
    token: Optional[str]
    stale: bool
    why: str          # held: "pid 123 on host lab-pc since ..."; stale: why it is stale

    def describe(self) -> str:
        who = f"pid {self.pid} on host {self.host}, started {self.started_utc}" if self.pid is not None \
            else "an unreadable lock file"
        return f"{who}: {self.why}"


def read_lock(folder) -> Optional[LockInfo]:
    """The lock on ``folder`` (held or stale), or None when there is none."""
    path = Path(folder) / LOCK_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return LockInfo(path, None, None, None, "?", None, False, "the lock path is a folder; remove it by hand")
    except OSError as exc:
        return LockInfo(path, None, None, None, "?", None, False,
                        f"the lock file cannot be read ({exc.strerror or exc}); treat the folder as in use")
    try:
        d = json.loads(raw.decode("utf-8"))
        pid, host = int(d["pid"]), str(d["host"]).lower()
        started, epoch = str(d.get("started_utc", "?")), float(d.get("started_epoch_s", 0.0))
        purpose, token = str(d.get("purpose", "recording")), d.get("token")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            age = 0.0
        stale = age > _UNREADABLE_GRACE_S
        return LockInfo(path, None, None, None, "?", None, stale,
                        "left half-written by a crash (stale)" if stale else "being written now; treat it as held")
    if host != _host():
        return LockInfo(path, pid, host, started, purpose, token, False,
                        f"{purpose} on another computer; it cannot be checked from here - if nothing records "
                        f"there any more, delete {path} by hand")
    if not pid_alive(pid):
        return LockInfo(path, pid, host, started, purpose, token, True,
                        f"stale: that process no longer runs ({purpose} crashed or was killed)")
    if epoch and _started_after(pid, epoch):
        return LockInfo(path, pid, host, started, purpose, token, True,
                        "stale: that pid now belongs to a process started after the lock (the writer is gone)")
    return LockInfo(path, pid, host, started, purpose, token, False, f"{purpose} still running")


def refuse_if_locked(folder, *, action: str) -> Optional[LockInfo]:
    """Raise :class:`SessionLockedError` when ``folder`` has a held lock; return a stale lock's
    info (the caller names it), None when unlocked."""
    info = read_lock(folder)
    if info is not None and not info.stale:
        raise SessionLockedError(f"{folder}: in use ({info.describe()}); {action} refused - wait until it "
                                 "ends (stop the recording first)")
    return info


class SessionLock:
    """A held lock file; :meth:`acquire` creates it, :meth:`release` removes it (if still ours)."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self.token = token

    @classmethod
    def acquire(cls, folder, *, purpose: str = "recording", take_over_stale: bool = False,
                file_mode: int = 0o600) -> "SessionLock":
        """Create the lock in ``folder``. A held lock raises :class:`SessionLockedError`; so does a
        stale one unless ``take_over_stale`` (repair), which replaces it atomically."""
        folder = Path(folder)
        path = folder / LOCK_FILE
        token = uuid.uuid4().hex
        now = time.time()
        body = json.dumps({"format": _FORMAT, "pid": os.getpid(), "host": _host(),
                           "started_utc": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="seconds"),
                           "started_epoch_s": round(now, 3), "purpose": purpose, "token": token,
                           "software": f"emer_live {__version__}"}).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), file_mode)
        except FileExistsError:
            info = read_lock(folder)
            if info is None:                       # released in between: try once more
                return cls.acquire(folder, purpose=purpose, take_over_stale=take_over_stale, file_mode=file_mode)
            if not info.stale:
                raise SessionLockedError(f"{folder}: in use ({info.describe()}); {purpose} refused - wait until "
                                         "it ends (stop the recording first)") from None
            if not take_over_stale:
                raise SessionLockedError(f"{folder}: has a stale lock ({info.describe()}); run `emer-live repair "
                                         f"{folder}` first") from None
            tmp = folder / f"{LOCK_FILE}.{token}"
            with open(tmp, "xb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, file_mode)
            os.replace(tmp, path)
            mine = read_lock(folder)
            if mine is None or mine.token != token:
                raise SessionLockedError(f"{folder}: another process took over the stale lock at the same time; "
                                         f"{purpose} refused") from None
            return cls(path, token)
        try:
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(path, file_mode)      # the mode whatever the umask
        except OSError:
            try:                           # a full disk: leave no half-written lock behind
                path.unlink()
            except OSError:
                pass
            raise
        return cls(path, token)

    def release(self) -> None:
        """Remove the lock if it is still this one (never another process's)."""
        info = read_lock(self.path.parent)
        if info is not None and info.token == self.token:
            try:
                self.path.unlink()
            except OSError:
                pass
