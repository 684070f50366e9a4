"""Online 3D masks (profile ``mask3d.source: online``): the loader refuses a dataset without its geometry
set; online masks equal ``faceocc render``'s for the same face, geometry and row (CPU twin and kernels);
the same key gets another mask every epoch; masks cover nose and mouth and leave the eyes clear on real,
turned faces; online tables are the offline tables plus their render rows; FaceOccluder and occlusion_op
take geometry in; the GPU step equals the CPU step (kernels on the CPU)."""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import numpy as np
import pytest
from conftest import jpeg_bytes, shared_data
from cuda_host import real_faces, requires_gxx
from datasets import face_dataset
from faceocc.ops import FaceOccluder, Kind, load_profile
from faceocc.ops.params import RENDER_DTYPE, render_rows
from faceocc.render.face_geometry import EYES, MOUTH_CORNERS, NOSE_TIP, template_landmarks

from faceocc.cli import main
from faceocc.datasets.geometry import GeometryReader
from faceocc.recordio import RecordDataset, RecordIOError

pytest.importorskip("nvidia.dali")


def online(base: str = "ms1m", **changes) -> object:
    """``base`` with online 3D masks; ``changes`` replace top-level fields (``kinds``, ``flip_p``, ...)."""
    p = load_profile(base)
    render = dataclasses.replace(p.mask3d.render, **changes.pop("render", {}))
    return dataclasses.replace(p, mask3d=dataclasses.replace(p.mask3d, source="online", render=render), **changes)


ONLY_MASKS = {"kinds": {"mask3d": 1.0}, "flip_p": 0.0}


def loader(data, prof, device="cpu", **kw):
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(data, kw.pop("batch_size", 8), device=device, profile=prof, seed=kw.pop("seed", 5),
                                   shard_id=0, num_shards=1, num_threads=2, prefetch=1, **kw)


@pytest.fixture(scope="module")
def with_geometry(tmp_path_factory):
    """48 faces (6 identities) with a template geometry set and no mask records."""
    data = face_dataset(tmp_path_factory.mktemp("online"))
    assert main(["render", str(data), "--geometry-only", "--chunk-size", "16"]) == 0
    return data


def test_a_dataset_without_geometry_is_refused_when_the_loader_is_built(tmp_path, with_geometry):
    data = face_dataset(tmp_path / "bare", identities=2, per_identity=4)
    with pytest.raises(FileNotFoundError, match=r"faceocc render .*bare --geometry-only"):
        loader(data, online())
    loader(data, "ms1m")                                   # offline: the share goes elsewhere, as before
    for ext in (".rec", ".idx"):                           # another dataset's geometry
        shutil.copy(with_geometry / f"mask_geometry{ext}", data / f"mask_geometry{ext}")
    with pytest.raises(RecordIOError, match="mask_geometry.rec holds .* key"):
        loader(data, online())


def test_online_tables_are_the_offline_tables_plus_their_renders():
    offline = FaceOccluder("ms1m", seed=4).sample(256, epoch=2, batch=3)
    with_online = FaceOccluder(online(render={"tint_p": 0.5}), seed=4).sample(256, epoch=2, batch=3)
    mask = offline["kind"] == Kind.MASK3D
    assert mask.sum() > 20 and (offline["render_texture"] == -1).all()
    for name in offline.dtype.names:
        if not name.startswith("render_"):
            assert np.array_equal(offline[name], with_online[name]), name
    assert (with_online["render_texture"][mask] >= 0).all() and (with_online["render_texture"][~mask] == -1).all()
    tinted = (with_online["render_tint"][mask] != 1).any(1)
    assert 0.3 < tinted.mean() < 0.7


def _job_rows(job, keys: np.ndarray) -> np.ndarray:
    """The render rows ``faceocc render`` drew for ``keys`` (chunk c: MaskRenderer.sample seeded [seed, c])."""
    rows = np.zeros(len(keys), RENDER_DTYPE)
    for c in range(job.chunks):
        chunk = job.chunk_keys(c)
        drawn = job.renderer.sample(len(chunk), np.random.default_rng([job.seed, c]))
        at = np.isin(keys, chunk)
        rows[at] = drawn[np.searchsorted(chunk, keys[at])]
    return rows


