"""``faceocc.occlude``: FaceOccluder's sample and apply on batches of torch tensors.

The CPU path must give exactly what ``FaceOccluder.apply`` gives on the same rows, and repeat for a seed. The
CUDA path (CuPy views of the tensors, torch's current stream) runs on the CPU through tests/cuda_host's fake
CuPy, the tensors standing in for CUDA tensors of device 1; and on a real GPU where there is one (``gpu``).
"""

from __future__ import annotations

import dataclasses
import types
import warnings

import numpy as np
import pytest
import torch
from cuda_host import imports_on_the_null_stream, real_faces, rendered_masks, requires_gxx
from faceocc.ops import FaceOccluder, Kind, load_profile
from gpu import gpu_required

from faceocc import occlude
from faceocc.functional import clear_cache

N = 48
DEVICE = 1                  # the tensors' CUDA device in the fake: not device 0
TORCH_STREAM = 0x70C5       # torch's current stream on it: a stream neither CuPy nor faceocc made
TENSORS = ("img", "msk", "ori", "kind")


@pytest.fixture(autouse=True)
def _fresh_occluders():
    """Occluders are cached per setting; a cached one must not outlive the (fake) CuPy it was made with."""
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="module")
def batch():
    """Faces [N, 3, H, W] uint8, their 3D-mask renders [N, 3, H, W] and masks [N, H, W] (0 masked)."""
    faces = real_faces(N, seed=4)
    masked, masks = rendered_masks(faces, seed=4)

    def chw(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))

    return chw(faces), chw(masked), torch.from_numpy(np.ascontiguousarray(masks))


def gray_occluded():
    """MSML's grayscale (one channel) with ori as its second occlusion draw: every apply option."""
    return dataclasses.replace(load_profile("ms1m"), grayscale=True, gray_channels=1, ori="occluded")


PROFILES = {"ms1m": "ms1m", "casia": "casia", "gray_occluded": gray_occluded()}


def reference(faces, seed, profile, masked=None, masks=None, dtype=np.float32):
    """What FaceOccluder gives for the same seed: its sample (3D-mask rows pointing at their own row, as in
    the loader), then its apply."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # without masks the mask3d share goes elsewhere
        occ = FaceOccluder(profile, None, tuple(faces.shape[2:]), "cpu", seed, has_masks=masks is not None,
                           dtype=dtype)
    table = occ.sample(len(faces))
    table["m3d_slot"] = np.where(table["m3d_slot"] >= 0, np.arange(len(faces)), -1)
    nhwc = faces.permute(0, 2, 3, 1).contiguous().numpy()
    extra = () if masks is None else (masked.permute(0, 2, 3, 1).contiguous().numpy(), masks.numpy())
    return table, occ.apply(nhwc, table, *extra)


def assert_equal(got, want, what, tolerance=0.0):
    """Tensors ``got`` equal arrays ``want`` (floats within ``tolerance``, in units of the normalized range)."""
    for name in TENSORS:
        g, w = got[name], want[name]
        assert isinstance(g, torch.Tensor), f"{what} {name}"
        g = g.numpy()
        assert (g.shape, g.dtype) == (w.shape, w.dtype), f"{what} {name}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if tolerance and w.dtype.kind == "f":
            diff = np.abs(g.astype(np.float32) - w.astype(np.float32)).max()
            assert not np.isnan(g).any() and diff <= tolerance, f"{what} {name}: max diff {diff}"
        else:
            assert np.array_equal(g, w), f"{what} {name}: {int((g != w).sum())} elements differ"


@pytest.mark.parametrize("name", list(PROFILES))
def test_occlude_is_face_occluders_apply_on_the_same_rows(batch, name):
    faces, _, _ = batch
    table, want = reference(faces, 5, PROFILES[name])
    got = occlude(faces, seed=5, profile=PROFILES[name])
    assert got["params"].tobytes() == table.tobytes()
    assert_equal(got, want, name)
    kinds = set(got["kind"].tolist())
    assert len(kinds) >= 4 and Kind.MASK3D not in kinds, kinds     # a mix of kinds; no mask3d without masks
    assert (got["msk"] == 0).any() and (got["msk"] == 1).any()


def test_occlude_with_3d_masks_reads_each_rows_own_render(batch):
    faces, masked, masks = batch
    table, want = reference(faces, 2, "ms1m", masked, masks)
    got = occlude(faces, seed=2, masks=(masked, masks[:, None]))       # [N, 1, H, W] masks as well
    assert_equal(got, want, "masks")
    rows = np.flatnonzero(table["kind"] == Kind.MASK3D)
    assert rows.size >= 3
    for r in rows:          # the mask record's covered pixels, in the output frame, are the occluded ones
        covered = masks[r].numpy() <= 128
        covered = covered[:, ::-1] if table["flip"][r] else covered
        assert np.array_equal(got["msk"][r].numpy() == 0, covered), r


def test_a_seed_repeats_and_the_table_replays(batch):
    faces, _, _ = batch
    first = occlude(faces, seed=9)
    again = occlude(faces, seed=9)
    other = occlude(faces, seed=10)
    for name in TENSORS:
        assert torch.equal(first[name], again[name]), name
    assert not torch.equal(first["img"], other["img"])
    replay = occlude(faces, params=first["params"])
    assert_equal(replay, {k: v.numpy() for k, v in first.items() if k in TENSORS}, "replay")
    gen = [occlude(faces, seed=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(gen[0]["img"], gen[1]["img"])
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(occlude(faces, seed=g)["img"], occlude(faces, seed=g)["img"])   # a draw per call


def test_float_faces_and_float16(batch):
    faces, _, _ = batch
    as_uint8 = occlude(faces[:8], seed=1)
    as_float = occlude(faces[:8].float() / 255, seed=1)
    for name in TENSORS:
        assert torch.equal(as_uint8[name], as_float[name]), name
    half = occlude(faces[:8], seed=1, dtype=torch.float16)
    assert half["img"].dtype == torch.float16
    assert (half["img"].float() - as_uint8["img"]).abs().max() < 2e-2


def test_bad_arguments_are_refused(batch):
    faces, masked, masks = batch
    cases = [
        (dict(), "exactly one of seed"),
        (dict(seed=1, params=occlude(faces[:2], seed=1)["params"]), "exactly one of seed"),
        (dict(params=occlude(faces[:2], seed=1)["params"]), "parameter table of 4 rows"),
        (dict(seed=-1), "seed must be"),
        (dict(seed=1, dtype=torch.float64), "dtype must be"),
        (dict(seed=1, masks=(masked[:4], masks[:3])), "masks must be uint8"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            occlude(faces[:4], **kwargs)
    for bad, message in [(faces[0], r"\[N, 3, H, W\]"), (faces[:2].permute(0, 2, 3, 1), r"\[N, 3, H, W\]"),
                         (faces[:2].float(), r"must lie in \[0, 1\]"), (faces[:2].int(), "must be uint8"),
                         (faces[:0], "no faces")]:
        with pytest.raises(ValueError, match=message):
            occlude(bad, seed=1)


# -- the CUDA path, on the CPU ----------------------------------------------------------------------------


@pytest.fixture
def on_device(cp, monkeypatch):
    """CPU tensors taken for CUDA tensors of device DEVICE, torch's current stream there a stand-in."""
    import faceocc.functional as functional

    streams = []

    def current_stream(device=None):
        streams.append(device)
        return types.SimpleNamespace(cuda_stream=TORCH_STREAM)

    monkeypatch.setattr(functional, "_cuda_index", lambda images: DEVICE)
    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    return streams


