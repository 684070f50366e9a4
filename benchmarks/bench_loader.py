"""The loader's own cost, side by side with what it must keep up with, in one run (issue 13).

    python -m benchmarks.bench_loader [--device cpu] [--rounds 12] [--out FILE] [--pairs all|loader-vs-dali]

On one dataset (``faceocc demo``'s embedded 512 faces with rendered masks), batch 64, the same DALI
threads for every pipeline:

1. record path: DALI ``readers.mxnet`` alone (no decode) vs faceocc's external source alone (train.rec
   records, labels, keys, MS1M parameter rows; and again with the 3D-mask records of the rows that
   use them), records/s;
2. bare DALI (readers.mxnet + decoders.image + resize + crop_mirror_normalize; and again without the
   resize, which on these 112 x 112 images copies them unchanged and which faceocc skips) vs faceocc's
   loader with the occlusion off (kinds {none: 1}, lighting p 0, flip_p 0), img/s;
3. faceocc's loader with the MS1M mix vs the MSML-style DataLoader (one worker per core), img/s.

Each pair is measured alternately, ``--rounds`` times, on pipelines built once, each turn after
untimed settle steps; a figure is the total images over the total time of its rounds; the decode pair
also records CPU time per batch. A second instance of each baseline (``--no-controls`` skips them)
shows the measurement's own spread. ``--pairs loader-vs-dali`` (the GPU run's) measures only faceocc's
loader against bare DALI without the resize, in one alternation: occlusion off, the MS1M mix (3D masks
read from mask records), the MS1M mix with online 3D masks (the geometry set is made once), and the MS1M
mix without 3D masks, which together say where the loader's time goes.
Writes JSON (environment, settings, figures, ratios, targets) to
``benchmarks/results/loader-<device>.json``. The ratios are the result: absolute figures move with
the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import RESULTS, write_result
from benchmarks.timing import SETTLE, alternate
from faceocc.runtime import available_device, cycle_epochs

TARGETS = {"record_path_vs_readers_mxnet": 0.5, "occlusion_off_vs_bare_dali": 0.8, "ms1m_vs_msml_dataloader": 1.0}


def dataset(work: Path, device: str, images: int = 512) -> Path:
    """``faceocc demo``'s embedded dataset of about ``images`` faces under ``work/dataset``, built once
    (again when ``images`` changes); its folder, on the first run as on later ones."""
    import json

    from faceocc.demo import prepare_embedded

    data = work / "dataset"
    stamp = work / "bench-loader-dataset.json"
    wanted = {"images": images}
    if (data / "mask.rec").is_file() and (data / "train.rec").is_file() and stamp.is_file() \
            and json.loads(stamp.read_text()) == wanted:
        return data
    folder, _ = prepare_embedded(work, device, images=images, progress=False)
    stamp.write_text(json.dumps(wanted))
    return folder


def occlusion_off() -> Any:
    """The MS1M profile with every occlusion, lighting and flip switched off."""
    import dataclasses

    from faceocc.ops import load_profile

    p = load_profile("ms1m")
    return dataclasses.replace(p, kinds={"none": 1.0}, lighting=dataclasses.replace(p.lighting, p=0.0), flip_p=0.0)


def with_geometry(data: Path) -> str:
    """Make the dataset's geometry set once (dlib landmarks when the extra is installed); returns the
    landmark source it holds."""
    from faceocc.render import dlib_models
    from faceocc.render.geometry_job import GeometryJob

    from faceocc.datasets.geometry import geometry_manifest

    made = geometry_manifest(data)
    if made is not None:
        return str(made["landmarks"])
    landmarks = "dlib" if dlib_models.available() else "template"
    with GeometryJob(data, landmarks) as job:
        job.run(progress=False)
        job.merge(progress=False)
    return landmarks


def ms1m_with_3d_masks(source: str) -> Any:
    """The MS1M mix with 3D masks from ``source`` (``offline`` or ``online``)."""
    import dataclasses

    from faceocc.ops import load_profile

    p = load_profile("ms1m")
    return dataclasses.replace(p, mask3d=dataclasses.replace(p.mask3d, source=source))


def ms1m_without_3d_masks() -> Any:
    """The MS1M mix with the 3D-mask share given to the other kinds (no mask records read)."""
    from faceocc.ops import load_profile

    return load_profile("ms1m").without_mask3d()


def readers_mxnet_raw(data: Path, batch: int, threads: int) -> Callable[[], None]:
    """One batch of DALI's readers.mxnet, nothing else (payloads and labels, CPU)."""
    from faceocc.dali_pipes.image_index import image_index_path
    from nvidia.dali import fn, pipeline_def

    from faceocc.recordio import RecordDataset

    with RecordDataset(data) as ds:
        rec, idx = ds.rec_path, image_index_path(ds)

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=0)
    def pipe():
        return tuple(fn.readers.mxnet(path=[str(rec)], index_path=[str(idx)], random_shuffle=True))

    p = pipe()
    p.build()
    return p.run


