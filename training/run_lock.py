"""One writer per run folder: an advisory lock file `<output_dir>/.run.lock` holding the writer's pid and host.

    lock = RunLock(output_dir).acquire()     # RunLockedError naming the holder if another process writes there
    ...
    lock.release()                           # also on interpreter exit; the kernel drops it if the process dies

The lock is an `flock` on the file, so it disappears with the process that holds it (a SIGKILLed run leaves a
stale file, which the next run detects, reports and takes over). Within one process the lock is re-entrant: a
second trainer on the same folder in the same interpreter (tests, notebooks) shares it.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

from utils.errors import MaskbitError

LOCK_FILE = ".run.lock"

_HELD: dict[str, "RunLock"] = {}  # folder (resolved) -> the lock this process holds on it


class RunLockedError(MaskbitError):
    """Another process is writing to the run folder."""


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since "
            f"{holder.get('started', '?')})")


class RunLock:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: Optional[int] = None
        self._users = 0
        self.stale_holder: Optional[str] = None

    def acquire(self) -> "RunLock":
        key = str(self.folder.resolve())
        held = _HELD.get(key)
        if held is not None:
            held._users += 1
            return held
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise RunLockedError(
                f"'{self.folder}' is in use by another run: {_describe(holder)} holds {self.path}. Wait for it to "
                f"finish or stop it, or set experiment.output_dir to another folder. (If that process is gone and "
                f"the folder is on a file system without working locks, delete {self.path}.)") from None
        previous = self._read(fd)
        self.stale_holder = _describe(previous) if previous else None  # a run that died holding the lock
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd, self._users = fd, 1
        _HELD[key] = self
        atexit.register(self._release_all)
        return self

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            data = os.pread(fd, 4096, 0)
            return json.loads(data) if data.strip() else {}
        except (OSError, ValueError):
            return {"pid": "?", "host": "? (unreadable lock file)"}

    def release(self) -> None:
        if self._fd is None:
            return
        self._users -= 1
        if self._users > 0:
            return
        self._release_all()

    def _release_all(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # while still holding the flock, so no other run's fresh lock file is removed
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd, self._users = None, 0
        _HELD.pop(str(self.folder.resolve()), None)
        atexit.unregister(self._release_all)

    @property
    def held(self) -> bool:
        return self._fd is not None