@pytest.mark.kernels_on_cpu
@requires_gxx
@pytest.mark.parametrize("name, with_masks", [("ms1m", True), ("gray_occluded", False)])
def test_cuda_path_runs_the_kernels_on_torchs_stream(cp, on_device, batch, name, with_masks):
    faces, masked, masks = batch
    n = 16
    extra = {"masks": (masked[:n], masks[:n])} if with_masks else {}
    table, want = reference(faces[:n], 7, PROFILES[name], *((masked[:n], masks[:n]) if with_masks else ()))
    occlude(faces[:n], seed=0, profile=PROFILES[name], **extra)  # makes the occluder (atlas upload, kernels) once
    cp.LOG.clear()
    got = occlude(faces[:n], seed=7, profile=PROFILES[name], **extra)
    assert got["params"].tobytes() == table.tobytes()
    normalized_unit = 2 / 255                                # 1/255 of the [0, 1] range, normalized to [-1, 1]
    assert_equal(got, want, name, tolerance=normalized_unit)
    assert on_device == [DEVICE, DEVICE]
    launches = [e for e in cp.LOG if e.op == "launch"]
    assert len(launches) == (4 if name == "gray_occluded" else 2)     # ori occluded: a second pass pair
    assert {(e.device, e.stream) for e in cp.LOG} == {(DEVICE, TORCH_STREAM)}
    assert (table["kind"] == Kind.MASK3D).any() == with_masks


@pytest.mark.kernels_on_cpu
@requires_gxx
def test_cuda_path_off_torchs_stream_is_a_race(cp, on_device, batch, monkeypatch):
    """The control: the tensors imported on CuPy's null stream instead of torch's is a cross-stream read
    without synchronization, which the fake reports (so the test above can fail)."""
    imports_on_the_null_stream(cp, monkeypatch)
    with pytest.raises(cp.CUDARuntimeError, match="race"):
        occlude(batch[0][:4], seed=1)


# -- a real GPU ----------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_on_a_gpu_the_kernels_give_the_twins_result(batch):
    if not torch.cuda.is_available():
        (pytest.fail if gpu_required() else pytest.skip)("torch has no CUDA device")
    faces, masked, masks = batch
    want = occlude(faces, seed=3, masks=(masked, masks))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):     # on a stream of torch's own, not the default one
        got = occlude(faces.cuda(), seed=3, masks=(masked.cuda(), masks.cuda()))
        assert all(got[k].device == torch.device("cuda", 0) for k in TENSORS)
        got = {k: got[k].cpu() for k in TENSORS}
    for name in TENSORS:
        g, w = got[name], want[name]
        if w.dtype.is_floating_point:
            assert (g - w).abs().max().item() <= 2 / 255 + 1e-6, name
        else:
            assert torch.equal(g, w), name
