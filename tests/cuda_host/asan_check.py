"""The kernels under AddressSanitizer; run by ``cuda_host.run_under_asan`` in a fresh process (libasan
preloaded, kernels built with -fsanitize=address), never collected by pytest.

    asan_check.py kernels   every built-in profile (float32, float16), fuzzed tables, odd sizes, the
                            rasterizer, through the project's launchers; prints "ASAN CLEAN <launches>"
    asan_check.py planted   a kernel that reads one element past its input: ASan must abort the process
"""

from __future__ import annotations

import sys

import numpy as np

from cuda_host import installed, real_faces, rendered_masks
from cuda_host.tables import fuzzed_table, mask_inputs

PLANTED = r'''
extern "C" __global__ void planted(const float* a, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[0] = a[i];   // i == n reads one element past the end
}'''


def kernels(cp: object) -> None:
    from faceocc.ops import FaceOccluder
    from faceocc.ops.profiles import BUILTIN
    from faceocc.render.renderer import MaskRenderer

    for size, n in (((112, 112), 3), ((37, 53), 4)):
        faces = real_faces(n, size, seed=4)
        masked, masks = rendered_masks(faces, seed=4)
        for profile in sorted(p.stem for p in BUILTIN.glob("*.yaml")):
            for dtype in (np.float32, np.float16):
                occ = FaceOccluder(profile, size=size, device="gpu", seed=1, dtype=dtype)
                for batch in range(1):
                    t = occ.sample(n, batch=batch)
                    occ.apply(faces.copy(), t, *mask_inputs(t, masked, masks))
        rng = np.random.default_rng(1)
        for _ in range(3):
            t = fuzzed_table(rng, n, size, occ.bank.sizes)
            occ.apply(faces.copy(), t, *mask_inputs(t, masked, masks))
        r = MaskRenderer(size, device="gpu")
        r.render(faces.copy(), r.sample(n, np.random.default_rng(0)))
    print("ASAN CLEAN", sum(e.op == "launch" for e in cp.LOG), "launches", flush=True)


def planted(cp: object) -> None:
    kernel = cp.RawModule(code=PLANTED, options=("--std=c++17",)).get_function("planted")
    a, out = cp.zeros(1000, cp.float32), cp.zeros(1, cp.float32)
    kernel((4,), (256,), (a, out, np.int32(1000)))
    print("NOT DETECTED", flush=True)


if __name__ == "__main__":
    with installed() as fake:
        {"kernels": kernels, "planted": planted}[sys.argv[1]](fake)
