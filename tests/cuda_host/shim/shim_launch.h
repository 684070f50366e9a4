// shim_launch.h: the scheduler of cuda_shim.h. Included after the kernel source; shim::call() runs one
// launch with the arguments packed as cuLaunchKernel takes them (an array of pointers to the values).
//
// Every CUDA thread of a block is a ucontext fiber. Blocks run one after another, in order or in a seeded
// shuffled order (threads inside a block too). A fiber runs until it returns or reaches a shuffle or
// barrier; when no fiber can run, each warp whose lanes all wait is resolved: a shuffle completes only if
// every lane of its mask waits at a shuffle with that mask (CUDA's convergence rule), so a lane that
// returned early is reported instead of being modelled. -ftz=true is modelled with MXCSR's FTZ and DAZ.
#pragma once
#include <pmmintrin.h>
#include <ucontext.h>
#include <xmmintrin.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace shim {

enum State { RUNNABLE, WAIT_SHFL, WAIT_WARP, WAIT_BLOCK, DONE };

struct Lane {
  ucontext_t ctx;
  State state = RUNNABLE;
  shim_uint3 tid{};
  unsigned mask = 0;
  int kind = 0, param = 0, width = 32;
  uint64_t value = 0, result = 0;
};

// Kernels are shallow. Small stacks also keep ASan fast: its swapcontext interceptor clears the shadow
// of the whole target stack on every switch.
constexpr size_t kStack = 32 * 1024;

struct Launch {
  std::vector<Lane> lanes;
  ucontext_t sched;
  int current = -1;
  std::function<void()> body;
  std::string error;
};
inline Launch* g_launch = nullptr;
// fiber stacks, allocated once and reused (untouched pages cost nothing)
inline std::vector<std::unique_ptr<char[]>> g_stacks;

inline void fail(const std::string& m) { if (g_launch->error.empty()) g_launch->error = m; }
inline void yield_to_scheduler() {
  Launch& L = *g_launch;
  swapcontext(&L.lanes[L.current].ctx, &L.sched);
}
inline void wait_shfl(unsigned mask, int kind, int param, int width, uint64_t value, uint64_t* result) {
  Lane& me = g_launch->lanes[g_launch->current];
  me.state = WAIT_SHFL; me.mask = mask; me.kind = kind; me.param = param; me.width = width; me.value = value;
  yield_to_scheduler();
  *result = g_launch->lanes[g_launch->current].result;
}
inline void wait_block() {
  g_launch->lanes[g_launch->current].state = WAIT_BLOCK;
  yield_to_scheduler();
}
inline void wait_warp(unsigned mask) {
  Lane& me = g_launch->lanes[g_launch->current];
  me.state = WAIT_WARP; me.mask = mask;
  yield_to_scheduler();
}
inline void trampoline() {
  g_launch->body();
  g_launch->lanes[g_launch->current].state = DONE;  // returns to the scheduler through uc_link
}

// Resolves the shuffle or __syncwarp that the lanes [first, first + count) of one warp wait at.
inline bool resolve_warp(int first, int count, long long block) {
  Launch& L = *g_launch;
  Lane* w = &L.lanes[first];
  const Lane* any = nullptr;
  for (int i = 0; i < count && !any; ++i)
    if (w[i].state == WAIT_SHFL || w[i].state == WAIT_WARP) any = &w[i];
  if (!any) return true;
  const unsigned mask = any->mask;
  const char* what = any->state == WAIT_SHFL ? "__shfl_*_sync" : "__syncwarp";
  char msg[300];
  if (32 - __builtin_clz(mask) > count) {
    snprintf(msg, sizeof msg, "block %lld: %s mask 0x%08x names lanes beyond the block's last warp", block, what, mask);
    fail(msg);
    return false;
  }
  for (int i = 0; i < count; ++i) {
    if (!((mask >> i) & 1u)) continue;
    if (w[i].state != any->state || w[i].mask != mask) {
      snprintf(msg, sizeof msg, "block %lld, warp lane %d: named in mask 0x%08x of a %s but %s", block, i, mask, what,
               w[i].state == DONE ? "has exited (divergent exit before a full-mask shuffle)"
                                  : "waits elsewhere or with another mask");
      fail(msg);
      return false;
    }
  }
  if (any->state == WAIT_SHFL) {
    for (int i = 0; i < count; ++i) {
      if (!((mask >> i) & 1u)) continue;
      Lane& l = w[i];
      if (l.kind != any->kind || l.width != any->width || (l.kind != 0 && l.param != any->param)) {
        fail("lanes of one shuffle disagree on its kind, width or offset (not modelled)");
        return false;
      }
      const int width = l.width, base = (i / width) * width, li = i % width;
      int src = i;
      switch (l.kind) {
        case 0: src = base + (l.param % width); break;
        case 1: src = li - l.param >= 0 ? i - l.param : i; break;
        case 2: src = li + l.param < width ? i + l.param : i; break;
        case 3: { const int s = li ^ l.param; src = s < width ? base + s : i; } break;
      }
      if (src >= count || !((mask >> src) & 1u)) {
        snprintf(msg, sizeof msg, "block %lld: lane %d reads lane %d, outside the shuffle's mask (undefined)", block, i, src);
        fail(msg);
        return false;
      }
      l.result = w[src].value;
    }
  }
  for (int i = 0; i < count; ++i) if ((mask >> i) & 1u) w[i].state = RUNNABLE;
  return true;
}

