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

from ops import KIND_NAMES, Kind

from .example import make_example_dataset
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


def prepare_embedded(out: str | os.PathLike, device: str, identities: int = 32, per_identity: int = 16,
                     progress: bool = True) -> Path:
    """Build the embedded dataset under ``out/dataset`` and render its masks (template landmarks)."""
    from render.job import RenderJob

    data = Path(out) / "dataset"
    if data.exists() and not (data / MARKER).exists():
        raise FileExistsError(f"{data} exists and was not made by `faceocc demo`; choose another --out")
    shutil.rmtree(data, ignore_errors=True)
    make_example_dataset(data, identities, per_identity)
    (data / MARKER).write_text("made by `faceocc demo`; safe to delete\n")
    job = RenderJob(data, device=device, batch_size=128)
    job.run(progress=progress)
    job.merge(progress=False)
    return data


def run_demo(data: str | os.PathLike | None = None, out: str | os.PathLike = "faceocc-demo",
             batches: int = 300, batch_size: int = 32, device: str | None = None, profile: str = "ms1m",
             occluders: str | None = None, seed: int = 0, per_kind: int = 4, progress: bool = True
             ) -> DemoResult:
    """Run the loader for ``batches`` batches on ``data`` (default: the embedded dataset, built under
    ``out``) and write ``out/preview.png`` and ``out/summary.json``.

    The rate excludes the first batch, which builds the DALI pipeline.
    """
    from dali_pipes import FaceOcclusionLoader

    if batches < 2:
        raise ValueError("the demo needs at least 2 batches (the first one is not timed)")
    device = device or available_device()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data) if data is not None else prepare_embedded(out, device, progress=progress)
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
                        {KIND_NAMES[k]: int(counts[k]) for k in Kind})
    doc = dataclasses.asdict(result) | {"img_per_s": result.img_per_s, "profile": profile}
    (out / "summary.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return result

