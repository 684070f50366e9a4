"""One decoding semantics: the host decoder (dali_pipes.decoding) gives DALI's pixels and DALI's verdict."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from faceocc.recordio import IRHeader, RecordDataset, RecordWriter
from faceocc.recordio.images import ImageDecodeError, decodable, decode_image, read_image

pytest.importorskip("nvidia.dali")
Image = pytest.importorskip("PIL.Image")


def dali_decode(payload: bytes, gray: bool = False) -> np.ndarray | None:
    """DALI's CPU decoders.image (the loader's decoder) on one payload; None when DALI refuses it."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        data = fn.external_source(source=lambda: [np.frombuffer(payload, np.uint8)], batch=True,
                                  dtype=types.UINT8)
        return fn.decoders.image(data, device="cpu", output_type=types.GRAY if gray else types.RGB)

    p = pipe()
    p.build()
    try:
        (out,) = p.run()
    except RuntimeError:
        return None
    return np.array(out.at(0))


def _save(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png(array: np.ndarray) -> bytes:
    """A PNG written by hand, so that 16-bit colour (which PIL cannot write) is possible."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    depth = 16 if array.dtype == np.uint16 else 8
    raw = b"".join(b"\x00" + array[y].astype(">u2" if depth == 16 else np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _face() -> np.ndarray:
    yy, xx = np.mgrid[:40, :60]
    face = np.dstack([xx * 4, yy * 6, (xx + yy) * 2]).astype(np.uint8)
    face[:10, :20] = (255, 0, 0)                                  # a marker that shows the orientation
    return face


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def _payloads() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    face = _face()
    img = Image.fromarray(face)
    jpeg = _save(img, "JPEG", quality=95)
    png = _save(img, "PNG")
    cases = {f"jpeg-exif-{o}": _save(img, "JPEG", quality=95, exif=_exif(o)) for o in range(1, 9)}
    cases.update({
        "png-exif-6": _save(img, "PNG", exif=_exif(6)),
        "webp-exif-8": _save(img, "WEBP", lossless=True, exif=_exif(8)),
        "png-gray16": _png((np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)),
        "png-rgb16": _png(rng.integers(0, 65536, (40, 60, 3)).astype(np.uint16)),
        "png-rgba16": _png(rng.integers(0, 65536, (40, 60, 4)).astype(np.uint16)),
        "png-gray": _save(img.convert("L"), "PNG"),
        "png-rgba": _save(Image.fromarray(np.dstack([face, np.full((40, 60), 90, np.uint8)])), "PNG"),
        "png-la": _save(img.convert("LA"), "PNG"),
        "png-palette": _save(img.convert("P"), "PNG"),
        "png-1bit": _save(img.convert("1"), "PNG"),
        "jpeg-gray": _save(img.convert("L"), "JPEG"),
        "jpeg-cmyk": _save(img.convert("CMYK"), "JPEG"),
        "jpeg-progressive": _save(img, "JPEG", progressive=True),
        "bmp": _save(img, "BMP"),
        "tiff": _save(img, "TIFF"),
        "webp": _save(img, "WEBP", lossless=True),
        "ppm": _save(img, "PPM"),
        "gif": _save(img, "GIF"),
        "tga": _save(img, "TGA"),
        "ico": _save(img, "ICO"),
        "jpeg-cut-half": jpeg[: len(jpeg) // 2],
        "png-no-iend": png[:-12],
        "png-cut-iend": png[:-3],
        "png-bad-idat-crc": png[:-16] + bytes([png[-16] ^ 0xFF]) + png[-15:],
        "garbage": bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
        "empty": b"",
    })
    return cases


PAYLOADS = _payloads()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_verdict_and_pixels_match_dali(name):
    payload = PAYLOADS[name]
    for gray in (False, True):
        want = dali_decode(payload, gray)
        assert decodable(payload) == (want is not None), f"{name}: DALI and decodable() disagree"
        if want is None:
            with pytest.raises(ImageDecodeError):
                decode_image(payload, gray)
            continue
        got = decode_image(payload, gray)
        want = want[..., 0] if gray else want
        assert got.shape == want.shape, name
        diff = np.abs(got.astype(int) - want)
        if gray and not name.startswith(("png-gray", "jpeg-gray", "png-la", "png-1bit")):
            # colour -> gray: DALI's backends round differently (floor for PNG/JPEG, nearest for BMP)
            assert diff.max() <= 1, name
        else:
            assert diff.max() == 0, name


def test_exif_orientation_applied():
    upright = decode_image(PAYLOADS["jpeg-exif-1"])
    sideways = decode_image(PAYLOADS["jpeg-exif-6"])                # rotate 90 degrees clockwise to view
    assert sideways.shape == (60, 40, 3)
    assert np.array_equal(sideways, np.rot90(upright, -1))
    assert sideways[0, -1].tolist() == upright[0, 0].tolist()      # red marker moved to the top right


def test_sixteen_bit_gray_is_scaled_not_clipped():
    gray = decode_image(PAYLOADS["png-gray16"], gray=True)
    src = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.int64)
    assert np.array_equal(gray, np.round(src / 257).astype(np.uint8))
    assert gray.mean() < 200                                        # PIL's convert("RGB") made it white


def test_read_image_names_file_key_offset(tmp_path):
    rec = tmp_path / "train.rec"
    with RecordWriter(rec) as w:
        w.write(1, IRHeader(0, 0.0, 1, 0), PAYLOADS["jpeg-exif-1"])
        w.write(2, IRHeader(0, 0.0, 2, 0), PAYLOADS["gif"])
    with RecordDataset(rec) as ds:
        assert read_image(ds, 1)[1].shape == (40, 60, 3)
        with pytest.raises(ImageDecodeError) as err:
            read_image(ds, 2)
        assert err.value.key == 2 and err.value.offset == ds.offset_of(2) and err.value.path == str(rec)
        assert "GIF" in str(err.value) and "key 2" in str(err.value)


def test_damaged_payloads_get_dali_verdict():
    """Seeded truncations and byte changes of each loader format: decodable() says what DALI does."""
    rng = np.random.default_rng(7)
    img = Image.fromarray(_face())
    disagree = []
    for fmt, kw in [("JPEG", {"quality": 90}), ("PNG", {}), ("BMP", {}), ("WEBP", {}), ("TIFF", {})]:
        good = _save(img, fmt, **kw)
        cases = [good[:cut] for cut in np.linspace(1, len(good) - 1, 8).astype(int)]
        for _ in range(12):
            bad = bytearray(good)
            for at in rng.integers(0, len(good), int(rng.integers(1, 4))):
                bad[int(at)] = int(rng.integers(0, 256))
            cases.append(bytes(bad))
        for payload in cases:
            if decodable(payload) != (dali_decode(payload) is not None):
                disagree.append((fmt, len(payload)))
    assert not disagree


def test_verify_flags_what_the_loader_cannot_decode(tmp_path):
    from faceocc.datasets.info import verify

    names = ["jpeg-exif-6", "gif", "png-gray16", "png-no-iend", "tga", "png-rgb16", "png-bad-idat-crc"]
    with RecordWriter(tmp_path / "train.rec") as w:
        for key, name in enumerate(names):
            w.write(key, IRHeader(0, 0.0, key, 0), PAYLOADS[name])
    report = verify(tmp_path, progress=False, workers=1)
    flagged = {key for _, key, message in report.problems if "does not decode" in message}
    assert flagged == {key for key, name in enumerate(names) if dali_decode(PAYLOADS[name]) is None} == {1, 3, 4, 6}


def test_jpeg_segments_get_dali_verdict():
    """DALI's JPEG parser refuses stray bytes between marker segments, which PIL skips with a warning
    (found by benchmarks/fuzz_records.py: case 32275 verified clean and then stopped the loader)."""
    good = _save(Image.fromarray(_face()), "JPEG", quality=90)
    second = good.index(b"\xff\xdb", 4)                             # the second quantization table
    stray = good[:second] + b"\x3b\x00\x11" + good[second:]
    assert dali_decode(stray) is None and not decodable(stray)
    rng = np.random.default_rng(11)
    disagree = []
    scan = good.index(b"\xff\xda")
    for _ in range(60):                                             # changes in the headers only
        bad = bytearray(good)
        for at in rng.integers(2, scan + 14, int(rng.integers(1, 4))):
            bad[int(at)] = int(rng.integers(0, 256))
        if decodable(bytes(bad)) != (dali_decode(bytes(bad)) is not None):
            disagree.append(bytes(bad).hex())
    assert not disagree
