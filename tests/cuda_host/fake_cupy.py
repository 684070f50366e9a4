"""A stand-in for ``cupy``, backed by NumPy, that runs ``RawModule`` kernels on the CPU (see README.md).

Install it with :func:`cuda_host.installed` (``sys.modules["cupy"]``, inside tests only). What it models:

- arrays: a NumPy subclass (:class:`ndarray`) tagged with the device and stream that last wrote it;
  ``empty``/``empty_like`` fill with NaN or 0x7f bytes, so outputs a kernel never writes show up;
- ``RawModule(code=..., options=...)``: the options as CuPy passes them to NVRTC (``-ftz=true`` appended;
  ``--fmad=false``, ``-D``, ``-I``, ``--std`` translated for g++, anything else refused); the source plus
  ``shim/`` built into a shared library cached by the hash of what CuPy's own cache key covers (source and
  options: an ``#include`` d header is not part of it, as in CuPy);
- launches: argument count, kinds, sizes and element types checked against the kernel's signature, host
  (NumPy) arrays and non-contiguous arrays refused, as CuPy and the driver would;
- devices and streams: ``cuda.Device`` (``DEVICE_COUNT`` of them), ``cuda.Stream``, ``ExternalStream``. A
  kernel given an array of another device fails (as an illegal address would); a kernel that reads an array
  written on another stream without a synchronization in between fails (a race on a GPU). The legacy null
  stream synchronizes implicitly with blocking streams only; a stream of unknown origin (DALI's, through
  ``ExternalStream`` or a pointer set on a ``Stream``) is taken to be non-blocking.

Module knobs: ``ORDER_SEED`` (0: blocks and threads in order; else a seeded shuffled order), ``FTZ``,
``EXPF_MODE`` (0 libm, 1 the CUDA 13 sequence), ``DEVICE_COUNT``; ``LOG`` records allocations and
launches as :class:`Event`; :func:`reset` restores the defaults.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as _np
from numpy.lib.mixins import NDArrayOperatorsMixin

SHIM = Path(__file__).resolve().parent / "shim"
__version__ = "13.0.0-cuda-host"

ORDER_SEED = 0
FTZ = True
EXPF_MODE = 1
DEVICE_COUNT = 1


@dataclass(frozen=True)
class Event:
    """One allocation or launch: what, on which device and stream (stream pointer, 0 the null stream)."""

    op: str                 # "alloc" or "launch"
    name: str               # kernel name, or the allocating function
    device: int
    stream: int


LOG: list[Event] = []


def build_dir() -> Path:
    """Where built kernels go: ``$CUDA_HOST_BUILD``, else a folder under the temporary directory."""
    return Path(os.environ.get("CUDA_HOST_BUILD") or Path(tempfile.gettempdir()) / "faceocc-cuda-host")


def cxxflags() -> list[str]:
    """g++ flags for kernels: ``$CUDA_HOST_CXXFLAGS`` (the ASan run sets them), else ``-O2``."""
    return os.environ.get("CUDA_HOST_CXXFLAGS", "-O2").split()


# -- devices and streams ----------------------------------------------------------------------------

class CUDARuntimeError(RuntimeError):
    pass


_tls = threading.local()
_seq = itertools.count(1)                      # global order of stream work
_synced: dict[tuple[int, int], int] = {}       # (device, stream ptr) -> work done up to this sequence number
_device_synced: dict[int, int] = {}
_blocking: dict[int, bool] = {0: True}         # stream ptr -> blocking? (created here); unknown: non-blocking
_ptrs = itertools.count(0x1000, 0x10)


def _device() -> int:
    return getattr(_tls, "device", 0)


def _stream_stack() -> dict:
    if not hasattr(_tls, "streams"):
        _tls.streams = {}
    return _tls.streams


class Device:
    """A device; ``Device()`` is the current one. As a context manager it makes itself current."""

    def __init__(self, device: int | None = None) -> None:
        self.id = _device() if device is None else int(device)
        if not 0 <= self.id < DEVICE_COUNT:
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id} "
                                   f"({DEVICE_COUNT} device(s))")
        self._saved: list[int] = []

    def __enter__(self) -> Device:
        self._saved.append(_device())
        _tls.device = self.id
        return self

    def __exit__(self, *exc: object) -> None:
        _tls.device = self._saved.pop()

    def use(self) -> None:
        _tls.device = self.id

    def synchronize(self) -> None:
        _device_synced[self.id] = next(_seq)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class Stream:
    """A stream of the current device. ``null=True`` is the legacy default stream; DALI sets ``ptr``
    of such an object to its own stream."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int | None = None) -> None:
        self.device_id = _device()
        self.ptr = 0 if null else (next(_ptrs) if ptr is None else int(ptr))
        if not null and ptr is None:
            _blocking[self.ptr] = not non_blocking
        self._saved: list = []

    def __enter__(self) -> Stream:
        stack = _stream_stack()
        self._saved.append(stack.get(_device()))
        stack[_device()] = self
        return self

    def __exit__(self, *exc: object) -> None:
        _stream_stack()[_device()] = self._saved.pop()

    def use(self) -> Stream:
        _stream_stack()[_device()] = self
        return self

    def synchronize(self) -> None:
        _synced[(self.device_id if self.ptr else _device(), self.ptr)] = next(_seq)

    def __repr__(self) -> str:
        return f"<Stream {self.ptr:#x} (device {self.device_id})>"


