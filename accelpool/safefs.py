"""Filesystem operations on accelpool's state tree that never follow a symbolic link.

Everything accelpool writes (simulated fleet state, simulated sysfs trees, the claims
database) lives under one state directory. Another user who can put a symbolic link
in that tree could otherwise make accelpool overwrite or delete files elsewhere, so:

* a :class:`SafeDir` is an open directory descriptor; every operation on it is
  relative to that descriptor (``dir_fd``) and opens with ``O_NOFOLLOW``, so a link
  found in the tree is refused or, where asked, removed, but never followed;
* writes are atomic: a new file made with ``O_EXCL`` next to the target, then renamed
  over it (a rename replaces a link, it does not write through it);
* deletes use ``shutil.rmtree`` on a descriptor, which never follows links;
* every directory opened is checked against a :class:`Policy`: private (owned by
  you, writable by nobody else) or shared with one group (that group, writable by no
  one outside it). Directories are made ``0700`` (``2770`` shared), files ``0600``
  (``0660`` shared), whatever the umask.

Where the state directory is and which policy applies is decided by
:mod:`accelpool.statedir`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType

from accelpool.errors import InvalidRequest, PermissionDenied

__all__ = ["Policy", "SafeDir", "open_root"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC


@dataclass(frozen=True)
class Policy:
    """Who may own and write the state tree.

    ``gid`` is ``None`` for a private tree (owned by the effective user, writable by
    nobody else), else the group a shared tree belongs to. ``advice`` ends every
    refusal of the tree's root: what the user can do about it.
    """

    gid: int | None = None
    advice: str = "use a directory of your own"

    @property
    def dir_mode(self) -> int:
        # setgid on shared directories: whatever a member makes inside stays in the group
        return 0o700 if self.gid is None else 0o2770

    @property
    def file_mode(self) -> int:
        return 0o600 if self.gid is None else 0o660

    def problem(self, st: os.stat_result) -> str | None:
        """Why a directory with status ``st`` must not be used, or ``None``."""
        mode = stat.S_IMODE(st.st_mode)
        if self.gid is None:
            if st.st_uid != os.geteuid():
                return f"is owned by {user_name(st.st_uid)}, not by you ({user_name(os.geteuid())})"
            if mode & 0o022:
                return f"can be written by {_writers(mode)} (mode {mode:04o})"
            return None
        if st.st_gid != self.gid:
            return f"belongs to group {group_name(st.st_gid)}, not to {group_name(self.gid)}"
        if mode & 0o002:
            return f"can be written by any user (mode {mode:04o})"
        return None

    def own(self, fd: int, mode: int) -> None:
        """Give a file or directory accelpool just made its group and exact mode."""
        if self.gid is not None and os.fstat(fd).st_gid != self.gid:
            os.fchown(fd, -1, self.gid)
        os.fchmod(fd, mode)  # the umask must not decide who can read the state


def _writers(mode: int) -> str:
    who = [w for w, bit in (("its group", 0o020), ("other users", 0o002)) if mode & bit]
    return " and ".join(who)


def user_name(uid: int) -> str:
    """``uid 1001 (bob)``, or ``uid 1001`` where the name is unknown."""
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def group_name(gid: int) -> str:
    """``gid 1001 (pool)``, or ``gid 1001`` where the name is unknown."""
    try:
        import grp

        return f"gid {gid} ({grp.getgrgid(gid).gr_name})"
    except (ImportError, KeyError):
        return f"gid {gid}"


def _kind(st: os.stat_result | None) -> str:
    if st is None:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    return "a special file"


class SafeDir:
    """An open directory of the state tree; all operations are relative to it."""

    def __init__(self, fd: int, path: Path, policy: Policy) -> None:
        self.fd = fd
        self.path = path
        self.policy = policy

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- looking ----------------------------------------------------------------------
    def lstat(self, name: str) -> os.stat_result | None:
        """The entry's own status (a link is not followed), ``None`` when missing."""
        try:
            return os.stat(_name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def listdir(self) -> list[str]:
        return os.listdir(self.fd)

    def read_bytes(self, name: str) -> bytes | None:
        """The content of a regular file, ``None`` when it is missing or not one."""
        try:
            fd = os.open(
                _name(name), os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK, dir_fd=self.fd
            )
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENXIO):
                return None  # a link or a socket: nothing accelpool wrote
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read()

    def readlink(self, name: str) -> str | None:
        try:
            return os.readlink(_name(name), dir_fd=self.fd)
        except OSError:  # missing, or not a link
            return None

    # -- directories --------------------------------------------------------------------
    def subdir(
        self, rel: str | PurePath, *, create: bool = True, replace: bool = False
    ) -> SafeDir | None:
        """Open (and with ``create``, make) the directory ``rel`` below this one.

        Every component is opened without following links. A link or a file where a
        directory belongs is refused, or removed and replaced with ``replace=True``
        (for trees accelpool renders from its own state). ``None`` when it is missing
        and ``create`` is false. The caller closes the result.
        """
        parts = PurePath(rel).parts
        cur = SafeDir(os.dup(self.fd), self.path, self.policy)
        for part in parts:
            try:
                nxt = cur._child(part, create=create, replace=replace)
            finally:
                cur.close()
            if nxt is None:
                return None
            cur = nxt
        return cur

    def makedirs(self, rel: str | PurePath, *, replace: bool = False) -> SafeDir:
        """:meth:`subdir` with ``create=True``: the directory, made where missing."""
        d = self.subdir(rel, create=True, replace=replace)
        assert d is not None  # made when missing
        return d

    def _child(self, name: str, *, create: bool, replace: bool) -> SafeDir | None:
        name = _name(name)
        made = False
        for _ in range(8):  # bounded: another process may be making or removing it too
            try:
                with _denied("open", self.path / name):
                    fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
            except FileNotFoundError:
                if not create:
                    return None
                with contextlib.suppress(FileExistsError), _denied("make", self.path / name):
                    os.mkdir(name, self.policy.dir_mode, dir_fd=self.fd)
                    made = True
                continue
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = self.lstat(name)
                if st is None:
                    continue
                if not replace:
                    raise PermissionDenied(
                        f"{self.path / name} is {_kind(st)}, not a directory; accelpool never "
                        "follows links or writes through other files in its state directory: "
                        "remove it"
                    ) from None
                self.remove(name)
                continue
            child = SafeDir(fd, self.path / name, self.policy)
            try:
                if made:
                    self.policy.own(fd, self.policy.dir_mode)
                else:
                    child.verify(what="state path", advice="remove it")
            except BaseException:
                child.close()
                raise
            return child
        raise InvalidRequest(f"{self.path / name} keeps changing; retry")

    def verify(self, *, what: str, advice: str) -> None:
        """Refuse this directory if the policy does not allow it."""
        problem = self.policy.problem(os.fstat(self.fd))
        if problem:
            raise PermissionDenied(
                f"{what} {self.path} {problem}; accelpool refuses it because whoever else "
                f"can write it could redirect your writes and deletes: {advice}"
            )

    # -- files ----------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace ``name`` atomically with ``data`` (a link in its place is replaced)."""
        name = _name(name)
        tmp = f".{name}.{os.urandom(6).hex()}.tmp"
        with _denied("write", self.path / name):
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                self.policy.file_mode,
                dir_fd=self.fd,
            )
        try:
            with os.fdopen(fd, "wb") as f:
                self.policy.own(f.fileno(), self.policy.file_mode)
                f.write(data)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self.fd)
            raise

    def write_if_changed(self, name: str, data: bytes) -> None:
        """:meth:`write_bytes` unless ``name`` is already a regular file holding ``data``."""
        if self.read_bytes(name) != data:
            self.write_bytes(name, data)

    def ensure_file(self, name: str) -> None:
        """Make ``name`` an empty file if missing; refuse it if it is not a regular file."""
        name = _name(name)
        try:
            with _denied("make", self.path / name):
                fd = os.open(
                    name,
                    os.O_RDONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                    self.policy.file_mode,
                    dir_fd=self.fd,
                )
        except FileExistsError:
            self.refuse_unless_regular(name)
            return
        try:
            self.policy.own(fd, self.policy.file_mode)
        finally:
            os.close(fd)

    def refuse_unless_regular(self, name: str, *, missing_ok: bool = False) -> None:
        """Raise :class:`~accelpool.PermissionDenied` unless ``name`` is a regular file."""
        st = self.lstat(name)
        if st is None and missing_ok:
            return
        if st is None or not stat.S_ISREG(st.st_mode):
            raise PermissionDenied(
                f"{self.path / name} is {_kind(st)}, not a regular file; accelpool never "
                "follows links in its state directory: remove it"
            )

    def symlink(self, target: str | os.PathLike[str], name: str) -> None:
        """Make (or re-point) the link ``name`` to ``target``; whatever was there goes."""
        name = _name(name)
        if self.readlink(name) == os.fspath(target):
            return
        self.remove(name)
        os.symlink(target, name, dir_fd=self.fd)

    def remove(self, name: str) -> bool:
        """Delete a file, a link (not what it points to) or a whole directory tree."""
        name = _name(name)
        st = self.lstat(name)
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            import shutil  # only deletes need it

            # With dir_fd, rmtree walks descriptors and never follows a link.
            shutil.rmtree(name, dir_fd=self.fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self.fd)
        return True


