"""``faceocc render``: every face of train.rec -> mask_out.rec (masked face, JPEG q95) and mask.rec
(binary mask, PNG), key-aligned with train.rec; resumable, shardable, merged in key order.

Work is cut into chunks of consecutive image keys. Each chunk is a pure function of (seed, chunk
index, settings), written atomically to ``DIR/.faceocc-render/`` and marked done; a killed job run
again skips the finished chunks, so the merged files are byte-identical to an uninterrupted run.
Shard ``i`` of ``n`` renders the chunks ``c`` with ``c % n == i``; ``merge`` joins them into a new
generation and installs it as a whole (``render.mask_store``): a job killed during the merge, the
installation or the clean-up is finished by running it again. Every image record of the set carries
the render's identity in ``id2`` (``dali_pipes.mask_records``).
"""

from __future__ import annotations

import errno
import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from faceocc.ops.options import Device
from tqdm import tqdm

from faceocc.datasets.mask_alignment import identity_id2, render_digest, train_fingerprint
from faceocc.datasets.mask_sets import (
    RENDER_MANIFEST,
    current_generation,
    discard_stale,
    fixed_link,
    hold_folder,
    install,
    new_generation,
    render_manifest,
    set_files,
    writable_store,
)
from faceocc.recordio import IRHeader, RecordDataset, RecordWriter
from faceocc.recordio.files import read_small_text, real_dir, remove, write_atomic
from faceocc.recordio.images import MAX_PIXELS, ImageDecodeError, decode_image

from .landmarks import LandmarkSource
from .renderer import MaskRenderer

WORK = ".faceocc-render"
OUTPUTS = ("mask_out", "mask")
FORMAT_VERSION = 2          # 2: image records carry the render identity in id2