def test_online_mask_equals_renders_mask_before_encoding(with_geometry, tmp_path):
    """``faceocc render`` (reusing the stored geometry) and an online render of the same face, geometry
    and render row: the mask record (PNG, lossless) equals the online mask exactly, and the masked face
    before encoding equals the online masked face."""
    from faceocc.render.job import RenderJob

    data = tmp_path / "d"
    shutil.copytree(with_geometry, data, symlinks=True)
    with RenderJob(data, chunk_size=16) as job:
        assert job.stored is not None
        job.run(progress=False)
        job.merge(progress=False)
        with RecordDataset(data) as train:
            keys = train.image_keys
            rows = _job_rows(job, keys)
            from faceocc.recordio.images import decode_image

            faces = np.stack([decode_image(train.read(k)[1]) for k in keys.tolist()])
        geometry = GeometryReader(data).read(keys)
        want_out, want_mask = job.renderer.render(faces, rows, geometry)      # render's, before encoding
    occ = FaceOccluder(online(), seed=0)
    table = occ.sample(len(keys))
    table["kind"], table["m3d_slot"] = Kind.MASK3D, np.arange(len(keys))
    for name in RENDER_DTYPE.names:
        table[f"render_{name}"] = rows[name]
    masked, masks = occ.online.host(faces, table, geometry)
    assert np.array_equal(masks, want_mask) and np.array_equal(masked, want_out)
    with RecordDataset(data / "mask.rec") as mk:
        stored = np.stack([decode_image(mk.read(k)[1], gray=None) for k in keys.tolist()])
    assert np.array_equal(stored, masks) and (masks == 0).mean() > 0.1


@pytest.mark.kernels_on_cpu
@requires_gxx
def test_online_kernels_equal_the_twin_and_render(cp):
    faces = real_faces(6, seed=2)
    geometry = np.broadcast_to(template_landmarks(), (6, 68, 3)).astype(np.float32).copy()
    geometry[3:, :, 0] += 3.5                                                    # some faces elsewhere
    prof = online(**ONLY_MASKS, render={"tint_p": 1.0})
    cpu, gpu = FaceOccluder(prof, seed=1), FaceOccluder(prof, seed=1, device="gpu")
    table = cpu.sample(6)
    table["render_texture"][4] = -1                   # a row left undrawn: refused (it uses a 3D mask)
    with pytest.raises(ValueError, match="no render"):
        cpu.apply(faces, table, geometry=geometry)
    table = cpu.sample(6)
    want_masked, want_masks = cpu.online.host(faces, table, geometry)
    got_masked, got_masks = (cp.asnumpy(a) for a in gpu.online.render_device(faces, geometry, render_rows(table)))
    assert np.array_equal(got_masks, want_masks)
    assert np.abs(got_masked.astype(int) - want_masked.astype(int)).max() <= 1
    want, got = cpu.apply(faces, table, geometry=geometry), gpu.apply(faces, table, geometry=geometry)
    assert np.array_equal(cp.asnumpy(got["msk"]), want["msk"])
    assert np.abs(cp.asnumpy(got["img"]) - want["img"]).max() * 0.5 <= 2 / 255      # a grey level, lit


