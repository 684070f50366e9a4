"""Images in records: the project's one host decoding, with the loader's semantics (DALI ``decoders.image``,
CPU), and ``mxnet.recordio``'s ``pack_img``/``unpack_img`` (:func:`pack_image`, :func:`unpack_image`).

The loader decodes with DALI; ``render``, ``verify``, ``info`` and ``preview`` decode here, and both give
the same pixels for the same payload (tested against DALI itself in ``tests/test_decoding.py``):

- EXIF orientation is applied (DALI's default, ``adjust_orientation=True``): a JPEG, PNG, WebP or TIFF
  stored sideways with an orientation tag comes out upright, H and W swapped where the tag says so;
- 16-bit samples become 8-bit as ``round(x / 257)``;
- alpha is dropped, never composited; palette and 1-bit images are expanded;
- gray output keeps a single-channel source as it is, takes a colour JPEG's luma plane, and turns other
  colour into ``floor(0.299 R + 0.587 G + 0.114 B)`` (DALI's backends round this one differently, so
  gray from colour PNG/BMP/... agrees with the loader within one grey level);
- only the formats DALI's CPU decoder reads are accepted (JPEG, PNG, BMP, TIFF, WebP, PNM, JPEG 2000);
  anything else (GIF, ICO, TGA, ...) and anything damaged enough that DALI refuses it (a PNG with a bad
  chunk CRC, a missing ``IEND`` or a broken zlib stream; a truncated JPEG, or one with stray bytes between
  its marker segments) raises
  :class:`ImageDecodeError`. :func:`decodable` is the same verdict without the pixels, for ``verify``;
- an image over ``max_pixels`` (default :data:`MAX_PIXELS`, 16 MP) is refused from its header, before
  any pixel is decoded (:func:`pixel_problem`), and a PNG's image data is inflated in pieces, never
  past what its header declares (plus 1 MiB), so a decompression bomb costs no memory.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from .errors import RecordIOError
from .header import IRHeader, pack_header, unpack_header

__all__ = ["LOADER_FORMATS", "MAX_PIXELS", "ImageDecodeError", "decodable", "decode_image", "decode_problem",
           "image_format", "image_shape", "pack_image", "pixel_problem", "read_image", "unpack_image"]

MAX_PIXELS = 1 << 24     # 16 MP (4096 x 4096): the default limit of every decode (loader, verify, render, pack)
LOADER_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PNM", "JPEG2000")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_OTHER_FORMATS = {b"GIF8": "GIF", b"\x00\x00\x01\x00": "ICO", b"8BPS": "PSD", b"\x0a\x05\x01\x08": "PCX"}


class ImageDecodeError(RecordIOError):
    """A payload the loader cannot decode; names file, key and offset when the caller knows them."""


def image_format(data: bytes) -> str | None:
    """The format a payload's first bytes announce, as :data:`LOADER_FORMATS` spells it, or ``None``."""
    head = bytes(data[:16])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PNM"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    return _OTHER_FORMATS.get(head[:4])


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_raw_size(data: bytes) -> int:
    """Bytes the image data of a PNG inflates to, from its IHDR (filter bytes and Adam7 passes included)."""
    width, height = struct.unpack(">II", data[16:24])
    bits = data[24] * _PNG_CHANNELS.get(data[25], 4)
    if data[28] != 1:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy))
        total += h * (1 + (w * bits + 7) // 8) if w and h else 0
    return total


def _inflate_problem(idat: list[bytes], cap: int) -> str | None:
    """Whether the zlib stream split over ``idat`` is sound, inflated 1 MiB at a time and only up to
    ``cap`` bytes: the image rows are complete by then, and a bomb's rest is never inflated."""
    stream, total = zlib.decompressobj(), 0
    try:
        for body in idat:
            pending = body
            while pending and not stream.eof:
                total += len(stream.decompress(pending, 1 << 20))
                if total > cap:
                    return None
                pending = stream.unconsumed_tail
        while not stream.eof and (out := stream.flush(1 << 20)):   # what zlib still holds
            total += len(out)
            if total > cap:
                return None
    except zlib.error as exc:
        return f"PNG image data is corrupt: {exc}"
    if not stream.eof:
        return "PNG image data is corrupt: Error -5 while decompressing data: incomplete or truncated stream"
    return None


def _png_problem(data: bytes) -> str | None:
    """DALI's PNG decoder (libpng) checks every chunk CRC, the zlib stream and ``IEND``; PIL does not."""
    pos, idat, seen_end = len(_PNG_SIGNATURE), [], False
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) < length or pos + 12 + length > len(data):
            return f"PNG chunk {kind!r} at byte {pos} is cut short"
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            return f"PNG chunk {kind!r} at byte {pos} has a bad CRC"
        if kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
        if kind == b"IEND":
            seen_end = True
            break
    if not seen_end:
        return "PNG has no IEND chunk (file cut short)"
    if len(data) < 29 or data[12:16] != b"IHDR":
        return "PNG does not start with its IHDR chunk"
    return _inflate_problem(idat, _png_raw_size(data) + (1 << 20))


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, walking its marker segments; None if there is none."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:                                         # fill byte
            pos += 1
        elif marker in _SOF:
            return (data[pos + 5] << 8 | data[pos + 6], data[pos + 7] << 8 | data[pos + 8]) if pos + 9 <= end else None
        elif marker in (0xDA, 0xD9, 0x00):
            return None
        elif marker == 0x01:                                       # TEM: no length (RSTn: as _jpeg_problem)
            pos += 2
        else:
            pos += 2 + (data[pos + 2] << 8 | data[pos + 3])
    return None


