"""One writer at a time: an exclusive ``flock`` on a lock file beside an artifact directory.

``writer_lock(path)`` guards every read-modify-write of the artifact at ``path`` (build,
overwrite, ``assign --update``, ``index``, compaction). The lock file is
``<parent>/.<name>.lock``: beside the directory, not inside it, because a whole-directory
commit swaps the directory (and anything inside it) for a new one, and a lock must outlive
that swap. The lock file exists only while a writer holds it: the holder deletes it before
unlocking, and a waiter that then gets the lock on the deleted file sees that the name now
points elsewhere (or nowhere) and starts over, so deleting it is safe and nothing is left
behind (a writer killed while holding it leaves an empty, unlocked file that the next writer
reuses).

* A second writer waits up to ``timeout`` seconds (default ``DEFAULT_LOCK_TIMEOUT_S``, or
  the ``TOKENIZER_KIT_LOCK_TIMEOUT`` environment variable; 0 = do not wait), then raises
  ``LockTimeout`` (an ``ArtifactError``) naming the holder's pid and start time.
* The lock is re-entrant within one thread (``save_pretrained`` inside an
  ``assign --update`` that already holds it does not deadlock); two threads of one process
  exclude each other like two processes do.
* The kernel releases the lock when the holder exits, however it exits (kill -9
  included): there are no stale locks to clean up.
* Readers take no lock: they read a consistent snapshot (see ``_manifest.read_artifact``).

Works on Linux and macOS (``fcntl.flock``; on NFS, Linux emulates it with POSIX locks).
On Windows, where ``fcntl`` does not exist, the lock is a no-op with a one-time warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from ..errors import ArtifactError

try:  # pragma: no cover - always present on POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["writer_lock", "lock_path", "lock_timeout", "LockTimeout", "DEFAULT_LOCK_TIMEOUT_S", "LOCK_TIMEOUT_ENV"]

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 120.0
LOCK_TIMEOUT_ENV = "TOKENIZER_KIT_LOCK_TIMEOUT"

# (lock file, thread id) -> [fd, depth]: re-entrancy within one thread
_held: dict[tuple[str, int], list[int]] = {}
_held_guard = threading.Lock()
_warned_no_fcntl = False


class LockTimeout(ArtifactError):
    """Another writer held the artifact's lock for longer than the timeout."""


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the artifact at ``path``: ``<parent>/.<name>.lock``."""
    p = Path(os.path.abspath(path))
    return p.parent / f".{p.name}.lock"


def lock_timeout(timeout: float | None = None) -> float:
    """``timeout`` if given, else ``$TOKENIZER_KIT_LOCK_TIMEOUT``, else the default (seconds)."""
    if timeout is not None:
        return max(0.0, float(timeout))
    env = os.environ.get(LOCK_TIMEOUT_ENV)
    if env is None or env.strip() == "":
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        return max(0.0, float(env))
    except ValueError:
        raise ArtifactError(f"{LOCK_TIMEOUT_ENV}={env!r} is not a number of seconds; set it to e.g. 300, or unset it") from None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def writer_lock(path: str | os.PathLike, *, timeout: float | None = None) -> Iterator[Path]:
    """Hold the exclusive writer lock of the artifact at ``path`` (see the module docstring).

    Yields the lock file's path. Raises ``LockTimeout`` after ``timeout`` seconds of waiting
    and ``ArtifactError`` when the lock file cannot be created (an unwritable parent).
    """
    global _warned_no_fcntl
    lp = lock_path(path)
    key = (str(lp), threading.get_ident())
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield lp
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    if fcntl is None:  # pragma: no cover - Windows
        if not _warned_no_fcntl:
            logger.warning("no fcntl on this platform: concurrent writers to one artifact are not excluded")
            _warned_no_fcntl = True
        yield lp
        return
    wait = lock_timeout(timeout)
    fd = _open_lock(lp, path)
    t0 = time.monotonic()
    told = False
    while True:
        try:
            delay = 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - t0
                    if waited >= wait:
                        raise LockTimeout(
                            f"{path} is being changed by {_holder(fd)}; gave up after waiting {waited:.0f} s. "
                            f"Retry when it has finished, or wait longer with {LOCK_TIMEOUT_ENV}=SECONDS"
                        ) from None
                    if not told:
                        logger.warning("waiting up to %.0f s for %s, which is being changed by %s", wait, path, _holder(fd))
                        told = True
                    time.sleep(min(delay, max(wait - waited, 0.0)))
                    delay = min(delay * 2, 0.25)
            if _same_file(fd, lp):
                break
            # the holder deleted the file we waited on: lock whatever the name points to now
            os.close(fd)
            fd = -1
            fd = _open_lock(lp, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
    try:
        info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        entry = [fd, 1]
        with _held_guard:
            _held[key] = entry
        try:
            yield lp
        finally:
            with _held_guard:
                _held.pop(key, None)
            with contextlib.suppress(OSError):
                os.unlink(lp)  # before unlocking: see the module docstring
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock(lp: Path, path) -> int:
    try:
        lp.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lp, os.O_RDWR | os.O_CREAT, 0o666)
    except (FileExistsError, NotADirectoryError):
        raise ArtifactError(f"cannot write {path}: a part of {lp.parent} is a file, not a directory; choose another path") from None
    except OSError as e:
        raise ArtifactError(
            f"cannot create the writer lock {lp} ({e.strerror}); the folder holding {Path(path).name} must be writable to change it"
        ) from None


def _same_file(fd: int, lp: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(lp)
    except FileNotFoundError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
