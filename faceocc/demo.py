"""``faceocc demo``: a dataset (embedded, or the user's), its offline masks, the occlusion loader run
for a few hundred batches, a preview PNG with one row per occluder kind and a one-line summary."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceocc.datasets.example import base_face, make_face_dataset
from faceocc.ops import KIND_NAMES, Kind
from faceocc.ops.options import Device

from .preview import kind_sheet, triptych
from .runtime import available_device, cycle_epochs, device_name, synchronize

MARKER = "FACEOCC-DEMO"


@dataclasses.dataclass
class DemoResult:
    """What a demo run did and measured."""

    data_dir: Path
    preview: Path
    device: str
    device_name: str
    batch_size: int
    timed_batches: int
    seconds: float
    kinds: dict[str, int]
    dataset_note: str = ""

    @property
    def images(self) -> int:
        return self.batch_size * self.timed_batches

    @property
    def img_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        """The demo's one summary line."""
        return (f"faceocc demo: {self.img_per_s:.0f} img/s on {self.device} ({self.device_name}), "
                f"{self.images} images in {self.timed_batches} timed batches of {self.batch_size}; "
                f"preview {self.preview}")


NO_EXTRA_NOTE = ("faceocc demo: the embedded dataset is one face (insightface's sample) in jittered, tinted views; "
                 "for several real identities detected and aligned from photos in installed packages, "
                 "and masks that follow each face's pose: pip install 'faceocc[landmarks]'")


def embedded_faces(size: int = 112) -> tuple[list[np.ndarray], str, str]:
    """The demo's identities: every face found in photos shipped by installed packages, aligned
    (needs the extra faceocc[landmarks]); else insightface's one sample face. Returns the faces, the
    landmark source to render their masks with, and a line saying which it is."""
    from faceocc.render import dlib_models

    if dlib_models.available():
        from faceocc.align import package_faces, package_photos

        faces = package_faces(size)
        if len(faces) >= 2:
            names = ", ".join(p.name for p in package_photos())
            return faces, "dlib", (f"faceocc demo: the embedded dataset holds {len(faces)} real identities, the "
                                   f"faces found in {names} (installed packages), aligned, in jittered views; "
                                   "masks rendered with dlib landmarks")
    return [base_face(size)], "template", NO_EXTRA_NOTE


def prepare_embedded(out: str | os.PathLike, device: str, images: int = 512, progress: bool = True
                     ) -> tuple[Path, str]:
    """Build the embedded dataset (about ``images`` images) under ``out/dataset`` and render its masks;
    returns the folder and the line describing its faces (printed)."""
    from faceocc.render.job import RenderJob

    data = Path(out) / "dataset"
    if data.exists() and not (data / MARKER).exists():
        raise FileExistsError(f"{data} exists and was not made by `faceocc demo`; choose another --out")
    shutil.rmtree(data, ignore_errors=True)
    faces, landmarks, note = embedded_faces()
    print(note, flush=True)
    identities = len(faces) if len(faces) > 1 else 32
    make_face_dataset(data, faces, identities, images // identities)
    (data / MARKER).write_text("made by `faceocc demo`; safe to delete\n")
    job = RenderJob(data, landmarks=landmarks, device=device, batch_size=128)
    job.run(progress=progress)
    job.merge(progress=False)
    return data, note


def run_demo(data: str | os.PathLike | None = None, out: str | os.PathLike = "faceocc-demo",
             batches: int = 300, batch_size: int = 32, device: Device | None = None, profile: str = "ms1m",
             occluders: str | None = None, seed: int = 0, per_kind: int = 4, progress: bool = True
             ) -> DemoResult:
    """Run the loader for ``batches`` batches on ``data`` (default: the embedded dataset, built under
    ``out``) and write ``out/preview.png`` and ``out/summary.json``.

    The rate excludes the first batch, which builds the DALI pipeline.
    """
    from faceocc import FaceOcclusionLoader

    if batches < 2:
        raise ValueError("the demo needs at least 2 batches (the first one is not timed)")
    device = device or available_device()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir, note = (Path(data), "") if data is not None else prepare_embedded(out, device, progress=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(data_dir, batch_size, device=device, profile=profile, occluders=occluders,
                                     seed=seed, num_threads=min(4, os.cpu_count() or 1))
    normalized = loader.occluder.profile.normalize
    tiles: dict[int, list[np.ndarray]] = {}
    counts = np.zeros(len(Kind), np.int64)
    start = 0.0

    stream = cycle_epochs(lambda: loader)
    for i in tqdm(range(batches), desc="demo", unit="batch", disable=not progress):
        if i == 1:
            synchronize(device)
            start = time.perf_counter()
        batch = next(stream)
        kinds = batch["kind"].cpu().numpy()
        counts += np.bincount(kinds, minlength=len(Kind))
        for row, k in enumerate(kinds.tolist()):
            if len(tiles.setdefault(k, [])) < per_kind:
                tiles[k].append(triptych(batch["img"][row].float().cpu().numpy(), batch["msk"][row].cpu().numpy(),
                                         batch["ori"][row].float().cpu().numpy(), normalized))
    synchronize(device)
    seconds = time.perf_counter() - start
    rows = [(KIND_NAMES[k], tiles[k]) for k in Kind if k in tiles]
    preview = out / "preview.png"
    kind_sheet(rows, loader.out_size, per_kind).save(preview)
    result = DemoResult(data_dir, preview, device, device_name(device), batch_size, batches - 1, seconds,
                        {KIND_NAMES[k]: int(counts[k]) for k in Kind}, note)
    doc = dataclasses.asdict(result) | {"img_per_s": result.img_per_s, "profile": profile}
    (out / "summary.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return result