class ExternalStream(Stream):
    def __init__(self, ptr: int, device_id: int = -1) -> None:
        super().__init__(ptr=ptr)
        if device_id >= 0:
            self.device_id = device_id


def get_current_stream() -> Stream:
    current = _stream_stack().get(_device())
    return current if current is not None else _null_stream()


def _null_stream() -> Stream:
    s = Stream.__new__(Stream)
    s.device_id, s.ptr, s._saved = _device(), 0, []
    return s


class _Runtime:
    @staticmethod
    def getDeviceCount() -> int:
        return DEVICE_COUNT

    @staticmethod
    def getDevice() -> int:
        return _device()

    @staticmethod
    def setDevice(i: int) -> None:
        Device(i).use()

    @staticmethod
    def deviceSynchronize() -> None:
        Device().synchronize()

    @staticmethod
    def getDeviceProperties(i: int) -> dict:
        return {"name": b"cuda-host (CPU)"}


class _Cuda:
    Device = Device
    Stream = Stream
    ExternalStream = ExternalStream
    runtime = _Runtime
    CUDARuntimeError = CUDARuntimeError

    @staticmethod
    def get_current_stream() -> Stream:
        return get_current_stream()

    @staticmethod
    def get_device_id() -> int:
        return _device()


cuda = _Cuda()


def _visible(written: tuple[int, int, int], device: int, stream: int) -> str | None:
    """None when work on (device, stream) may read data written as ``written``; else why not."""
    wdev, wstream, seq = written
    if wdev != device:
        return f"it lives on device {wdev}, the work runs on device {device} (illegal address)"
    if wstream == stream or seq <= max(_synced.get((wdev, wstream), 0), _device_synced.get(wdev, 0)):
        return None
    legacy_pair = 0 in (wstream, stream) and _blocking.get(wstream if stream == 0 else stream, False)
    if legacy_pair:
        return None
    return (f"it was written on stream {wstream:#x} and is read on stream {stream:#x} with no "
            "synchronization in between (a race on a GPU)")


def reset() -> None:
    """Default knobs, an empty LOG, device 0 current with its null stream."""
    global ORDER_SEED, FTZ, EXPF_MODE, DEVICE_COUNT
    ORDER_SEED, FTZ, EXPF_MODE, DEVICE_COUNT = 0, True, 1, 1
    LOG.clear()
    _tls.device = 0
    _stream_stack().clear()


# -- arrays -----------------------------------------------------------------------------------------