def test_face_occluder_refuses_what_does_not_fit():
    faces = real_faces(4, seed=3)
    geometry = np.broadcast_to(template_landmarks(), (4, 68, 3)).astype(np.float32)
    occ = FaceOccluder(online(**ONLY_MASKS), seed=0)
    table = occ.sample(4)
    with pytest.raises(ValueError, match="pass geometry="):
        occ.apply(faces, table)
    with pytest.raises(ValueError, match=r"geometry must be \[4, 68, 3\]"):
        occ.apply(faces, table, geometry=geometry[:3])
    with pytest.raises(ValueError, match="not masked_faces/masks"):
        occ.apply(faces, table, faces, np.zeros((4, 112, 112), np.uint8), geometry=geometry)
    with pytest.raises(ValueError, match="no render"):
        occ.apply(faces, FaceOccluder(dataclasses.replace(load_profile("ms1m"), **ONLY_MASKS)).sample(4),
                  geometry=geometry)
    with pytest.raises(ValueError, match="geometry= is for online"):
        FaceOccluder("ms1m", has_masks=False).apply(faces, table, geometry=geometry)
    out = occ(faces, geometry=geometry)
    assert (out["kind"] == Kind.MASK3D).all() and (out["msk"] == 0).any()


def test_textures_folder_and_tint_from_the_profile():
    folder = shared_data("mask_textures")
    if folder is None:
        pytest.skip("../shared/data/mask_textures not present")
    faces = real_faces(8, seed=4)
    geometry = np.broadcast_to(template_landmarks(), (8, 68, 3)).astype(np.float32)
    plain = FaceOccluder(online(**ONLY_MASKS, render={"textures": str(folder)}), seed=2)
    tinted = FaceOccluder(online(**ONLY_MASKS, render={"textures": str(folder), "tint_p": 1.0}), seed=2)
    assert plain.online.textures > 4
    a, b = plain.sample(8), tinted.sample(8)
    assert np.array_equal(a["render_texture"], b["render_texture"]) and (b["render_tint"] != 1).all()
    ma, ka = plain.online.host(faces, a, geometry)
    mb, kb = tinted.online.host(faces, b, geometry)
    assert np.array_equal(ka, kb)
    covered = ka == 0
    assert (ma[covered] != mb[covered]).any(-1).mean() > 0.5


def test_each_epoch_shows_each_face_another_mask(with_geometry):
    run = loader(with_geometry, online(**ONLY_MASKS))
    epochs = []
    for _ in range(2):
        got = {}
        for batch in run:
            for key, img, msk in zip(batch["key"].tolist(), batch["img"].numpy(), batch["msk"].numpy()):
                got[key] = (img, msk)
        epochs.append(got)
    keys = sorted(set(epochs[0]) & set(epochs[1]))
    assert len(keys) >= 40
    assert all(not np.array_equal(epochs[0][k][0], epochs[1][k][0]) for k in keys)
    assert np.mean([not np.array_equal(epochs[0][k][1], epochs[1][k][1]) for k in keys]) > 0.8
    assert all((epochs[0][k][1] == 0).mean() > 0.1 for k in keys)


