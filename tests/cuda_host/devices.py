"""Devices and streams of the fake CuPy (:mod:`cuda_host.fake_cupy`), and the record of device work.

The current device and each device's current stream are per thread, as in CUDA and CuPy. Every array
carries ``(device, stream, sequence number)`` of its last write; :func:`visible` says whether work on a
device and stream may read it: same device, and the same stream, or a synchronization since, or the legacy
null stream paired with a blocking stream (streams of unknown origin, such as DALI's, count as
non-blocking).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from . import fake_cupy


@dataclass(frozen=True)
class Event:
    """One allocation or launch: what, on which device and stream (stream pointer, 0 the null stream)."""

    op: str                 # "alloc", "launch" or "record" (an event)
    name: str               # kernel name, or the allocating function
    device: int
    stream: int


LOG: list[Event] = []


class CUDARuntimeError(RuntimeError):
    pass


_tls = threading.local()
_seq = itertools.count(1)                      # global order of stream work


def _next_seq() -> int:
    return next(_seq)

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
        if not 0 <= self.id < fake_cupy.DEVICE_COUNT:
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id} "
                                   f"({fake_cupy.DEVICE_COUNT} device(s))")
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


class CudaEvent:
    """``cupy.cuda.Event``: ``record(stream)`` marks the work queued on a stream so far (logged as a
    "record" entry); ``done`` says whether that work has finished and ``synchronize()`` waits for it.
    The fake runs work at once, so an event is done when recorded, unless the knob
    ``fake_cupy.EVENTS_PENDING`` is set: then it stays pending until ``synchronize()`` or
    :func:`complete_events` (work still queued on a GPU, for tests of what a consumer must keep alive
    until then)."""

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        self.recorded: tuple[int, int, int] | None = None
        self._done = True

    def record(self, stream: Stream | None = None) -> None:
        stream = get_current_stream() if stream is None else stream
        device = stream.device_id if stream.ptr else _device()
        self.recorded = (device, stream.ptr, _next_seq())
        self._done = not fake_cupy.EVENTS_PENDING
        _pending.append(self)
        LOG.append(Event("record", "event", device, stream.ptr))

    @property
    def done(self) -> bool:
        return self._done

    def synchronize(self) -> None:
        if self.recorded is not None:
            device, ptr, seq = self.recorded
            _synced[(device, ptr)] = max(_synced.get((device, ptr), 0), seq)
        self._done = True


_pending: list[CudaEvent] = []


def complete_events() -> None:
    """Every event recorded so far is done (the queued work has run)."""
    for event in _pending:
        event._done = True
    _pending.clear()


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
        return fake_cupy.DEVICE_COUNT

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
    Event = CudaEvent
    runtime = _Runtime
    CUDARuntimeError = CUDARuntimeError

    @staticmethod
    def get_current_stream() -> Stream:
        return get_current_stream()

    @staticmethod
    def get_device_id() -> int:
        return _device()

    @staticmethod
    def get_elapsed_time(start: CudaEvent, end: CudaEvent) -> float:
        """Milliseconds between two recorded events: always 1.0 (the fake has no GPU clock)."""
        if start.recorded is None or end.recorded is None:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: an event was never recorded")
        return 1.0


cuda = _Cuda()




def visible(written: tuple[int, int, int], device: int, stream: int) -> str | None:
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



def reset_state() -> None:
    """An empty LOG, device 0 current with its null stream, in this thread."""
    LOG.clear()
    _pending.clear()
    _tls.device = 0
    _stream_stack().clear()


Stream.null = _null_stream()
