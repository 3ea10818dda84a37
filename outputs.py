"""Outputs that belong together.

- ``RunLock``: ``<outdir>/<save_path>.lock`` while a stage writes that name's outputs; a second
  run with the same name refuses at start in one line naming the holder. A lock left by a process
  that no longer runs (same machine) is taken over.
- ``file_digest`` / ``input_digest``: the hashes run.json records, so that stage 2 can tell the
  mesh the last finished stage 1 wrote, and the input it used, from any other.
- ``check_free``: none of a run's output paths is taken by a folder (found before any work).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time

from inputs import input_paths
from io_utils import OutputError, reason


def check_free(paths):
    """Raise OutputError if any output path is a folder (it could never be replaced by a file)."""
    for p in paths:
        if os.path.isdir(p):
            raise OutputError(f"output {p} is a folder; move it away or choose another save_path=")


# ------------------------------------------------------------------------------ hashes
def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_digest(cfg) -> str | None:
    """What the run was made from: the input file's bytes (a folder: its transforms.json; several
    views: each file's and their angles), and in text mode the prompt."""
    parts = []
    for path in input_paths(cfg.input):  # several views: every file, in order
        target = os.path.join(path, "transforms.json") if os.path.isdir(path) else path
        parts.append(file_digest(target) if os.path.isfile(target) else "missing:" + os.path.abspath(path))
    if cfg.mode == "image" and len(parts) > 1:  # and the angles they were given
        parts.append(f"azimuths:{list(cfg.input_azimuths)} elevations:{list(cfg.input_elevations)}")
    if cfg.mode == "text":
        parts.append("prompt:" + str(cfg.prompt or ""))
    if not parts:
        return None
    if len(parts) == 1 and not parts[0].startswith(("missing:", "prompt:")):
        return parts[0]  # the input file's own sha256 (sha256sum FILE shows the same)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# ------------------------------------------------------------------------------ the lock
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(base):`` holds ``base + ".lock"`` (JSON: pid, host, start time, command)."""

    def __init__(self, base: str):
        self.base = base
        self.path = base + ".lock"
        self.held = False

    def holder(self) -> dict | None:
        try:
            with open(self.path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or unreadable

    def _stale(self, info: dict) -> bool:
        if not info:  # unreadable: stale once it is old enough not to be a lock being written
            try:
                return time.time() - os.path.getmtime(self.path) > 10
            except OSError:
                return True
        return info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1)))

    def acquire(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:300]}
        if os.path.isdir(self.path):
            raise OutputError(f"output {self.path} is a folder; move it away or choose another save_path=")
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is None:
                    continue  # released meanwhile
                if not self._stale(info):
                    who = (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                           f"{info.get('command')}") if info else "a run starting now"
                    raise OutputError(f"another run is writing {self.base}_* ({who}); wait for it, choose another "
                                      f"save_path=, or delete {self.path} if that run is gone") from None
                try:
                    os.remove(self.path)  # a dead run's lock: take it over
                except FileNotFoundError:
                    pass
                continue
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {reason(e)}") from None
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(me, fh)
            except OSError as e:  # a full disk: no half-written lock left behind
                os.remove(self.path)
                raise OutputError(f"cannot write {self.path}: {reason(e)}") from None
            self.held = True
            return self
        raise OutputError(f"could not take {self.path}: other runs keep taking it")

    def release(self):
        if self.held:
            info = self.holder()
            if info and info.get("pid") == os.getpid():
                try:
                    os.remove(self.path)
                except OSError:
                    pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def machine_info() -> dict:
    """What a result was measured on: CPU model, cores, torch version, GPU (if any), platform."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
