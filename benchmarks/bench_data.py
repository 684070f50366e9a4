"""The benchmark dataset: real faces re-encoded with jitter (JPEG decode cost depends on content),
several thousand records in the InsightFace layout, with offline masks rendered for them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from faceocc.ops.atlas import IMAGE_SUFFIXES

from faceocc.datasets.example import base_face, load_face, make_face_dataset

SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
SHARED_OCCLUDERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "occluders"


def face_sources(folder: str | os.PathLike | None = None, size: int = 112) -> tuple[list[np.ndarray], str]:
    """Aligned faces from ``folder`` (default: ../shared/data/faces when present), else insightface's
    sample face; and where they came from."""
    root = Path(folder) if folder is not None else SHARED_FACES
    if root.is_dir():
        files = sorted(f for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return [load_face(f, size) for f in files], str(root)
    if folder is not None:
        raise ValueError(f"no face images in {folder}")
    return [base_face(size)], "insightface sample face"


def bench_dataset(work: str | os.PathLike, images: int = 4096, faces: str | os.PathLike | None = None,
                  device: str = "cpu", seed: int = 0, progress: bool = True) -> tuple[Path, dict]:
    """``work/data``: ``images`` records (64 identities) with rendered masks; built once, reused while
    its settings match. Returns the folder and a description of it."""
    from faceocc.render.job import RenderJob

    sources, origin = face_sources(faces)
    identities = 64
    per_identity = max(1, images // identities)
    desc = {"images": identities * per_identity, "identities": identities, "faces": origin,
            "sources": len(sources), "seed": seed, "masks": "template landmarks"}
    data = Path(work) / "data"
    stamp = data / "bench-dataset.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == desc and (data / "mask.rec").exists():
        return data, desc
    make_face_dataset(data, sources, identities, per_identity, seed)
    job = RenderJob(data, device=device, seed=seed)
    job.run(overwrite=True, progress=progress)
    job.merge(overwrite=True, progress=False)
    stamp.write_text(json.dumps(desc, indent=1))
    return data, desc


def default_occluders() -> Path | None:
    """MSML's occluder folders in ../shared/data when present (the benchmark's default)."""
    return SHARED_OCCLUDERS if SHARED_OCCLUDERS.is_dir() else None