def image_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) of an encoded image as stored, from its header alone (no pixel decoded); None
    when the header does not say (a damaged or unknown format: the decoder will refuse it)."""
    fmt = image_format(data)
    if fmt == "JPEG":
        return _jpeg_shape(data)
    if fmt == "PNG":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if fmt is None:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:                   # lazy: reads the header only
            return im.size[1], im.size[0]
    except Image.DecompressionBombError:
        return 1 << 31, 1 << 31                                    # past PIL's own limit: surely past ours
    except Exception:  # an unreadable header: the decoder decides
        return None


def pixel_problem(data: bytes, max_pixels: int | None = MAX_PIXELS) -> str | None:
    """Why an image is refused for its size (over ``max_pixels`` pixels, read from its header), or None."""
    if max_pixels is None:
        return None
    shape = image_shape(data)
    if shape is None or shape[0] * shape[1] <= max_pixels:
        return None
    return (f"image of {shape[1]} x {shape[0]} pixels is over the limit of {max_pixels} pixels (max_pixels; "
            "raise it to read larger images)")


def _jpeg_problem(data: bytes) -> str | None:
    """DALI's JPEG parser wants marker segments back to back up to the scan; libjpeg (PIL) skips
    stray bytes between them with a warning."""
    pos = 2
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            return f"JPEG marker expected at byte {pos}" if pos < len(data) else "JPEG cut short before its scan"
        while pos < len(data) and data[pos] == 0xFF:               # fill bytes
            pos += 1
        if pos >= len(data):
            return "JPEG cut short before its scan"
        marker = data[pos]
        pos += 1
        if marker == 0xDA:
            return None
        if marker == 0xD9 or marker == 0x00:
            return f"JPEG marker 0x{marker:02x} at byte {pos - 1} before any scan"
        if marker == 0x01:                                         # TEM; DALI reads a length after RSTn
            continue
        if pos + 2 > len(data):
            return "JPEG cut short before its scan"
        pos += int.from_bytes(data[pos:pos + 2], "big")


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1..8 applied as DALI (and PIL's ``ImageOps.exif_transpose``) apply it."""
    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
             7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turns[orientation](array)) if orientation in turns else array


def _to8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    wide = np.clip(array.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)       # round(x / 257), exactly


def _png16_colour(data: bytes) -> np.ndarray | None:
    """A 16-bit colour PNG as RGB uint16 (PIL keeps only 8 bits of these); ``None`` if not one."""
    if len(data) < 26 or data[24] != 16 or data[25] == 0:
        return None
    try:
        import cv2  # comes with insightface
    except ImportError:                                            # PIL's 8 bits: at most 1 level off
        return None

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError("16-bit PNG does not decode")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if data[25] == 4:                                              # gray + alpha: cv2 gives BGRA or 2 channels
        return np.repeat(array[..., :1], 3, axis=2)
    return array[..., 2::-1] if array.shape[2] >= 3 else np.repeat(array[..., :1], 3, axis=2)


def _gray_of(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32)
    return (f[..., 0] * np.float32(0.299) + f[..., 1] * np.float32(0.587)
            + f[..., 2] * np.float32(0.114)).astype(np.uint8)