// Runs every thread of one block to completion; false on an error (in g_launch->error).
inline bool run_block(long long bi, shim_uint3 bidx, const std::vector<int>& torder) {
  Launch& L = *g_launch;
  const shim_dim3 block = g_blockDim;
  const int nthreads = (int)L.lanes.size();
  for (int t = 0; t < nthreads; ++t) {
    Lane& l = L.lanes[t];
    l = Lane{};
    l.tid = shim_uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    getcontext(&l.ctx);
    l.ctx.uc_stack.ss_sp = g_stacks[t].get();
    l.ctx.uc_stack.ss_size = kStack;
    l.ctx.uc_link = &L.sched;
    makecontext(&l.ctx, (void (*)())trampoline, 0);
  }
  for (;;) {
    bool ran = false;
    for (int t : torder) {
      Lane& l = L.lanes[t];
      if (l.state != RUNNABLE) continue;
      L.current = t;
      g_threadIdx = l.tid;
      g_blockIdx = bidx;
      swapcontext(&L.sched, &l.ctx);
      ran = true;
      if (!L.error.empty()) return false;
    }
    bool all_done = true, block_wait = false, progressed = false;
    for (auto& l : L.lanes) { all_done &= l.state == DONE; block_wait |= l.state == WAIT_BLOCK; }
    if (all_done) return true;
    for (int w = 0; w < nthreads; w += 32) {
      const int count = std::min(32, nthreads - w);
      bool waits = false;
      for (int i = 0; i < count; ++i) waits |= L.lanes[w + i].state == WAIT_SHFL || L.lanes[w + i].state == WAIT_WARP;
      if (!waits) continue;
      if (!resolve_warp(w, count, bi)) return false;
      progressed = true;
    }
    if (!progressed && block_wait) {
      for (auto& l : L.lanes) {
        if (l.state == DONE) { fail("__syncthreads reached by some threads of a block after others exited"); return false; }
        if (l.state != WAIT_BLOCK) { fail("__syncthreads: threads of a block wait at different barriers"); return false; }
      }
      for (auto& l : L.lanes) l.state = RUNNABLE;
      progressed = true;
    }
    if (!progressed && !ran) { fail("deadlock: no thread of the block can proceed"); return false; }
  }
}

inline void run(shim_dim3 grid, shim_dim3 block, std::function<void()> body, unsigned order_seed, bool ftz,
                std::string& error) {
  Launch L;
  L.body = std::move(body);
  g_launch = &L;
  g_gridDim = grid;
  g_blockDim = block;
  const int nthreads = (int)(block.x * block.y * block.z);
  const long long nblocks = (long long)grid.x * grid.y * grid.z;
  L.lanes.resize(nthreads);
  while ((int)g_stacks.size() < nthreads) g_stacks.emplace_back(new char[kStack]);
  std::vector<long long> border(nblocks);
  std::vector<int> torder(nthreads);
  for (long long i = 0; i < nblocks; ++i) border[i] = i;
  for (int i = 0; i < nthreads; ++i) torder[i] = i;
  std::mt19937 rng(order_seed);
  if (order_seed) std::shuffle(border.begin(), border.end(), rng);
  const unsigned csr = _mm_getcsr();
  if (ftz) _mm_setcsr(csr | 0x8040);  // FTZ | DAZ
  for (long long bi : border) {
    if (order_seed) std::shuffle(torder.begin(), torder.end(), rng);
    const shim_uint3 bidx{(unsigned)(bi % grid.x), (unsigned)((bi / grid.x) % grid.y),
                          (unsigned)(bi / ((long long)grid.x * grid.y))};
    if (!run_block(bi, bidx, torder)) break;
  }
  _mm_setcsr(csr);
  error = L.error;
  g_launch = nullptr;
}

