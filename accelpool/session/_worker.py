"""The isolated session worker, and the pieces the parent shares with it.

The worker is started as ``python <this file> FD PARENT_PID`` with the session's
environment already in place, so visibility variables apply before onnxruntime (or
any other runtime) is imported. It therefore imports nothing of accelpool: only the
standard library, numpy, and onnxruntime on the first model load.

Protocol: length-prefixed pickles over one Unix socket. Array data never goes
through the socket: each side owns an *arena* (an anonymous shared-memory file,
``memfd`` on Linux) that it writes into and passes to the other side as a file
descriptor once, when it is created or grown. Arenas have no name, so nothing can be
left behind in ``/dev/shm``: the memory goes away when both processes drop it,
whichever way they end.

:class:`Runtime` (model cache + onnxruntime calls) is the same code in-process and in
the worker, so both paths fail and fall back in exactly the same way.
"""

from __future__ import annotations

import mmap
import os
import pickle
import re
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Any

_HEADER = struct.Struct("<Q")
#: A send to a worker that died returns EPIPE, never SIGPIPE (which an application
#: that restored its default action would die of).
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_MAX_FDS = 4
_CHUNK = 1 << 16
_ALIGN = 64
_MIN_ARENA = 1 << 20
#: Arrays smaller than this travel inside the message: for a few kilobytes (a model's
#: logits, say) pickling costs less than an arena's views and copies on both sides.
_INLINE_MAX = 1 << 14

#: Visibility variables of the accelerator families accelpool knows; any variable named
#: ``*_VISIBLE_DEVICES`` or ``*_VISIBLE_CORES`` counts too.
KNOWN_VISIBILITY_VARS = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "GPU_DEVICE_ORDINAL",
        "ASCEND_RT_VISIBLE_DEVICES",
        "ASCEND_VISIBLE_DEVICES",
        "MLU_VISIBLE_DEVICES",
        "NEURON_RT_VISIBLE_CORES",
        "ZE_AFFINITY_MASK",
        "ONEAPI_DEVICE_SELECTOR",
    }
)
_VISIBILITY_RE = re.compile(r"^[A-Z0-9_]+_VISIBLE_(DEVICES|CORES)$")


def is_visibility_var(name: str) -> bool:
    """Whether ``name`` selects which accelerators a runtime sees."""
    return name in KNOWN_VISIBILITY_VARS or bool(_VISIBILITY_RE.match(name))


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept as surrogates
        return False
    return True


# -- errors -------------------------------------------------------------------

#: ORT exception class names that mean "the request (model, feeds) is wrong".
_ORT_INVALID = {
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "NoSuchFile",
    "NoModel",
    "ModelLoaded",
}


