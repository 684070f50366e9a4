"""Helpers for the hostile-input tests: crafted images, and a subprocess run under a memory cap."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# run in the capped subprocess: cap(mb) limits the address space to what is mapped now plus mb MiB
PRELUDE = """
import resource, sys
def cap(mb):
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    limit = vm + mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""


def run_capped(code: str, *args: object, timeout: float = 300, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with ``sys.argv[1:]`` = ``args`` (after :data:`PRELUDE`, so it may
    call ``cap(mb)`` once its imports are done); glibc arenas kept to two so that threads do not reserve
    address space by the 64 MiB."""
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "MALLOC_ARENA_MAX": "2",
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", PRELUDE + code, *map(str, args)], cwd=ROOT, env=full_env,
                          timeout=timeout, capture_output=True, text=True)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_of(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40),
           idat: bytes | None = None) -> bytes:
    """A valid RGB PNG of one flat colour (rows streamed into zlib: small to make, small on disk), or
    with the given compressed image data (``idat``) behind that header."""
    if idat is None:
        row = b"\0" + bytes(colour) * width
        z = zlib.compressobj(6)
        parts = [z.compress(row) for _ in range(height)]
        idat = b"".join(parts) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_bomb(width: int = 100, height: int = 100, inflated: int = 512 << 20) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and whose image data inflates to ``inflated`` bytes
    of zeros (about 1000 times its size on disk)."""
    z = zlib.compressobj(9)
    block = bytes(16 << 20)
    idat = b"".join(z.compress(block) for _ in range(inflated // len(block))) + z.flush()
    return png_of(width, height, idat=idat)


def noisy_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG of noise (a long record: about 1.2 bytes a pixel at quality 95)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def smooth_jpeg(width: int, height: int) -> bytes:
    """A large but short JPEG (a smooth gradient)."""
    from PIL import Image

    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    img = np.broadcast_to((x + y) / 2, (height, width, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()
