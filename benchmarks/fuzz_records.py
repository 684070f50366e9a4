"""Long fuzz run: mutated datasets through open, read, info, verify and (on a sample) one loader epoch.

Only :class:`~dali_pipes.recordio.RecordIOError` (with its subclass
:class:`~dali_pipes.decoding.ImageDecodeError`, the documented decode error) may escape ``open``,
``read`` and ``info``; ``verify`` reports and never raises; the loader may refuse at construction
or fail on an image with those errors. Everything else is an escape, every case over the time limit a
hang. A dataset that ``verify`` passes must go through the loader's epoch: a failure there is a miss.

    python -m benchmarks.fuzz_records --cases 100000 --loader-every 50

Each case is a pure function of ``(--seed, case number)``; ``--replay N`` reruns case N and prints its
traceback. Results go to ``benchmarks/results/fuzz-records.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.report import write_result
from faceocc.datasets.info import describe, verify
from faceocc.recordio import IRHeader, RecordDataset, RecordIOError, encode_record, pack_header
from faceocc.recordio.images import ImageDecodeError

SPECIAL_LABELS = [float("nan"), float("inf"), -float("inf"), 1e30, -1.0, 2.5, 3e9, 0.0]
SPECIAL_INTS = [0, 1, 2, 3, 7, 2**31, 2**32 - 1, 2**63, 2**64 - 1]


class Hang(Exception):
    """A case that ran past its time limit."""


def _encode(image: np.ndarray, fmt: str, **kw: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **kw)
    return buf.getvalue()


def _bad_payloads(rng: np.random.Generator) -> dict[str, bytes]:
    from PIL import Image

    face = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    jpeg, png = _encode(face, "JPEG"), _encode(face, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    return {"gif": _encode(face, "GIF"), "tga": _encode(face, "TGA"), "jpeg_half": jpeg[: len(jpeg) // 2],
            "png_no_iend": png[:-12], "empty": b"", "garbage": bytes(rng.integers(0, 256, 64, dtype=np.uint8)),
            "png16": _encode((face[..., 0].astype(np.uint16) * 257), "PNG"),
            "jpeg_exif": _encode(face[:, :12].copy(), "JPEG", exif=exif.tobytes()),
            "webp": _encode(face, "WEBP"), "bmp": _encode(face, "BMP")}


def seed_records(rng: np.random.Generator, layout: str) -> list[tuple[int, IRHeader, bytes]]:
    """A small valid dataset as ``(key, header, image bytes)``: insightface (header and identity
    records) or im2rec layout, JPEG and PNG images, 2 or 3 identities."""
    n_ids, per = int(rng.integers(2, 4)), int(rng.integers(1, 4))
    images = []
    for i in range(n_ids * per):
        face = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        images.append(_encode(face, "JPEG" if i % 3 else "PNG"))
    n = len(images)
    if layout == "im2rec":
        return [(k, IRHeader(0, float(k // per), k, 0), images[k]) for k in range(n)]
    recs = [(0, IRHeader(2, np.array([n + 1, n + 1 + n_ids], np.float32), 0, 0), b"")]
    recs += [(k, IRHeader(0, float((k - 1) // per), k, 0), images[k - 1]) for k in range(1, n + 1)]
    recs += [(n + 1 + c, IRHeader(2, np.array([1 + c * per, 1 + (c + 1) * per], np.float32), n + 1 + c, 0),
              b"") for c in range(n_ids)]
    return recs


def serialize(records: list[tuple[int, IRHeader, bytes]]) -> tuple[bytearray, list[tuple[int, int]], list[int]]:
    rec, index, ends = bytearray(), [], []
    for key, header, data in records:
        index.append((key, len(rec)))
        rec += encode_record(pack_header(header, data))
        ends.append(len(rec))
    return rec, index, ends


def mutate(rng: np.random.Generator, folder: Path, bad: dict[str, bytes]) -> list[str]:
    """Write one mutated dataset into ``folder``; returns the mutations applied, by name."""
    layout = "im2rec" if rng.random() < 0.2 else "insightface"
    records = seed_records(rng, layout)
    image_keys = [i for i, (_, _, d) in enumerate(records) if d]
    applied: list[str] = []
    with_masks = rng.random() < 0.3
    masks = {name: [(k, h, d) for k, h, d in records if d] for name in ("mask_out", "mask")} if with_masks else {}
    for _ in range(int(rng.integers(1, 4))):
        kind = str(rng.choice(["header_field", "payload", "rec_bytes", "rec_cut", "rec_cut_boundary", "idx_bytes",
                               "idx_drop_line", "idx_swap_offsets", "idx_dup_line", "lrec", "mask_records",
                               "property"]))
        applied.append(kind)
        i = int(rng.choice(image_keys)) if rng.random() < 0.8 else int(rng.integers(0, len(records)))
        key, header, data = records[i]
        if kind == "header_field":
            field = str(rng.choice(["flag", "label", "id", "id2"]))
            value = (SPECIAL_LABELS[int(rng.integers(len(SPECIAL_LABELS)))] if field == "label"
                     else SPECIAL_INTS[int(rng.integers(len(SPECIAL_INTS)))])
            if field == "flag" and value > 2**31:
                value = 2**32 - 1
            if field == "label" and np.ndim(header.label) > 0:
                label = np.array(header.label, np.float32)
                label[int(rng.integers(label.size))] = value
                value = label
            records[i] = (key, header._replace(**{field: value}), data)
            applied[-1] += f".{field}"
        elif kind == "payload":
            name = str(rng.choice(sorted(bad)))
            records[i] = (key, header, bad[name])
            applied[-1] += f".{name}"
        elif kind == "mask_records" and masks:
            name = str(rng.choice(["mask_out", "mask"]))
            m = masks[name]
            j = int(rng.integers(len(m)))
            how = str(rng.choice(["drop", "label", "payload", "swap"]))
            if how == "drop":
                m.pop(j)
            elif how == "label":
                m[j] = (m[j][0], m[j][1]._replace(label=m[j][1].label + 1), m[j][2])
            elif how == "payload":
                m[j] = (m[j][0], m[j][1], bad[str(rng.choice(sorted(bad)))])
            elif len(m) > 1:
                m[0], m[-1] = (m[0][0], m[-1][1], m[-1][2]), (m[-1][0], m[0][1], m[0][2])
            applied[-1] += f".{how}"
    rec, index, ends = serialize(records)
    for kind in applied:
        if kind == "rec_bytes":
            for pos in rng.integers(0, len(rec), int(rng.integers(1, 7))):
                rec[int(pos)] = int(rng.integers(0, 256))
        elif kind == "rec_cut":
            del rec[int(rng.integers(0, len(rec) + 1)):]
        elif kind == "rec_cut_boundary":
            keep = int(rng.integers(1, len(ends) + 1))
            del rec[ends[keep - 1]:]
            index = index[:keep]
        elif kind == "lrec" and index:
            at = index[int(rng.integers(len(index)))][1] + 4
            if at + 4 <= len(rec):
                rec[at:at + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        elif kind == "idx_drop_line" and index:
            index.pop(int(rng.integers(len(index))))
        elif kind == "idx_swap_offsets" and len(index) > 1:
            a, b = rng.choice(len(index), 2, replace=False)
            index[a], index[b] = (index[a][0], index[b][1]), (index[b][0], index[a][1])
        elif kind == "idx_dup_line" and index:
            index.insert(int(rng.integers(len(index) + 1)), index[int(rng.integers(len(index)))])
    idx = bytearray("".join(f"{k}\t{o}\n" for k, o in index).encode())
    if "idx_bytes" in applied and idx:
        for pos in rng.integers(0, len(idx), int(rng.integers(1, 4))):
            idx[int(pos)] = int(rng.integers(0, 256))
    for p in folder.iterdir():
        p.unlink()
    (folder / "train.rec").write_bytes(bytes(rec))
    (folder / "train.idx").write_bytes(bytes(idx))
    if "property" in applied:
        (folder / "property").write_bytes(bytes(rng.integers(0, 256, 12, dtype=np.uint8)))
    for name, m in masks.items():
        mrec, mindex, _ = serialize(m)
        (folder / f"{name}.rec").write_bytes(bytes(mrec))
        (folder / f"{name}.idx").write_text("".join(f"{k}\t{o}\n" for k, o in mindex))
    return [layout + ("+masks" if with_masks else "")] + applied


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang()


def run_case(folder: Path, loader: bool, refusals: Counter) -> list[tuple[str, str, str]]:
    """Every step on the dataset in ``folder``; returns the escapes ``(step, type, message)``."""
    escapes = []

    def step(name: str, fn, allowed: tuple = (RecordIOError,)) -> object:
        try:
            return fn()
        except Hang:
            raise
        except allowed:
            return None
        except Exception as exc:  # an escape: counted, never fatal to the run
            escapes.append((name, type(exc).__name__, str(exc)[:300]))
            return None

    def read_all() -> None:
        with RecordDataset(folder) as ds:
            _ = ds.identity_ranges, ds.num_classes
            for key in ds.keys.tolist():
                ds.read(key)

    step("open+read", read_all)
    step("info", lambda: describe(folder))
    report = step("verify", lambda: verify(folder, progress=False, workers=1), ())
    if loader:
        from faceocc import FaceOcclusionLoader

        def build() -> object:
            try:
                return FaceOcclusionLoader(folder, batch_size=1, device="cpu", out_size=(16, 16), num_threads=1,
                                           read_threads=1, prefetch=1)
            except ValueError as exc:  # a documented refusal at construction (e.g. no images): counted apart
                refusals[f"loader-build: {str(exc)[:60]}"] += 1
                return None

        def epoch() -> None:
            for _ in ld:
                pass

        before = len(escapes)
        allowed = (RecordIOError, ImageDecodeError) if report is None or not report.ok else ()
        ld = step("loader-build", build, allowed)
        if ld is not None:
            step("loader", epoch, allowed)
        if len(escapes) > before and report is not None and report.ok:
            escapes[-1] = ("loader-after-verify-ok",) + escapes[-1][1:]
    return escapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loader-every", type=int, default=50, help="one loader epoch every N cases")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--replay", type=int, default=None, help="rerun one case and print its escapes")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    work = Path(tempfile.mkdtemp(prefix="faceocc-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    folder = work / "d"
    folder.mkdir()
    bad = _bad_payloads(np.random.default_rng(12345))
    mutations: Counter[str] = Counter()
    escapes: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    examples: dict[str, dict] = {}
    hangs, loader_runs, done = [], 0, 0
    start = time.perf_counter()
    cases = [args.replay] if args.replay is not None else range(args.cases)
    try:
        for case in cases:
            rng = np.random.default_rng([args.seed, case])
            applied = mutate(rng, folder, bad)
            mutations.update(applied)
            loader = args.replay is not None or case % args.loader_every == 0
            loader_runs += loader
            faulthandler.dump_traceback_later(args.timeout * 5, exit=True)   # a hang alarm cannot break
            signal.setitimer(signal.ITIMER_REAL, args.timeout * (3 if loader else 1))
            try:
                found = run_case(folder, loader, refusals)
            except Hang:
                hangs.append({"case": case, "mutations": applied})
                found = []
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                faulthandler.cancel_dump_traceback_later()
            for stage, kind, message in found:
                tag = f"{stage}: {kind}"
                escapes[tag] += 1
                examples.setdefault(tag, {"case": case, "mutations": applied, "message": message})
                if args.replay is not None:
                    print(tag, message)
            done += 1
            if args.replay is None and (done % 10000 == 0 or done == args.cases):
                seconds = time.perf_counter() - start
                figures = {"cases": done, "mutations_tried": dict(sorted(mutations.items())),
                           "loader_epochs": loader_runs, "escapes_by_step_and_type": dict(sorted(escapes.items())),
                           "loader_build_refusals": dict(sorted(refusals.items())),
                           "escape_examples": examples, "hangs": len(hangs), "hang_cases": hangs[:20],
                           "seconds": round(seconds, 1), "cases_per_second": round(done / seconds, 1)}
                settings = {"seed": args.seed, "cases_asked": args.cases, "loader_every": args.loader_every,
                            "timeout_s": args.timeout, "processes": 1,
                            "allowed": ["RecordIOError", "ImageDecodeError (a RecordIOError)"]}
                path = write_result("fuzz-records", settings, figures, args.out)      # also a checkpoint
                print(f"{done} cases, {seconds:.0f} s, escapes {dict(escapes)}, hangs {len(hangs)} -> {path}",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