class RuntimeFailure(Exception):
    """An error the parent re-raises as an accelpool error of class ``kind``."""

    def __init__(
        self,
        kind: str,
        message: str,
        vendor_code: str | None = None,
        vendor_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.vendor_code = vendor_code
        self.vendor_message = vendor_message

    def as_tuple(self) -> tuple[str, str, str | None, str | None]:
        return (self.kind, self.message, self.vendor_code, self.vendor_message)


def classify(error: BaseException, doing: str) -> RuntimeFailure:
    """Map an onnxruntime (or feed) error onto an accelpool error kind, keeping its text."""
    if isinstance(error, RuntimeFailure):
        return error
    name = type(error).__name__
    text = str(error).strip()
    first = (text.splitlines() or [name])[0]
    if len(first) > 300:
        first = first[:297] + "..."
    if name in _ORT_INVALID or isinstance(error, (KeyError, ValueError, TypeError, IndexError)):
        kind = "InvalidRequest"
    elif name == "NotImplemented":
        kind = "UnsupportedOperation"
    else:
        kind = "AccelPoolError"
    # The vendor text only when it says more than the message already does.
    vendor = text if text and text != first else None
    return RuntimeFailure(kind, f"onnxruntime could not {doing}: {first}", name, vendor)


# -- the runtime (in-process and in the worker) ----------------------------------


class Runtime:
    """Loaded onnxruntime sessions by model key, created with one session's settings."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.providers: list[tuple[str, dict[str, str]]] = [
            (n, dict(o)) for n, o in config["providers"]
        ]
        self.intra_op_num_threads: int | None = config.get("intra_op_num_threads")
        self.session_config: dict[str, str] = dict(config.get("session_config") or {})
        self.allow_fallback: bool = bool(config.get("allow_fallback"))
        self.target: str = config.get("target", "?")
        self.models: dict[Any, tuple[Any, list[str], list[str]]] = {}

    def _providers_for_ort(self, available: Sequence[str]) -> tuple[list[Any], list[str]]:
        missing = [n for n, _ in self.providers if n not in available]
        if missing and not self.allow_fallback:
            raise RuntimeFailure(
                "UnsupportedOperation",
                f"{self.target} needs onnxruntime's {', '.join(missing)}, which this "
                f"onnxruntime build lacks (it has {', '.join(available)}); install a build "
                "with it, or pass allow_fallback=True to run on the CPU",
            )
        chosen: list[Any] = [(n, o) for n, o in self.providers if n in available]
        warnings = []
        if missing:
            warnings.append(
                f"{self.target}: onnxruntime lacks {', '.join(missing)}; "
                "running on CPUExecutionProvider instead (allow_fallback=True)"
            )
        if not chosen:
            chosen = ["CPUExecutionProvider"]
        return chosen, warnings

    def load(self, key: Any, kind: str, source: Any) -> dict[str, Any]:
        """Create the onnxruntime session for ``key`` (a no-op if it is loaded)."""
        if key in self.models:
            _, inputs, outputs = self.models[key]
            return {"inputs": inputs, "outputs": outputs, "warnings": []}
        try:
            import onnxruntime as ort

            providers, warnings = self._providers_for_ort(ort.get_available_providers())
            options = ort.SessionOptions()
            if self.intra_op_num_threads:
                options.intra_op_num_threads = int(self.intra_op_num_threads)
            for k, v in self.session_config.items():
                options.add_session_config_entry(str(k), str(v))
            if kind == "path" and not os.path.exists(source):
                raise RuntimeFailure("InvalidRequest", f"no model file {source!r}")
            if kind == "path" and not _utf8(source):
                # onnxruntime takes paths as UTF-8 only; a name that is not (bytes from
                # an old file system) is read here and handed over as the model bytes.
                with open(source, "rb") as f:
                    source = f.read()
            sess = ort.InferenceSession(source, sess_options=options, providers=providers)
            if not self.allow_fallback:
                # The session promised these providers: never fall back to the CPU silently.
                sess.disable_fallback()
        except Exception as e:
            raise classify(e, f"load the model for {self.target}") from e
        inputs = [i.name for i in sess.get_inputs()]
        outputs = [o.name for o in sess.get_outputs()]
        self.models[key] = (sess, inputs, outputs)
        return {
            "inputs": inputs,
            "outputs": outputs,
            "providers": list(sess.get_providers()),
            "warnings": warnings,
        }

    def unload(self, key: Any) -> None:
        self.models.pop(key, None)

    def run(self, key: Any, output_names: Sequence[str] | None, feeds: Mapping[str, Any]) -> Any:
        """Run a loaded model; the outputs, in ``output_names`` (or the model's) order."""
        sess = self.models[key][0]
        try:
            return sess.run(output_names, feeds)
        except Exception as e:
            raise classify(e, f"run the model on {self.target}") from e


# -- shared memory ------------------------------------------------------------------


def _anonymous_fd(size: int) -> int:
    """A file descriptor to ``size`` bytes of shared memory that has no name."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("accelpool-session", getattr(os, "MFD_CLOEXEC", 0))
    else:  # POSIX without memfd: a named segment, unlinked at once so nothing can leak
        import _posixshmem
        import secrets

        name = "/accelpool-" + secrets.token_hex(8)
        fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        _posixshmem.shm_unlink(name)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Arena:
    """A shared-memory block mapped in this process."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.mm = mmap.mmap(fd, size)

    @classmethod
    def create(cls, needed: int, old: Arena | None = None) -> tuple[Arena, int]:
        """A new arena of at least ``needed`` bytes and its fd (to send, then close)."""
        size = max(needed, _MIN_ARENA, 2 * old.size if old else 0)
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        fd = _anonymous_fd(size)
        try:
            return cls(fd, size), fd
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int) -> Arena:
        """Map an arena received from the other side (and close the received fd)."""
        try:
            return cls(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def close(self) -> None:
        # Never mmap.close(): numpy arrays over the map keep a reference to it but no
        # buffer export, so closing would unmap memory they still use. Dropping our
        # reference unmaps (and closes the map's fd) once the last such array is gone.
        self.mm = None  # type: ignore[assignment]


_NUMPY: Any = None


def _numpy() -> Any:
    """numpy, imported on first use (the worker starts without it) and then kept: an
    import statement on every call costs more than the copy of a small array."""
    global _NUMPY
    if _NUMPY is None:
        import numpy

        _NUMPY = numpy
    return _NUMPY


def shm_able(value: Any) -> bool:
    """Whether a value travels through shared memory (plain numeric numpy arrays)."""
    np = _numpy()
    return (
        isinstance(value, np.ndarray)
        and value.dtype.kind in "biufc"
        and not value.dtype.hasobject
        and value.dtype.names is None
        and value.size > 0
    )


def layout(values: Sequence[tuple[str, Any]]) -> tuple[list[tuple[str, Any, int]], int]:
    """Offsets for the shared-memory values among ``values``, and the bytes they need.

    Only arrays of at least ``_INLINE_MAX`` bytes go through shared memory."""
    placed = []
    end = 0
    for name, v in values:
        if getattr(v, "nbytes", 0) >= _INLINE_MAX and shm_able(v):
            off = (end + _ALIGN - 1) // _ALIGN * _ALIGN
            placed.append((name, v, off))
            end = off + v.nbytes
    return placed, end


def write_arrays(
    arena: Arena, placed: Sequence[tuple[str, Any, int]]
) -> dict[str, tuple[str, tuple[int, ...], int, int | None]]:
    """Copy arrays into ``arena``; their metadata (dtype, shape, offset, no pin) by name."""
    np = _numpy()

    meta: dict[str, tuple[str, tuple[int, ...], int, int | None]] = {}
    for name, v, off in placed:
        dst = np.ndarray(v.shape, v.dtype, buffer=arena.mm, offset=off)
        np.copyto(dst, v, casting="no")
        del dst
        meta[name] = (v.dtype.str, tuple(v.shape), off, None)
    return meta


def packed(value: Any) -> tuple[str, Any]:
    """A value for a message: a small numeric array as ``("b", (dtype, shape, bytes))``,
    which pickles at a fraction of the cost of the array itself, else ``("v", value)``."""
    if shm_able(value):
        return ("b", (value.dtype.str, value.shape, bytearray(value.tobytes())))
    return ("v", value)


def unpacked(dtype: str, shape: tuple[int, ...], data: bytearray) -> Any:
    """The (writable) array :func:`packed` made ``(dtype, shape, data)`` of."""
    np = _numpy()
    return np.frombuffer(data, np.dtype(dtype)).reshape(shape)


def view(arena: Arena, dtype: str, shape: tuple[int, ...], off: int, pin: Any = None) -> Any:
    """An array over ``arena`` (``pin`` names the arena in metadata; unused here)."""
    np = _numpy()
    return np.ndarray(shape, np.dtype(dtype), buffer=arena.mm, offset=off)


# -- the channel --------------------------------------------------------------------


#: Room for the file descriptors one message may carry (what socket.recv_fds asks for).
_ANCILLARY = socket.CMSG_LEN(_MAX_FDS * struct.calcsize("i"))


def _fds_of(ancdata: Sequence[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors in ``recvmsg``'s ancillary data (as ``socket.recv_fds``)."""
    import array

    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return list(fds)


class Channel:
    """Length-prefixed pickles over a Unix stream socket, with optional fds attached."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, obj: Any, fds: Sequence[int] = ()) -> None:
        self.send_payload(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), fds)

    def send_payload(self, payload: bytes, fds: Sequence[int] = ()) -> None:
        """Send an already pickled message (and ``fds`` with it)."""
        data = _HEADER.pack(len(payload)) + payload
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds), _SEND_FLAGS)
            if sent < len(data):
                self.sock.sendall(memoryview(data)[sent:], _SEND_FLAGS)
        else:
            self.sock.sendall(data, _SEND_FLAGS)

    def recv(self) -> tuple[Any, list[int]]:
        payload, fds = self.recv_payload()
        return pickle.loads(payload), fds

    def recv_payload(self) -> tuple[Any, list[int]]:
        """The next message, still pickled (bytes-like), and the fds that came with it."""
        # One recvmsg reads a whole small message, header and all: syscalls are what a
        # round trip costs. There is never more than one message in flight each way,
        # so a read cannot run into the next message.
        data, ancdata, _, _ = self.sock.recvmsg(_CHUNK, _ANCILLARY)
        fds = _fds_of(ancdata) if ancdata else []
        if not data:
            raise EOFError("the other side of the session channel closed")
        while len(data) < _HEADER.size:
            data += self._recv_some(_CHUNK)
        (n,) = _HEADER.unpack_from(data)
        total = _HEADER.size + n
        if len(data) > total:
            raise ConnectionError("session channel out of step: bytes after a message")
        if len(data) == total:
            return memoryview(data)[_HEADER.size :], fds
        buf = bytearray(total)
        buf[: len(data)] = data
        mv = memoryview(buf)
        got = len(data)
        while got < total:
            k = self.sock.recv_into(mv[got:], total - got)
            if not k:
                raise EOFError("the session channel closed mid-message")
            got += k
        return mv[_HEADER.size :], fds

    def _recv_some(self, size: int) -> bytes:
        more = self.sock.recv(size)
        if not more:
            raise EOFError("the session channel closed mid-message")
        return more

    def close(self) -> None:
        self.sock.close()


# -- the worker process ----------------------------------------------------------------


class _Worker:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.runtime: Runtime | None = None
        self.inbox: Arena | None = None
        #: shared arrays the parent handed out (Session.shared_array), by id
        self.pinned: dict[int, Arena] = {}
        self.outbox: Arena | None = None
        #: the last run request whose inputs all lie in shared arrays, still pickled,
        #: with its parsed parts and input views: the same request again (a loop over
        #: one shared array) is run without parsing it or building views again
        self.repeat: tuple[bytes, Any, Any, dict[str, Any]] | None = None

    def handle(
        self, msg: tuple[Any, ...], fds: list[int], payload: Any = None
    ) -> tuple[Any, list[int]]:
        """Answer ``msg`` (``payload``: its pickled bytes, which a run may remember)."""
        op = msg[0]
        if op == "run":  # by far the most frequent: tested first
            return self.run(msg, fds, payload)
        if op == "init":
            self.runtime = Runtime(msg[1])
            return {"pid": os.getpid()}, []
        if op == "env":
            names = msg[1]
            env = dict(os.environ)
            if names is None:
                return {k: v for k, v in env.items() if is_visibility_var(k)}, []
            return {k: env[k] for k in names if k in env}, []
        assert self.runtime is not None, "worker used before init"
        if op == "load":
            return self.runtime.load(msg[1], msg[2], msg[3]), []
        if op == "unload":
            self.runtime.unload(msg[1])
            return None, []
        if op == "pin":
            self.pinned[msg[1]] = Arena.attach(fds[0])
            return None, []
        raise RuntimeFailure("AccelPoolError", f"session worker got an unknown request {op!r}")

    def run(
        self, msg: tuple[Any, ...], fds: list[int], payload: Any = None
    ) -> tuple[Any, list[int]]:
        _, key, output_names, meta, inline = msg
        if self.runtime is None:
            raise RuntimeFailure("AccelPoolError", "session worker used before init")
        if fds:
            if self.inbox is not None:
                self.inbox.close()
            self.inbox = Arena.attach(fds[0])
        feeds: dict[str, Any] = dict(inline)
        for name, (dtype, shape, off, pin) in meta.items():
            arena = self.inbox if pin is None else self.pinned[pin]
            assert arena is not None
            feeds[name] = view(arena, dtype, shape, off)
        shared_only = meta and all(pin is not None for _, _, _, pin in meta.values())
        if payload is not None and not fds and not inline and shared_only:
            # Views of shared arrays only, which live as long as the worker: the same
            # request again reruns these (see serve).
            outputs = self.runtime.run(key, output_names, feeds)
            self.repeat = (bytes(payload), key, output_names, feeds)
            return self._reply(outputs)
        try:
            outputs = self.runtime.run(key, output_names, feeds)
        finally:
            feeds.clear()  # drop the views before the inbox may be replaced
        return self._reply(outputs)

    def rerun(self) -> tuple[Any, list[int]]:
        """Run the request remembered in :attr:`repeat` again."""
        assert self.repeat is not None and self.runtime is not None
        _, key, output_names, feeds = self.repeat
        return self._reply(self.runtime.run(key, output_names, feeds))

    def _reply(self, outputs: Sequence[Any]) -> tuple[Any, list[int]]:
        for v in outputs:
            if getattr(v, "nbytes", 0) >= _INLINE_MAX:
                break
        else:  # all small (a classifier's logits): every output inside the reply
            return [packed(v) for v in outputs], []
        named = list(enumerate(outputs))
        placed, needed = layout([(str(i), v) for i, v in named])
        send_fds: list[int] = []
        if needed and (self.outbox is None or self.outbox.size < needed):
            new, fd = Arena.create(needed, self.outbox)
            if self.outbox is not None:
                self.outbox.close()
            self.outbox = new
            send_fds = [fd]
        out_meta: dict[str, Any] = write_arrays(self.outbox, placed) if placed else {}  # type: ignore[arg-type]
        result = [("a", out_meta[str(i)]) if str(i) in out_meta else packed(v) for i, v in named]
        return result, send_fds

    def serve(self) -> None:
        while True:
            try:
                payload, fds = self.channel.recv_payload()
            except (EOFError, ConnectionError):
                return  # the parent went away or closed the session
            out_fds: list[int] = []
            op = "session"  # until the request is read
            try:
                repeat = self.repeat
                if (
                    repeat is not None
                    and not fds
                    and payload == repeat[0]
                    and self.runtime is not None
                    and repeat[1] in self.runtime.models
                ):
                    op = "run"
                    result, out_fds = self.rerun()
                else:
                    msg = pickle.loads(payload)
                    op = msg[0]
                    if op == "exit":
                        return
                    result, out_fds = self.handle(msg, fds, payload)
                reply: tuple[Any, ...] = ("ok", result)
            except Exception as e:
                reply = ("err", *classify(e, f"serve a {op} request").as_tuple())
            try:
                self.channel.send(reply, out_fds)
            except (BrokenPipeError, ConnectionError):
                return
            finally:
                for fd in out_fds:
                    os.close(fd)


def _die_with_parent(parent_pid: int) -> None:
    """Exit if the parent dies, even in the middle of a long run.

    Between requests the closed channel ends the worker; during a run this watchdog
    does. (Not PR_SET_PDEATHSIG: it fires when the spawning *thread* exits.)
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="accelpool-parent-watch", daemon=True).start()


def main(argv: Sequence[str]) -> int:
    fd, parent_pid = int(argv[1]), int(argv[2])
    _die_with_parent(parent_pid)
    channel = Channel(socket.socket(fileno=fd))
    try:
        _Worker(channel).serve()
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    # Started as a file: keep this folder off sys.path so it can shadow nothing.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.exit(main(sys.argv))
