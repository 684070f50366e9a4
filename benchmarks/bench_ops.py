"""Throughput of the occlusion operators alone (no decode): the NumPy twin on one CPU core, and the
CUDA kernels on the GPU when one is present (float32 and float16, at each ``--gpu-batch``); and the mask
renderer (template landmarks) on the GPU, else its NumPy twin.

    python -m benchmarks.bench_ops [--twin-batch 256] [--gpu-batch 512 1024] [--render-batch 256] [--out FILE]

Targets (issue 3): twin >= 3,000 img/s on one core at batch 256; kernel >= 1,000,000 img/s at
batch 512, 112 x 112, on an H100.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
import warnings

import numpy as np
from faceocc.ops import FaceOccluder

from benchmarks.report import write_result


def face_batch(n: int, size: int = 112, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real faces (../shared/data/faces when present, else the embedded sample), jittered; plus
    masked faces and masks for the mask3d rows."""
    from benchmarks.bench_data import face_sources

    sources = face_sources(size=size)[0]
    rng = np.random.default_rng(seed)
    faces = np.stack([np.roll(sources[i % len(sources)], rng.integers(-4, 5, 2), axis=(0, 1))
                      for i in range(n)])
    masked = faces.copy()
    masks = np.full((n, size, size), 255, np.uint8)
    masks[:, size // 2:, size // 6: 5 * size // 6] = 0
    masked[masks == 0] = (90, 140, 200)
    return faces, masked, masks


def time_twin(occ: FaceOccluder, batch: int, repeats: int) -> dict:
    faces, masked, masks = face_batch(batch)
    tables = [occ.sample(batch, batch=i) for i in range(repeats + 1)]
    occ.apply(faces, tables[0], masked, masks)
    t = time.perf_counter()
    for table in tables[1:]:
        occ.apply(faces, table, masked, masks)
    apply_s = (time.perf_counter() - t) / repeats
    t = time.perf_counter()
    for i in range(repeats):
        occ.sample(batch, batch=i)
    sample_s = (time.perf_counter() - t) / repeats
    return {"twin_img_per_s": batch / apply_s, "sampler_img_per_s": batch / sample_s, "twin_batch": batch}


def time_kernel(profile: str, batch: int, repeats: int, dtype: type, occluders: str | None = None) -> dict:
    import cupy as cp

    occ = FaceOccluder(profile=profile, occluders=occluders, device="gpu", seed=0, dtype=dtype)
    faces, masked, masks = (cp.asarray(a) for a in face_batch(batch))
    tables = [occ.sample(batch, batch=i) for i in range(min(8, repeats))]   # also the untimed warm-up
    for table in tables:
        occ.apply(faces, table, masked, masks)
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for i in range(repeats):
        occ.apply(faces, tables[i % len(tables)], masked, masks)
    stop.record()
    stop.synchronize()
    seconds = cp.cuda.get_elapsed_time(start, stop) / 1000 / repeats
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return {f"kernel_img_per_s_{np.dtype(dtype).name}": batch / seconds, "gpu_batch": batch, "gpu_name": name}


def time_render(device: str, batch: int, repeats: int, landmarks: str = "template", model: str | None = None) -> float:
    """Images per second of ``MaskRenderer.render`` (landmarks, surface, rasterizer) on a face batch
    (device faces on the GPU), after one untimed call."""
    from faceocc.render.renderer import MaskRenderer

    from faceocc.runtime import synchronize

    renderer = MaskRenderer((112, 112), landmarks, None, device, model)
    faces = face_batch(batch)[0]
    params = renderer.sample(batch, np.random.default_rng(0))
    if device == "gpu":
        import cupy as cp

        faces = cp.asarray(faces)
    renderer.render(faces, params)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        renderer.render(faces, params)
    synchronize(device)
    return batch * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="ms1m")
    ap.add_argument("--twin-batch", type=int, default=256)
    ap.add_argument("--gpu-batch", type=int, nargs="+", default=[512], help="kernel batch sizes (the first: targets)")
    ap.add_argument("--render-batch", type=int, default=256, help="faces per render call (0: no render figure)")
    ap.add_argument("--repeats", type=int, default=10, help="timed twin batches")
    ap.add_argument("--gpu-repeats", type=int, default=200, help="timed kernel batches (renders: a tenth, >= 1)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)
    figures = time_twin(FaceOccluder(profile=args.profile, seed=0), args.twin_batch, args.repeats)
    from faceocc.runtime import available_device

    has_gpu = available_device() == "gpu"
    if has_gpu:
        per_batch = {}
        for batch in args.gpu_batch:
            for dtype in (np.float32, np.float16):
                got = time_kernel(args.profile, batch, args.gpu_repeats, dtype)
                figures.update(got if batch == args.gpu_batch[0] else {"gpu_name": got["gpu_name"]})
                per_batch.setdefault(str(batch), {})[np.dtype(dtype).name] = got[
                    f"kernel_img_per_s_{np.dtype(dtype).name}"]
        figures["gpu_batch"] = args.gpu_batch[0]
        figures["kernel_img_per_s_by_batch"] = per_batch
    if args.render_batch > 0:
        device = "gpu" if has_gpu else "cpu"
        figures[f"render_template_img_per_s_{device}"] = time_render(device, args.render_batch,
                                                                     max(1, args.gpu_repeats // 10) if has_gpu else 1)
        figures["render_batch"] = args.render_batch
    targets = {"twin_img_per_s": 3000, "kernel_img_per_s_float32": 1_000_000}
    figures["targets"] = {k: {"target": v, "met": (figures[k] >= v) if k in figures else None}
                          for k, v in targets.items()}
    if not has_gpu:
        figures["targets"]["kernel_img_per_s_float32"]["note"] = "no GPU on this machine: not measured"
    path = write_result("ops", {"profile": args.profile, "size": [112, 112], "threads": 1}, figures, args.out)
    print({k: v for k, v in figures.items() if k != "targets"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
