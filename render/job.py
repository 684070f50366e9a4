"""``faceocc render``: every face of train.rec -> mask_out.rec (masked face, JPEG q95) and mask.rec
(binary mask, PNG), key-aligned with train.rec; resumable, shardable, merged in key order.

Work is cut into chunks of consecutive image keys. Each chunk is a pure function of (seed, chunk
index, settings), written atomically to ``DIR/.faceocc-render/`` and marked done; a killed job run
again skips the finished chunks, so the merged files are byte-identical to an uninterrupted run.
Shard ``i`` of ``n`` renders the chunks ``c`` with ``c % n == i``; ``merge`` joins them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dali_pipes.decoding import decode_image
from dali_pipes.recordio import IRHeader, RecordDataset, RecordWriter

from .renderer import MaskRenderer

WORK = ".faceocc-render"
OUTPUTS = ("mask_out", "mask")
FORMAT_VERSION = 1


def _encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(image).save(buf, "JPEG", quality=95)
    else:
        Image.fromarray(image).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _face(payload: bytes, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = decode_image(payload)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != size:
        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    return img


class RenderJob:
    """One dataset's render: settings, chunk plan, and the work folder."""

    def __init__(self, data_dir: str | os.PathLike, landmarks: str = "template",
                 textures: str | os.PathLike | None = None, device: str = "cpu", seed: int = 0,
                 chunk_size: int = 4096, batch_size: int = 256, workers: int | None = None,
                 landmark_model: str | None = None) -> None:
        self.dir = Path(data_dir)
        self.train = RecordDataset(self.dir)
        if len(self.train) == 0:
            raise ValueError(f"{self.dir} holds no image records")
        size = self._image_size()
        self.renderer = MaskRenderer(size, landmarks, textures, device, landmark_model)
        self.seed, self.chunk_size, self.batch_size = int(seed), int(chunk_size), int(batch_size)
        self.workers = workers or min(16, os.cpu_count() or 1)
        self.work = self.dir / WORK
        self.keys = self.train.image_keys
        self.chunks = (len(self.keys) + self.chunk_size - 1) // self.chunk_size
        self.manifest = {"version": FORMAT_VERSION, "seed": self.seed, "chunk_size": self.chunk_size,
                         "landmarks": landmarks, "textures": self.renderer.texture_names,
                         "images": int(len(self.keys)), "size": list(size)}

    @classmethod
    def resume(cls, data_dir: str | os.PathLike) -> RenderJob:
        """The job whose partial render lies in ``DIR/.faceocc-render`` (settings from its manifest)."""
        manifest = Path(data_dir) / WORK / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"no partial render in {manifest.parent}; run `faceocc render` first")
        m = json.loads(manifest.read_text())
        return cls(data_dir, m["landmarks"], None, "cpu", m["seed"], m["chunk_size"])

    def _image_size(self) -> tuple[int, int]:
        img = decode_image(self.train.read(int(self.train.image_keys[0]))[1])
        return int(img.shape[0]), int(img.shape[1])

    def finals(self) -> dict[str, Path]:
        return {name: self.dir / f"{name}.rec" for name in OUTPUTS}

    def chunk_path(self, name: str, c: int) -> Path:
        return self.work / f"{name}-{c:06d}.rec"

    def done_path(self, c: int) -> Path:
        return self.work / f"chunk-{c:06d}.done"

    def prepare(self, overwrite: bool) -> None:
        """Refuse to touch existing outputs without ``overwrite``; start or resume the work folder."""
        existing = [p for p in self.finals().values() if p.exists() or p.with_suffix(".idx").exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(map(str, existing))} exist; back them up, then pass "
                                  "--overwrite to render again")
        manifest = self.work / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text()) != self.manifest:
            if not overwrite:
                raise FileExistsError(f"{self.work} holds a partial render with other settings; "
                                      "pass --overwrite to start over")
            shutil.rmtree(self.work)
        self.work.mkdir(exist_ok=True)
        if not manifest.exists():
            tmp = manifest.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.manifest, indent=1))
            os.replace(tmp, manifest)

    def pending(self, shard_id: int, num_shards: int) -> list[int]:
        return [c for c in range(self.chunks) if c % num_shards == shard_id and not self.done_path(c).exists()]

    def run(self, shard_id: int = 0, num_shards: int = 1, overwrite: bool = False, progress: bool = True) -> int:
        """Render this shard's unfinished chunks; returns how many images were rendered now."""
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard id {shard_id} out of range for {num_shards} shard(s)")
        self.prepare(overwrite)
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
            records = [self.train.read(int(k)) for k in batch]
            faces = list(pool.map(lambda r: _face(r[1], size), records))
            return np.stack(faces), [h for h, _ in records]

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
            for key, header, (jpeg, png) in zip(keys.tolist(), headers, encoded):
                writers["mask_out"].write(key, header, jpeg.result())
                writers["mask"].write(key, header, png.result())
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        for w in writers.values():
            w.close()
        self.done_path(c).write_text("")

    def merge(self, overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
        """Join all chunks, in key order, with train.rec's header and identity records, into the
        final files; then remove the work folder."""
        missing = [c for c in range(self.chunks) if not self.done_path(c).exists()]
        if missing:
            raise RuntimeError(f"{len(missing)} of {self.chunks} chunks are not rendered yet (first: chunk "
                               f"{missing[0]}); run the remaining shards, then merge")
        finals = self.finals()
        existing = [p for p in finals.values() if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(map(str, existing))} exist; pass --overwrite to replace them")
        image_keys = set(self.keys.tolist())
        for name, final in finals.items():
            parts = [RecordDataset(self.chunk_path(name, c)) for c in range(self.chunks)]
            with RecordWriter(final) as w:
                for key in tqdm(self.train.keys.tolist(), desc=f"merge {name}", unit="rec",
                                disable=not progress):
                    if key in image_keys:
                        c = int(np.searchsorted(self.keys, key)) // self.chunk_size
                        w.write_raw(key, parts[c].read_raw(key))
                    else:
                        w.write_raw(key, self.train.read_raw(key))
            for p in parts:
                p.close()
        shutil.rmtree(self.work)
        return finals
