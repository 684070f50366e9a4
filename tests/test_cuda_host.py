"""The CPU harness of tests/cuda_host checks what it claims to check: each of these plants the error it
must catch (a divergent exit before a shuffle, wrong launch arguments, host arrays, unwritten outputs,
a cross-stream race, a cross-device access) or shows the property the kernel tests rely on (shuffled
block order really shuffles; float -> half rounds as NumPy does)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_host import requires_gxx

pytestmark = [pytest.mark.kernels_on_cpu, requires_gxx]

SOURCE = r'''
#include <cuda_fp16.h>
extern "C" __global__ void warp_sum(const float* a, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;                              // lanes past n leave before the full-mask shuffle
  float v = a[i];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, v);
}
extern "C" __global__ void even_only(float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n && i % 2 == 0) out[i] = 1.0f;
}
extern "C" __global__ void block_order(int* counter, int* order) {
  if (threadIdx.x == 0) order[blockIdx.x] = atomicAdd(counter, 1);
}
extern "C" __global__ void to_half(const float* a, __half* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2half_rn(a[i]);
}
extern "C" __global__ void copy_int(const int* a, int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i];
}
'''


@pytest.fixture
def mod(cp):
    return cp.RawModule(code=SOURCE, options=("--std=c++17",))


def test_full_warps_reduce_and_a_divergent_exit_is_reported(cp, mod):
    k = mod.get_function("warp_sum")
    out = cp.zeros(1, cp.float32)
    k((1,), (128,), (cp.ones(128, cp.float32), out, np.int32(128)))
    assert float(cp.asnumpy(out)[0]) == 128
    with pytest.raises(RuntimeError, match="has exited"):
        k((1,), (128,), (cp.ones(100, cp.float32), out, np.int32(100)))


@pytest.mark.parametrize("args, error, match", [
    (lambda cp: (cp.ones(4, cp.float32), cp.zeros(1, cp.float32), 4), RuntimeError, "argument 2.*8 bytes"),
    (lambda cp: (cp.ones(4, cp.int32), cp.zeros(1, cp.float32), np.int32(4)), RuntimeError, "argument 0.*elements"),
    (lambda cp: (np.ones(4, np.float32), cp.zeros(1, cp.float32), np.int32(4)), TypeError, "host numpy"),
    (lambda cp: (cp.ones(8, cp.float32)[::2], cp.zeros(1, cp.float32), np.int32(4)), ValueError, "non-contiguous"),
    (lambda cp: (cp.ones(4, cp.float32), cp.zeros(1, cp.float32)), RuntimeError, "takes 3 arguments"),
])
def test_launch_arguments_are_checked_against_the_signature(cp, mod, args, error, match):
    with pytest.raises(error, match=match):
        mod.get_function("warp_sum")((1,), (32,), args(cp))


def test_unwritten_output_elements_stay_nan(cp, mod):
    out = cp.empty(64, cp.float32)
    mod.get_function("even_only")((1,), (64,), (out, np.int32(64)))
    got = cp.asnumpy(out)
    assert (got[::2] == 1).all() and np.isnan(got[1::2]).all()


def test_shuffled_block_order_really_shuffles(cp, mod):
    orders = []
    for seed in (0, 99):
        cp.ORDER_SEED = seed
        counter, order = cp.zeros(1, cp.int32), cp.zeros(64, cp.int32)
        mod.get_function("block_order")((64,), (32,), (counter, order))
        orders.append(cp.asnumpy(order))
    assert (orders[0] == np.arange(64)).all()
    assert sorted(orders[1]) == list(range(64)) and (orders[1] != np.arange(64)).any()


def test_float_to_half_rounds_like_numpy(cp, mod):
    rng = np.random.default_rng(0)
    bits = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32),
                           np.arange(0x33000000 - 64, 0x33000000 + 64, dtype=np.uint32),      # around 2^-25
                           np.arange(0x38800000 - 4096, 0x38800000 + 4096, dtype=np.uint32),  # subnormal edge
                           np.arange(0x477FE000, 0x47801000, 64, dtype=np.uint32)])            # around 65504
    values = bits.view(np.float32)
    values = np.concatenate([values, -values])
    cp.FTZ = False
    out = cp.empty(values.size, cp.float16)
    mod.get_function("to_half")(((values.size + 255) // 256,), (256,), (cp.asarray(values), out,
                                                                          np.int32(values.size)))
    with np.errstate(over="ignore", invalid="ignore"):
        want = values.astype(np.float16)
    got = cp.asnumpy(out)
    nan = np.isnan(want)
    assert np.isnan(got[nan]).all()
    assert np.array_equal(got[~nan].view(np.uint16), want[~nan].view(np.uint16))


def test_a_read_across_streams_without_synchronization_is_a_race(cp, mod):
    k = mod.get_function("copy_int")
    src = cp.zeros(8, cp.int32)                      # written on the legacy null stream
    dali = cp.cuda.Stream(null=True)
    dali.ptr = 0xDA11                                # what DALI's python_function does: a foreign stream
    with dali, pytest.raises(cp.CUDARuntimeError, match="race"):
        k((1,), (8,), (src, cp.empty(8, cp.int32), np.int32(8)))
    cp.cuda.Stream.null.synchronize()
    with dali:
        k((1,), (8,), (src, cp.empty(8, cp.int32), np.int32(8)))
    blocking = cp.cuda.Stream()                      # a blocking stream waits for the legacy stream
    fresh = cp.zeros(8, cp.int32)
    with blocking:
        k((1,), (8,), (fresh, cp.empty(8, cp.int32), np.int32(8)))


def test_an_array_of_another_device_is_an_illegal_address(cp, mod):
    with cp.cuda.Device(1):
        a = cp.zeros(8, cp.int32)
        cp.cuda.Device(1).synchronize()
    assert a.device.id == 1
    with pytest.raises(cp.CUDARuntimeError, match="device 1.*device 0"):
        mod.get_function("copy_int")((1,), (8,), (a, cp.empty(8, cp.int32), np.int32(8)))
