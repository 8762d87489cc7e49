"""The state directory under attack: foreign owners, planted links, sharing, bad paths.

Scenarios with two users run the CLI in a forked child that drops to a real, unused
uid (this needs root; they are skipped otherwise). The child runs the already
imported accelpool, so it needs no access to the interpreter's own files.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from accelpool.cli.app import main
from accelpool.safefs import Policy, SafeDir, open_root
from accelpool.session import ClaimStore, open_session
from accelpool.testing import toy_inventory

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root to act as two real users")
FLEET = "vgpu-host"
PCI0, PCI1 = "0000:07:00.0", "0000:0f:00.0"  # the preset's two GPUs' mdev parents
SYS = Path("sim") / FLEET / "nvidia" / "sys"
TYPES1 = SYS / "class" / "mdev_bus" / PCI1 / "mdev_supported_types"


def _free_ids(n: int, start: int = 61000) -> list[int]:
    """``n`` numbers that are neither a known uid nor a known gid."""
    found: list[int] = []
    i = start
    while len(found) < n:
        try:
            pwd.getpwuid(i)
        except KeyError:
            try:
                grp.getgrgid(i)
            except KeyError:
                found.append(i)
        i += 1
    return found


def _as(
    fn: Callable[[], int], uid: int | None = None, gids: tuple[int, ...] = ()
) -> tuple[int, str, str]:
    """Run ``fn`` in a forked child (as ``uid`` with groups ``gids``): (rc, out, err)."""
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        rc = 99
        try:
            os.dup2(w_out, 1)
            os.dup2(w_err, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            if uid is not None:
                os.setgroups(list(gids))
                os.setgid(gids[0] if gids else uid)
                os.setuid(uid)
            rc = fn()
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    os.close(w_out)
    os.close(w_err)
    with os.fdopen(r_out) as f:
        out = f.read()
    with os.fdopen(r_err) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


def _cli(
    state: Path,
    *argv: str,
    uid: int | None = None,
    gids: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    def run() -> int:
        os.environ["ACCELPOOL_STATE_DIR"] = str(state)
        os.environ.pop("ACCELPOOL_STATE_GROUP", None)
        os.environ.update(env or {})
        return main(list(argv))

    return _as(run, uid, gids)


@pytest.fixture
def base() -> Iterator[Path]:
    """A /tmp-like folder (sticky, world-writable) other uids can reach."""
    d = Path(tempfile.mkdtemp(prefix="accelpool-sec-", dir="/tmp"))
    d.chmod(0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Import everything the CLI needs while this process may still read it all."""
    state = tmp_path_factory.mktemp("warm")
    saved = os.environ.get("ACCELPOOL_STATE_DIR")
    os.environ["ACCELPOOL_STATE_DIR"] = str(state)
    try:
        for argv in (
            ["--sim", FLEET, "ls"],
            ["--sim", FLEET, "partition", "create", "nvidia:0", "A100X-4C"],
            ["--sim", "dgx-a100", "partition", "create", "nvidia:0", "1g.5gb"],
            ["--sim", FLEET, "sim", "reset"],
            ["claims", "--reap"],
        ):
            assert main(argv) == 0, argv
        ClaimStore().acquire("toy:x", "toy:0", "device")
        assert main(["claims"]) == 0
        assert main(["claims", "--reap"]) == 0
        main(["--sim", "/nonexistent/fleet.toml", "ls"])  # the error path's imports
    finally:
        if saved is None:
            os.environ.pop("ACCELPOOL_STATE_DIR", None)
        else:
            os.environ["ACCELPOOL_STATE_DIR"] = saved


def _victim(home: Path, uid: int | None = None) -> tuple[Path, Path]:
    """A victim's file and directory (with content) outside any state tree."""
    home.mkdir(mode=0o700)
    secret = home / "secret.txt"
    secret.write_text("do not touch\n")
    keep = home / "keep"
    (keep / "inner").mkdir(parents=True)
    (keep / "inner" / "data").write_text("data\n")
    if uid is not None:
        for p in (home, secret, keep, keep / "inner", keep / "inner" / "data"):
            os.chown(p, uid, uid)
    return secret, keep


def _assert_untouched(secret: Path, keep: Path) -> None:
    assert secret.read_text() == "do not touch\n"
    assert (keep / "inner" / "data").read_text() == "data\n"
    assert sorted(p.name for p in keep.iterdir()) == ["inner"]


