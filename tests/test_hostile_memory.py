"""Issue 23, part 1: memory is bounded by the work, not by the worst input. Each test plants one hostile
input (a long record, a huge image, a PNG bomb, a huge occluder, a YAML alias bomb, /dev/zero or a FIFO
named .jpg) and runs the command in a subprocess whose address space is capped at what it has mapped
after its imports plus a budget (``cap(mb)``), with a timeout. The budgets are the bounds tested."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, random_face
from hostile import noisy_jpeg, png_bomb, png_of, run_capped, smooth_jpeg

from faceocc.datasets.pack import pack_folder, write_insightface
from faceocc.recordio import ImageDecodeError, RecordDataset
from faceocc.recordio.batch import BatchReader
from faceocc.recordio.images import MAX_PIXELS, decode_problem, pixel_problem


def _faces(n: int, seed: int = 0, size: int = 112) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [jpeg_bytes(random_face(rng, size)) for _ in range(n)]


def _dataset(folder: Path, payloads: list[bytes], per_identity: int = 8) -> Path:
    return write_insightface(folder, [(i // per_identity, p) for i, p in enumerate(payloads)])


# 1. the CPU loader: one long record no longer pads every row; images over max_pixels refused by key


def test_a_batch_with_one_long_record_is_not_padded_to_it(tmp_path):
    payloads = _faces(32)
    payloads[5] = noisy_jpeg(2400, 1800)                     # 5 MB among 4 kB faces
    with RecordDataset(_dataset(tmp_path / "d", payloads)) as ds:
        batch = BatchReader(ds).read(ds.image_keys)
        images, lengths = batch.encoded()
        assert isinstance(images, list) and [len(r) for r in images] == lengths[:, 0].tolist()
        assert sum(r.nbytes for r in images) == sum(len(p) for p in payloads)
        assert [bytes(r) for r in images] == payloads
        small = BatchReader(ds).read(ds.image_keys[6:14])     # similar lengths: the dense fast path
        dense, _ = small.encoded()
        assert isinstance(dense, np.ndarray) and dense.shape[0] == 8


LOADER = """
import warnings
warnings.simplefilter("ignore")
from faceocc import FaceOcclusionLoader
loader = FaceOcclusionLoader(sys.argv[1], 64, device="cpu", shuffle=False, num_threads=1, prefetch=1)
it = iter(loader)
next(it)                                  # DALI's threads and buffers exist now
cap(int(sys.argv[2]))
n = 1 + sum(1 for _ in it)
print("batches", n)
"""


def test_cpu_loader_runs_a_long_record_within_a_memory_cap(tmp_path):
    """Bound tested: 300 MiB of address space over the loader's after its first batch (batch 64; it
    takes about 50 MiB). Padding the batch to a 7 MB record cost 64 x 7 MB in the source and again in
    DALI's copy: about 900 MiB more, refused under the cap."""
    pytest.importorskip("nvidia.dali")
    payloads = _faces(512, seed=1)
    payloads[400] = noisy_jpeg(3000, 2000, seed=2)          # batch 6: fed after the cap is set
    folder = _dataset(tmp_path / "d", payloads, per_identity=64)
    proc = run_capped(LOADER, folder, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batches 8" in proc.stdout


@pytest.fixture(scope="module")
def with_huge(tmp_path_factory) -> Path:
    """40 faces; key 13 is a 5000 x 5000 PNG (25 MP, 75 MB of pixels; 100 kB on disk)."""
    payloads = _faces(40, seed=3)
    payloads[12] = png_of(5000, 5000)
    return _dataset(tmp_path_factory.mktemp("huge"), payloads)


def _loader(folder, **kw):
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(folder, 8, device="cpu", seed=5, **kw)


def test_loader_refuses_an_image_over_max_pixels_by_key_before_decoding(with_huge):
    pytest.importorskip("nvidia.dali")
    with RecordDataset(with_huge) as ds:
        offset = ds.offset_of(13)
    with pytest.raises(ImageDecodeError) as err:
        for _ in _loader(with_huge):
            pass
    assert err.value.key == 13 and err.value.offset == offset and err.value.path.endswith("train.rec")
    assert f"over the limit of {MAX_PIXELS} pixels" in str(err.value) and "5000 x 5000" in str(err.value)
    skipped = _loader(with_huge, on_bad_image="skip")
    keys = np.concatenate([b["key"].numpy() for b in skipped])
    assert len(keys) == len(skipped) * 8 and 13 not in keys.tolist()
    assert 13 in sum((b["key"].tolist() for b in _loader(with_huge, max_pixels=26_000_000)), [])


def test_verify_and_info_name_an_image_over_max_pixels(with_huge, capsys):
    from faceocc.cli import main

    assert main(["verify", str(with_huge)]) == 1
    out = capsys.readouterr().out
    assert "key=13" in out and "over the limit" in out and "FAILED (1 problems)" in out
    assert main(["verify", str(with_huge), "--max-pixels", "26000000"]) == 0
    assert pixel_problem(png_of(5000, 5000), 26_000_000) is None


# 2. render sizes faces by the dataset, not by its first image, and refuses an oversized record by key


RENDER = """
import numpy as np
from faceocc.cli import main
import faceocc.render.job
np.linalg.lstsq(np.eye(3), np.ones(3), rcond=None)     # OpenBLAS's buffers exist now
cap(int(sys.argv[2]))
sys.exit(main(["render", sys.argv[1], "--batch-size", "64", "--chunk-size", "64", "--workers", "1"]))
"""


def test_render_sizes_faces_by_the_dataset_not_its_first_image(tmp_path):
    """Bound tested: 1000 MiB of address space over the render's after its imports (batch 64; it takes
    about 550 MiB, most of it thread stacks and libraries mapped on first use). A 2000 x 2000 first
    image used to upscale every face to it: 19 GB for these 64 faces."""
    payloads = _faces(64, seed=4)
    payloads[0] = smooth_jpeg(2000, 2000)
    folder = _dataset(tmp_path / "d", payloads)
    proc = run_capped(RENDER, folder, 1000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from faceocc.recordio.images import read_image

    with RecordDataset(folder / "mask.rec") as masks:
        assert {read_image(masks, k, gray=None)[1].shape for k in masks.image_keys.tolist()} == {(112, 112)}
    (folder / "property").unlink()                             # no property: the most common size
    from faceocc.render.job import RenderJob

    with RenderJob(folder) as job:
        assert job.renderer.size == (112, 112)


def test_render_refuses_an_oversized_record_by_key(with_huge, tmp_path, capsys):
    import shutil

    from faceocc.cli import main

    folder = tmp_path / "d"
    shutil.copytree(with_huge, folder)
    with RecordDataset(folder) as ds:
        offset = ds.offset_of(13)
    assert main(["render", str(folder), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "key 13" in err and f"byte offset {offset}" in err and "over the limit" in err
    assert "Traceback" not in err


# 3. PNG decompression bombs: dimensions from the header first, image data inflated with a cap


VERIFY = """
from faceocc.cli import main
from faceocc.datasets.info import describe
cap(int(sys.argv[2]))
code = main(["verify", sys.argv[1], "--workers", "1"])
info = describe(sys.argv[1])
print("verify", code, "sizes", info["sizes"])
"""


def test_png_bombs_cost_verify_and_info_no_memory(tmp_path):
    """Bound tested: 200 MiB over verify's footprint after imports. Key 3: a 100 x 100 PNG whose data
    inflates to 512 MiB (0.5 MB on disk); key 4: a header of 100000 x 100000 pixels."""
    bomb = png_bomb(100, 100, 512 << 20)
    assert len(bomb) < 1 << 20 and decode_problem(bomb) is None      # the image rows are all there
    payloads = _faces(8, seed=5)
    payloads[2] = bomb
    payloads[3] = png_of(100000, 100000, idat=bomb[41:-12])
    folder = _dataset(tmp_path / "d", payloads)
    proc = run_capped(VERIFY, folder, 200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "key=4" in proc.stdout and "100000 x 100000 pixels is over the limit" in proc.stdout
    assert "key=3" not in proc.stdout and "verify 1" in proc.stdout and "'100x100 RGB': 1" in proc.stdout


# 4. occluder and texture folders: bounded, one image at a time, every file left out named


def _occluder_folder(root: Path) -> Path:
    from PIL import Image

    glasses = root / "glasses_crop"
    glasses.mkdir(parents=True)
    for i in range(3):
        rgba = np.zeros((40, 80, 4), np.uint8)
        rgba[8:32, 8:72] = (20 * i, 40, 90, 255)
        Image.fromarray(rgba).save(glasses / f"ok{i}.png")
    (glasses / "huge.png").write_bytes(png_of(8000, 8000))            # 64 MP: over the limit
    (glasses / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (glasses / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((20, 20, 4), np.uint8)).save(glasses / "clear.png")
    os.mkfifo(glasses / "fifo.png")
    return root


BANK = """
import warnings
from faceocc.ops.atlas import OccluderBank
from faceocc.render.textures import load_textures
cap(int(sys.argv[2]))
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    bank = OccluderBank.from_folder(sys.argv[1])
    textures, names = load_textures(sys.argv[1] + "/glasses_crop")
print("entries", bank.atlas.shape[0], "textures", len(names))
for w in seen:
    print("WARNING", w.message)
"""


def test_occluder_and_texture_folders_are_bounded_and_name_what_they_leave_out(tmp_path):
    """Bound tested: 300 MiB over the footprint after imports: an 8000 x 8000 PNG (256 MB as RGBA, about
    1 GB with the background key's temporaries) is refused from its header."""
    root = _occluder_folder(tmp_path / "occ")
    proc = run_capped(BANK, root, 300, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "entries 3 textures 3" in proc.stdout
    warned = [line for line in proc.stdout.splitlines() if line.startswith("WARNING")]
    assert len(warned) == 2 and all("5 of 8 images" in w for w in warned)
    for name in ("huge.png", "broken.png", "empty.png", "clear.png", "fifo.png"):
        assert all(name in w for w in warned), name
    assert "8000 x 8000 pixels is over the limit" in warned[0] and "fully transparent" in warned[0]
    assert "a FIFO" in warned[0]


def test_a_large_occluder_is_reduced_on_load(tmp_path):
    from faceocc.ops.atlas import LOAD_MAX_SIDE, load_rgba

    path = tmp_path / "big.png"
    path.write_bytes(png_of(3000, 1000))
    rgba = load_rgba(path, key_out=False)
    assert rgba.shape == (500, 1500, 4) and max(rgba.shape[:2]) <= LOAD_MAX_SIDE


# 5. a YAML profile made of aliases ("billion laughs")


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")) + "kinds: *i\n"

PROFILE = """
from faceocc.ops import FaceOccluder
cap(200)
try:
    FaceOccluder(sys.argv[1])
except ValueError as exc:
    print("refused:", exc)
"""


def test_a_billion_laughs_profile_is_refused_in_one_line(tmp_path):
    """Bound tested: 200 MiB and 60 s (it used to run 36 s into 2 GB)."""
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert len(LAUGHS) < 600
    proc = run_capped(PROFILE, path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "expands to more than 10000 YAML values" in lines[0] and len(lines[0]) < 300


# 6. pack: /dev/zero and a FIFO named .jpg, and a file over the byte limit


@pytest.mark.parametrize("plant", ["dev-zero", "fifo", "too-long"])
def test_pack_reads_only_regular_files_of_bounded_size(tmp_path, plant):
    src = tmp_path / "photos" / "alice"
    src.mkdir(parents=True)
    for i, data in enumerate(_faces(3, seed=6)):
        (src / f"{i}.jpg").write_bytes(data)
    odd = src / "odd.jpg"
    if plant == "dev-zero":
        odd.symlink_to("/dev/zero")
    elif plant == "fifo":
        os.mkfifo(odd)
    else:
        odd.write_bytes(noisy_jpeg(800, 600))
    code = f"""
from faceocc.datasets.pack import pack_folder
cap(200)
try:
    pack_folder({str(tmp_path / 'photos')!r}, {str(tmp_path / 'out')!r}, progress=False, max_image_bytes=100_000)
except ValueError as exc:
    print("refused:", exc)
"""
    proc = run_capped(code, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    why = {"dev-zero": "is a character device", "fifo": "is a FIFO", "too-long": "over the limit of 100000 bytes"}
    assert str(odd) in proc.stdout and why[plant] in proc.stdout


def test_pack_refuses_an_image_over_max_pixels(tmp_path):
    src = tmp_path / "photos" / "bob"
    src.mkdir(parents=True)
    (src / "big.png").write_bytes(png_of(5000, 5000))
    with pytest.raises(ValueError, match="big.png.*over the limit"):
        pack_folder(tmp_path / "photos", tmp_path / "out", progress=False)
