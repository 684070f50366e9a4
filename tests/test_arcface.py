"""``faceocc.arcface.get_dataloader`` used as arcface_torch's ``train_v2.py`` uses its own loader, on the CPU."""

from __future__ import annotations

import types
import warnings
from collections import Counter

import pytest
import torch
from cuda_host import requires_gxx
from datasets import face_dataset

from faceocc.recordio import RecordDataset, class_of

pytest.importorskip("nvidia.dali")

BATCH = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """48 faces of 6 identities, 112 x 112, no mask records."""
    return face_dataset(tmp_path_factory.mktemp("arcface"))


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def dataset_labels(folder) -> Counter:
    with RecordDataset(folder) as ds:
        return Counter(class_of(ds.read(int(k))[0]) for k in ds.image_keys)


def quiet_loader(*args, **kwargs):
    from faceocc.arcface import get_dataloader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return get_dataloader(*args, **kwargs)


def test_train_v2_loop_on_the_cpu(dataset, no_gpu):
    from faceocc.arcface import get_dataloader

    with pytest.warns(UserWarning, match="no CUDA GPU"):
        train_loader = get_dataloader(dataset, 0, BATCH, False, False, 2048, 2)   # train_v2.py's call
    assert len(train_loader) == 6
    epochs = []
    for _epoch in range(2):                                    # train_v2.py's loop
        labels, images = [], []
        for _, (img, local_labels) in enumerate(train_loader):
            assert (img.shape, img.dtype, img.device.type) == ((BATCH, 3, 112, 112), torch.float32, "cpu")
            assert (local_labels.shape, local_labels.dtype) == ((BATCH,), torch.int64)
            assert img.min() >= -1 and img.max() <= 1 and img.min() < -0.5 and img.max() > 0.5
            labels += local_labels.tolist()
            images.append(img)
        train_loader.reset()
        assert Counter(labels) == dataset_labels(dataset)      # every face of the dataset once per epoch
        epochs.append((labels, torch.cat(images)))
    assert epochs[0][0] != epochs[1][0]                        # a new order every epoch
    assert not torch.equal(epochs[0][1], epochs[1][1])


def test_every_rank_runs_the_same_number_of_batches(tmp_path, no_gpu):
    data = face_dataset(tmp_path / "odd", identities=5, per_identity=9)      # 45 faces: 22 per rank
    counts, seen = [], Counter()
    for rank in range(2):
        loader = quiet_loader(data, 0, 4, seed=7, shard_id=rank, num_shards=2)
        batches = list(loader)
        counts.append((len(loader), len(batches)))
        seen.update(label for _, labels in batches for label in labels.tolist())
    assert counts == [(5, 5), (5, 5)]
    assert not seen - dataset_labels(data) and sum(seen.values()) == 40


def test_msml_outputs_and_reset_in_the_middle_of_an_epoch(dataset, no_gpu):
    loader = quiet_loader(dataset, 0, BATCH, outputs="msml", seed=3)
    it = iter(loader)
    img, msk, ori, label = next(it)
    assert (msk.shape, msk.dtype, ori.shape, label.dtype) == ((BATCH, 112, 112), torch.int32, img.shape, torch.int64)
    assert set(msk.unique().tolist()) <= {0, 1} and (msk == 0).any()
    assert not torch.equal(img, ori)
    next(it)
    del it
    loader.reset()              # the rest of epoch 0 is dropped: the next iteration is epoch 1
    assert loader.loader.state_dict()["next_batch"] == len(loader)
    epoch1 = list(loader)
    assert len(epoch1) == len(loader)
    loader.reset()              # after a whole epoch: nothing to drop
    assert loader.loader.state_dict()["next_batch"] == 2 * len(loader)
    loader.set_epoch(1)         # a resumed run: epoch 1 again, the same batches
    assert all(torch.equal(a, b) for a, b in zip(epoch1[0], next(iter(loader))))
    assert loader.loader.epoch == 1


def test_arguments(dataset, no_gpu, monkeypatch):
    from faceocc import arcface

    with pytest.raises(ValueError, match="RecordIO"):
        arcface.get_dataloader("synthetic", 0, BATCH)
    with pytest.raises(ValueError, match="outputs must be"):
        arcface.get_dataloader(dataset, 0, BATCH, outputs="tuple")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        arcface.get_dataloader(dataset, 0, BATCH, device="gpu")
    with pytest.raises(ValueError, match="shifts the seed into dali_aug"):    # train_v2.py's older 6-argument call
        arcface.get_dataloader(dataset, 0, BATCH, False, 2048, 2)
    with pytest.warns(UserWarning, match="dali_aug"):
        quiet = arcface.get_dataloader(dataset, 0, BATCH, True, True, device="cpu")
    assert quiet.loader.device == "cpu"
    made = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def recorder(*args, **kwargs):
        made.update(args=args, kwargs=kwargs)
        return types.SimpleNamespace(device_id=kwargs["device_id"] % 2 if kwargs["device"] == "gpu" else None)

    monkeypatch.setattr(arcface, "FaceOcclusionLoader", recorder)
    got = arcface.get_dataloader(dataset, 3, 64, seed=11, num_workers=0, profile="casia")
    assert made["args"] == (dataset, 64)
    assert {k: made["kwargs"][k] for k in ("device", "device_id", "seed", "num_threads", "profile")} == \
        {"device": "gpu", "device_id": 3, "seed": 11, "num_threads": 1, "profile": "casia"}
    assert got.device == torch.device("cuda", 1)      # the loader's GPU: local rank 3 of 2 visible devices
    got = arcface.get_dataloader(dataset, 3, 64, device="cpu")   # decoded on the CPU, handed to cuda:3
    assert made["kwargs"]["device"] == "cpu" and got.device == torch.device("cuda", 3)


@pytest.mark.kernels_on_cpu
@requires_gxx
def test_the_gpu_path_on_local_rank_runs_on_the_cpu_harness(cp, dataset, monkeypatch):
    """``get_dataloader(root, 1, ...)`` with a GPU: the loader's GPU step (the kernels of tests/cuda_host's
    fake CuPy) on device 1 although LOCAL_RANK is unset, giving the CPU path's batches."""
    from test_loader_gpu_step_on_cpu import gpu_seams

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    gpu_seams(monkeypatch, [])                        # the GPU pipeline built on the CPU; torch's stream
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    got = quiet_loader(dataset, 1, BATCH, seed=5, outputs="msml", device="gpu")
    want = quiet_loader(dataset, 1, BATCH, seed=5, outputs="msml", device="cpu")
    assert got.loader.device_id == 1 and got.device == torch.device("cuda", 1)
    got.device = want.device = torch.device("cpu")    # the fake's tensors live in host memory
    cp.LOG.clear()
    (img, msk, ori, label), (img_w, msk_w, ori_w, label_w) = next(iter(got)), next(iter(want))
    assert torch.equal(label, label_w) and torch.equal(msk, msk_w)
    assert (img - img_w).abs().max() <= 2 / 255 and (ori - ori_w).abs().max() <= 2 / 255
    assert {e.device for e in cp.LOG if e.op == "launch"} == {1}
