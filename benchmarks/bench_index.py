"""How long opening an MS1M-RetinaFace-sized dataset takes (5.8M records): index parsing, layout
detection, the image-only index for DALI, and the identity ranges.

    python -m benchmarks.bench_index --records 5800000 --identities 93431
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from faceocc.dali_pipes.image_index import image_index_path

from benchmarks.report import write_result
from faceocc.recordio import MAGIC, IRHeader, RecordDataset, encode_record, pack_header


def make_dataset(folder: Path, n: int, classes: int) -> None:
    """An InsightFace-layout dataset with ``n`` tiny image records, built with NumPy in seconds."""
    rec_dtype = np.dtype([("magic", "<u4"), ("lrec", "<u4"), ("flag", "<u4"), ("label", "<f4"),
                          ("id", "<u8"), ("id2", "<u8"), ("jpeg", "<u4")])
    labels = np.sort(np.random.default_rng(0).integers(0, classes, n))
    labels[:classes] = np.arange(classes)
    labels.sort()
    images = np.zeros(n, rec_dtype)
    images["magic"], images["lrec"] = MAGIC, 28
    images["label"], images["id"] = labels, np.arange(1, n + 1)
    images["jpeg"] = int.from_bytes(b"\xff\xd8\xff\xd9", "little")
    head = encode_record(pack_header(IRHeader(2, np.array([n + 1, n + 1 + classes], np.float32), 0, 0),
                                     b""))
    starts = np.searchsorted(labels, np.arange(classes)) + 1
    ends = np.append(starts[1:], n + 1)
    ids = b"".join(encode_record(pack_header(IRHeader(2, np.array([a, b], np.float32), n + 1 + c, 0),
                                             b"")) for c, (a, b) in enumerate(zip(starts, ends)))
    with open(folder / "train.rec", "wb") as f:
        f.write(head)
        f.write(images.tobytes())
        f.write(ids)
    offsets = np.concatenate([[0], len(head) + 36 * np.arange(n),
                              len(head) + 36 * n + 40 * np.arange(classes)])
    keys = np.arange(offsets.size)
    with open(folder / "train.idx", "w") as f:
        f.write("".join(f"{k}\t{o}\n" for k, o in zip(keys.tolist(), offsets.tolist())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=5_800_000)
    ap.add_argument("--identities", type=int, default=93_431)
    ap.add_argument("--out", default=None, help="result JSON (default benchmarks/results/index.json)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["FACEOCC_CACHE"] = str(folder / "cache")
        t = time.perf_counter()
        make_dataset(folder, args.records, args.identities)
        build = time.perf_counter() - t
        figures = {}
        t = time.perf_counter()
        ds = RecordDataset(folder)
        figures["open_s"] = time.perf_counter() - t
        assert len(ds) == args.records and ds.num_classes == args.identities
        t = time.perf_counter()
        image_index_path(ds)
        figures["image_index_first_s"] = time.perf_counter() - t
        t = time.perf_counter()
        image_index_path(ds)
        figures["image_index_cached_s"] = time.perf_counter() - t
        t = time.perf_counter()
        ranges = ds.identity_ranges
        figures["identity_ranges_s"] = time.perf_counter() - t
        assert ranges.shape == (args.identities, 2)
        keys = ds.image_keys[np.random.default_rng(1).integers(0, len(ds), 100_000)]
        t = time.perf_counter()
        for key in keys.tolist():
            ds.read(key)
        figures["random_reads_per_s"] = keys.size / (time.perf_counter() - t)
        ds.close()
    settings = {"records": args.records, "identities": args.identities, "dataset_build_s": build,
                "idx_bytes_note": "synthetic InsightFace layout, 36-byte image records"}
    path = write_result("index", settings, figures, args.out)
    for k, v in figures.items():
        print(f"{k:24s} {v:,.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
