"""The per-call cost of ``faceocc.occlude`` and ``MSMLOcclusion``: what a per-sample pipeline pays.

    python -m benchmarks.bench_occlude [--device cpu|gpu] [--calls 300] [--out FILE]

A torchvision ``Dataset`` (as MSML's own loader) occludes one face per call with a new seed each time, so
the fixed cost of a call (drawing its parameter table, finding the cached occluder) counts as much as the
pixels. Measured here, on random 112 x 112 faces, each call with a new seed: ``faceocc.occlude`` on one
face (profile given by name and as a ``Profile``) and on a batch of 256; ``MSMLOcclusion`` on one PIL
face when torchvision is installed; and, as the baseline in the same run, ``FaceOccluder.apply`` of a
table drawn once (the pixels alone). Writes ``benchmarks/results/occlude-<device>.json``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from benchmarks.report import RESULTS, write_result
from benchmarks.timing import per_call_ms
from faceocc.runtime import available_device


def run(args: argparse.Namespace) -> tuple[Path, dict]:
    import torch

    import faceocc
    from faceocc import FaceOccluder, load_profile

    device = available_device() if args.device == "auto" else args.device
    on = "cuda" if device == "gpu" else "cpu"
    gen = torch.Generator().manual_seed(0)
    one = torch.randint(0, 256, (1, 3, 112, 112), dtype=torch.uint8, generator=gen).to(on)
    batch = torch.randint(0, 256, (256, 3, 112, 112), dtype=torch.uint8, generator=gen).to(on)
    prof = load_profile("ms1m")
    ms: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # no mask records: the mask3d share moves
        occ = FaceOccluder(prof, has_masks=False)
        table = occ.sample(1)
        face = one.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        ms["apply_one_face_table_given_cpu"] = per_call_ms(lambda s: occ.apply(face, table), args.calls, "cpu")
        ms["occlude_one_face_profile_by_name"] = per_call_ms(
            lambda s: faceocc.occlude(one, seed=s, profile="ms1m"), args.calls, device)
        ms["occlude_one_face_profile_object"] = per_call_ms(
            lambda s: faceocc.occlude(one, seed=s, profile=prof), args.calls, device)
        ms["occlude_batch_256"] = per_call_ms(
            lambda s: faceocc.occlude(batch, seed=s, profile=prof), max(3, args.calls // 30), device)
        try:
            import PIL.Image

            from faceocc.transforms import MSMLOcclusion
        except ImportError:
            pass                                                # torchvision absent: no transform row
        else:
            pil = PIL.Image.fromarray(face[0])
            step = MSMLOcclusion(prof)
            ms["msml_occlusion_one_pil_face"] = per_call_ms(lambda s: step(pil), args.calls, "cpu")
    figures = {"ms_per_call": ms,
               "img_per_s": {k: (256 if k.endswith("256") else 1) * 1e3 / v for k, v in ms.items()},
               "ratios": {"occlude_one_face_vs_apply_alone": ms["apply_one_face_table_given_cpu"]
                          / ms["occlude_one_face_profile_object"]}}
    settings = {"device": device, "calls": args.calls, "size": [112, 112], "profile": "ms1m (no mask records)",
                "command": "python -m benchmarks.bench_occlude " + " ".join(args.argv)}
    return write_result(f"occlude-{device}", settings, figures, args.out), figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per one-face row")
    ap.add_argument("--out", default=None, help=f"JSON path (default {RESULTS}/occlude-<device>.json)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    path, figures = run(args)
    for name, value in figures["ms_per_call"].items():
        print(f"{name:36s} {value:8.2f} ms/call")
    print(f"occlude, one face, vs the apply alone: {figures['ratios']['occlude_one_face_vs_apply_alone']:.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
