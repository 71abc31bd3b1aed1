//! The CUDA emulation header: what `kernels/*.cu` need from the CUDA language to compile
//! as C++ and run on CPU threads inside the fake driver (`driver.cc`).
//!
//! Owns: the built-in index variables, `__shared__` (static) and dynamic shared memory,
//! `__syncthreads` (a barrier across the block's live threads), `__shfl_xor_sync` (an
//! exchange inside one full 32-thread warp; a partial warp or mask aborts): both are
//! fiber switches (`fibers.cc`, one fiber per CUDA thread), the vector
//! types with their real alignment, bit casts and the math intrinsics the kernels use.
//! Does not own: launching (grid loop, thread pool, limits) or memory, which are the
//! driver's (`driver.cc`), nor any kernel: those are `kernels/*.cu`, unchanged.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Execution-space qualifiers. `__shared__` becomes `static`: one block runs at a time
// (`fibers.cc` runs blocks one after another, and the driver one launch at a time; the
// block's threads are fibers of one OS thread), so a function-local static is exactly
// one block's shared memory, and ASan puts redzones around it as around any global.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict

// `extern __shared__ T name[];` has no C++ meaning: the kernels spell it through this
// macro (defined there as the CUDA declaration when this header is absent), and here it
// is a pointer to an area of exactly the launch's `sharedMemBytes`.
#define SSR_DYNAMIC_SHARED(T, name) T* name = ::emu::dynamic_shared<T>()

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};

// The real CUDA alignments: a float4/uint4 access is one 16-byte load, so a misaligned
// address faults on the GPU and UBSan's alignment check reports it here.
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned int x, y;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
    return uint4{x, y, z, w};
}
inline uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

namespace emu {
// The running CUDA thread's indices, set by the fiber scheduler (`fibers.cc`) before it
// resumes that thread's fiber. Thread-locals, though every fiber runs on the launching
// thread: two host threads may each hold a launch in turn.
extern thread_local uint3 tl_thread_idx;
extern thread_local uint3 tl_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;
void* dynamic_shared_raw();
void syncthreads();
// Exchanges 8 bytes with lane `lane ^ off` of this thread's warp.
std::uint64_t shfl_xor_bits(unsigned mask, std::uint64_t bits, int off);
template <typename T>
T* dynamic_shared() {
    return static_cast<T*>(dynamic_shared_raw());
}
}  // namespace emu

#define threadIdx (::emu::tl_thread_idx)
#define blockIdx (::emu::tl_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)
#define warpSize 32

inline void __syncthreads() { ::emu::syncthreads(); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int off) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = ::emu::shfl_xor_bits(mask, bits, off);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

// Bit casts.
inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline int __float_as_int(float f) {
    int u;
    std::memcpy(&u, &f, 4);
    return u;
}

// Fast-math intrinsics: the precise libm functions here (the GPU's approximations are
// one of the things the emulation cannot reproduce; see kernels/NOTES.md).
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
using std::ceil;
using std::cos;
using std::exp;
using std::log;
using std::pow;
using std::sin;
using std::sqrt;

// CUDA's integer min/max overloads (device code calls them unqualified).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