def _plant(state: Path, secret: Path, keep: Path) -> None:
    """Links in the simulated mdev tree that the old renderer wrote and deleted through."""
    types0 = SYS / "class" / "mdev_bus" / PCI0 / "mdev_supported_types"
    (state / types0).parent.mkdir(parents=True, exist_ok=True)
    if (state / types0).exists():
        shutil.rmtree(state / types0)
    (state / types0).symlink_to(keep)  # its stale entries used to be rmtree'd
    name = state / TYPES1 / "nvidia-458" / "name"
    name.parent.mkdir(parents=True, exist_ok=True)
    name.unlink(missing_ok=True)
    name.symlink_to(secret)  # used to be overwritten with the type's name
    (state / SYS / ".accelpool-sim").unlink(missing_ok=True)  # force a render


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


# -- item 1: a state directory another user can write is refused ---------------------------


@needs_root
def test_a_world_writable_state_dir_of_another_user_is_refused_and_nothing_is_touched(
    base: Path,
) -> None:
    attacker, victim = _free_ids(2)
    secret, keep = _victim(base / "victim-home", victim)
    shared = base / "x"

    def prepare() -> int:  # as the attacker: a 0777 directory with planted links
        shared.mkdir()
        shared.chmod(0o777)
        _plant(shared, secret, keep)
        for d in [shared, *shared.rglob("*")]:
            if not d.is_symlink() and d.is_dir():
                d.chmod(0o777)
        return 0

    assert _as(prepare, attacker)[0] == 0
    rc, _, err = _cli(shared, "--sim", FLEET, "ls", uid=victim)
    assert rc == 1
    line = _one_line(err)
    assert f"state directory {shared} is owned by uid {attacker}" in line
    _assert_untouched(secret, keep)
    # and nothing of the victim's was made in the attacker's tree
    assert not any(p.stat(follow_symlinks=False).st_uid == victim for p in shared.rglob("*"))


@needs_root
def test_a_state_dir_owned_by_another_user_is_refused_even_when_not_writable(
    base: Path,
) -> None:
    other, me = _free_ids(2)
    d = base / "theirs"
    d.mkdir(mode=0o755)
    os.chown(d, other, other)
    rc, _, err = _cli(d, "--sim", FLEET, "ls", uid=me)
    assert rc == 1
    assert f"is owned by uid {other}, not by you (uid {me})" in _one_line(err)
    assert list(d.iterdir()) == []
    # root, too, refuses a tree another user could rearrange under it
    rc, _, err = _cli(d, "--sim", FLEET, "ls")
    assert rc == 1 and "not by you" in _one_line(err)


def test_a_group_writable_state_dir_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    d.chmod(0o770)
    rc, _, err = _cli(d, "--sim", FLEET, "ls")
    assert rc == 1
    assert "can be written by its group (mode 0770)" in _one_line(err)


def test_a_symlinked_state_dir_of_another_user_is_refused(base: Path) -> None:
    if not ROOT:
        pytest.skip("needs root to make a link owned by another user")
    (other,) = _free_ids(1)
    mine = base / "mine"
    mine.mkdir(mode=0o700)
    link = base / "link"
    link.symlink_to(mine)
    os.lchown(link, other, other)
    rc, _, err = _cli(link, "--sim", FLEET, "ls")
    assert rc == 1 and f"symbolic link owned by uid {other}" in _one_line(err)
    assert list(mine.iterdir()) == []


# -- item 1: links planted in one's own tree are never followed --------------------------------


def test_links_planted_in_an_own_state_dir_are_replaced_never_followed(tmp_path: Path) -> None:
    secret, keep = _victim(tmp_path / "home")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert _cli(state, "--sim", FLEET, "ls")[0] == 0
    _plant(state, secret, keep)

    rc, out, err = _cli(state, "--sim", FLEET, "partition", "create", "nvidia:1", "A100X-4C")
    assert rc == 0, err
    part = out.split()[2]
    assert _cli(state, "--sim", FLEET, "ls")[0] == 0
    assert _cli(state, "--sim", FLEET, "partition", "destroy", part)[0] == 0
    _assert_untouched(secret, keep)
    # the tree holds no links now but the simulator's own mdev_type links
    links = [p for p in state.rglob("*") if p.is_symlink()]
    assert all(p.name == "mdev_type" for p in links), links
    assert (state / TYPES1 / "nvidia-458" / "name").read_text() == "GRID A100X-5C\n"
    _plant(state, secret, keep)
    assert _cli(state, "--sim", FLEET, "sim", "reset")[0] == 0
    _assert_untouched(secret, keep)


