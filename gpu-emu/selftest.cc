//! The fiber scheduler's own checks, where no kernel of `kernels/*.cu` can provoke them:
//! a barrier that no thread can complete must abort naming what waits where, not hang.
//! Built by `build.sh` as `selftest`; `scripts/gpu_emu.sh` runs it before the GPU tests.
//!
//!   selftest divergent   # half a warp in __syncthreads, half in a shuffle: must abort
//!   selftest ok          # the same block without divergence: must finish, exit 0
#include <cstdio>
#include <cstring>

#include "cuda_emu.h"
#include "emu_runtime.h"
#include "fibers.h"

namespace {
// Lanes 0-15 of warp 0 wait at the barrier for lanes 16-31, which wait in a shuffle for
// lanes 0-15: on a GPU a hang (or undefined behaviour); here it must be reported.
void divergent(int* out) {
    int v = static_cast<int>(threadIdx.x);
    if (threadIdx.x < 16) __syncthreads();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
// Every lane reaches the shuffle, then the barrier: lane i gets i ^ 1.
void convergent(int* out) {
    int v = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
    __syncthreads();
    out[threadIdx.x] = v;
}
void nothing() {}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: selftest divergent|ok\n");
        return 2;
    }
    int out[64];
    int* p = out;
    void* params[] = {&p};
    emu::g_block_dim = dim3{64, 1, 1};
    emu::g_grid_dim = dim3{2, 1, 1};
    emu::Invoker inv = [](void* fn, void** ps) { reinterpret_cast<void (*)(int*)>(fn)(*static_cast<int**>(ps[0])); };
    bool div = std::strcmp(argv[1], "divergent") == 0;
    emu::run_grid(inv, reinterpret_cast<void*>(div ? &divergent : &convergent), params, 2, 64, &nothing);
    for (int i = 0; i < 64; i++) {
        if (out[i] != (i ^ 1)) {
            std::fprintf(stderr, "selftest: lane %d got %d, want %d\n", i, out[i], i ^ 1);
            return 1;
        }
    }
    std::printf("selftest: %s block ran: every lane got its neighbour's value\n", argv[1]);
    return 0;
}