// What a launch argument is: 0 pointer, 1 signed integer, 2 unsigned integer, 3 float;
// what a pointer points to: 1 signed, 2 unsigned, 3 float, 4 struct, 5 void.
template <typename A> constexpr int kind_of() {
  using T = std::remove_cv_t<std::remove_reference_t<A>>;
  if (std::is_pointer_v<T>) return 0;
  if (std::is_floating_point_v<T>) return 3;
  if (std::is_integral_v<T>) return std::is_signed_v<T> ? 1 : 2;
  return -1;
}
template <typename A> constexpr int pointee_kind() {
  using T = std::remove_cv_t<std::remove_reference_t<A>>;
  if constexpr (std::is_pointer_v<T>) {
    using P = std::remove_cv_t<std::remove_pointer_t<T>>;
    if constexpr (std::is_void_v<P>) return 5;
    else if constexpr (std::is_floating_point_v<P>) return 3;
    else if constexpr (std::is_integral_v<P>) return std::is_signed_v<P> ? 1 : 2;
    else return 4;
  }
  return -1;
}
template <typename A> constexpr int pointee_size() {
  using T = std::remove_cv_t<std::remove_reference_t<A>>;
  if constexpr (std::is_pointer_v<T> && !std::is_void_v<std::remove_cv_t<std::remove_pointer_t<T>>>)
    return (int)sizeof(std::remove_pointer_t<T>);
  return 0;
}

template <typename... A, size_t... I>
std::function<void()> bind_args(void (*k)(A...), void** args, std::index_sequence<I...>) {
  std::tuple<std::remove_cv_t<std::remove_reference_t<A>>...> values{
      *reinterpret_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...};
  return [k, values]() { std::apply(k, values); };
}

// desc[i] = {kind, size in bytes, element kind, element size, total bytes} of argument i, from the launcher
template <typename... A>
int call(void (*k)(A...), const unsigned* grid, const unsigned* block, void** args, const long long* desc,
         int nargs, unsigned order_seed, int ftz, char* err, int errlen) {
  constexpr int n = (int)sizeof...(A);
  const int kinds[] = {kind_of<A>()..., 0};
  const int sizes[] = {(int)sizeof(A)..., 0};
  const int pkinds[] = {pointee_kind<A>()..., 0};
  const int psizes[] = {pointee_size<A>()..., 0};
  std::string e;
  if (nargs != n) e = "kernel takes " + std::to_string(n) + " arguments, the launch passed " + std::to_string(nargs);
  for (int i = 0; e.empty() && i < n; ++i) {
    const long long* d = desc + 5 * i;
    const std::string at = "argument " + std::to_string(i) + ": ";
    if (d[0] != kinds[i] || d[1] != sizes[i]) {
      e = at + "the kernel takes kind " + std::to_string(kinds[i]) + " of " + std::to_string(sizes[i]) +
          " bytes, the launch passed kind " + std::to_string(d[0]) + " of " + std::to_string(d[1]) +
          " bytes (0 pointer, 1 signed, 2 unsigned, 3 float)";
    } else if (kinds[i] == 0 && pkinds[i] != 5) {
      const bool ok = pkinds[i] == 4 ? (d[3] == psizes[i] || (d[3] == 1 && d[4] % psizes[i] == 0))
                                     : (d[2] == pkinds[i] && d[3] == psizes[i]);
      if (!ok)
        e = at + "the kernel reads elements of kind " + std::to_string(pkinds[i]) + " and " +
            std::to_string(psizes[i]) + " bytes, the array holds kind " + std::to_string(d[2]) + " of " +
            std::to_string(d[3]) + " bytes (1 signed, 2 unsigned, 3 float, 4 struct)";
    }
  }
  if (e.empty()) {
    const shim_dim3 g{grid[0], grid[1], grid[2]}, b{block[0], block[1], block[2]};
    if ((long long)b.x * b.y * b.z > 1024) e = "more than 1024 threads per block";
    else if (g.y > 65535 || g.z > 65535) e = "grid y or z above 65535";
    else run(g, b, bind_args(k, args, std::index_sequence_for<A...>{}), order_seed, ftz != 0, e);
  }
  if (e.empty()) return 0;
  snprintf(err, errlen, "%s", e.c_str());
  return 1;
}

}  // namespace shim

extern "C" void shim_set_expf_mode(int m) { shim::g_expf_mode = m; }
