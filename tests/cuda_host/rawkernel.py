"""``RawModule`` and ``RawKernel`` of the fake CuPy: NVRTC options translated for g++, the source and
``shim/`` built into a shared library (cached by content hash), launches through ctypes with every
argument checked against the kernel's signature."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as _np

from . import fake_cupy
from .devices import LOG, CUDARuntimeError, Event, Stream, _device, _next_seq, get_current_stream, visible

SHIM = Path(__file__).resolve().parent / "shim"


def build_dir() -> Path:
    """Where built kernels go: ``$CUDA_HOST_BUILD``, else a folder under the temporary directory."""
    return Path(os.environ.get("CUDA_HOST_BUILD") or Path(tempfile.gettempdir()) / "faceocc-cuda-host")


def cxxflags() -> list[str]:
    """g++ flags for kernels: ``$CUDA_HOST_CXXFLAGS`` (the ASan run sets them), else ``-O2``."""
    return os.environ.get("CUDA_HOST_CXXFLAGS", "-O2").split()


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
    if shutil.which("g++") is None:
        raise CompileException("g++ not found: the CPU stand-in for CuPy compiles kernels with g++ >= 12")
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
            if isinstance(a, fake_cupy.ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{where}: a non-contiguous array passed to a raw kernel")
                why = visible(a._written, dev, sptr)
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
        self.module.lib.shim_set_expf_mode(fake_cupy.EXPF_MODE)
        rc = self.fn((ctypes.c_uint * 3)(*map(int, grid)), (ctypes.c_uint * 3)(*map(int, block)), ptrs, desc, n,
                     ctypes.c_uint(fake_cupy.ORDER_SEED), int(self.module.ftz and fake_cupy.FTZ), err, 512)
        LOG.append(Event("launch", self.name, dev, sptr))
        stamp = (dev, sptr, _next_seq())
        for a in args:
            if isinstance(a, fake_cupy.ndarray):
                a._written = stamp
        if rc:
            raise RuntimeError(f"{self.name}: {err.value.decode()}")

