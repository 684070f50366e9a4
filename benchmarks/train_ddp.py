"""A short training loop of a small ResNet on FaceOcclusionLoader under torchrun, printing img/s per rank.

    torchrun --nproc_per_node=2 benchmarks/train_ddp.py --steps 20            # GPUs: NCCL
    torchrun --nproc_per_node=2 benchmarks/train_ddp.py --device cpu --steps 3  # CPU: gloo

Without --data it trains on the embedded example dataset (made by rank 0 in a temporary folder).
The loss is MSML-flavoured: identity cross-entropy on the occluded face plus an occlusion-mask head.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from faceocc import FaceOcclusionLoader


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))


class SmallResNet(nn.Module):
    """Four stages of basic blocks, an embedding and an identity head, plus a mask head."""

    def __init__(self, classes: int, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        chans = [width, width * 2, width * 4, width * 8]
        pairs = zip([width] + chans[:-1], chans)
        self.stages = nn.Sequential(*[Block(c_in, c_out, 2) for c_in, c_out in pairs])
        self.mask_head = nn.Conv2d(chans[1], 1, 1)
        self.embed = nn.Linear(chans[-1], 128)
        self.classify = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        x = self.stages[0](x)
        x = self.stages[1](x)
        mask_logits = self.mask_head(x)
        x = self.stages[3](self.stages[2](x))
        return self.classify(self.embed(x.mean((2, 3)))), mask_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--profile", default="ms1m")
    args = ap.parse_args()
    gpu = args.device == "gpu"
    dist.init_process_group("nccl" if gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    if gpu:
        from faceocc.dali_pipes.placement import local_gpu

        local = local_gpu(local, torch.cuda.device_count())   # one visible GPU per rank: device 0
        torch.cuda.set_device(local)
    device = torch.device(f"cuda:{local}" if gpu else "cpu")

    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.mkdtemp(prefix="faceocc-ddp-") if rank == 0 else None
        box = [tmp]
        dist.broadcast_object_list(box, src=0)
        data = box[0]
        if rank == 0:
            from faceocc.datasets.example import make_example_dataset

            make_example_dataset(data, identities=8, per_identity=16)
        dist.barrier()
    loader = FaceOcclusionLoader(data, args.batch_size, device=args.device, profile=args.profile)
    from faceocc.recordio import RecordDataset

    with RecordDataset(data) as ds:
        classes = ds.num_classes or 1 + max(ds.label(int(k)) for k in ds.image_keys[:1000])
    model = nn.parallel.DistributedDataParallel(SmallResNet(classes).to(device),
                                                device_ids=[local] if gpu else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seen, step, start = 0, 0, None
    while step < args.steps:
        for batch in loader:
            logits, mask_logits = model(batch["img"].to(device).float())
            target = F.interpolate(batch["msk"][:, None].float().to(device), size=mask_logits.shape[-2:])
            loss = F.cross_entropy(logits, batch["label"].to(device)) + \
                F.binary_cross_entropy_with_logits(mask_logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == 1:
                start = time.perf_counter()       # the first step includes start-up
            else:
                seen += batch["img"].shape[0]
            if step >= args.steps:
                break
    elapsed = time.perf_counter() - start if start else 0.0
    rate = seen / elapsed if elapsed > 0 else 0.0
    print(f"rank {rank}/{world} device={device} steps={step} loss={loss.item():.3f} img/s={rate:.1f}",
          flush=True)
    dist.barrier()
    dist.destroy_process_group()
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