class ndarray(NDArrayOperatorsMixin):
    """A 'device' array: NumPy storage, tagged with (device, stream, sequence number) of its last write.

    Like CuPy's, it is not a ``numpy.ndarray`` and refuses implicit conversion (``np.asarray(a)``): code
    must copy with ``.get()`` or ``cupy.asnumpy``. Operators, ufuncs and NumPy's methods work on it and
    give device arrays (computed on the current device and stream, after the same visibility check as a
    kernel launch).
    """

    __array_priority__ = 100

    def __init__(self, data: _np.ndarray, written: tuple[int, int, int] | None = None) -> None:
        self._a = data
        self._written = written or _stamp()

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)

    @property
    def device(self) -> Device:
        return Device(self._written[0])

    @property
    def T(self) -> ndarray:
        return ndarray(self._a.T, self._written)

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype}, device={self._written[0]})"

    def __array__(self, *args: object, **kwargs: object) -> _np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc: _np.ufunc, method: str, *inputs: object, **kwargs: object) -> object:
        if "out" in kwargs:
            kwargs["out"] = tuple(_read(o) for o in kwargs["out"])
        return _result(getattr(ufunc, method)(*(_read(x) for x in inputs), **kwargs), ufunc.__name__)

    def __getitem__(self, index: object) -> ndarray:
        return ndarray(self._a[_read(index)], self._written)

    def __setitem__(self, index: object, value: object) -> None:
        self._a[_read(index)] = _read(value)
        self._written = _stamp()

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __float__(self) -> float:
        return float(_host(self))

    def __int__(self) -> int:
        return int(_host(self))

    def view(self, dtype: object = None) -> ndarray:
        return ndarray(self._a.view(dtype), self._written)

    def reshape(self, *shape: object, order: str = "C") -> ndarray:
        return ndarray(self._a.reshape(*shape, order=order), self._written)

    def get(self, stream: Stream | None = None) -> _np.ndarray:
        return asnumpy(self)

    def __getattr__(self, name: str) -> object:
        """NumPy's other methods (astype, copy, sum, ...), results as device arrays."""
        if name.startswith("_"):
            raise AttributeError(name)
        f = getattr(self._a, name)
        if not callable(f):
            return f

        def method(*args: object, **kwargs: object) -> object:
            _read(self)
            return _result(getattr(self._a, name)(*(_read(a) for a in args), **kwargs), name)

        return method


def _stamp() -> tuple[int, int, int]:
    return (_device(), get_current_stream().ptr, next(_seq))


def _new(a: _np.ndarray, how: str) -> ndarray:
    out = ndarray(a)
    LOG.append(Event("alloc", how, out._written[0], out._written[1]))
    return out


def _result(r: object, how: str) -> object:
    if isinstance(r, tuple):
        return tuple(_result(x, how) for x in r)
    return _new(r, how) if isinstance(r, _np.ndarray) else r


def _read(a: object) -> object:
    """The storage of a device array read by work on the current device and stream (checked); anything
    else (index tuples included) with its device arrays replaced."""
    if isinstance(a, ndarray):
        why = _visible(a._written, _device(), get_current_stream().ptr)
        if why:
            raise CUDARuntimeError(f"reading a device array: {why}")
        return a._a
    if isinstance(a, tuple):
        return tuple(_read(x) for x in a)
    if isinstance(a, list):
        return [_read(x) for x in a]
    return a


def _host(a: object) -> _np.ndarray:
    """The storage of a device array copied to the host, as CuPy does: on the current stream of the array's
    own device."""
    if isinstance(a, ndarray):
        dev = a._written[0]
        stream = _stream_stack().get(dev)
        why = _visible(a._written, dev, 0 if stream is None else stream.ptr)
        if why:
            raise CUDARuntimeError(f"copying a device array to the host: {why}")
        return a._a
    return _np.asarray(a)


def _storage(a: object) -> _np.ndarray:
    """Host or device input of an upload or copy (a device array of another device: a peer copy)."""
    return _host(a) if isinstance(a, ndarray) else _np.asarray(a)


uint8, int8, int16, int32, int64 = _np.uint8, _np.int8, _np.int16, _np.int32, _np.int64
uint16, uint32, uint64 = _np.uint16, _np.uint32, _np.uint64
float16, float32, float64, bool_ = _np.float16, _np.float32, _np.float64, _np.bool_


def asarray(a: object, dtype: object = None, order: str | None = None) -> ndarray:
    if isinstance(a, ndarray) and a.device.id == _device() and (dtype is None or _np.dtype(dtype) == a.dtype):
        return a
    return _new(_np.array(_storage(a), dtype=dtype, copy=True, order=order or "K"), "asarray")


