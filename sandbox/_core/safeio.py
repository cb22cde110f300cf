"""Every file the sandbox reads from a user or writes for one goes through here.

Why one module: the sandbox runs files people download (scenarios, replays,
logs), often as a user who can write more than the file's author could, and
it writes outputs into folders that may already hold something. Each command
used to open and replace files its own way, and each way had its own hole (a
truncating ``open`` through a planted symlink, a fixed temporary name, a
FIFO that hangs a read, an unbounded ``read()``). The rules, in one place:

Writes (:func:`write_atomic`, :class:`OutDir`)
    An output is written whole to a fresh temporary file in the target's own
    folder (a random name, created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so
    nothing planted there can be written through) and renamed into place, so
    a reader sees the old file or the new one, never a part. The target must
    be absent or a regular file: a symlink, directory, FIFO, socket or device
    is refused (:class:`UnsafePath`), as is any path that names one of the
    command's own inputs or outputs (``avoid``). An ``--out`` folder is
    opened once and every name in it is resolved relative to that open
    folder (``dir_fd``), locked with ``flock`` for the whole command (a
    second command into the same folder is refused at once; the lock goes
    away with the process, however it dies), and cleared of the previous
    run's results before anything new is written.

Reads (:func:`read_regular`, :func:`open_regular`)
    Only a regular file is read (a FIFO, device or directory is refused
    before any byte is read: the open is non-blocking and the type is taken
    from the open descriptor, so there is no window between check and use),
    and never more than the caller's limit: the size on disk is checked
    first and the read stops one byte past the limit (``/proc`` files report
    a size of 0).

Messages
    :class:`UnsafePath` messages name the path and the problem in one line;
    they never quote what the file holds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Iterable

__all__ = [
    "UnsafePath",
    "OutDir",
    "read_regular",
    "open_regular",
    "write_atomic",
    "probe_writable",
    "check_target",
    "same_file",
    "safe_name",
    "describe_kind",
]

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_TMP_PREFIX: Final = ".sandbox-"
_TMP_SUFFIX: Final = ".tmp"


class UnsafePath(Exception):
    """A path the sandbox will not read or write. ``str()`` is the whole one-line message.

    ``problem`` is the message without the path in front (for callers that name the file themselves).
    """

    def __init__(self, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem if problem is not None else message


def _bad(path: str | os.PathLike[str], problem: str) -> UnsafePath:
    return UnsafePath(f"{_show(path)}: {problem}", problem)


def describe_kind(mode: int) -> str:
    """What a file of this mode is, in words ("a directory", "a FIFO", ...)."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _show(path: str | os.PathLike[str]) -> str:
    """A path for a one-line message: control characters escaped, and at most 200 characters."""
    text = os.fspath(path)
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return text if len(text) <= 200 else text[:197] + "..."


# --- reading -------------------------------------------------------------------------------


def _open_regular_fd(path: str | os.PathLike[str], what: str, limit: int) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    except FileNotFoundError:
        raise _bad(path, "no such file") from None
    except IsADirectoryError:
        raise _bad(path, f"is a directory, not {what}") from None
    except OSError as e:
        raise _bad(path, f"cannot be read ({_reason(e)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _bad(path, f"is {describe_kind(st.st_mode)}, not {what}")
        if st.st_size > limit:
            raise _bad(path, f"is {st.st_size:,} bytes: larger than {_size(limit)}, too large for {what}")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n:,}-byte"


def read_regular(path: str | os.PathLike[str], limit: int, what: str = "a readable file") -> bytes:
    """The whole of the regular file at ``path``, at most ``limit`` bytes (else :class:`UnsafePath`)."""
    fd = _open_regular_fd(path, what, limit)
    try:
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise _bad(path, f"cannot be read ({_reason(e)})") from None
    finally:
        os.close(fd)
    if total > limit:
        raise _bad(path, f"is larger than {_size(limit)}, too large for {what}")
    return b"".join(chunks)


class _Bounded:
    """A read-only binary stream that refuses to go past ``limit`` bytes."""

    def __init__(self, f: BinaryIO, path: str, limit: int, what: str) -> None:
        self._f, self._path, self._limit, self._what = f, path, limit, what
        self._read = 0

    def readline(self, size: int = -1) -> bytes:
        left = self._limit + 1 - self._read
        line = self._f.readline(left if size < 0 else min(size, left))
        self._read += len(line)
        if self._read > self._limit:
            raise _bad(self._path, f"is larger than {_size(self._limit)}, too large for {self._what}")
        return line

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open_regular(path: str | os.PathLike[str], limit: int, what: str = "a readable file") -> _Bounded:
    """The regular file at ``path`` opened for ``readline``; reading past ``limit`` bytes raises."""
    fd = _open_regular_fd(path, what, limit)
    return _Bounded(os.fdopen(fd, "rb"), os.fspath(path), limit, what)