def test_a_link_as_the_lock_file_or_a_state_folder_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    secret, keep = _victim(tmp_path / "home")
    state = tmp_path / "state"
    (state / "sim" / FLEET).mkdir(parents=True, mode=0o700)
    (state / "sim" / FLEET / "state.json.lock").symlink_to(secret)
    rc, _, err = _cli(state, "--sim", FLEET, "partition", "create", "nvidia:0", "A100X-4C")
    assert rc == 1 and "state.json.lock is a symbolic link" in _one_line(err)
    (state / "sim" / FLEET / "state.json.lock").unlink()
    (state / "sim" / FLEET / "state.json").symlink_to(secret)
    # listing reports the backend unusable (with the reason); changing it fails
    rc, out, err = _cli(state, "--sim", FLEET, "ls")
    assert "state.json is a symbolic link" in out + err
    rc, _, err = _cli(state, "--sim", FLEET, "partition", "create", "nvidia:0", "A100X-4C")
    assert rc == 1 and "state.json is a symbolic link" in _one_line(err)
    shutil.rmtree(state / "sim")
    (state / "sim").symlink_to(keep)
    rc, _, err = _cli(state, "--sim", FLEET, "ls")
    assert rc == 1 and f"{state / 'sim'} is a symbolic link" in _one_line(err)
    _assert_untouched(secret, keep)


def test_state_is_made_0700_and_0600_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"

    def run() -> int:
        os.umask(0)
        os.environ["ACCELPOOL_STATE_DIR"] = str(state)
        rc = main(["--sim", FLEET, "partition", "create", "nvidia:0", "A100X-4C"])
        ClaimStore().acquire("toy:x", "toy:0", "device")
        return rc

    assert _as(run)[0] == 0
    modes = {p: stat.S_IMODE(p.lstat().st_mode) for p in [state.parent, *state.rglob("*")]}
    for p, mode in modes.items():
        if p.is_symlink():
            continue
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    assert state / "claims" / "claims.sqlite3" in modes


def test_safedir_primitives_never_follow_links(tmp_path: Path) -> None:
    secret, keep = _victim(tmp_path / "home")
    tree_path = tmp_path / "tree"
    tree = open_root(tree_path, Policy(), create=True, what="test tree")
    assert tree is not None
    with tree:
        os.symlink(secret, "f", dir_fd=tree.fd)
        os.symlink(keep, "d", dir_fd=tree.fd)
        tree.write_bytes("f", b"new")  # replaces the link
        assert tree.remove("d")  # removes the link, not the directory
        with tree.makedirs("a/b", replace=True) as sub:
            assert isinstance(sub, SafeDir)
        os.symlink(keep, "c", dir_fd=tree.fd)
        with pytest.raises(Exception, match="is a symbolic link"):
            tree.subdir("c/x")
        assert tree.read_bytes("c") is None
        assert tree.remove("a")
    _assert_untouched(secret, keep)
    assert (tree_path / "f").read_bytes() == b"new"


# -- item 11 and item 12: unusable state and claims directories --------------------------------


@pytest.mark.parametrize("value", ["~nouser-accelpool/x", "/etc/passwd/x", "/proc/accelpool"])
def test_an_unusable_state_dir_is_one_line_and_a_failure(tmp_path: Path, value: str) -> None:
    rc, out, err = _cli(Path(value), "--sim", "dgx-a100", "ls")
    assert rc == 1, out
    line = _one_line(err)
    assert "did not answer" not in line and "No devices" not in out
    assert value.split("/")[0] in line or value in line


def test_a_claims_path_that_is_a_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "claims").write_text("")
    for argv in (["claims"], ["claims", "--reap"]):
        rc, out, err = _cli(state, *argv)
        assert rc == 1 and "No device" not in out
        assert f"claims directory {state / 'claims'} is a file, not a directory" in _one_line(err)


