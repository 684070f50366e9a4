"""The ``faceocc`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faceocc.recordio import RecordIOError
from faceocc.recordio.images import MAX_PIXELS


def _at_least(lo: int):
    """An argparse type: an integer >= ``lo``, refused in one line naming the option otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, not {text[:40]!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, not {value}")
        return value

    parse.__name__ = f"integer >= {lo}"
    return parse


POSITIVE, NATURAL = _at_least(1), _at_least(0)


def _print_info(info: dict) -> None:
    print(f"dataset     {info['path']}")
    print(f"layout      {info['layout']}")
    print(f"images      {info['images']}")
    print(f"identities  {info['identities'] if info['identities'] is not None else 'unknown'}")
    print(f"key range   {info['key_range']}")
    print(f"encodings   {info['encodings']} (sample of {info['sampled']})")
    print(f"sizes       {info['sizes']}")
    print(f"masks       {_masks_line(info.get('masks') or {})}")


def _masks_line(masks: dict) -> str:
    """The mask set as the loader will treat it (same rule: ``dali_pipes.mask_records``)."""
    if not masks.get("present"):
        return "none"
    if masks.get("problem"):
        return f"REFUSED by the loader: {masks['problem']}"
    render = masks.get("render")
    if render:
        made = f"faceocc render (seed {render.get('seed')}, landmarks {render.get('landmarks')})"
    else:
        made = "MSML layout, no render identity" if masks.get("layout") == "msml" else "no render identity"
    return f"mask_out.rec + mask.rec present, aligned with train.rec; {made}"


def cmd_info(args: argparse.Namespace) -> int:
    from faceocc.datasets.info import describe

    info = describe(args.dir, max_pixels=args.max_pixels)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from faceocc.datasets.pack import pack_folder

    if args.align:
        return _pack_align(args)
    out = pack_folder(args.image_dir, args.out_dir, overwrite=args.overwrite, max_pixels=args.max_pixels,
                      max_image_bytes=args.max_image_bytes)
    print(f"wrote {out / 'train.rec'}")
    return 0


def _pack_align(args: argparse.Namespace) -> int:
    from faceocc.align import pack_aligned

    result = pack_aligned(args.image_dir, args.out_dir, overwrite=args.overwrite)
    for path, reason in result.problems:
        print(f"SKIPPED {path}: {reason}")
    print(f"wrote {result.out_dir / 'train.rec'}: {result.images} aligned faces of {result.identities} "
          f"identities; {len(result.problems)} left out, listed in {result.report}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from faceocc.datasets.pack import rebuild_index

    rec = Path(args.rec)
    idx = rec.with_suffix(".idx")
    if idx.exists() and not args.overwrite:
        print(f"error: {idx} exists; pass --overwrite to rebuild it", file=sys.stderr)
        return 2
    print(f"wrote {rebuild_index(rec, idx)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from faceocc.datasets.info import verify

    report = verify(args.dir, workers=args.workers, max_pixels=args.max_pixels)
    for file, key, message in report.problems:
        print(f"BAD {file} key={key if key is not None else '-'}: {message}")
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problems)"
    print(f"{status}: {report.checked} image records checked")
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from faceocc.datasets.info import describe
    from faceocc.demo import run_demo

    device = None if args.device == "auto" else args.device
    result = run_demo(args.data, args.out, args.batches, args.batch_size, device, args.profile, args.occluders,
                      args.seed, progress=not args.quiet)
    _print_info(describe(result.data_dir))
    print(f"kinds seen  {', '.join(f'{k} {v}' for k, v in result.kinds.items())}")
    print(result.summary())
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from faceocc.preview import make_mask_sheet, make_preview

    if args.masks:
        print(f"wrote {make_mask_sheet(args.dir, args.out, count=args.count, seed=args.seed)}")
        return 0

    out = make_preview(args.dir, args.out, profile=args.profile, device=args.device,
                       occluders=args.occluders, per_kind=args.per_kind, seed=args.seed)
    print(f"wrote {out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from faceocc.dali_pipes.placement import distributed_placement, local_gpu
    from faceocc.render.job import RenderJob

    if args.target[0] == "merge":
        if len(args.target) != 2:
            print("usage: faceocc render merge DIR", file=sys.stderr)
            return 2
        with RenderJob.resume(args.target[1]) as job:
            for path in job.merge(overwrite=args.overwrite).values():
                print(f"wrote {path}")
        return 0
    if len(args.target) != 1:
        print("usage: faceocc render DIR [options] | faceocc render merge DIR", file=sys.stderr)
        return 2
    shard_id, num_shards, local = distributed_placement(args.shard_id, args.num_shards)
    with RenderJob(args.target[0], args.landmarks, args.textures, args.device, args.seed, args.chunk_size,
                   args.batch_size, args.workers, args.landmark_model, max_pixels=args.max_pixels,
                   device_id=local_gpu(local) if args.device == "gpu" else None) as job:  # torchrun: a GPU per rank
        rendered = job.run(shard_id, num_shards, overwrite=args.overwrite)
        if args.landmarks == "dlib":
            print(f"landmarks dlib: {job.fallbacks()} of {len(job.keys)} faces fell back to the template "
                  f"(dlib's points did not fit a face); {rendered} rendered now")
        if num_shards == 1:
            for path in job.merge(overwrite=args.overwrite).values():
                print(f"wrote {path}")
        else:
            left = len(job.pending(shard_id, num_shards))
            print(f"shard {shard_id}/{num_shards} done ({left} chunks left); when every shard is done: "
                  f"faceocc render merge {args.target[0]}")
    return 0


def _max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=POSITIVE, default=MAX_PIXELS,
                        help=f"refuse images of more pixels than this, read from their headers (default {MAX_PIXELS})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``faceocc`` sub-command."""
    from faceocc.datasets.pack import MAX_IMAGE_BYTES

    p = argparse.ArgumentParser(prog="faceocc", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="summarize a record dataset")
    s.add_argument("dir", help="dataset folder (train.rec/.idx) or a .rec path")
    s.add_argument("--json", action="store_true", help="print JSON")
    _max_pixels(s)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("pack", help="pack a folder of identity sub-folders into train.rec/.idx")
    s.add_argument("image_dir")
    s.add_argument("out_dir")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--align", action="store_true",
                   help="ordinary photos: detect the largest face, align it onto the ArcFace 112 x 112 template "
                        "as InsightFace does (pip install faceocc[landmarks])")
    _max_pixels(s)
    s.add_argument("--max-image-bytes", type=POSITIVE, default=MAX_IMAGE_BYTES,
                   help=f"refuse image files longer than this (default {MAX_IMAGE_BYTES})")
    s.set_defaults(func=cmd_pack)

    s = sub.add_parser("index", help="rebuild a .idx by scanning its .rec")
    s.add_argument("rec")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("verify", help="full scan: records, decoding, labels, mask alignment")
    s.add_argument("dir")
    s.add_argument("--workers", type=POSITIVE, default=None)
    _max_pixels(s)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("preview", help="contact sheet: occluded face, mask overlay, clean face per kind")
    s.add_argument("dir")
    s.add_argument("--out", default="preview.png")
    s.add_argument("--profile", default="ms1m", help="ms1m, casia or a YAML file")
    s.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    s.add_argument("--occluders", default=None, help="folder of RGBA occluders (MSML layout)")
    s.add_argument("--per-kind", type=POSITIVE, default=4)
    s.add_argument("--masks", action="store_true",
                   help="show the offline masks instead: masked face | mask | face, from mask_out/mask")
    s.add_argument("--count", type=POSITIVE, default=32, help="faces on the --masks sheet")
    s.add_argument("--seed", type=NATURAL, default=0)
    s.set_defaults(func=cmd_preview)

    s = sub.add_parser("render", help="offline 3D face masks -> mask_out.rec / mask.rec (or: render merge DIR)")
    s.add_argument("target", nargs="+", metavar="DIR", help="dataset folder, or: merge DIR")
    s.add_argument("--landmarks", choices=["template", "dlib", "insightface"], default="template",
                   help="template: the mean face on the ArcFace template (no model); dlib: each face's own "
                        "68 points, pose fitted (pip install faceocc[landmarks]); insightface: 1k3d68.onnx")
    s.add_argument("--landmark-model", default=None, help="path of 1k3d68.onnx (insightface landmarks)")
    s.add_argument("--textures", default=None, help="folder of mask textures (default: insightface's)")
    s.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    s.add_argument("--seed", type=NATURAL, default=0)
    s.add_argument("--overwrite", action="store_true", help="replace existing mask_out/mask records")
    s.add_argument("--shard-id", type=NATURAL, default=None)
    s.add_argument("--num-shards", type=POSITIVE, default=None)
    s.add_argument("--chunk-size", type=POSITIVE, default=4096)
    s.add_argument("--batch-size", type=POSITIVE, default=256)
    s.add_argument("--workers", type=POSITIVE, default=None, help="decode/encode threads")
    _max_pixels(s)
    s.set_defaults(func=cmd_render)

    s = sub.add_parser("demo", help="run the loader on an embedded dataset (or --data DIR); preview + img/s")
    s.add_argument("--data", default=None, help="your dataset folder instead of the embedded one")
    s.add_argument("--out", default="faceocc-demo", help="folder for the preview, summary and embedded dataset")
    s.add_argument("--batches", type=POSITIVE, default=300)
    s.add_argument("--batch-size", type=POSITIVE, default=32)
    s.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    s.add_argument("--profile", default="ms1m", help="ms1m, casia or a YAML file")
    s.add_argument("--occluders", default=None, help="folder of RGBA occluders (MSML layout)")
    s.add_argument("--seed", type=NATURAL, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_demo)

    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``faceocc`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RecordIOError, FileNotFoundError, FileExistsError, ValueError, RuntimeError,
            ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