@contextlib.contextmanager
def _denied(action: str, path: Path) -> Iterator[None]:
    """Turn a permission error into one line naming what could not be done where."""
    try:
        yield
    except PermissionError as e:
        raise PermissionDenied(
            f"cannot {action} {path}: {e.strerror}; check the permissions of the state "
            "directory (see docs/sessions.md)"
        ) from None


def _name(name: str) -> str:
    """One path component: never a path that could leave the directory."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise InvalidRequest(f"{name!r} is not a file name")
    return name


def open_root(path: Path, policy: Policy, *, create: bool, what: str) -> SafeDir | None:
    """Open the top of a state tree, making it (and missing parents) when asked.

    The root is checked with ``policy``: a root that is not the user's own (or the
    shared group's), or that others can write, is refused with one clear line. A
    link as the root itself is followed only when its owner is you or root: a link
    another user planted (``/tmp/x -> your home``) is refused. ``None`` when the root
    is missing and ``create`` is false.
    """
    made = False
    for _ in range(8):
        try:
            fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                return None
            made = _makedirs(path, policy) or made
            continue
        except NotADirectoryError:
            fd = _open_root_link(path, policy, what)
        except OSError as e:
            if e.errno == errno.ELOOP:
                fd = _open_root_link(path, policy, what)
            elif e.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(
                    f"cannot open {what} {path}: permission denied; {policy.advice}"
                ) from None
            else:
                raise InvalidRequest(f"cannot open {what} {path}: {e.strerror}") from None
        root = SafeDir(fd, path, policy)
        try:
            if made:
                policy.own(fd, policy.dir_mode)
            else:
                root.verify(what=what, advice=policy.advice)
        except BaseException:
            root.close()
            raise
        return root
    raise InvalidRequest(f"{what} {path} keeps changing; retry")


def _open_root_link(path: Path, policy: Policy, what: str) -> int:
    try:
        st = os.lstat(path)
    except OSError as e:
        raise InvalidRequest(f"cannot open {what} {path}: {e.strerror}") from None
    if not stat.S_ISLNK(st.st_mode):
        raise InvalidRequest(f"{what} {path} is {_kind(st)}, not a directory; {policy.advice}")
    if st.st_uid not in (os.geteuid(), 0):
        raise PermissionDenied(
            f"{what} {path} is a symbolic link owned by {user_name(st.st_uid)}; accelpool "
            f"follows only links of your own or root's: {policy.advice}"
        )
    try:
        return os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as e:
        raise InvalidRequest(f"cannot open {what} {path}: {e.strerror}") from None


def _makedirs(path: Path, policy: Policy) -> bool:
    """Make ``path`` and its missing parents with the policy's mode; True if made."""
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    made = False
    for d in reversed(missing):
        try:
            os.mkdir(d, policy.dir_mode)
        except FileExistsError:
            continue
        except OSError as e:
            raise PermissionDenied(
                f"cannot make state directory {path}: {e.strerror} at {d}; {policy.advice}"
            ) from None
        made = d == path
        if d != path:
            # Parents made here get the same protection; a shared tree's parents
            # must let the group through.
            fd = os.open(d, _DIR_FLAGS)
            try:
                policy.own(fd, policy.dir_mode & ~0o2020)
            finally:
                os.close(fd)
    return made