def _decode(data: bytes, gray: bool | None, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    from PIL import Image

    fmt = image_format(data)
    if fmt not in LOADER_FORMATS:
        raise ValueError(f"{fmt or 'unknown'} image format: the loader (DALI) decodes only "
                         f"{', '.join(LOADER_FORMATS)}")
    too_large = pixel_problem(data, max_pixels)
    if too_large:
        raise ValueError(too_large)
    if fmt in ("PNG", "JPEG"):
        problem = _png_problem(data) if fmt == "PNG" else _jpeg_problem(data)
        if problem:
            raise ValueError(problem)
    with Image.open(io.BytesIO(data)) as im:
        if gray and fmt == "JPEG" and im.mode == "RGB":
            im.draft("L", im.size)                                 # DALI decodes the luma plane alone
        im.load()
        try:
            orientation = int(im.getexif().get(0x0112, 1) or 1)
        except Exception:  # an unreadable EXIF block leaves the pixels as stored
            orientation = 1
        wide = _png16_colour(data) if fmt == "PNG" else None
        if wide is not None:
            rgb, single = _to8(wide), None
        elif im.mode in _GRAY_MODES:
            band = im.getchannel(0) if im.mode in ("LA", "La") else im
            single = _to8(np.asarray(band.convert("L") if band.mode == "1" else band))
            rgb = None
        else:
            rgb, single = np.asarray(im.convert("RGB")), None
    if gray is None:
        out = single if single is not None else rgb
    elif gray:
        out = single if single is not None else _gray_of(rgb)
    else:
        out = rgb if rgb is not None else np.repeat(single[..., None], 3, axis=2)
    return _orient(out, orientation)


def decode_image(data: bytes, gray: bool | None = False, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode a payload as the loader does: RGB (H x W x 3 uint8), or H x W when ``gray``.

    ``gray=None`` keeps a single-channel source single-channel (H x W) and gives colour as RGB.
    Raises :class:`ImageDecodeError` (no location: see :func:`read_image`) when the loader could not
    decode it either, or when it has more than ``max_pixels`` pixels (None: no limit).
    """
    try:
        return _decode(bytes(data), gray, max_pixels)
    except ImageDecodeError:
        raise
    except Exception as exc:  # every decoder failure becomes the one documented error
        raise ImageDecodeError(f"image does not decode: {exc}") from exc


def decode_problem(data: bytes, max_pixels: int | None = MAX_PIXELS) -> str | None:
    """Why the loader cannot decode ``data`` (or refuses it: over ``max_pixels``), or ``None`` when it can
    (a full decode, pixels dropped)."""
    try:
        _decode(bytes(data), None, max_pixels)
    except Exception as exc:  # a finding, not a crash
        return f"image does not decode: {exc}"
    return None


def decodable(data: bytes, max_pixels: int | None = MAX_PIXELS) -> bool:
    """Whether the loader decodes ``data``: the verdict ``verify`` reports for every image record."""
    return decode_problem(data, max_pixels) is None


def read_image(ds: object, key: int, gray: bool | None = False,
               max_pixels: int | None = MAX_PIXELS) -> tuple[object, np.ndarray]:
    """Read record ``key`` of a :class:`~faceocc.recordio.RecordDataset` and decode its image;
    an undecodable image raises :class:`ImageDecodeError` naming the file, the key and the offset."""
    header, data = ds.read(key)
    try:
        return header, decode_image(data, gray, max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(str(exc), ds.rec_path, key, ds.offset_of(key)) from exc


def pack_image(header: IRHeader, image: np.ndarray, fmt: str = ".jpg", quality: int = 95) -> bytes:
    """Encode an RGB (H x W x 3) or grayscale (H x W) uint8 image and pack it behind ``header``."""
    from PIL import Image

    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buf = io.BytesIO()
    fmt = fmt.lower()
    if fmt in (".jpg", ".jpeg"):
        Image.fromarray(array).save(buf, format="JPEG", quality=int(quality))
    elif fmt == ".png":
        Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    else:
        raise ValueError(f"unsupported image format {fmt!r}; use '.jpg' or '.png'")
    return pack_header(header, buf.getvalue())


def unpack_image(payload: bytes) -> tuple[IRHeader, np.ndarray]:
    """Split a packed image record into its header and the decoded image (RGB, or H x W if gray), decoded
    as the loader decodes it (EXIF orientation applied, 16 bits scaled)."""
    header, data = unpack_header(payload)
    return header, decode_image(data, gray=None)