def array(a: object, dtype: object = None, copy: bool = True, order: str = "K") -> ndarray:
    return _new(_np.array(_storage(a), dtype=dtype, copy=True, order=order), "array")


def ascontiguousarray(a: object, dtype: object = None) -> ndarray:
    if isinstance(a, ndarray) and a.flags.c_contiguous and (dtype is None or _np.dtype(dtype) == a.dtype):
        return a
    return _new(_np.ascontiguousarray(_storage(a), dtype=dtype), "ascontiguousarray")


def asnumpy(a: object, stream: Stream | None = None) -> _np.ndarray:
    return _np.array(_host(a), copy=True)


def _sentinel(out: ndarray) -> ndarray:
    if out.dtype.kind == "f":
        out._a[...] = _np.nan
    else:
        out._a.view(_np.uint8)[...] = 0x7F
    return out


def empty(shape: object, dtype: object = float32, order: str = "C") -> ndarray:
    return _sentinel(_new(_np.empty(shape, dtype, order), "empty"))


def empty_like(a: object, dtype: object = None) -> ndarray:
    return _sentinel(_new(_np.empty(a.shape, a.dtype if dtype is None else dtype), "empty_like"))


def zeros(shape: object, dtype: object = float32) -> ndarray:
    return _new(_np.zeros(shape, dtype), "zeros")


def ones(shape: object, dtype: object = float32) -> ndarray:
    return _new(_np.ones(shape, dtype), "ones")


def full(shape: object, fill_value: object, dtype: object = None) -> ndarray:
    return _new(_np.full(shape, fill_value, dtype), "full")


def __getattr__(name: str) -> object:
    """Any other NumPy function (stack, concatenate, ...), on device arrays, results as device arrays."""
    f = getattr(_np, name)
    if not callable(f) or isinstance(f, type):
        return f

    def wrapped(*args: object, **kwargs: object) -> object:
        return _result(f(*(_read(a) for a in args), **{k: _read(v) for k, v in kwargs.items()}), name)

    return wrapped


# -- kernels ----------------------------------------------------------------------------------------

class CompileException(Exception):
    pass


_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


def _translate(options: tuple[str, ...]) -> tuple[list[str], bool]:
    flags, ftz = [], False
    for o in options:
        if o in ("--fmad=false", "-fmad=false"):
            flags.append("-ffp-contract=off")
        elif o in ("--fmad=true", "-fmad=true"):
            flags.append("-ffp-contract=fast")
        elif o.startswith("-I") or o.startswith("--include-path="):
            flags.append("-I" + (o[2:] if o.startswith("-I") else o.split("=", 1)[1]))
        elif o.startswith("-D"):
            flags.append(o)
        elif o.startswith(("--std=", "-std=")):
            flags.append("-std=" + o.split("=", 1)[1])
        elif o in ("-ftz=true", "--ftz=true", "-ftz=false", "--ftz=false"):
            ftz = o.endswith("true")
        elif not o.startswith(("-arch=", "--gpu-architecture=")):
            raise CompileException(f"nvrtc: error: unrecognized option {o} found (the CPU stand-in knows only "
                                   "--fmad, -I, -D, --std, -ftz, -arch)")
    return flags, ftz