def record_path(data: Path, batch: int, threads: int, masks: bool) -> Callable[[], None]:
    """One batch of faceocc's record path alone, in DALI, no decode: train.rec's encoded images cut
    into samples, label, key and MS1M parameter rows; with ``masks`` also the mask_out/mask records
    of the 3D-mask rows (cut out behind a DALI conditional)."""
    from faceocc.dali_pipes.order import ShardOrder
    from faceocc.dali_pipes.pipeline import build_pipeline
    from faceocc.dali_pipes.source import RecordBatchSource
    from faceocc.ops import FaceOccluder

    from faceocc.recordio import RecordDataset

    with RecordDataset(data) as ds:
        order = ShardOrder(ds.image_keys.copy(), batch, seed=0)
    occ = FaceOccluder("ms1m", None, (112, 112), "cpu", 0)
    source = RecordBatchSource(data, order, occ.sampler, 0, read_masks=masks)
    return build_pipeline(source, batch, None, (112, 112), threads, decode=False).run


def bare_dali(data: Path, batch: int, device: str, threads: int, resize: bool = True) -> Iterator:
    """readers.mxnet -> decoders.image -> resize -> crop_mirror_normalize through DALIGenericIterator
    (issue 13's baseline); without ``resize``, the harness's (and issue 16's) baseline."""
    from benchmarks.harness import bare_dali as harness_bare_dali

    return harness_bare_dali(data, batch, device, threads, (112, 112), 0, resize)


def faceocc_loader(data: Path, batch: int, device: str, threads: int, profile: Any,
                   without_twin: bool = False) -> Iterator:
    """faceocc's loader; ``without_twin`` (CPU, a diagnostic): the occlusion step returns ready-made
    tensors instead of running the NumPy twin, leaving the loader's own cost."""
    from faceocc import FaceOcclusionLoader

    loader = FaceOcclusionLoader(data, batch, device=device, profile=profile, seed=0, num_threads=threads)
    batches = cycle_epochs(lambda: iter(loader))
    if without_twin:
        next(batches)
        loader._handoff.occluder = _ReadyMade(loader.occluder, batch)
    return batches


class _ReadyMade:
    """Stands in for the occluder in the CPU step: returns tensors made once, of the real shapes."""

    def __init__(self, occluder: Any, n: int) -> None:

        faces = np.zeros((n, *occluder.size, 3), np.uint8)
        table = occluder.sample(n)
        table["m3d_slot"] = -1
        self.out = occluder.apply(faces, table)

    def apply(self, faces: Any, table: Any, *_: Any, **__: Any) -> dict:
        return {k: v[:len(table)] for k, v in self.out.items()}


def msml_dataloader(data: Path, batch: int, workers: int) -> Iterator:
    from benchmarks.msml_baseline import msml_loader

    loader = msml_loader(data, batch, workers, "ms1m", None, 0)
    return cycle_epochs(lambda: iter(loader))


