//! Block execution on fibers: the seam between the fake driver's launch (`driver.cc`)
//! and the CUDA threads of a block.
//!
//! Owns: running a grid's blocks, each block's CUDA threads as fibers (one stack each)
//! on the launching OS thread; `__syncthreads` (the block barrier) and `__shfl_xor_sync`
//! (the warp exchange) as fiber switches; detecting a barrier nobody can complete; the
//! sanitizer annotations of every stack switch (ASan's fake stacks, TSan's fibers).
//! Does not own: launch limits, shared memory or the kernel registry (`driver.cc`), the
//! CUDA language (`cuda_emu.h`).
#pragma once

#include "emu_runtime.h"

namespace emu {

// Runs blocks 0..blocks-1 of `threads` CUDA threads each (block and grid dimensions are
// already in g_block_dim/g_grid_dim), one block after another; `after_block` runs between
// blocks (the driver refills dynamic shared memory with NaN there). Aborts the process on
// a fault the GPU would raise (a partial-warp shuffle, a barrier that cannot complete).
void run_grid(Invoker inv, void* fn, void** params, unsigned blocks, unsigned threads, void (*after_block)());

// Prints "ssr-emu: ..." and aborts: a fault inside a kernel, which a GPU cannot recover.
[[noreturn]] void die(const char* fmt, ...);

}  // namespace emu
