"""Contact sheet of masks rendered with dlib landmarks on turned and tilted real faces.

    python -m benchmarks.landmark_sheet [--out docs/masks-dlib.png]

The faces are those found in photos shipped by installed packages (insightface's t1.jpg, its sample
face, scikit-image's astronaut), aligned, each also tilted by +-20 degrees and shifted. Each tile is
the dlib render | the template render of the same view, so that the difference shows. Needs the
extra faceocc[landmarks].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

VIEWS = [(0, 0, 0), (20, 3, -3), (-20, -3, 3), (10, 8, 4), (-10, -8, -4)]     # degrees, dx, dy


def views(faces: list[np.ndarray]) -> np.ndarray:
    import cv2

    out = []
    for face in faces:
        for angle, dx, dy in VIEWS:
            m = cv2.getRotationMatrix2D((56.0, 56.0), angle, 1.0)
            m[:, 2] += (dx, dy)
            out.append(cv2.warpAffine(face, m, (112, 112), borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def sheet(out: Path, columns: int = 5, seed: int = 0) -> Path:
    """Render every view with both sources and write the sheet (one row per face)."""
    from faceocc.render.renderer import MaskRenderer
    from PIL import Image

    from faceocc.align import package_faces

    faces = views(package_faces())
    renders = []
    for source in ("dlib", "template"):
        renderer = MaskRenderer(landmarks=source)
        renders.append(renderer.render(faces, renderer.sample(len(faces), np.random.default_rng(seed)))[0])
    gap = 6
    rows = -(-len(faces) // columns)
    img = Image.new("RGB", (columns * (2 * 112 + gap), rows * (112 + gap)), (255, 255, 255))
    for i in range(len(faces)):
        tile = np.concatenate([renders[0][i], renders[1][i]], axis=1)
        img.paste(Image.fromarray(tile), ((i % columns) * (2 * 112 + gap), (i // columns) * (112 + gap)))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)      # a small file for docs/
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/masks-dlib.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"wrote {sheet(Path(args.out), seed=args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