def _encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(image).save(buf, "JPEG", quality=95)
    else:
        Image.fromarray(image).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _whole(name: str, value: object, lo: int) -> int:
    """``value`` as an int >= ``lo`` (not a bool, float or string), else a one-line ValueError naming it."""
    from numbers import Integral

    if isinstance(value, bool) or not isinstance(value, Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(value)


def _face(payload: bytes, size: tuple[int, int], max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    from PIL import Image

    img = decode_image(payload, max_pixels=max_pixels)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != size:
        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    return img


class RenderJob:
    """One dataset's render: settings, chunk plan, and the work folder.

    Faces are rendered at the dataset's face size (:meth:`_face_size`); an image over ``max_pixels``
    pixels is refused by key before it is decoded.
    """

    def __init__(self, data_dir: str | os.PathLike, landmarks: LandmarkSource = "template",
                 textures: str | os.PathLike | None = None, device: Device = "cpu", seed: int = 0,
                 chunk_size: int = 4096, batch_size: int = 256, workers: int | None = None,
                 landmark_model: str | None = None, device_id: int | None = None,
                 max_pixels: int | None = MAX_PIXELS) -> None:
        self.seed, self.chunk_size = _whole("seed", seed, 0), _whole("chunk_size", chunk_size, 1)
        self.batch_size = _whole("batch_size", batch_size, 1)
        self.workers = min(16, os.cpu_count() or 1) if workers is None else _whole("workers", workers, 1)
        self.max_pixels = None if max_pixels is None else _whole("max_pixels", max_pixels, 1)
        self.dir = Path(data_dir)
        self.train = RecordDataset(self.dir)
        if len(self.train) == 0:
            raise ValueError(f"{self.dir} holds no image records")
        size = self._face_size()
        self.renderer = MaskRenderer(size, landmarks, textures, device, landmark_model, device_id)
        self.work = self.dir / WORK
        self.keys = self.train.image_keys
        self.chunks = (len(self.keys) + self.chunk_size - 1) // self.chunk_size
        self._set_manifest({"version": FORMAT_VERSION, "seed": self.seed, "chunk_size": self.chunk_size,
                            "landmarks": landmarks, "textures": self.renderer.texture_names,
                            "images": int(len(self.keys)), "size": list(size),
                            "train": train_fingerprint(self.train)})
        self._locks: list = []

    def _set_manifest(self, manifest: dict) -> None:
        """The render's settings, and the identity (digest, id2) every record of its set carries."""
        self.manifest = manifest
        self.digest = render_digest(manifest)
        self.id2 = identity_id2(manifest["train"], self.digest)

    @classmethod
    def resume(cls, data_dir: str | os.PathLike) -> RenderJob:
        """The job whose partial render lies in ``DIR/.faceocc-render`` (settings from its manifest)."""
        manifest = Path(data_dir) / WORK / "manifest.json"
        if manifest.parent.is_symlink():
            real_dir(manifest.parent, create=False)          # refused: chunks are never read through a link
        text = read_small_text(manifest)
        if text is None:
            if current_generation(data_dir) is not None:
                raise FileExistsError(f"no render in progress in {data_dir}: its masks are already merged")
            raise FileNotFoundError(f"no partial render in {manifest.parent}; run `faceocc render` first")
        try:
            m = json.loads(text)
        except ValueError:
            m = None
        if not isinstance(m, dict) or "seed" not in m or "chunk_size" not in m:
            raise ValueError(f"{manifest} is not a render manifest; start over with faceocc render --overwrite")
        # merging renders nothing: the template source stands in for the render's own landmark source
        # (a dlib extra or a model file need not be there); its settings come from the manifest below
        job = cls(data_dir, "template", None, "cpu", m["seed"], m["chunk_size"])
        if m.get("train") != job.manifest["train"]:
            raise RuntimeError(f"{job.train.rec_path} changed since its chunks were rendered; render again "
                               "with --overwrite")
        job._set_manifest(m)
        return job

    def _face_size(self) -> tuple[int, int]:
        """The size masks are rendered at, as the loader's ``out_size`` is the dataset's face size: the
        height and width ``property`` states, else the most common size of 64 images spread over the
        dataset (never the first image's alone: one odd record must not size every face)."""
        text = read_small_text(self.train.rec_path.parent / "property", 4096) or ""
        fields = [f.strip() for f in text.split(",")]
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            h, w = int(fields[1]), int(fields[2])
            if h >= 1 and w >= 1 and (self.max_pixels is None or h * w <= self.max_pixels):
                return h, w
        keys = self.train.image_keys
        sizes: Counter[tuple[int, int]] = Counter()
        for key in keys[np.linspace(0, keys.size - 1, min(64, keys.size)).astype(int)].tolist():
            sizes[self._decode(key, self.train.read(key)[1], None).shape[:2]] += 1
        return max(sizes, key=sizes.__getitem__)

    def _decode(self, key: int, payload: bytes, size: tuple[int, int] | None) -> np.ndarray:
        """A face of train.rec, decoded (and resized to ``size``); a bad or oversized image names its key."""
        try:
            return decode_image(payload, max_pixels=self.max_pixels) if size is None else \
                _face(payload, size, self.max_pixels)
        except Exception as exc:
            raise ImageDecodeError(f"image does not decode ({type(exc).__name__}: {exc}); fix or drop this record, "
                                   "then render again", self.train.rec_path, key, self.train.offset_of(key)) from exc

    @contextmanager
    def _io_errors(self) -> Iterator[None]:
        """Disk full and unwritable folders end with a message saying what to do, not a traceback."""
        try:
            yield
        except OSError as exc:
            where = exc.filename or self.dir
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RuntimeError(f"no space left on the device of {self.dir} (writing {where}); partial "
                                   f"files were removed and finished chunks kept in {self.work}: free space, "
                                   "then run the same command again") from exc
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise RuntimeError(f"cannot write in {self.dir} ({exc.strerror}: {where}); faceocc render "
                                   "writes its masks beside train.rec: render a writable copy of the "
                                   "dataset") from exc
            raise

    def lock(self, shard_id: int = 0, num_shards: int = 1) -> None:
        """Hold the folder for this process: a second render refuses at start (shards of one sharded
        render share the folder, each shard exclusively; merging needs the folder alone)."""
        if self._locks:
            return
        with self._io_errors():
            self._locks = hold_folder(self.dir, shard_id, num_shards)

    def unlock(self) -> None:
        """Let other renders at the folder again."""
        for held in self._locks:
            held.release()
        self._locks = []

    def close(self) -> None:
        """Release the folder and train.rec."""
        self.unlock()
        self.train.close()

    def __enter__(self) -> RenderJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def present(self) -> bool:
        """Whether the dataset has a mask set (any of its files readable)."""
        return any(f.exists() for f in set_files(self.dir))

    def installed(self) -> bool:
        """Whether the dataset's mask set is this very render (same settings, seed and train.rec)."""
        if current_generation(self.dir) is None or not all(f.is_symlink() and os.readlink(f) == fixed_link(f.name)
                                                           for f in set_files(self.dir)):
            return False
        manifest = render_manifest(self.dir)
        return manifest is not None and manifest.get("digest") == self.digest

    def finals(self) -> dict[str, Path]:
        return {name: self.dir / f"{name}.rec" for name in OUTPUTS}

    def chunk_path(self, name: str, c: int) -> Path:
        return self.work / f"{name}-{c:06d}.rec"

    def done_path(self, c: int) -> Path:
        return self.work / f"chunk-{c:06d}.done"

    def prepare(self, overwrite: bool) -> bool:
        """Refuse to touch existing outputs without ``overwrite``; start or resume the work folder.
        Returns True when this render is already installed (only its clean-up was interrupted)."""
        manifest = self.work / "manifest.json"
        if self.work.exists() or self.work.is_symlink():
            real_dir(self.work, create=False)              # never a link: chunks are written there
        text = read_small_text(manifest)
        try:
            started = json.loads(text) if text else None
        except ValueError:
            started = {"unreadable": True}
        if started == self.manifest and self.installed():
            return True
        if self.present() and not overwrite:
            discard_stale(self.dir)
            raise FileExistsError(f"{', '.join(str(p) for p in self.finals().values())} exist; back them up, "
                                  "then pass --overwrite to render again")
        if started is not None and started != self.manifest:
            if not overwrite:
                raise FileExistsError(f"{self.work} holds a partial render with other settings; "
                                      "pass --overwrite to start over")
            remove(self.work)
        real_dir(self.work)
        if started is None:
            write_atomic(manifest, json.dumps(self.manifest, indent=1))
        return False

    def pending(self, shard_id: int, num_shards: int) -> list[int]:
        return [c for c in range(self.chunks) if c % num_shards == shard_id and not self.done_path(c).exists()]

    def run(self, shard_id: int = 0, num_shards: int = 1, overwrite: bool = False, progress: bool = True) -> int:
        """Render this shard's unfinished chunks; returns how many images were rendered now."""
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard id {shard_id} out of range for {num_shards} shard(s)")
        self.lock(shard_id, num_shards)
        with self._io_errors():
            if self.prepare(overwrite):
                return 0
            todo = self.pending(shard_id, num_shards)
            total = sum(len(self.chunk_keys(c)) for c in todo)
            with ThreadPoolExecutor(self.workers) as pool, \
                    tqdm(total=total, unit="img", desc=f"render {shard_id}/{num_shards}", disable=not progress,
                         smoothing=0.1) as bar:
                for c in todo:
                    self._render_chunk(c, pool, bar)
        return total

    def chunk_keys(self, c: int) -> np.ndarray:
        return self.keys[c * self.chunk_size:(c + 1) * self.chunk_size]

    def _batches(self, keys: np.ndarray, pool: ThreadPoolExecutor) -> Iterator[tuple[np.ndarray, list]]:
        """Decoded faces of consecutive batches, the next one decoding while the current renders."""
        size = self.renderer.size

        def load(batch: np.ndarray) -> tuple[np.ndarray, list]:
            records = [(int(k), *self.train.read(int(k))) for k in batch]
            faces = list(pool.map(lambda r: self._decode(r[0], r[2], size), records))
            return np.stack(faces), [h for _, h, _ in records]

        starts = range(0, len(keys), self.batch_size)
        ahead: Future | None = None
        # a thread of its own for the look-ahead: load() itself waits on the shared pool
        with ThreadPoolExecutor(1) as prefetch:
            for i, s in enumerate(starts):
                current = ahead.result() if ahead else load(keys[s:s + self.batch_size])
                nxt = s + self.batch_size
                ahead = prefetch.submit(load, keys[nxt:nxt + self.batch_size]) if i + 1 < len(starts) else None
                yield current

    def _render_chunk(self, c: int, pool: ThreadPoolExecutor, bar: tqdm) -> None:
        keys = self.chunk_keys(c)
        params = self.renderer.sample(len(keys), np.random.default_rng([self.seed, c]))
        encoded: list[tuple[Future, Future]] = []
        headers: list[IRHeader] = []
        done = 0
        failed_before = getattr(self.renderer.landmarks, "fallbacks", 0)
        for faces, batch_headers in self._batches(keys, pool):
            out, mask = self.renderer.render(faces, params[done:done + len(faces)])
            if not isinstance(out, np.ndarray):
                out, mask = out.get(), mask.get()
            encoded += [(pool.submit(_encode, out[i], "JPEG"), pool.submit(_encode, mask[i], "PNG"))
                        for i in range(len(faces))]
            headers += batch_headers
            done += len(faces)
            bar.update(len(faces))
        writers = {name: RecordWriter(self.chunk_path(name, c)) for name in OUTPUTS}
        try:
            for key, header, (jpeg, png) in zip(keys.tolist(), headers, encoded, strict=True):
                header = header._replace(id2=self.id2)              # the render's identity
                writers["mask_out"].write(key, header, jpeg.result())
                writers["mask"].write(key, header, png.result())
            for w in writers.values():
                w.close()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        fallbacks = getattr(self.renderer.landmarks, "fallbacks", 0) - failed_before
        write_atomic(self.done_path(c), json.dumps({"images": len(keys), "fallbacks": fallbacks}))

    def fallbacks(self) -> int:
        """Faces of the finished chunks whose landmarks fell back to the template (the ``dlib`` source
        when its predictor failed on a face); read before :meth:`merge`, which removes the records."""
        total = 0
        for c in range(self.chunks):
            text = read_small_text(self.done_path(c), 4096)
            try:
                total += int(json.loads(text).get("fallbacks", 0)) if text and text.strip() else 0
            except (ValueError, TypeError, AttributeError):
                continue
        return total

    def merge(self, overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
        """Join all chunks, in key order, with train.rec's header and identity records, into a new
        generation; install it in place of the old set (as a whole); then remove the work folder."""
        self.lock()
        with self._io_errors():
            if not self.installed():
                missing = [c for c in range(self.chunks) if not self.done_path(c).exists()]
                if missing:
                    raise RuntimeError(f"{len(missing)} of {self.chunks} chunks are not rendered yet (first: "
                                       f"chunk {missing[0]}); run the remaining shards, then merge")
                if self.present() and not overwrite:
                    raise FileExistsError(f"{', '.join(str(p) for p in self.finals().values())} exist; pass "
                                          "--overwrite to replace them")
                discard_stale(self.dir)
                generation = new_generation(self.dir)
                try:
                    self._write_set(generation, progress)
                except BaseException:
                    remove(generation)
                    raise
                install(self.dir, generation)
            if self.work.exists() or self.work.is_symlink():
                real_dir(self.work, create=False)
                os.replace(self.work, writable_store(self.dir) / f"g-trash-{uuid.uuid4().hex[:8]}")
            discard_stale(self.dir)
        return self.finals()

    def _write_set(self, generation: Path, progress: bool) -> None:
        image_keys = set(self.keys.tolist())
        for name in OUTPUTS:
            parts = [RecordDataset(self.chunk_path(name, c)) for c in range(self.chunks)]
            try:
                with RecordWriter(generation / f"{name}.rec") as w:
                    for key in tqdm(self.train.keys.tolist(), desc=f"merge {name}", unit="rec",
                                    disable=not progress):
                        if key in image_keys:
                            c = int(np.searchsorted(self.keys, key)) // self.chunk_size
                            w.write_raw(key, parts[c].read_raw(key))
                        else:
                            w.write_raw(key, self.train.read_raw(key))
            finally:
                for p in parts:
                    p.close()
        identity = {**self.manifest, "digest": self.digest, "id2": f"{self.id2:016x}"}
        write_atomic(generation / RENDER_MANIFEST, json.dumps(identity, indent=1, sort_keys=True))