def run(args: argparse.Namespace) -> tuple[Path, dict]:
    """Measure the pairs ``args.pairs`` names; returns the JSON path and the result."""
    device = available_device() if args.device == "auto" else args.device
    cores = os.cpu_count() or 1
    threads = args.threads or min(cores, 16)
    work = Path(args.work or Path.home() / ".cache" / "faceocc" / "bench-loader")
    data = dataset(work, device, args.images)
    b = args.batch_size
    say = (lambda *_: None) if args.quiet else (lambda msg: print(msg, flush=True))
    figures: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}
    rounds: dict[str, list[float]] = {}

    def measure(contenders: dict[str, Callable[[], Iterator]], batches: int, on: str = device,
                cpu_time: bool = True) -> None:
        """Build every contender, then time them in alternation (built once; dropped after)."""
        steps = {name: partial(next, make()) for name, make in contenders.items()}
        figures.update(alternate(steps, batches, args.rounds, args.warmup, b, on, cpu_ms if cpu_time else None,
                                 per_round=rounds))

    def loader(profile: Any, **kw: Any) -> Callable[[], Iterator]:
        return lambda: faceocc_loader(data, b, device, threads, profile, **kw)

    def bare(resize: bool) -> Callable[[], Iterator]:
        return lambda: bare_dali(data, b, device, threads, resize=resize)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if args.pairs == "loader-vs-dali":
            say("bare DALI (no resize) vs faceocc: occlusion off, MS1M mix offline, online and without 3D masks ...")
            with_geometry(data)
            contenders = {"bare_dali_without_resize": bare(False), "faceocc_occlusion_off": loader(occlusion_off()),
                          "faceocc_ms1m": loader("ms1m"), "faceocc_ms1m_online": loader(ms1m_with_3d_masks("online")),
                          "faceocc_ms1m_without_3d_masks": loader(ms1m_without_3d_masks())}
            if args.controls:
                contenders["bare_dali_without_resize_again"] = bare(False)
            measure(contenders, args.batches)
        else:
            say("record path: readers.mxnet vs faceocc's source ...")
            records = {"readers_mxnet_raw": lambda: iter(readers_mxnet_raw(data, b, threads), None),
                       "faceocc_record_path": lambda: iter(record_path(data, b, threads, False), None),
                       "faceocc_record_path_with_masks": lambda: iter(record_path(data, b, threads, True), None)}
            measure(records, args.batches * 4, "cpu", cpu_time=False)
            say("bare DALI vs faceocc with the occlusion off ...")
            pair = {"bare_dali": bare(True), "faceocc_occlusion_off": loader(occlusion_off())}
            if device == "cpu":
                pair["faceocc_occlusion_off_without_twin"] = loader(occlusion_off(), without_twin=True)
            pair["bare_dali_without_resize"] = bare(False)
            if args.controls:
                pair["bare_dali_again"] = bare(True)
            measure(pair, args.batches)
            say("faceocc MS1M mix vs the MSML-style DataLoader ...")
            pair = {"faceocc_ms1m": loader("ms1m"), "msml_dataloader": lambda: msml_dataloader(data, b, cores)}
            if args.controls:
                pair["msml_dataloader_again"] = lambda: msml_dataloader(data, b, cores)
            measure(pair, max(2, args.batches // 2))
    result = summary(figures, cpu_ms, rounds, cores, args.pairs)
    return write_result(f"loader-{device}", settings(args, device, threads, cores), result, args.out), result


RATIOS = {  # name: (faceocc's contender, the other), both in figures; *_cpu_time: the CPU ms the other way round
    "record_path_vs_readers_mxnet": ("faceocc_record_path", "readers_mxnet_raw"),
    "record_path_with_masks_vs_readers_mxnet": ("faceocc_record_path_with_masks", "readers_mxnet_raw"),
    "occlusion_off_vs_bare_dali": ("faceocc_occlusion_off", "bare_dali"),
    "occlusion_off_vs_bare_dali_without_resize": ("faceocc_occlusion_off", "bare_dali_without_resize"),
    "occlusion_off_without_twin_vs_bare_dali": ("faceocc_occlusion_off_without_twin", "bare_dali"),
    "ms1m_vs_bare_dali_without_resize": ("faceocc_ms1m", "bare_dali_without_resize"),
    "ms1m_online_vs_bare_dali_without_resize": ("faceocc_ms1m_online", "bare_dali_without_resize"),
    "ms1m_without_3d_masks_vs_bare_dali_without_resize": ("faceocc_ms1m_without_3d_masks", "bare_dali_without_resize"),
    "ms1m_vs_msml_dataloader": ("faceocc_ms1m", "msml_dataloader"),
    "occlusion_off_vs_bare_dali_cpu_time": ("faceocc_occlusion_off", "bare_dali"),
    "ms1m_vs_msml_dataloader_cpu_time": ("faceocc_ms1m", "msml_dataloader"),
}
CONTROLS = ("bare_dali", "bare_dali_without_resize", "msml_dataloader")


def summary(figures: dict, cpu_ms: dict, rounds: dict, cores: int, pairs: str = "all") -> dict:
    """Figures, ratios (those whose two contenders were measured in one alternation), targets, controls
    and notes."""
    ratios = {}
    for name, (mine, other) in RATIOS.items():
        if name == "ms1m_vs_bare_dali_without_resize" and pairs != "loader-vs-dali":
            continue                    # in "all", faceocc_ms1m runs in another alternation than bare DALI
        if name.endswith("_cpu_time"):
            if mine in cpu_ms and other in cpu_ms:
                ratios[name] = cpu_ms[other] / cpu_ms[mine]
        elif mine in figures and other in figures:
            ratios[name] = figures[mine] / figures[other]
    controls = {k: figures[f"{k}_again"] / figures[k] for k in CONTROLS if f"{k}_again" in figures}
    targets = {k: {"target": v, "value": ratios[k], "met": bool(ratios[k] >= v)} for k, v in TARGETS.items()
               if k in ratios}
    paired = {name: RATIOS[name] for name in ratios if not name.endswith("_cpu_time")}
    paired.update({f"control_{k}": (f"{k}_again", k) for k in CONTROLS})
    per_round = {}
    for key, (mine, other) in paired.items():
        if mine in rounds and other in rounds:
            r = np.asarray(rounds[other]) / np.asarray(rounds[mine])      # same images per turn: time ratio
            per_round[key] = {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}
    return {"per_s": figures, "cpu_ms_per_batch": cpu_ms, "ratios": ratios, "targets": targets,
            "controls_same_contender_twice": controls, "per_round_ratios": per_round,
            "notes": {**NOTES, "msml_dataloader": f"{cores} worker processes, one per core"}}


def settings(args: argparse.Namespace, device: str, threads: int, cores: int) -> dict:
    return {"device": device, "pairs": args.pairs,
            "dataset": f"faceocc demo (about {args.images} jittered faces, masks rendered)",
            "batch_size": args.batch_size, "dali_threads": threads, "dataloader_workers": cores,
            "rounds": args.rounds,
            "batches_per_round": {"record_path": args.batches * 4, "decode": args.batches,
                                  "ms1m": max(2, args.batches // 2)},
            "warmup": args.warmup, "settle_per_turn": SETTLE,
            "units": "records/s for the record path, img/s otherwise",
            "command": "python -m benchmarks.bench_loader " + " ".join(args.argv)}


NOTES = {"record_path": "train.rec records, labels, keys and MS1M parameter rows, as readers.mxnet "
                        "reads train.rec; *_with_masks adds the mask_out/mask records of the 3D-mask "
                        "rows (readers.mxnet has no counterpart)",
         "cpu_ms_per_batch": "CPU time of this process and its child processes (all threads; "
                             "the DataLoader's workers included) per batch; less sensitive than "
                             "img/s to other load on the machine; *_cpu_time ratios are images "
                             "per CPU-second, faceocc over the other",
         "ms1m_online": "the MS1M mix with mask3d.source online: the 3D masks rasterized in the occlusion step "
                        "from the dataset's geometry set instead of read and decoded from mask records",
         "ms1m_without_3d_masks": "the MS1M mix with the 3D-mask share given to the other kinds: no mask "
                                  "records read; with faceocc_ms1m, it says what the offline masks cost",
         "controls_same_contender_twice": "a second instance of the baseline in the same "
                                          "alternation: its ratio to the first shows the "
                                          "measurement's own spread (ideally 1)",
         "per_round_ratios": "each round's ratio of the pair's two turns, taken back to back: "
                             "their spread shows how much the machine's load moved",
         "bare_dali": "issue 13's baseline: readers.mxnet + decoders.image + resize + "
                      "crop_mirror_normalize; the dataset's images are 112 x 112 already, so its "
                      "resize copies them unchanged, a step faceocc skips (it resizes only images "
                      "of another size); bare_dali_without_resize is the same pipeline without "
                      "that step (issue 16's and the harness's baseline)",
         "without_twin": "diagnostic, CPU: the occlusion step hands out ready-made tensors "
                         "instead of running the NumPy twin; what is left is the loader's own "
                         "cost (records, decode, hand-off), the part a GPU run keeps on the CPU"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=12, help="timed batches per contender and round")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="DALI threads (default: cores, at most 16)")
    ap.add_argument("--work", default=None, help="dataset folder (default ~/.cache/faceocc/bench-loader)")
    ap.add_argument("--out", default=None, help=f"JSON path (default {RESULTS}/loader-<device>.json)")
    ap.add_argument("--images", type=int, default=512, help="faces in the dataset (built once under --work)")
    ap.add_argument("--pairs", choices=["all", "loader-vs-dali"], default="all",
                    help="all: the three pairs; loader-vs-dali: faceocc (occlusion off, MS1M offline/online/without 3D "
                         "masks) vs bare DALI only")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--no-controls", dest="controls", action="store_false",
                    help="skip the second instances of bare DALI and the DataLoader (the measurement's spread)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    path, result = run(args)
    for name, value in result["per_s"].items():
        print(f"{name:40s} {value:12,.0f} /s")
    for name, value in result["ratios"].items():
        target = f"  (target {TARGETS[name]})" if name in TARGETS else ""
        print(f"{name:40s} {value:8.2f}{target}")
    for name, value in result["controls_same_contender_twice"].items():
        print(f"{'control: ' + name + ' again / first':40s} {value:8.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
