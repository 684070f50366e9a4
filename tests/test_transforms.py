"""``faceocc.transforms.MSMLOcclusion`` in torchvision ``transforms.v2`` pipelines (needs torchvision: the
``torchvision`` extra; CI installs it, and there a missing torchvision fails instead of skipping)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import oracles_required
from cuda_host import real_faces
from faceocc.ops import load_profile

from faceocc import occlude
from faceocc.functional import SEED_BOUND

try:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from faceocc.transforms import MSMLOcclusion
    MISSING = None
except (ImportError, RuntimeError) as err:   # PyPI's torchvision beside the CPU torch build: RuntimeError
    MISSING = f"torchvision does not import: {err}"

needs_torchvision = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def test_torchvision_imports_where_the_oracles_are_required():
    """CI sets FACEOCC_REQUIRE_ORACLES=1: there the tests below must run, not skip."""
    if MISSING is not None:
        (pytest.fail if oracles_required() else pytest.skip)(MISSING)


FACES = real_faces(6, seed=2)


def pil(i: int = 0):
    from PIL import Image

    return Image.fromarray(FACES[i])


def chw(i: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(FACES[i].transpose(2, 0, 1)))


def still():
    """ms1m without the flip and the face lighting: every pixel the transform changes is an occluded one."""
    p = load_profile("ms1m")
    return dataclasses.replace(p, flip_p=0.0, lighting=dataclasses.replace(p.lighting, p=0.0))


def as_array(image) -> np.ndarray:
    return np.asarray(image) if not isinstance(image, torch.Tensor) else image.permute(1, 2, 0).numpy()


@needs_torchvision
def test_the_mask_is_the_pixels_it_changed():
    step = MSMLOcclusion(still())
    torch.manual_seed(0)
    covered = changed_in_covered = 0
    for i in range(40):
        image, mask = step(pil(i % len(FACES)))
        assert isinstance(mask, tv_tensors.Mask) and (mask.shape, mask.dtype) == ((112, 112), torch.uint8)
        changed = (as_array(image) != FACES[i % len(FACES)]).any(axis=2)
        occluded = mask.numpy() == 0
        assert not (changed & ~occluded).any(), f"call {i}: pixels changed outside the mask"
        covered += occluded.sum()
        changed_in_covered += (changed & occluded).sum()
    assert covered > 40 * 112 * 112 * 0.1
    assert changed_in_covered > 0.9 * covered        # glasses' faint edges are occluded but hardly changed


@needs_torchvision
@pytest.mark.parametrize("kind", ["pil", "uint8", "image", "float"])
def test_compose_on_each_input_type(kind):
    inputs = {"pil": pil(), "uint8": chw(), "image": tv_tensors.Image(chw()), "float": chw().float() / 255}
    pipeline = v2.Compose([MSMLOcclusion("casia"), v2.RandomHorizontalFlip(p=1.0), v2.ToImage(),
                           v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    torch.manual_seed(5)
    image, mask = pipeline(inputs[kind])
    assert isinstance(image, tv_tensors.Image) and (image.shape, image.dtype) == ((3, 112, 112), torch.float32)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8 and set(mask.unique().tolist()) <= {0, 1}
    # the same draw without the pipeline's flip: the flip moved the mask with the image
    torch.manual_seed(5)
    plain, plain_mask = MSMLOcclusion("casia")(inputs[kind])
    assert type(plain) is type(inputs[kind])
    assert not isinstance(plain, torch.Tensor) or plain.dtype == inputs[kind].dtype
    assert torch.equal(mask, plain_mask.flip(-1))
    unit = torch.from_numpy(as_array(plain).copy()).permute(2, 0, 1) if kind == "pil" else plain
    unit = unit.float() if kind == "float" else unit.float() / 255
    assert torch.allclose(image, (unit.flip(-1) - 0.5) / 0.5, atol=1e-6)


@needs_torchvision
def test_a_call_is_occlude_with_one_seed_from_the_generator():
    step = MSMLOcclusion("ms1m", generator=torch.Generator().manual_seed(4))
    image, mask = step(chw(1))
    seed = int(torch.randint(0, SEED_BOUND, (1,), generator=torch.Generator().manual_seed(4)))
    out = occlude(chw(1)[None], seed=seed)
    assert torch.equal(mask, out["msk"][0].to(torch.uint8))
    assert torch.equal(image, (out["img"][0] * 0.5 + 0.5).mul(255).round().to(torch.uint8))
    stacked, masks = step(torch.stack([chw(0), chw(1), chw(2)]))     # a stack of faces: one table, a row each
    assert stacked.shape == (3, 3, 112, 112) and masks.shape == (3, 112, 112)
    with pytest.raises(TypeError, match="one RGB face"):
        step(torch.zeros(112, 112, dtype=torch.uint8))
    with pytest.raises(TypeError, match="one face, not 2 inputs"):       # v2.Compose called on (image, label)
        v2.Compose([step])(chw(1), 3)


class Faces(torch.utils.data.Dataset):
    """The same face four times, through the transform."""

    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 4

    def __getitem__(self, i):
        image, mask = self.transform(chw(0))
        return image, mask


@needs_torchvision
@pytest.mark.parametrize("generator", [False, True])
def test_dataloader_workers_differ_and_runs_repeat(generator):
    def run():
        torch.manual_seed(0)
        step = MSMLOcclusion(generator=torch.Generator().manual_seed(8) if generator else None)
        loader = torch.utils.data.DataLoader(Faces(step), batch_size=None, num_workers=2,
                                             multiprocessing_context="fork")
        return [[image for image, _ in loader] for _epoch in range(2)]

    first, second = run(), run()
    assert all(torch.equal(a, b) for x, y in zip(first, second) for a, b in zip(x, y))    # a run repeats
    assert not torch.equal(first[0][0], first[0][1])                    # samples 0 and 1: different workers
    assert not any(torch.equal(a, b) for a, b in zip(first[0], first[1]))   # epoch 1 is not epoch 0 again