def _build(code: str, options: tuple[str, ...], flags: list[str], names: list[str]) -> Path:
    shim = "".join((SHIM / f).read_text() for f in sorted(os.listdir(SHIM)))
    key = hashlib.sha256("\0".join([code, *options, *cxxflags(), shim]).encode()).hexdigest()[:20]
    root = build_dir()
    so = root / key / "kernels.so"
    if so.exists():
        return so
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root))            # built aside, renamed into place: never half a build
    (work / "kernels.cu").write_text(code)
    glue = ['#include "cuda_shim.h"', '#include "kernels.cu"', '#include "shim_launch.h"']
    glue += [f'extern "C" int launch_{n}(const unsigned* g, const unsigned* b, void** a, const long long* d, '
             f'int n, unsigned seed, int ftz, char* e, int el) {{ return shim::call({n}, g, b, a, d, n, seed, '
             f'ftz, e, el); }}' for n in names]
    (work / "glue.cpp").write_text("\n".join(glue) + "\n")
    cmd = ["g++", "-shared", "-fPIC", "-std=c++17", *cxxflags(), "-fno-fast-math", "-Wall", "-Wno-unused-parameter",
           f"-I{SHIM}", *flags, "-x", "c++", str(work / "glue.cpp"), "-o", str(work / "kernels.so")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise CompileException(done.stderr.replace(f"{work}/", ""))
    try:
        work.rename(so.parent)
    except OSError:                                      # another process finished the same build first
        shutil.rmtree(work, ignore_errors=True)
    return so


class RawModule:
    """CuPy's RawModule: compiled (here by g++) on construction, kernels by name."""

    def __init__(self, code: str | None = None, path: str | None = None, options: tuple = (),
                 backend: str = "nvrtc", **kwargs: object) -> None:
        code = Path(path).read_text() if code is None else code
        self.options = tuple(options) + ("-ftz=true",)          # what CuPy appends
        flags, self.ftz = _translate(self.options)
        self.names = _KERNEL.findall(code)
        self.code = code
        self.lib = ctypes.CDLL(str(_build(code, self.options, flags, self.names)))
        self.device = _device()

    def get_function(self, name: str) -> RawKernel:
        if name not in self.names:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        return RawKernel(self, name)


class RawKernel:
    def __init__(self, module: RawModule, name: str) -> None:
        self.module, self.name = module, name
        self.fn = getattr(module.lib, "launch_" + name)
        self.fn.restype = ctypes.c_int

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0,
                 stream: Stream | None = None) -> None:
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        if any(not isinstance(v, (int, _np.integer)) or v < 1 for v in grid + block):
            raise ValueError(f"{self.name}: bad grid {grid} or block {block}")
        dev = _device()
        sptr = (stream or get_current_stream()).ptr
        n = len(args)
        holders, ptrs = [], (ctypes.c_void_p * n)()
        desc = (ctypes.c_longlong * (5 * n))()
        for i, a in enumerate(args):
            where = f"{self.name} argument {i}"
            if isinstance(a, ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{where}: a non-contiguous array passed to a raw kernel")
                why = _visible(a._written, dev, sptr)
                if why:
                    raise CUDARuntimeError(f"{where}: {why}")
                h = ctypes.c_void_p(a._a.__array_interface__["data"][0])
                kind = {"i": 1, "u": 2, "b": 2, "f": 3, "V": 4}[a.dtype.kind]
                desc[5 * i:5 * i + 5] = [0, ctypes.sizeof(ctypes.c_void_p), kind, a.dtype.itemsize, a.nbytes]
                holders.append(h)
                ptrs[i] = ctypes.cast(ctypes.pointer(h), ctypes.c_void_p)
                continue
            if isinstance(a, _np.ndarray):
                raise TypeError(f"{where}: host numpy.ndarray passed to a kernel "
                                "(CuPy: Unsupported type <class 'numpy.ndarray'>)")
            if isinstance(a, _np.generic):
                value = a
            elif isinstance(a, bool):
                value = _np.bool_(a)
            elif isinstance(a, int):
                value = _np.int64(a)                            # CuPy packs a Python int as 64 bits
            elif isinstance(a, float):
                value = _np.float64(a)
            else:
                raise TypeError(f"{where}: unsupported type {type(a)}")
            h = ctypes.create_string_buffer(value.tobytes(), value.nbytes)
            desc[5 * i:5 * i + 5] = [{"i": 1, "u": 2, "b": 2, "f": 3}[value.dtype.kind], value.nbytes, 0, 0, 0]
            holders.append(h)
            ptrs[i] = ctypes.cast(h, ctypes.c_void_p)
        err = ctypes.create_string_buffer(512)
        self.module.lib.shim_set_expf_mode(EXPF_MODE)
        rc = self.fn((ctypes.c_uint * 3)(*map(int, grid)), (ctypes.c_uint * 3)(*map(int, block)), ptrs, desc, n,
                     ctypes.c_uint(ORDER_SEED), int(self.module.ftz and FTZ), err, 512)
        LOG.append(Event("launch", self.name, dev, sptr))
        stamp = (dev, sptr, next(_seq))
        for a in args:
            if isinstance(a, ndarray):
                a._written = stamp
        if rc:
            raise RuntimeError(f"{self.name}: {err.value.decode()}")


Stream.null = _null_stream()
