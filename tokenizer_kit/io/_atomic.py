"""Atomic writes of files and whole directories.

Files: ``atomic_write(path)`` writes beside the target and ``os.replace``-s it in.

Directories: ``atomic_directory(path)`` yields an empty staging directory beside ``path``
(``.<name>.staging-XXXXXXXX``) and, when the caller's block succeeds, switches it in with
**one atomic step**, so that a kill at any instant leaves either the old or the new
directory at ``path``, never none and never a mix:

* Linux: ``renameat2(RENAME_EXCHANGE)`` (kernel >= 3.15; ext4, xfs, btrfs, tmpfs, overlayfs,
  NFSv4 servers on Linux... support it), called through ``ctypes``. The two directories
  trade names in one step; the old one, now under the staging name, is then deleted.
* macOS: ``renamex_np(RENAME_SWAP)`` on APFS, the same exchange.
* Elsewhere (Windows, or a filesystem that answers EINVAL / ENOTSUP / ENOSYS): two renames,
  ``path -> .<name>.previous-XXXXXXXX`` then ``staging -> path``. A kill between them leaves
  no directory at ``path`` but a whole previous version beside it: readers going through
  ``live_directory`` (every reader in ``_manifest``) load that previous version, and the
  next writer renames it back before doing anything else. A warning is logged once.

The whole commit runs under the artifact's writer lock (``_lock.writer_lock``). The next
writer removes staging directories that a killed writer left behind (``clean_stale``).

Every filesystem step of a commit goes through ``_step(name, fn, *args)``: the tests replace
it to inject a kill between any two steps (see ``tests/test_reliability_commit.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ._lock import writer_lock

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_directory",
    "replace_directory",
    "commit_directory",
    "clean_stale",
    "live_directory",
    "exchange_supported",
    "fsync_tree",
    "sha256_file",
]

logger = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _step(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """One filesystem step of a commit (a seam for fault-injection tests)."""
    return fn(*args)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _fsync_path(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def usual_file_modes(directory: str | os.PathLike) -> None:
    """Give every regular file under ``directory`` the mode a plain ``open`` would (0644
    under the usual umask 022): some writers (safetensors) create files 0600, which the
    group could not read."""
    mode = 0o666 & ~_umask()
    for root, _dirs, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p) and stat.S_IMODE(os.stat(p).st_mode) != mode:
                os.chmod(p, mode)


def fsync_tree(directory: str | os.PathLike) -> None:
    """fsync every regular file under ``directory`` and the directories themselves."""
    for root, dirs, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                _fsync_path(p)
        _fsync_path(root)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The caller writes the temporary path with any writer (pyarrow, safetensors, ...).
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.is_dir():
        from ..errors import InputError

        raise InputError(f"output {path} is a directory; give the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        from ..errors import InputError

        raise InputError(f"cannot write {path}: a part of {path.parent} is a file, not a directory; choose another path") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
    try:
        yield tmp_path
        if stat.S_IMODE(os.stat(tmp_path).st_mode) != 0o666 & ~_umask():  # a writer that re-created it 0600
            os.chmod(tmp_path, 0o666 & ~_umask())
        _fsync_path(tmp_path)
        _step("replace-file", os.replace, tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=indent, sort_keys=False) + "\n").encode())


# ---------------------------------------------------------------------------- the exchange
class _NoExchange(OSError):
    """The OS or filesystem cannot exchange two names atomically."""


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "arm64": 276, "ppc64le": 357, "s390x": 347, "riscv64": 276}
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)}
_libc = None
_warned_fallback = False
# tests set this False to exercise the two-rename fallback on a filesystem that has the exchange
_USE_EXCHANGE = True


def _get_libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    """``renameat2`` (Linux) / ``renamex_np`` (macOS); ``_NoExchange`` where unavailable."""
    if not _USE_EXCHANGE:
        raise _NoExchange(errno.ENOSYS, "exchange disabled")
    s, d = os.fsencode(src), os.fsencode(dst)
    if sys.platform.startswith("linux"):
        libc = _get_libc()
        fn = getattr(libc, "renameat2", None)
        if fn is not None:
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            r = fn(_AT_FDCWD, s, _AT_FDCWD, d, flags)
        else:  # glibc < 2.28 has no wrapper: call the system call
            import platform

            nr = _SYS_RENAMEAT2.get(platform.machine())
            if nr is None:
                raise _NoExchange(errno.ENOSYS, "renameat2 unknown on this architecture")
            r = libc.syscall(ctypes.c_long(nr), ctypes.c_int(_AT_FDCWD), ctypes.c_char_p(s), ctypes.c_int(_AT_FDCWD), ctypes.c_char_p(d), ctypes.c_uint(flags))
    elif sys.platform == "darwin":  # pragma: no cover - not run in CI
        libc = _get_libc()
        fn = getattr(libc, "renamex_np", None)
        if fn is None:
            raise _NoExchange(errno.ENOSYS, "no renamex_np")
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        r = fn(s, d, {_RENAME_EXCHANGE: 0x2, _RENAME_NOREPLACE: 0x4}[flags])  # RENAME_SWAP, RENAME_EXCL
    else:  # pragma: no cover - Windows
        raise _NoExchange(errno.ENOSYS, "no atomic exchange on this OS")
    if r != 0:
        e = ctypes.get_errno()
        if e in _UNSUPPORTED:
            raise _NoExchange(e, os.strerror(e))
        raise OSError(e, os.strerror(e), str(src), None, str(dst))


def _exchange(a: Path, b: Path) -> None:
    _renameat2(a, b, _RENAME_EXCHANGE)


def _rename_noreplace(src: Path, dst: Path) -> None:
    try:
        _renameat2(src, dst, _RENAME_NOREPLACE)
    except _NoExchange:
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        os.rename(src, dst)


def exchange_supported(directory: str | os.PathLike) -> bool:
    """Whether the filesystem holding ``directory`` can exchange two names atomically."""
    directory = Path(directory)
    a = Path(tempfile.mkdtemp(prefix=".xchg-", dir=directory))
    b = Path(tempfile.mkdtemp(prefix=".xchg-", dir=directory))
    try:
        _exchange(a, b)
        return True
    except _NoExchange:
        return False
    finally:
        shutil.rmtree(a, ignore_errors=True)
        shutil.rmtree(b, ignore_errors=True)


# ---------------------------------------------------------------------------- directory commit
def artifact_path(path: str | os.PathLike) -> Path:
    """Absolute path with symlinks resolved (a symlinked artifact is committed where it lives)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _pattern(name: str, what: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.{what}-[a-z0-9_]{{8}}$")


def _previous_versions(path: Path) -> list[Path]:
    pat = _pattern(path.name, "previous")
    try:
        return sorted((p for p in path.parent.iterdir() if pat.match(p.name) and p.is_dir()), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []


def live_directory(path: str | os.PathLike) -> Path:
    """``path``, or the previous version a two-rename commit left beside it when killed mid-way.

    Only the fallback commit (no atomic exchange) can leave ``path`` missing; every reader of
    artifacts goes through this so that such a kill still leaves the old version loadable.
    """
    p = Path(path)
    if os.path.lexists(p):
        return p
    prev = _previous_versions(artifact_path(p))
    if prev:
        logger.warning("%s is missing but a previous version survived an interrupted write; reading %s", p, prev[-1])
        return prev[-1]
    return p


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writers of ``path`` left beside it; call with the writer lock held.

    Staging directories are deleted (before an exchange they hold an unfinished new version,
    after it the old one); a previous version left by an interrupted two-rename commit is
    renamed back to ``path`` when ``path`` is missing, and deleted otherwise. Returns what
    was removed or restored.
    """
    path = artifact_path(path)
    done: list[Path] = []
    staging = _pattern(path.name, "staging")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return done
    for p in entries:
        if staging.match(p.name):
            shutil.rmtree(p, ignore_errors=True)
            done.append(p)
    for p in _previous_versions(path)[::-1]:
        if not os.path.lexists(path):
            os.rename(p, path)
            logger.warning("restored %s from %s, left by an interrupted write", path, p.name)
        else:
            shutil.rmtree(p, ignore_errors=True)
        done.append(p)
    if done:
        logger.info("removed %d leftovers of interrupted writes beside %s", len(done), path)
    return done


def commit_directory(staging: str | os.PathLike, path: str | os.PathLike) -> None:
    """Switch the finished ``staging`` directory in at ``path`` in one atomic step.

    ``staging`` must be a sibling of ``path`` (same filesystem) and already synced
    (``fsync_tree``). Call with the writer lock of ``path`` held. See the module docstring
    for what happens where the OS has no atomic exchange.
    """
    global _warned_fallback
    staging, path = Path(staging), artifact_path(path)
    if not os.path.lexists(path):
        _step("rename-new", _rename_noreplace, staging, path)
        _step("fsync-parent", _fsync_path, path.parent)
        return
    try:
        _step("exchange", _exchange, staging, path)
    except _NoExchange:
        if not _warned_fallback:
            logger.warning("the filesystem under %s cannot exchange directories atomically; using two renames "
                           "(a kill between them is repaired by the next reader and writer)", path.parent)
            _warned_fallback = True
        prev = Path(tempfile.mkdtemp(prefix=f".{path.name}.previous-", dir=path.parent))
        os.rmdir(prev)
        _step("move-old-aside", os.rename, path, prev)
        try:
            _step("rename-new", os.rename, staging, path)
        except BaseException:
            if not os.path.lexists(path):
                os.rename(prev, path)
            raise
        _step("fsync-parent", _fsync_path, path.parent)
        _step("remove-old", shutil.rmtree, prev, True)
        return
    _step("fsync-parent", _fsync_path, path.parent)
    _step("remove-old", shutil.rmtree, staging, True)  # now the old version


def replace_directory(staging: Path, path: Path) -> None:
    """Backward-compatible name of ``commit_directory`` (takes the writer lock itself)."""
    with writer_lock(path):
        fsync_tree(staging)
        commit_directory(staging, path)


def _carry_over(live: Path, staging: Path, names: Sequence[str]) -> None:
    """Hard-link (or copy) entries of the live directory that are not part of the new version."""
    for name in names:
        src, dst = live / name, staging / name
        if not os.path.lexists(src) or os.path.lexists(dst):
            continue
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    lock_timeout: float | None = None,
    keep: Sequence[str] = (),
) -> Iterator[Path]:
    """Yield an empty staging directory; on success it takes the place of ``path`` atomically.

    Raises ``ArtifactError`` up front if ``path`` exists and ``overwrite`` is False, or is not
    a directory. Holds the writer lock of ``path`` from before the staging directory is made
    until the commit, and removes leftovers of killed writers first. ``keep`` names entries
    of the current directory (e.g. training logs) carried into the new version by hard link.
    On an exception the staging directory is removed and an existing ``path`` stays whole.
    """
    from ..errors import ArtifactError

    shown = Path(path)
    path = artifact_path(path)

    def check() -> None:
        if os.path.lexists(path) and not overwrite:
            raise ArtifactError(
                f"output directory {shown} already exists; set `overwrite` to replace it, or choose another path"
            )
        if os.path.lexists(path) and not path.is_dir():
            raise ArtifactError(f"output path {shown} exists and is not a directory; remove it or choose another path")

    check()
    if not path.parent.is_dir():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ArtifactError(f"cannot write {shown}: a part of {path.parent} is a file, not a directory; choose another path") from None
    with writer_lock(path, timeout=lock_timeout):
        clean_stale(path)
        check()  # another writer may have created it while we waited
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.staging-", dir=path.parent))
        try:
            os.chmod(staging, 0o777 & ~_umask())
            yield staging
            if keep and path.is_dir():
                _carry_over(path, staging, keep)
            usual_file_modes(staging)
            fsync_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            commit_directory(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # the unfinished new or, after the exchange, the old version
            raise
