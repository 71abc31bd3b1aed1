//! The fake CUDA driver (`libcuda.so`) of the emulated device `ssr-emu`: the ~35 driver
//! calls cudarc makes, with device memory in host memory and kernels run on the CPU.
//!
//! Owns: the allocation registry (bounds checks on every memcpy and memset, NaN-filled
//! fresh allocations, zero-byte allocations refused), modules (the entry names of the
//! real NVRTC PTX, matched to the compiled-in kernels by name), launch limits (block
//! <= 1024 threads, grid dimensions, dynamic shared memory > 48 KiB without the opt-in
//! attribute), dynamic shared memory, and error strings naming the check that refused a
//! call. The block's threads run as fibers (`fibers.cc`: the barrier and warp exchange).
//! Does not own: the CUDA language (`cuda_emu.h`), the kernels (`kernels/*.cu`), cuBLAS
//! (`cublas.cc`) or NCCL (`nccl.cc`). Everything is synchronous: streams and events are
//! bookkeeping only, so stream-ordering bugs are out of its reach.
#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_emu.h"
#include "emu_runtime.h"
#include "fibers.h"


typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
};

namespace emu {

// ---------------------------------------------------------------- error reporting

namespace {
std::mutex g_msg_mu;
std::string g_last_detail;  // the last refused call's reason, for cuGetErrorString
}  // namespace

// Aborts the process: a fault the GPU would raise inside a kernel (no recovery there).
void die(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "ssr-emu: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
    std::fflush(stderr);
    std::abort();
}

int refuse(int code, const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "ssr-emu: %s\n", buf);
    std::lock_guard<std::mutex> g(g_msg_mu);
    g_last_detail = buf;
    return code;
}

// ---------------------------------------------------------------- allocation registry

namespace {
std::mutex g_mem_mu;
std::map<std::uintptr_t, std::size_t> g_allocs;  // base -> bytes
std::size_t g_allocated = 0;
const std::size_t kTotalMemory = std::size_t(16) << 30;
}  // namespace

// Checks that [p, p + bytes) lies inside one live allocation; 0 or a refusal code.
int check_range(const void* p, std::size_t bytes, const char* what) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    auto a = reinterpret_cast<std::uintptr_t>(p);
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) {
        return refuse(CUDA_ERROR_INVALID_VALUE, "%s bounds check: address %#lx is not in any device allocation",
                      what, (unsigned long)a);
    }
    --it;
    std::uintptr_t end = it->first + it->second;
    if (a >= end) {
        return refuse(CUDA_ERROR_INVALID_VALUE,
                      "%s bounds check: address %#lx is %lu bytes past the end of its allocation (%zu bytes at %#lx)",
                      what, (unsigned long)a, (unsigned long)(a - end), it->second, (unsigned long)it->first);
    }
    if (bytes > end - a) {
        return refuse(CUDA_ERROR_INVALID_VALUE,
                      "%s bounds check: %zu bytes at offset %lu run %lu bytes past the end of their allocation (%zu "
                      "bytes at %#lx)",
                      what, bytes, (unsigned long)(a - it->first), (unsigned long)(bytes - (end - a)), it->second,
                      (unsigned long)it->first);
    }
    return 0;
}

// ---------------------------------------------------------------- kernels and modules

namespace {
struct KernelEntry {
    void* fn;
    Invoker inv;
    std::size_t n_params;
};
std::unordered_map<std::string, KernelEntry>& kernels() {
    static std::unordered_map<std::string, KernelEntry> k;
    return k;
}

struct Module {
    std::set<std::string> entries;  // `.entry` names of the PTX the host loaded
};
struct Function {
    std::string name;
    KernelEntry k;
    int max_dynamic_shared = 48 * 1024;  // the default without the opt-in attribute
};
}  // namespace

bool register_kernel(const char* name, void* fn, Invoker inv, std::size_t n_params) {
    auto [it, fresh] = kernels().emplace(name, KernelEntry{fn, inv, n_params});
    if (!fresh) die("kernel %s is compiled in twice", name);
    return true;
}

// ---------------------------------------------------------------- launches

namespace {
// Hardware-like limits (sm_90).
const unsigned kMaxThreads = 1024;
const int kSharedDefault = 48 * 1024;
const int kSharedOptin = 227 * 1024;

void* g_dyn_smem_ptr = nullptr;
std::size_t g_dyn_smem_bytes = 0;
std::mutex g_launch_mu;  // one launch at a time: static shared memory is process-wide

void fill_nan(void* p, std::size_t n) { std::memset(p, 0xff, n); }

// Between blocks: the next block starts with NaN dynamic shared memory, as it would find
// another block's leftovers on the GPU.
void refill_dynamic_shared() {
    if (g_dyn_smem_ptr) fill_nan(g_dyn_smem_ptr, g_dyn_smem_bytes);
}
}  // namespace

