"""Online 3D masks against offline mask records, in one run (issue 24).

    python -m benchmarks.bench_online_masks [--device cpu|gpu] [--rounds 10] [--out FILE]

On ``faceocc demo``'s embedded dataset (512 faces, offline masks rendered) with a geometry set made once
(``faceocc render --geometry-only``, dlib landmarks when the extra is installed, else the template), batch
64: faceocc's loader with the MS1M mix and ``mask3d.source: offline`` (the mask_out/mask records of the
3D-mask rows read and decoded) against the same loader with ``mask3d.source: online`` (their geometry read
and the mask rasterized in the occlusion step: the NumPy twin on the CPU, the kernels on the GPU),
measured alternately (``benchmarks.timing.alternate``), ``--rounds`` times, each turn after untimed
settle steps; a second offline loader in the same alternation shows the measurement's own spread.
Targets: online >= 0.5 x offline on the CPU, >= 0.9 x on the GPU. Writes
``benchmarks/results/online-masks-<device>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.bench_loader import dataset, faceocc_loader, ms1m_with_3d_masks, with_geometry
from benchmarks.report import RESULTS, write_result
from benchmarks.timing import alternate
from faceocc.runtime import available_device

TARGETS = {"cpu": 0.5, "gpu": 0.9}


def run(args: argparse.Namespace) -> tuple[Path, dict]:
    device = available_device() if args.device == "auto" else args.device
    threads = args.threads or min(os.cpu_count() or 1, 16)
    work = Path(args.work or Path.home() / ".cache" / "faceocc" / "bench-loader")
    data = dataset(work, device)
    landmarks = with_geometry(data)
    b = args.batch_size
    cpu_ms: dict[str, float] = {}
    rounds: dict[str, list[float]] = {}

    def contender(source: str) -> Callable[[], dict]:
        return partial(next, faceocc_loader(data, b, device, threads, ms1m_with_3d_masks(source)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        contenders = {"offline": contender("offline"), "online": contender("online")}
        if args.controls:
            contenders["offline_again"] = contender("offline")
        figures = alternate(contenders, args.batches, args.rounds, args.warmup, b, device, cpu_ms, per_round=rounds)
    ratio = figures["online"] / figures["offline"]
    per_round = np.asarray(rounds["offline"]) / np.asarray(rounds["online"])
    result = {"img_per_s": figures, "cpu_ms_per_batch": cpu_ms,
              "ratios": {"online_vs_offline": ratio,
                         "online_vs_offline_cpu_time": cpu_ms["offline"] / cpu_ms["online"]},
              "per_round_online_vs_offline": {"median": float(np.median(per_round)), "min": float(per_round.min()),
                                              "max": float(per_round.max())},
              "targets": {"online_vs_offline": {"target": TARGETS[device], "value": ratio,
                                                "met": bool(ratio >= TARGETS[device])}}}
    if "offline_again" in figures:
        result["control_offline_again_vs_offline"] = figures["offline_again"] / figures["offline"]
    settings = {"device": device, "dataset": "faceocc demo (512 jittered faces), offline masks rendered, "
                                             f"geometry with --landmarks {landmarks}",
                "profile": "ms1m (mask3d 0.2), mask3d.source offline vs online", "batch_size": b,
                "dali_threads": threads, "rounds": args.rounds, "batches_per_round": args.batches,
                "warmup": args.warmup, "units": "img/s",
                "command": "python -m benchmarks.bench_online_masks " + " ".join(args.argv)}
    return write_result(f"online-masks-{device}", settings, result, args.out), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8, help="timed batches per contender and round")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="DALI threads (default: cores, at most 16)")
    ap.add_argument("--work", default=None, help="dataset folder (default ~/.cache/faceocc/bench-loader)")
    ap.add_argument("--out", default=None, help=f"JSON path (default {RESULTS}/online-masks-<device>.json)")
    ap.add_argument("--no-controls", dest="controls", action="store_false", help="skip the second offline loader")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    path, result = run(args)
    for name, value in result["img_per_s"].items():
        print(f"{name:16s} {value:10,.0f} img/s  {result['cpu_ms_per_batch'][name]:7.1f} CPU ms/batch")
    for name, value in result["ratios"].items():
        print(f"{name:28s} {value:6.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