# --- checking a target -----------------------------------------------------------------------


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same inode if both exist, else the same resolved path."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_target(path: str | os.PathLike[str], *, flag: str = "", avoid: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse a path that an output must not replace; the path as a :class:`Path`.

    Absent or a regular file is fine. A symlink, directory, FIFO, socket or
    device is refused, and so is any of ``avoid`` (the command's own inputs
    and other outputs), compared by inode and by resolved path. The folder
    must exist. ``flag`` prefixes the message (e.g. ``"--report"``).
    """
    target = Path(path)
    where = f"{flag} {_show(path)}" if flag else _show(path)
    if os.fspath(path) == "" or target.name in ("", ".", ".."):
        raise UnsafePath(f"{where}: not a file name")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UnsafePath(f"{where}: cannot be checked ({_reason(e)})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{where}: is {describe_kind(st.st_mode)}; only a regular file is replaced")
    for other in avoid:
        if same_file(target, other):
            raise UnsafePath(f"{where}: is {_show(other)}, one of this command's own inputs or outputs")
    parent = target.parent
    if not parent.is_dir():
        raise UnsafePath(f"{where}: the directory {_show(parent)} does not exist" if not parent.exists()
                         else f"{where}: {_show(parent)} is not a directory")
    return target


# --- writing ---------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_in(dir_fd: int, name: str, data: bytes, fsync: bool, where: str) -> None:
    """Write ``name`` inside the open folder ``dir_fd`` by a fresh temporary file and a rename."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{where}: is {describe_kind(st.st_mode)}; only a regular file is replaced")
    for _ in range(8):
        tmp = f"{_TMP_PREFIX}{secrets.token_hex(8)}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 8 collisions of 64 random bits
        raise UnsafePath(f"{where}: cannot make a temporary file")
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def _open_dir(path: Path, where: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as e:
        raise UnsafePath(f"{where}: cannot open the folder {_show(path)} ({_reason(e)})") from None


def probe_writable(folder: str | os.PathLike[str], where: str) -> None:
    """Refuse (:class:`UnsafePath`) a folder a file cannot be created in: a fresh file is made and removed."""
    dir_fd = _open_dir(Path(folder), where)
    try:
        tmp = f"{_TMP_PREFIX}{secrets.token_hex(8)}{_TMP_SUFFIX}"
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dir_fd))
        os.unlink(tmp, dir_fd=dir_fd)
    except OSError as e:
        raise UnsafePath(f"{where}: cannot write in {_show(folder)} ({_reason(e)})") from None
    finally:
        os.close(dir_fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, flag: str = "",
                 avoid: Iterable[str | os.PathLike[str]] = (), fsync: bool = True) -> Path:
    """Write ``path`` whole or not at all, refusing what :func:`check_target` refuses."""
    target = check_target(path, flag=flag, avoid=avoid)
    where = f"{flag} {_show(path)}" if flag else _show(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    dir_fd = _open_dir(target.parent, where)
    try:
        _write_in(dir_fd, target.name, raw, fsync, where)
    except OSError as e:
        raise UnsafePath(f"{where}: cannot be written ({_reason(e)})") from None
    finally:
        os.close(dir_fd)
    return target


# --- an output folder ------------------------------------------------------------------------


class OutDir:
    """An ``--out`` folder, open and locked for the life of one command.

    Every name is resolved inside the open folder (``dir_fd``), never by a
    path that could be redirected mid-run, and with ``O_NOFOLLOW``. The lock
    is an ``flock`` on the folder itself (no lock file is left behind); it is
    released by :meth:`close`, or by the kernel when the process ends.
    """

    def __init__(self, path: str | os.PathLike[str], flag: str = "--out", *, lock: bool = True) -> None:
        self.path = Path(path)
        self.flag = flag
        self._where = f"{flag} {_show(path)}"
        # The folder itself is the user's to name (a symlink to a folder they chose is followed);
        # the names inside it are not followed.
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise UnsafePath(f"{self._where}: cannot be checked ({_reason(e)})") from None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{self._where}: exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UnsafePath(f"{self._where}: cannot write there ({_reason(e)})") from None
        self._fd: int | None = _open_dir(self.path, self._where)
        self._locked = lock
        try:
            if lock:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            self._fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UnsafePath(f"{self._where}: another sandbox command is writing there; "
                                 "wait for it or use another --out") from None
            raise UnsafePath(f"{self._where}: cannot be locked ({_reason(e)})") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            self.close()
            raise UnsafePath(f"{self._where}: cannot write there (permission denied)")

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self._where}: closed")
        return self._fd

    def file(self, name: str) -> Path:
        return self.path / name

    def kind(self, name: str) -> int | None:
        """The mode of ``name`` in the folder (not following a symlink), or None if absent."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None

    def check_inputs(self, names: Iterable[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
        """Refuse to clear or write any of ``names`` if it is one of the command's inputs."""
        inputs = list(inputs)
        for name in names:
            for other in inputs:
                if same_file(self.file(name), other):
                    raise UnsafePath(f"{self._where}: {name} there is {_show(other)}, one of this command's inputs")

    def clear(self, names: Iterable[str]) -> None:
        """Remove the previous results ``names`` (a symlink is removed, never followed)."""
        for name in names:
            mode = self.kind(name)
            if mode is None:
                continue
            if stat.S_ISDIR(mode):
                raise UnsafePath(f"{self._where}: {name} there is a directory; remove it or use another --out")
            try:
                os.unlink(name, dir_fd=self.fd)
            except OSError as e:
                raise UnsafePath(f"{self._where}: cannot remove the old {name} ({_reason(e)})") from None
        self.clear_temporaries()

    def clear_temporaries(self) -> None:
        """Temporary files left by a command that was killed mid-write (ours only: by their name)."""
        for entry in os.scandir(self.fd):
            if _TMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.name, dir_fd=self.fd)
                except OSError:
                    pass

    def write_atomic(self, name: str, data: bytes | str, *, fsync: bool = True) -> Path:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            _write_in(self.fd, name, raw, fsync, f"{self._where}: {name}")
        except OSError as e:
            raise UnsafePath(f"{self._where}: {name} cannot be written ({_reason(e)})") from None
        return self.file(name)

    def open_append(self, name: str, *, new: bool = False) -> int:
        """A descriptor that appends to ``name``; ``new``: the file must not exist yet.

        ``O_NOFOLLOW`` refuses a symlink, ``O_NONBLOCK`` keeps a FIFO from
        blocking the open, and the opened file must be a regular one.
        """
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC | _NONBLOCK
        if new:
            flags |= os.O_EXCL
        try:
            fd = os.open(name, flags, 0o644, dir_fd=self.fd)
        except OSError as e:
            mode = self.kind(name)
            if mode is not None and not stat.S_ISREG(mode):
                raise UnsafePath(f"{self._where}: {name} there is {describe_kind(mode)}; "
                                 "only a regular file is written") from None
            raise UnsafePath(f"{self._where}: {name} cannot be written ({_reason(e)})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UnsafePath(f"{self._where}: {name} there is {describe_kind(st.st_mode)}; only a regular file is written")
        os.set_blocking(fd, True)
        return fd

    def read(self, name: str, limit: int, what: str) -> bytes | None:
        """``name``'s bytes if it is a regular file there (not a symlink), None if absent."""
        mode = self.kind(name)
        if mode is None:
            return None
        if not stat.S_ISREG(mode):
            raise UnsafePath(f"{self._where}: {name} there is {describe_kind(mode)}, not {what}")
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            raise UnsafePath(f"{self._where}: {name} cannot be read ({_reason(e)})") from None
        try:
            os.set_blocking(fd, True)
            size = os.fstat(fd).st_size
            if size > limit:
                raise UnsafePath(f"{self._where}: {name} is {size:,} bytes, larger than the {_size(limit)} limit "
                                 f"for {what}")
            chunks, total = [], 0
            while total <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        finally:
            os.close(fd)
        if total > limit:
            raise UnsafePath(f"{self._where}: {name} is larger than the {_size(limit)} limit for {what}")
        return b"".join(chunks)

    def close(self) -> None:
        if self._fd is not None:
            try:
                if self._locked:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> OutDir:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_TMP_NAME: Final = re.compile(re.escape(_TMP_PREFIX) + r"[0-9a-f]{16}" + re.escape(_TMP_SUFFIX))


# --- names -----------------------------------------------------------------------------------

_UNSAFE_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS: Final = re.compile(r"\.{2,}")


def safe_name(text: str, default: str = "scenario", max_len: int = 80) -> str:
    """``text`` as one harmless file-name component: letters, digits, ``.``, ``_`` and ``-`` only.

    Anything else (``/``, ``..``, control characters, spaces, non-ASCII)
    becomes ``_``; leading dots are dropped, so the result is never ``.``,
    ``..`` or a hidden file; it is at most ``max_len`` characters, and
    ``default`` if nothing is left.
    """
    name = _UNSAFE_CHARS.sub("_", text)
    name = re.sub(r"_+", "_", _DOTS.sub("_", name)).lstrip(".").strip("_")[:max_len].strip("_")
    return name or default
