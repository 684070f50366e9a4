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
- DLPack: ``from_dlpack`` takes a torch CPU tensor as a CUDA tensor of the current device, ready on the
  current stream (zero-copy); ``torch.from_dlpack`` of a device array gives a CPU tensor sharing its
  storage, exported on the current stream (a read checked like a kernel's);
- devices and streams: ``cuda.Device`` (``DEVICE_COUNT`` of them), ``cuda.Stream``, ``ExternalStream``. A
  kernel given an array of another device fails (as an illegal address would); a kernel that reads an array
  written on another stream without a synchronization in between fails (a race on a GPU). The legacy null
  stream synchronizes implicitly with blocking streams only; a stream of unknown origin (DALI's, through
  ``ExternalStream`` or a pointer set on a ``Stream``) is taken to be non-blocking.

Module knobs: ``ORDER_SEED`` (0: blocks and threads in order; else a seeded shuffled order), ``FTZ``,
``EXPF_MODE`` (0 libm, 1 the CUDA 13 sequence), ``DEVICE_COUNT``, ``EVENTS_PENDING`` (``cuda.Event`` s
stay pending until synchronized or :func:`complete_events`); ``LOG`` records allocations, launches and
event records as :class:`Event`; :func:`reset` restores the defaults.

Devices and streams live in :mod:`cuda_host.devices`, kernels in :mod:`cuda_host.rawkernel`; this module
is what ``import cupy`` gives inside the tests.
"""

from __future__ import annotations

import numpy as _np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .devices import (  # noqa: F401  (the public names of cupy and cupy.cuda)
    LOG,
    CUDARuntimeError,
    Device,
    Event,
    ExternalStream,
    Stream,
    _device,
    _next_seq,
    _stream_stack,
    complete_events,
    cuda,
    get_current_stream,
    reset_state,
    visible,
)
from .rawkernel import CompileException, RawKernel, RawModule  # noqa: F401

__version__ = "13.0.0-cuda-host"

ORDER_SEED = 0
FTZ = True
EXPF_MODE = 1
DEVICE_COUNT = 1
EVENTS_PENDING = False      # recorded events stay pending until synchronized or complete_events()


def reset() -> None:
    """Default knobs, an empty LOG, device 0 current with its null stream."""
    global ORDER_SEED, FTZ, EXPF_MODE, DEVICE_COUNT, EVENTS_PENDING
    ORDER_SEED, FTZ, EXPF_MODE, DEVICE_COUNT, EVENTS_PENDING = 0, True, 1, 1, False
    reset_state()


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

    def __dlpack__(self, stream: object = None, **kwargs: object) -> object:
        """Export for ``torch.from_dlpack`` (zero-copy), as work on the current device and stream: CuPy
        exports on its current stream, so reading there must be safe (checked, like a kernel's read)."""
        return _read(self).__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU: the consumer (torch) gets a CPU tensor sharing this array's storage

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
    return (_device(), get_current_stream().ptr, _next_seq())


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
        why = visible(a._written, _device(), get_current_stream().ptr)
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
        why = visible(a._written, dev, 0 if stream is None else stream.ptr)
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


def from_dlpack(x: object) -> ndarray:
    """A DLPack producer (a torch tensor) as a device array sharing its memory (zero-copy, as CuPy). A
    host-resident producer stands for a CUDA tensor of the current device whose data is ready on the
    current stream: what CuPy's stream handshake (``x.__dlpack__(stream=current stream)``) guarantees."""
    return ndarray(_np.from_dlpack(x))


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


