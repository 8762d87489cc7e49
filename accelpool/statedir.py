"""Where accelpool keeps its state, and who may share it.

The state directory is ``$ACCELPOOL_STATE_DIR``, else the user's state directory
(``~/.local/state/accelpool`` on Linux). It is private by default: made ``0700``,
and refused with one clear line when it is owned by another user or writable by
anyone else, because whoever can write it could redirect accelpool's writes and
deletes. ``ACCELPOOL_STATE_GROUP=<group>`` asks, explicitly, for a tree shared by
the members of one group: directories ``2770`` and files ``0660`` of that group,
refused when anyone outside the group can write it.

Every write into the tree goes through :mod:`accelpool.safefs`.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from accelpool.errors import InvalidRequest
from accelpool.safefs import Policy, SafeDir, group_name, open_root

__all__ = ["STATE_DIR_ENV", "STATE_GROUP_ENV", "open_state_tree", "state_dir", "state_policy"]

STATE_DIR_ENV = "ACCELPOOL_STATE_DIR"
STATE_GROUP_ENV = "ACCELPOOL_STATE_GROUP"

_PRIVATE_ADVICE = (
    f"chmod 700 it if it is yours, point {STATE_DIR_ENV} at a directory of your own, "
    f"or set {STATE_GROUP_ENV} to share one with a group (see docs/sessions.md)"
)


def state_dir() -> Path:
    """The state directory: ``$ACCELPOOL_STATE_DIR`` or the user's state directory.

    Only the path: nothing is made or checked here (see :func:`open_state_tree`).
    Raises :class:`~accelpool.InvalidRequest` for a value that names no directory.
    """
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        try:
            path = Path(env).expanduser()
        except RuntimeError:
            raise InvalidRequest(
                f"{STATE_DIR_ENV}={env!r}: cannot expand '~' (no such user, or no home "
                "directory); set it to an absolute path"
            ) from None
        return Path(os.path.abspath(path))
    import platformdirs  # only needed when no explicit directory is set

    return Path(platformdirs.user_state_dir("accelpool"))


def state_policy() -> Policy:
    """Private, or shared with the group ``$ACCELPOOL_STATE_GROUP`` names."""
    raw = os.environ.get(STATE_GROUP_ENV, "").strip()
    if not raw:
        return Policy(None, _PRIVATE_ADVICE)
    gid = _group_id(raw)
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise InvalidRequest(
            f"{STATE_GROUP_ENV}={raw!r}: you are not a member of {group_name(gid)}; "
            "name a group you belong to, or unset it for a private state directory"
        )
    name = group_name(gid)
    return Policy(
        gid,
        f"a shared state directory must belong to {name} and be writable by nobody "
        f"outside it (chgrp {raw} DIR && chmod 2770 DIR), or unset {STATE_GROUP_ENV}",
    )


def _group_id(raw: str) -> int:
    try:
        import grp
    except ImportError:
        raise InvalidRequest(f"{STATE_GROUP_ENV} needs POSIX groups; unset it") from None
    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        pass
    if raw.isascii() and raw.isdigit() and int(raw) < 2**32 - 1:  # (gid_t)-1 means "none"
        return int(raw)
    raise InvalidRequest(
        f"{STATE_GROUP_ENV}={raw!r}: no such group; name a group you belong to (or its gid)"
    )


def open_state_tree(path: str | os.PathLike[str], *, create: bool = True) -> SafeDir | None:
    """Open ``path``, a directory of the state tree, checked from the state directory down.

    A path outside the state directory (an explicit store path in a test, say) is
    a tree of its own, checked the same way. With ``create``, missing directories
    are made; without, ``None`` is returned when one is missing. The caller closes
    the result.
    """
    target = Path(os.path.abspath(path))
    root = state_dir()
    rel: PurePath
    try:
        rel = target.relative_to(root)
    except ValueError:
        root, rel = target, PurePath()
    policy = state_policy()
    tree = open_root(root, policy, create=create, what="state directory")
    if tree is None or not rel.parts:
        return tree
    with tree:
        return tree.subdir(rel, create=create)