def test_masks_cover_nose_and_mouth_not_eyes_on_real_turned_faces(tmp_path):
    """dlib geometry of the demo's real identities, turned, tilted and shifted: through the loader, every
    online mask (two epochs, other top edges, textures and lights each time) covers the nose tip and the
    mouth corners and no eye landmark."""
    from faceocc.render.dlib_landmarks import DlibLandmarks
    from real_faces import require_landmarks_extra, turned_views

    from faceocc.datasets.pack import write_insightface

    require_landmarks_extra()
    faces = turned_views()[0]
    data = write_insightface(tmp_path / "real", [(i // 6, jpeg_bytes(f, 98)) for i, f in enumerate(faces)],
                             image_size=(112, 112))
    assert main(["render", str(data), "--geometry-only", "--landmarks", "dlib"]) == 0
    with RecordDataset(data) as train:
        from faceocc.recordio.images import decode_image

        decoded = {k: decode_image(train.read(k)[1]) for k in train.image_keys.tolist()}
    keys = sorted(decoded)
    own = dict(zip(keys, DlibLandmarks()(np.stack([decoded[k] for k in keys]))))
    run = loader(data, online(**ONLY_MASKS), batch_size=6, last_batch="keep")
    seen, bad = 0, []
    for _ in range(2):
        for batch in run:
            for key, msk in zip(batch["key"].tolist(), batch["msk"].numpy()):
                at = lambda j: msk[int(np.clip(own[key][j][1], 0, 111)), int(np.clip(own[key][j][0], 0, 111))]  # noqa: E731,B023
                seen += 1
                if not all(at(j) == 0 for j in (NOSE_TIP, *MOUTH_CORNERS)) or any(at(j) == 0 for j in EYES):
                    bad.append(key)
    assert seen == 2 * len(keys) and not bad, bad


def test_occlusion_op_takes_geometry(with_geometry):
    from nvidia.dali import fn, pipeline_def, types

    from faceocc import occlusion_op

    occ = FaceOccluder(online(**ONLY_MASKS), seed=3)
    faces = real_faces(8, seed=5)
    geometry = GeometryReader(with_geometry).read(np.arange(1, 9))
    table = occ.sample(8)
    rows = np.ascontiguousarray(table).view(np.uint8).reshape(8, -1)

    @pipeline_def(batch_size=8, num_threads=2, device_id=None)
    def pipe():
        f, p, g = fn.external_source(source=lambda: (faces, rows, geometry), num_outputs=3, batch=True,
                                     dtype=[types.UINT8, types.UINT8, types.FLOAT])
        return tuple(occlusion_op(occ, f, p, geometry=g, threads=2))

    p = pipe()
    p.build()
    img, msk, ori, kind = (np.stack([np.asarray(x) for x in out]) for out in p.run())
    want = occ.apply(faces, table, geometry=geometry)
    assert np.array_equal(msk, want["msk"]) and np.array_equal(img, want["img"])
    assert np.array_equal(kind.ravel(), want["kind"])
    with pytest.raises(ValueError, match="needs geometry="):
        occlusion_op(occ, faces, rows)


@pytest.mark.kernels_on_cpu
@requires_gxx
def test_gpu_loader_step_with_online_masks_gives_the_cpu_loaders_batches(cp, with_geometry, monkeypatch):
    from test_loader_gpu_step_on_cpu import LOCAL_RANK, TORCH_STREAM, gpu_seams

    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    gpu_seams(monkeypatch, [])
    prof = online(render={"tint_p": 0.5})
    want_loader, got_loader = loader(with_geometry, prof), loader(with_geometry, prof, "gpu")
    assert got_loader.occluder.online._gpu.device_id == LOCAL_RANK and not got_loader.read_masks
    cp.LOG.clear()
    used = 0
    for i, (got, want) in enumerate(zip(got_loader, want_loader)):
        for name in ("msk", "kind", "label", "key"):
            assert np.array_equal(got[name].numpy(), want[name].numpy()), (i, name)
        for name in ("img", "ori"):
            assert np.abs(got[name].numpy() - want[name].numpy()).max() * 0.5 <= 2 / 255, (i, name)
        used += int((want["kind"] == Kind.MASK3D).sum())
        if i == 2:
            break
    assert used > 0
    launches = [e for e in cp.LOG if e.op == "launch"]
    assert len(launches) == 3 * 5                      # per batch: surface, depth, shade, occlusion pass 1 and 2
    assert {(e.device, e.stream) for e in cp.LOG} == {(LOCAL_RANK, TORCH_STREAM)}


def test_preview_draws_online_masks(with_geometry, tmp_path):
    from PIL import Image

    prof = tmp_path / "online.yaml"
    prof.write_text("mask3d: {source: online, render: {tint_p: 0.5}}\n")
    sizes = {}
    for name, data in (("with", with_geometry), ("without", face_dataset(tmp_path / "bare", 2, 4))):
        out = tmp_path / f"{name}.png"
        assert main(["preview", str(data), "--profile", str(prof), "--out", str(out), "--per-kind", "2"]) == 0
        with Image.open(out) as im:
            sizes[name] = im.size
    assert sizes["with"][1] == 8 * (112 + 4) and sizes["without"][1] == 7 * (112 + 4)   # a mask3d row
