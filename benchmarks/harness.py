"""The benchmark harness: one run, one dataset, one device, every contender side by side.

    python -m benchmarks.harness [--images 4096] [--batch-size 256] [--batches 32] [--rounds 4] [--device auto]

1. bare DALI: readers.mxnet + decode + crop_mirror_normalize (the upper bound);
2. faceocc's loader with the MS1M mix and with the CASIA mix (the loaders, bare DALI and the baseline are
   timed in alternation, ``--rounds`` turns each after untimed settle steps: ``benchmarks.timing``);
3. the MSML-style baseline: a PyTorch DataLoader with one worker per core (benchmarks/msml_baseline.py);
4. the occlusion kernel alone (GPU) and its NumPy twin alone (one core);
5. the renderer (template landmarks; dlib landmarks with the extra faceocc[landmarks]; insightface
   landmarks when a 1k3d68.onnx is at hand).
Writes JSON (environment, settings, figures, ratios, targets) and a PNG bar chart. The ratios
faceocc / bare DALI and faceocc / MSML-style are the headline: absolute figures move between runs.
``--rows gpu`` (the GPU run's) measures only the rows that run on the GPU: bare DALI, the two loaders,
and with ``--device gpu`` the kernel and the GPU renderer (no MSML-style DataLoader, no CPU twins).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_data import bench_dataset, default_occluders
from benchmarks.chart import bar_chart
from benchmarks.report import RESULTS, write_result
from benchmarks.timing import SETTLE, alternate
from faceocc.runtime import available_device, cycle_epochs, device_name

TARGETS = {  # issue 6: on an H100, 112 x 112
    "loader_vs_bare_dali": 0.9,
    "loader_vs_msml": 3.0,
    "kernel_img_per_s": 1_000_000,
    "render_img_per_s": 20_000,
}


def bare_dali(data: Path, batch: int, device: str, threads: int, size: tuple[int, int], seed: int,
              resize: bool = False) -> Iterator:
    """readers.mxnet -> decoders.image -> crop_mirror_normalize, through DALIGenericIterator; with
    ``resize``, ``fn.resize`` to ``size`` before the crop (on images already of that size DALI's resize
    copies them unchanged, at about the cost of the decode)."""
    from faceocc.dali_pipes.image_index import image_index_path
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from faceocc.recordio import RecordDataset

    with RecordDataset(data) as ds:
        rec, idx = ds.rec_path, image_index_path(ds)
    gpu = device == "gpu"

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if gpu else None, seed=seed)
    def pipe():
        jpegs, labels = fn.readers.mxnet(path=[str(rec)], index_path=[str(idx)], random_shuffle=True,
                                         name="Reader")
        images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB)
        if resize:
            images = fn.resize(images, resize_x=size[1], resize_y=size[0])
        out = fn.crop_mirror_normalize(images, crop=size, mirror=fn.random.coin_flip(), dtype=types.FLOAT,
                                       mean=[127.5] * 3, std=[127.5] * 3, output_layout="CHW")
        return out, labels

    p = pipe()
    p.build()
    it = DALIGenericIterator(p, ["img", "label"], reader_name="Reader", auto_reset=True,
                             last_batch_policy=LastBatchPolicy.DROP)
    return cycle_epochs(lambda: it)


def faceocc_loader(data: Path, batch: int, device: str, threads: int, profile: str, occluders: Any,
                   seed: int) -> Iterator:
    from faceocc import FaceOcclusionLoader

    loader = FaceOcclusionLoader(data, batch, device=device, profile=profile, occluders=occluders, seed=seed,
                                 num_threads=threads, read_threads=min(threads, 8))
    return cycle_epochs(lambda: iter(loader))


def msml_style(data: Path, batch: int, workers: int, profile: str, occluders: Any, seed: int) -> Iterator:
    from benchmarks.msml_baseline import msml_loader

    loader = msml_loader(data, batch, workers, profile, occluders, seed)
    return cycle_epochs(lambda: iter(loader))


def ops_alone(device: str, profile: str, occluders: Any, twin_batch: int, gpu_batch: int) -> dict:
    """The NumPy twin on one core; the CUDA kernels on the GPU when ``device == "gpu"``."""
    from faceocc.ops import FaceOccluder

    from benchmarks.bench_ops import time_kernel, time_twin

    figures = time_twin(FaceOccluder(profile, occluders, seed=0), twin_batch, repeats=5)
    if device == "gpu":
        figures.update(time_kernel(profile, gpu_batch, 200, np.float32, occluders))
    return figures


def find_landmark_model(path: str | None) -> str | None:
    """The given 1k3d68.onnx, else one from an InsightFace model pack under ~/.insightface."""
    if path:
        return path
    found = sorted(glob.glob(str(Path.home() / ".insightface" / "models" / "*" / "1k3d68.onnx")))
    return found[0] if found else None


def render_alone(device: str, batch: int, landmarks: str, model: str | None, repeats: int) -> float:
    """Images per second of MaskRenderer.render (landmarks, surface, rasterizer) on a face batch."""
    from benchmarks.bench_ops import time_render

    return time_render(device, batch, repeats, landmarks, model)


RATIOS = {"loader_vs_bare_dali": ("faceocc_ms1m", "bare_dali"), "loader_vs_msml": ("faceocc_ms1m", "msml_dataloader"),
          "casia_loader_vs_bare_dali": ("faceocc_casia", "bare_dali"),
          "casia_loader_vs_msml": ("faceocc_casia", "msml_dataloader")}


def _target(value: float | None, target: float, device: str, gpu_name: str | None) -> dict:
    met = None if value is None else bool(value >= target)
    out = {"target": target, "value": value, "met": met}
    if value is None:
        out["note"] = "not measured in this run"
    elif device != "gpu" or "H100" not in (gpu_name or ""):
        out["note"] = f"targets are set for an H100 at 112 x 112; this run is on {gpu_name or 'CPU'}"
    return out


def run(args: argparse.Namespace) -> tuple[Path, Path, dict]:
    """Measure everything the options ask for; returns the JSON path, the PNG path and the figures."""
    device = available_device() if args.device == "auto" else args.device
    cores = os.cpu_count() or 1
    threads = args.threads or min(cores, 16)
    workers = args.workers if args.workers is not None else cores
    occluders = args.occluders or default_occluders()
    work = Path(args.work or Path.home() / ".cache" / "faceocc" / "bench")
    data, dataset = bench_dataset(work, args.images, args.faces, device, progress=not args.quiet)
    size = (112, 112)
    figures: dict[str, Any] = {}
    per_round = max(1, args.batches // args.rounds)

    cpu_rows = args.rows == "all"
    makers: dict[str, Callable[[], Iterator]] = {
        "bare_dali": lambda: bare_dali(data, args.batch_size, device, threads, size, args.seed),
        "faceocc_ms1m": lambda: faceocc_loader(data, args.batch_size, device, threads, "ms1m", occluders, args.seed),
        "faceocc_casia": lambda: faceocc_loader(data, args.batch_size, device, threads, "casia", occluders,
                                                args.seed)}
    if cpu_rows:
        makers["msml_dataloader"] = lambda: msml_style(data, args.batch_size, workers, "ms1m", occluders, args.seed)
    if not args.quiet:
        print(f"measuring {', '.join(makers)} in alternation, {args.rounds} rounds ...", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        steps = {name: partial(next, make()) for name, make in makers.items()}
        figures.update(alternate(steps, per_round, args.rounds, args.warmup, args.batch_size, device))
    del steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if cpu_rows:
            ops = ops_alone(device, "ms1m", occluders, args.twin_batch, args.gpu_batch)
            figures["twin_one_core"] = ops["twin_img_per_s"]
            figures["sampler_one_core"] = ops["sampler_img_per_s"]
        elif device == "gpu":
            from benchmarks.bench_ops import time_kernel

            ops = time_kernel("ms1m", args.gpu_batch, 200, np.float32, occluders)
        else:
            ops = {}
    if "kernel_img_per_s_float32" in ops:
        figures["kernel"] = ops["kernel_img_per_s_float32"]
    if cpu_rows:
        figures["render_template_cpu_twin"] = render_alone("cpu", args.render_batch, "template", None, 1)
    if device == "gpu":
        figures["render_template_gpu"] = render_alone("gpu", args.gpu_batch, "template", None, 20)
    from faceocc.render import dlib_models

    if cpu_rows and dlib_models.available():
        figures["render_dlib_cpu"] = render_alone("cpu", args.render_batch, "dlib", None, 1)
    model = find_landmark_model(args.landmark_model)
    if model:
        figures[f"render_insightface_{device}"] = render_alone(device, args.render_batch, "insightface", model,
                                                               3 if device == "gpu" else 1)
    gpu_name = device_name(device) if device == "gpu" else None
    ratios = {name: figures[mine] / figures[other] for name, (mine, other) in RATIOS.items()
              if mine in figures and other in figures}
    targets = {
        "loader_vs_bare_dali": _target(ratios["loader_vs_bare_dali"], TARGETS["loader_vs_bare_dali"], device,
                                       gpu_name),
        "loader_vs_msml": _target(ratios.get("loader_vs_msml"), TARGETS["loader_vs_msml"], device, gpu_name),
        "kernel_img_per_s": _target(figures.get("kernel"), TARGETS["kernel_img_per_s"], device, gpu_name),
        "render_img_per_s": _target(figures.get("render_template_gpu"), TARGETS["render_img_per_s"], device,
                                    gpu_name),
    }
    settings = {"device": device, "rows": args.rows, "images": dataset["images"], "dataset": dataset,
                "size": list(size),
                "batch_size": args.batch_size, "batches": per_round * args.rounds, "rounds": args.rounds,
                "warmup": args.warmup, "settle_per_turn": SETTLE, "measured": "in alternation (benchmarks.timing)",
                "dali_threads": threads, "dataloader_workers": workers, "twin_batch": args.twin_batch,
                "gpu_batch": args.gpu_batch, "render_batch": args.render_batch,
                "occluders": str(occluders) if occluders else "built-in procedural bank",
                "landmark_model": model, "seed": args.seed}
    result = {"img_per_s": figures, "ratios": ratios, "targets": targets}
    json_path = write_result("harness", settings, result, args.out)
    return json_path, draw(json_path), result


LABELS = {"bare_dali": "bare DALI (upper bound)", "faceocc_ms1m": "faceocc loader, MS1M mix",
          "faceocc_casia": "faceocc loader, CASIA mix", "msml_dataloader": "MSML-style DataLoader",
          "twin_one_core": "ops NumPy twin, 1 thread", "kernel": "ops CUDA kernel",
          "render_template_cpu_twin": "render NumPy twin (template)", "render_template_gpu": "render GPU (template)",
          "render_dlib_cpu": "render NumPy twin (dlib landmarks)"}


def draw(json_path: str | os.PathLike) -> Path | None:
    """The PNG bar chart of a harness JSON, written beside it (the sampler figure stays in the JSON); None
    where matplotlib is not installed (the GPU machine), the JSON holding every figure."""
    import importlib.util
    import json

    if importlib.util.find_spec("matplotlib") is None:
        return None

    doc = json.loads(Path(json_path).read_text())
    figures, ratios, st, env = (doc["figures"]["img_per_s"], doc["figures"]["ratios"], doc["settings"],
                                doc["environment"])
    bars = [(LABELS.get(k, k), v, f"{v:,.0f} img/s") for k, v in figures.items() if k != "sampler_one_core"]
    msml = f"{ratios['loader_vs_msml']:.2f}" if "loader_vs_msml" in ratios else "not measured"
    footer = [f"faceocc / bare DALI = {ratios['loader_vs_bare_dali']:.2f}   faceocc / MSML-style = {msml}   "
              f"(DataLoader workers {st['dataloader_workers']}, DALI threads {st['dali_threads']})",
              f"{env['date']}  {env['gpu'] or 'CPU only'}  {env['cpu_count']} CPU cores  batch {st['batch_size']}  "
              f"{st['images']} real-face records"]
    return bar_chart(f"faceocc benchmark harness, {st['device']}", bars, Path(json_path).with_suffix(".png"), footer)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The harness's options."""
    ap = parser or argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--rows", choices=["all", "gpu"], default="all",
                    help="gpu: only the rows that run on the GPU (bare DALI, loaders, kernel, GPU render)")
    ap.add_argument("--images", type=int, default=4096, help="records in the benchmark dataset")
    ap.add_argument("--faces", default=None, help="folder of aligned faces (default: ../shared/data/faces)")
    ap.add_argument("--occluders", default=None, help="MSML occluder folders (default: ../shared/data/occluders)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=32, help="timed batches per loader, over all rounds")
    ap.add_argument("--rounds", type=int, default=4, help="turns per loader (the loaders are timed in alternation)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed batches per loader before the first round")
    ap.add_argument("--threads", type=int, default=None, help="DALI threads (default: cores, at most 16)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: all cores)")
    ap.add_argument("--twin-batch", type=int, default=256)
    ap.add_argument("--gpu-batch", type=int, default=1024)
    ap.add_argument("--render-batch", type=int, default=256)
    ap.add_argument("--landmark-model", default=None, help="1k3d68.onnx for the insightface-landmark render")
    ap.add_argument("--work", default=None, help="where the dataset is built (default ~/.cache/faceocc/bench)")
    ap.add_argument("--out", default=None, help=f"JSON path (default {RESULTS}/harness.json); PNG beside it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    return ap


def report(args: argparse.Namespace) -> int:
    """Run the harness and print its figures, ratios and files."""
    json_path, png_path, result = run(args)
    for name, value in result["img_per_s"].items():
        print(f"{name:28s} {value:12,.0f} img/s")
    for name, value in result["ratios"].items():
        print(f"{name:28s} {value:12.2f}")
    print(f"wrote {json_path}" + (f" and {png_path}" if png_path else " (no chart: matplotlib is not installed)"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.harness [options]``."""
    return report(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