void* dynamic_shared_raw() {
    if (!g_dyn_smem_ptr) die("kernel uses dynamic shared memory but the launch gave sharedMemBytes = 0");
    return g_dyn_smem_ptr;
}

}  // namespace emu

// ================================================================ the driver API

using emu::check_range;
using emu::refuse;

namespace {
bool g_initialised = false;
int g_primary_ctx_tag = 0;
CUcontext const kPrimaryCtx = &g_primary_ctx_tag;
thread_local CUcontext tl_current = nullptr;
std::mutex g_obj_mu;
std::set<emu::Module*> g_modules;
std::set<emu::Function*> g_functions;

struct Event {
    bool recorded = false;
    std::chrono::steady_clock::time_point at;
};
std::set<Event*> g_events;

const char* error_name(int e) {
    switch (e) {
        case CUDA_SUCCESS: return "CUDA_SUCCESS";
        case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
        case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
        case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
        case CUDA_ERROR_INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
        case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
        case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
        case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
        case CUDA_ERROR_NOT_READY: return "CUDA_ERROR_NOT_READY";
        case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
        default: return nullptr;
    }
}

int need_init() {
    if (!g_initialised) return refuse(CUDA_ERROR_NOT_INITIALIZED, "cuInit was not called");
    return 0;
}
int need_device(CUdevice d) {
    if (int e = need_init()) return e;
    if (d != 0) return refuse(CUDA_ERROR_INVALID_DEVICE, "device %d: the emulator has one device, 0", d);
    return 0;
}

int attribute(int a, int* v) {
    switch (a) {
        case 1: *v = 1024; return 0;          // MAX_THREADS_PER_BLOCK
        case 2: *v = 1024; return 0;          // MAX_BLOCK_DIM_X
        case 3: *v = 1024; return 0;          // MAX_BLOCK_DIM_Y
        case 4: *v = 64; return 0;            // MAX_BLOCK_DIM_Z
        case 5: *v = 2147483647; return 0;    // MAX_GRID_DIM_X
        case 6: *v = 65535; return 0;         // MAX_GRID_DIM_Y
        case 7: *v = 65535; return 0;         // MAX_GRID_DIM_Z
        case 8: *v = 48 * 1024; return 0;     // MAX_SHARED_MEMORY_PER_BLOCK
        case 10: *v = 32; return 0;           // WARP_SIZE
        case 12: *v = 65536; return 0;        // MAX_REGISTERS_PER_BLOCK
        case 13: *v = 1980000; return 0;      // CLOCK_RATE (kHz)
        case 16: *v = 4; return 0;            // MULTIPROCESSOR_COUNT (kept small: grids sized by it run on 2 cores)
        case 36: *v = 2619000; return 0;      // MEMORY_CLOCK_RATE
        case 37: *v = 5120; return 0;         // GLOBAL_MEMORY_BUS_WIDTH
        case 39: *v = 2048; return 0;         // MAX_THREADS_PER_MULTIPROCESSOR
        case 75: *v = 9; return 0;            // COMPUTE_CAPABILITY_MAJOR
        case 76: *v = 0; return 0;            // COMPUTE_CAPABILITY_MINOR
        case 81: *v = 228 * 1024; return 0;   // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        case 82: *v = 65536; return 0;        // MAX_REGISTERS_PER_MULTIPROCESSOR
        case 97: *v = 227 * 1024; return 0;   // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        case 115: *v = 1; return 0;           // MEMORY_POOLS_SUPPORTED
        default:
            return refuse(CUDA_ERROR_INVALID_VALUE, "cuDeviceGetAttribute: attribute %d is not emulated", a);
    }
}

int mem_alloc(CUdeviceptr* dptr, std::size_t bytes) {
    if (int e = need_init()) return e;
    if (!dptr) return refuse(CUDA_ERROR_INVALID_VALUE, "cuMemAlloc: null result pointer");
    if (bytes == 0)
        return refuse(CUDA_ERROR_INVALID_VALUE, "zero-byte allocation: cuMemAlloc of 0 bytes is an error on the driver");
    std::lock_guard<std::mutex> g(emu::g_mem_mu);
    if (emu::g_allocated + bytes > emu::kTotalMemory)
        return refuse(CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc of %zu bytes: out of the emulated 16 GiB", bytes);
    void* p = nullptr;
    // 256-byte aligned as the driver's; ASan still poisons everything past `bytes`.
    if (posix_memalign(&p, 256, bytes) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    // Fresh device memory is not zero: NaN bytes make a read of never-written memory show.
    emu::fill_nan(p, bytes);
    emu::g_allocs.emplace(reinterpret_cast<std::uintptr_t>(p), bytes);
    emu::g_allocated += bytes;
    *dptr = reinterpret_cast<CUdeviceptr>(p);
    return 0;
}

int mem_free(CUdeviceptr d) {
    if (int e = need_init()) return e;
    std::lock_guard<std::mutex> g(emu::g_mem_mu);
    auto it = emu::g_allocs.find(static_cast<std::uintptr_t>(d));
    if (it == emu::g_allocs.end())
        return refuse(CUDA_ERROR_INVALID_VALUE, "cuMemFree: %#llx is not the base of a live allocation", d);
    emu::g_allocated -= it->second;
    emu::g_allocs.erase(it);
    std::free(reinterpret_cast<void*>(d));
    return 0;
}
}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT CUresult cuInit(unsigned int flags) {
    if (flags != 0) return refuse(CUDA_ERROR_INVALID_VALUE, "cuInit: flags must be 0");
    g_initialised = true;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetCount(int* n) {
    if (int e = need_init()) return e;
    *n = 1;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (int e = need_device(ordinal)) return e;
    *d = ordinal;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetAttribute(int* v, int attrib, CUdevice d) {
    if (int e = need_device(d)) return e;
    return attribute(attrib, v);
}
EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (int e = need_device(d)) return e;
    // Its own name: nothing may mistake the emulator for a GPU.
    std::snprintf(name, (std::size_t)len, "%s", "ssr-emu");
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceTotalMem_v2(std::size_t* bytes, CUdevice d) {
    if (int e = need_device(d)) return e;
    *bytes = emu::kTotalMemory;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice d) {
    if (int e = need_device(d)) return e;
    *c = kPrimaryCtx;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { return need_device(d); }
EXPORT CUresult cuCtxGetCurrent(CUcontext* c) {
    if (int e = need_init()) return e;
    *c = tl_current;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    if (int e = need_init()) return e;
    if (c != nullptr && c != kPrimaryCtx) return refuse(CUDA_ERROR_INVALID_CONTEXT, "cuCtxSetCurrent: unknown context");
    tl_current = c;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSynchronize() { return need_init(); }
EXPORT CUresult cuCtxGetDevice(CUdevice* d) {
    if (int e = need_init()) return e;
    *d = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* d, std::size_t bytes) { return mem_alloc(d, bytes); }
EXPORT CUresult cuMemAllocAsync(CUdeviceptr* d, std::size_t bytes, CUstream) { return mem_alloc(d, bytes); }
EXPORT CUresult cuMemFree_v2(CUdeviceptr d) { return mem_free(d); }
EXPORT CUresult cuMemFreeAsync(CUdeviceptr d, CUstream) { return mem_free(d); }
EXPORT CUresult cuMemGetInfo_v2(std::size_t* free_b, std::size_t* total) {
    if (int e = need_init()) return e;
    std::lock_guard<std::mutex> g(emu::g_mem_mu);
    *total = emu::kTotalMemory;
    *free_b = emu::kTotalMemory - emu::g_allocated;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, std::size_t n, CUstream) {
    if (int e = need_init()) return e;
    if (int e = check_range(reinterpret_cast<void*>(d), n, "cuMemsetD8")) return e;
    std::memset(reinterpret_cast<void*>(d), v, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, std::size_t n) { return cuMemsetD8Async(d, v, n, nullptr); }
EXPORT CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, std::size_t n, CUstream) {
    if (int e = need_init()) return e;
    if (int e = check_range(reinterpret_cast<void*>(d), n * 4, "cuMemsetD32")) return e;
    auto* p = reinterpret_cast<unsigned int*>(d);
    for (std::size_t i = 0; i < n; i++) p[i] = v;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, std::size_t n, CUstream) {
    if (int e = need_init()) return e;
    if (int e = check_range(reinterpret_cast<void*>(dst), n, "cuMemcpyHtoD destination")) return e;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, std::size_t n, CUstream) {
    if (int e = need_init()) return e;
    if (int e = check_range(reinterpret_cast<void*>(src), n, "cuMemcpyDtoH source")) return e;
    std::memcpy(dst, reinterpret_cast<void*>(src), n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, std::size_t n, CUstream) {
    if (int e = need_init()) return e;
    if (int e = check_range(reinterpret_cast<void*>(src), n, "cuMemcpyDtoD source")) return e;
    if (int e = check_range(reinterpret_cast<void*>(dst), n, "cuMemcpyDtoD destination")) return e;
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<void*>(src), n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, std::size_t n) {
    return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr);
}
EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, std::size_t n) {
    return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
}
EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, std::size_t n) {
    return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr);
}

EXPORT CUresult cuModuleLoadData(void** module, const void* image) {
    if (int e = need_init()) return e;
    const char* ptx = static_cast<const char*>(image);
    if (!ptx || std::strncmp(ptx, "//", 2) != 0 || !std::strstr(ptx, ".target"))
        return refuse(CUDA_ERROR_INVALID_IMAGE, "cuModuleLoadData: the image is not NVRTC PTX text");
    auto* m = new emu::Module();
    // The PTX itself is not executed: its entry names say which compiled-in kernels the
    // module holds, so a kernel missing from the source is still "not found".
    for (const char* p = ptx; (p = std::strstr(p, ".entry ")) != nullptr;) {
        p += 7;
        const char* e = p;
        while (*e && *e != '(' && *e != ' ' && *e != '\n') e++;
        m->entries.emplace(p, e);
    }
    std::lock_guard<std::mutex> g(g_obj_mu);
    g_modules.insert(m);
    *module = m;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleUnload(void* module) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* m = static_cast<emu::Module*>(module);
    if (!g_modules.erase(m)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuModuleUnload: unknown module");
    delete m;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleGetFunction(void** f, void* module, const char* name) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* m = static_cast<emu::Module*>(module);
    if (!g_modules.count(m)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuModuleGetFunction: unknown module");
    if (!m->entries.count(name))
        return refuse(CUDA_ERROR_NOT_FOUND, "cuModuleGetFunction: the module's PTX has no entry %s", name);
    auto it = emu::kernels().find(name);
    if (it == emu::kernels().end())
        return refuse(CUDA_ERROR_NOT_FOUND, "cuModuleGetFunction: kernel %s is in the PTX but not compiled into the emulator",
                      name);
    auto* fn = new emu::Function{name, it->second};
    g_functions.insert(fn);
    *f = fn;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuFuncGetAttribute(int* v, int attrib, void* f) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* fn = static_cast<emu::Function*>(f);
    if (!g_functions.count(fn)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuFuncGetAttribute: unknown function");
    switch (attrib) {
        case 0: *v = 1024; return CUDA_SUCCESS;                      // MAX_THREADS_PER_BLOCK
        case 8: *v = fn->max_dynamic_shared; return CUDA_SUCCESS;    // MAX_DYNAMIC_SHARED_SIZE_BYTES
        default:
            return refuse(CUDA_ERROR_INVALID_VALUE, "cuFuncGetAttribute: attribute %d is not emulated (ptxas -v gives "
                          "registers and static shared memory)", attrib);
    }
}
EXPORT CUresult cuFuncSetAttribute(void* f, int attrib, int v) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* fn = static_cast<emu::Function*>(f);
    if (!g_functions.count(fn)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuFuncSetAttribute: unknown function");
    if (attrib != 8)
        return refuse(CUDA_ERROR_INVALID_VALUE, "cuFuncSetAttribute: attribute %d is not emulated", attrib);
    if (v < 0 || v > emu::kSharedOptin)
        return refuse(CUDA_ERROR_INVALID_VALUE, "cuFuncSetAttribute: %d bytes of dynamic shared memory exceed the %d-byte opt-in limit",
                      v, emu::kSharedOptin);
    fn->max_dynamic_shared = v;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               unsigned shmem, CUstream, void** params, void** extra) {
    if (int e = need_init()) return e;
    emu::Function* fn;
    {
        std::lock_guard<std::mutex> g(g_obj_mu);
        fn = static_cast<emu::Function*>(f);
        if (!g_functions.count(fn)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuLaunchKernel: unknown function");
    }
    const char* k = fn->name.c_str();
    // The driver's launch limits (sm_90), checked before anything runs.
    if (bx == 0 || by == 0 || bz == 0 || gx == 0 || gy == 0 || gz == 0)
        return refuse(CUDA_ERROR_INVALID_VALUE, "launch check (%s): a zero grid or block dimension (%u,%u,%u)x(%u,%u,%u)",
                      k, gx, gy, gz, bx, by, bz);
    unsigned long long threads = (unsigned long long)bx * by * bz;
    if (threads > emu::kMaxThreads || bx > 1024 || by > 1024 || bz > 64)
        return refuse(CUDA_ERROR_INVALID_VALUE,
                      "launch check (%s): block of %llu threads (%u,%u,%u) exceeds the 1024-thread block limit", k,
                      threads, bx, by, bz);
    if (gy > 65535 || gz > 65535)
        return refuse(CUDA_ERROR_INVALID_VALUE, "launch check (%s): grid (%u,%u,%u) exceeds 65535 in y or z", k, gx, gy,
                      gz);
    if ((int)shmem > fn->max_dynamic_shared)
        return refuse(CUDA_ERROR_INVALID_VALUE,
                      "launch check (%s): %u bytes of dynamic shared memory exceed the %d-byte limit (above %d bytes "
                      "needs the opt-in attribute CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)",
                      k, shmem, fn->max_dynamic_shared, emu::kSharedDefault);
    if (extra != nullptr) return refuse(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel (%s): `extra` is not emulated", k);
    if (params == nullptr && fn->k.n_params > 0)
        return refuse(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel (%s): no kernelParams for %zu parameters", k,
                      fn->k.n_params);
    unsigned long long blocks = (unsigned long long)gx * gy * gz;
    std::lock_guard<std::mutex> launch(emu::g_launch_mu);
    emu::g_block_dim = dim3{bx, by, bz};
    emu::g_grid_dim = dim3{gx, gy, gz};
    // Exactly sharedMemBytes on the heap (ASan sees an overrun), NaN-filled per block.
    emu::g_dyn_smem_ptr = nullptr;
    if (shmem > 0) {
        emu::g_dyn_smem_ptr = std::malloc(shmem);
        emu::g_dyn_smem_bytes = shmem;
        emu::fill_nan(emu::g_dyn_smem_ptr, shmem);
    }
    emu::run_grid(fn->k.inv, fn->k.fn, params, (unsigned)blocks, (unsigned)threads, emu::refill_dynamic_shared);
    std::free(emu::g_dyn_smem_ptr);
    emu::g_dyn_smem_ptr = nullptr;
    emu::g_dyn_smem_bytes = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamCreate(CUstream* s, unsigned int) {
    *s = new int(0);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamDestroy_v2(CUstream s) {
    delete static_cast<int*>(s);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamSynchronize(CUstream) { return need_init(); }
EXPORT CUresult cuStreamQuery(CUstream) { return need_init(); }
EXPORT CUresult cuStreamWaitEvent(CUstream, CUevent e, unsigned int) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    if (!g_events.count(static_cast<Event*>(e))) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuStreamWaitEvent: unknown event");
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventCreate(CUevent* e, unsigned int) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* ev = new Event();
    g_events.insert(ev);
    *e = ev;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventRecord(CUevent e, CUstream) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* ev = static_cast<Event*>(e);
    if (!g_events.count(ev)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuEventRecord: unknown event");
    ev->recorded = true;
    ev->at = std::chrono::steady_clock::now();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventQuery(CUevent e) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    if (!g_events.count(static_cast<Event*>(e))) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuEventQuery: unknown event");
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventSynchronize(CUevent e) { return cuEventQuery(e); }
EXPORT CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto *ea = static_cast<Event*>(a), *eb = static_cast<Event*>(b);
    if (!g_events.count(ea) || !g_events.count(eb) || !ea->recorded || !eb->recorded)
        return refuse(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: unknown or unrecorded event");
    *ms = std::chrono::duration<float, std::milli>(eb->at - ea->at).count();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventDestroy_v2(CUevent e) {
    std::lock_guard<std::mutex> g(g_obj_mu);
    auto* ev = static_cast<Event*>(e);
    if (!g_events.erase(ev)) return refuse(CUDA_ERROR_INVALID_HANDLE, "cuEventDestroy: unknown event");
    delete ev;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult e, const char** s) {
    const char* n = error_name(e);
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *s = n;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorString(CUresult e, const char** s) {
    const char* n = error_name(e);
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    // The name plus the last refusal's reason, so an error seen through cudarc names the
    // check that failed. Kept per process; strings live as long as the process.
    static std::mutex mu;
    static std::vector<std::string*> keep;
    std::lock_guard<std::mutex> g(mu);
    std::string detail;
    {
        std::lock_guard<std::mutex> g2(emu::g_msg_mu);
        detail = emu::g_last_detail;
    }
    auto* str = new std::string(std::string(n) + (detail.empty() || e == 0 ? "" : " (ssr-emu: " + detail + ")"));
    keep.push_back(str);
    *s = str->c_str();
    return CUDA_SUCCESS;
}

// For the fake cuBLAS and NCCL, which share this registry (they link against this library).
EXPORT int ssr_emu_check_range(const void* p, std::size_t bytes, const char* what) {
    return check_range(p, bytes, what);
}
EXPORT int ssr_emu_refuse(const char* msg) { return refuse(CUDA_ERROR_INVALID_VALUE, "%s", msg); }