@needs_root
def test_an_unwritable_claims_database_is_one_clear_line(base: Path) -> None:
    (user,) = _free_ids(1)
    state = base / "state"

    def run() -> int:
        os.environ["ACCELPOOL_STATE_DIR"] = str(state)

        # a claim whose holder (a child) has ended: reaping it must write
        def claim_and_exit() -> int:
            ClaimStore().acquire("toy:x", "toy:0", "device")
            return 0

        assert _as(claim_and_exit)[0] == 0
        (state / "claims" / "claims.sqlite3").chmod(0o400)
        (state / "claims").chmod(0o500)
        return main(["claims", "--reap"])

    rc, _, err = _as(run, user)
    assert rc == 1
    assert "claims database" in _one_line(err) and "cannot be written" in err


# -- item 3: two users share one state directory through a group ---------------------------


@needs_root
def test_two_users_share_a_state_dir_through_an_explicit_group(base: Path) -> None:
    alice, bob, group = _free_ids(3)
    state = base / "pool"
    g = {"ACCELPOOL_STATE_GROUP": str(group)}

    def alice_claims() -> int:
        os.environ["ACCELPOOL_STATE_DIR"] = str(state)
        os.environ.update(g)
        ClaimStore().acquire("nvidia:x", "nvidia:0", "partition")  # dead once she exits
        return main(["--sim", "dgx-a100", "partition", "create", "nvidia:0", "1g.5gb"])

    rc, _, err = _as(alice_claims, alice, (alice, group))
    assert rc == 0, err
    rc, out, err = _cli(state, "claims", "--reap", uid=bob, gids=(bob, group), env=g)
    assert rc == 0, err
    assert "Dropped 1 claim(s)" in out  # bob wrote to the database alice made
    rc, out, err = _cli(
        state, "--sim", "dgx-a100", "partition", "create", "nvidia:1", "1g.5gb",
        uid=bob, gids=(bob, group), env=g,
    )  # fmt: skip
    assert rc == 0, err
    rc, out, _ = _cli(state, "--sim", "dgx-a100", "ls", uid=alice, gids=(alice, group), env=g)
    assert rc == 0 and out.count("1g.5gb") == 2
    for p in [state, *state.rglob("*")]:
        st = p.lstat()
        assert st.st_gid == group, p
        mode = stat.S_IMODE(st.st_mode)
        assert mode == (0o2770 if p.is_dir() else 0o660), (p, oct(mode))
    # without the explicit group, the same directory is refused, in one line
    rc, _, err = _cli(state, "claims", uid=bob, gids=(bob, group))
    assert rc == 1 and f"is owned by uid {alice}, not by you" in _one_line(err)
    # and a user outside the group cannot ask for it
    (outsider,) = _free_ids(1, start=group + 1)
    rc, _, err = _cli(state, "claims", uid=outsider, env=g)
    assert rc == 1 and "you are not a member" in _one_line(err)


# -- item 4: a clean environment for the isolated worker -------------------------------------


def test_the_worker_can_start_with_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("MY_TOKEN", "t0k3n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    names = ["AWS_SECRET_ACCESS_KEY", "MY_TOKEN", "PATH", "CUDA_VISIBLE_DEVICES"]
    target = toy_inventory().device("toy:1")
    with open_session(target, isolate=True) as s:  # the default passes everything on
        assert set(s.worker_env(names)) == {"AWS_SECRET_ACCESS_KEY", "MY_TOKEN", "PATH"}
    with open_session(target, isolate=True, clean_env=True, pass_env=["MY_*"]) as s:
        assert s.worker_env(names) == {"MY_TOKEN": "t0k3n", "PATH": os.environ["PATH"]}
        assert s.worker_env() == {"TOY_VISIBLE_DEVICES": "toy-1"}
    monkeypatch.setenv("ACCELPOOL_WORKER_ENV", "clean")
    with open_session(target, isolate=True) as s:
        assert s.worker_env(names) == {"PATH": os.environ["PATH"]}
    from accelpool.session import CLEAN_ENV_ALLOW

    assert "PATH" in CLEAN_ENV_ALLOW


def test_a_bad_worker_env_policy_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELPOOL_WORKER_ENV", "sometimes")
    with pytest.raises(Exception, match="neither 'inherit' nor 'clean'"):
        open_session(toy_inventory().device("toy:0"), isolate=True)
