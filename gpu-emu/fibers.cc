//! Block execution on fibers (see `fibers.h`): each CUDA thread of a block is a fiber
//! with its own stack on the launching OS thread, switched by a hand-written context
//! switch. A block of 1,024 threads costs 1,024 small stacks and a few nanoseconds per
//! switch, where one OS thread per CUDA thread cost a kernel-mediated wake-up per thread
//! at every barrier; that made the training-scale tests too slow on two cores.
//!
//! Scheduling is cooperative and deterministic: the scheduler resumes every fiber that can
//! run, in thread order; a fiber runs until it waits (at `__syncthreads`, at a shuffle)
//! or returns from the kernel. A pass in which no fiber could run while some have not
//! returned is a barrier nobody can complete, reported at once (no timeout).
//!
//! Sanitizers must know about every stack switch:
//! - ASan: `__sanitizer_start_switch_fiber`/`__sanitizer_finish_switch_fiber` around
//!   each switch, or it reports the fiber stacks as stack-buffer overflows.
//! - TSan: each CUDA thread is a TSan fiber, and switches between them do not synchronise
//!   (`__tsan_switch_to_fiber_no_sync`), so a shared-memory race between two threads of a
//!   block is still a race; only the barrier and the shuffle synchronise, as on the GPU
//!   (`__tsan_release`/`__tsan_acquire` on the barrier's generation).
#include "fibers.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

#include "cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#define SSR_EMU_ASAN 1
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, std::size_t* size_old);
#endif
#if defined(__SANITIZE_THREAD__)
#define SSR_EMU_TSAN 1
extern "C" void* __tsan_get_current_fiber();
extern "C" void* __tsan_create_fiber(unsigned flags);
extern "C" void __tsan_switch_to_fiber(void* fiber, unsigned flags);
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
// The scheduler's own bookkeeping (counters every fiber touches) is not kernel memory: it
// is excluded from TSan's race detection, and synchronisation is annotated explicitly.
#define SSR_EMU_NO_TSAN __attribute__((no_sanitize_thread))
#else
#define SSR_EMU_NO_TSAN
#endif

#if !defined(__x86_64__)
#error "gpu-emu's fiber switch (fibers.cc) is written for x86-64"
#endif

// Saves the callee-saved registers of the running context on its stack, stores its stack
// pointer in *save_sp, and resumes the context whose stack pointer is next_sp. The System V
// ABI makes every other register caller-saved, so this is a complete switch between two
// points that each called this function (MXCSR and the x87 control word are not touched
// by the kernels, so they are not switched). Hand-written rather than swapcontext: that
// one makes a sigprocmask system call per switch.
extern "C" void ssr_emu_switch(void** save_sp, void* next_sp);
asm(R"(
    .text
    .p2align 4
    .globl ssr_emu_switch
    .hidden ssr_emu_switch
    .type ssr_emu_switch, @function
ssr_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ssr_emu_switch, .-ssr_emu_switch
)");

namespace emu {

// Per OS thread; the scheduler sets them before it resumes a fiber (fibers never move
// between OS threads, so the kernel may read them as plain thread-locals).
thread_local uint3 tl_thread_idx;
thread_local uint3 tl_block_idx;
dim3 g_block_dim;
dim3 g_grid_dim;

namespace {

// 256 KiB per CUDA thread: kernels keep a few hundred bytes of locals, but a sanitizer
// report (UBSan's stack trace, ASan's) runs on the faulting fiber's stack. Reserved, not
// committed: a fiber touches only the pages it uses. A PROT_NONE guard page below each.
const std::size_t kStack = 256 * 1024;
const std::size_t kGuard = 4096;
const unsigned kMaxThreads = 1024;

enum class Wait : unsigned char { None, Barrier, Shuffle };

struct Fiber {
    void* sp = nullptr;              // saved stack pointer while suspended
    unsigned char* stack = nullptr;  // lowest usable byte, above the guard page
    uint3 idx{};
    bool done = false;
    // Suspended until *wait_on != wait_val (a barrier or warp generation moved on).
    Wait wait = Wait::None;
    const std::uint64_t* wait_on = nullptr;
    std::uint64_t wait_val = 0;
    bool fresh = true;  // not yet entered in this block
#if SSR_EMU_ASAN
    void* fake_stack = nullptr;
#endif
#if SSR_EMU_TSAN
    void* tsan = nullptr;
#endif
};

struct Warp {
    unsigned live = 0, arrived = 0;
    std::uint64_t gen = 0;
    // Double-buffered by generation parity: a lane that left exchange g may publish for
    // g+1 while slower lanes still read g's slots; g+2 cannot start before all read g.
    std::uint64_t slot[2][32];
};

// The block being run. One launch at a time (the driver's launch lock), so one instance.
struct Run {
    Invoker inv = nullptr;
    void* fn = nullptr;
    void** params = nullptr;
    unsigned n = 0;        // threads per block
    unsigned live = 0;     // threads that have not returned from the kernel
    unsigned arrived = 0;  // at the current __syncthreads
    std::uint64_t gen = 0;
    unsigned n_warps = 0;
    Warp warps[kMaxThreads / 32];
    Fiber fibers[kMaxThreads];
    Fiber* cur = nullptr;
    void* sched_sp = nullptr;
#if SSR_EMU_ASAN
    const void* sched_bottom = nullptr;
    std::size_t sched_size = 0;
#endif
#if SSR_EMU_TSAN
    void* sched_tsan = nullptr;
    char barrier_token[2];  // per generation parity (see Warp::slot for why two suffice)
    char block_end_token;
#endif
};
Run& g_run = *new Run;

void fiber_entry();

// The initial stack of a fiber: what ssr_emu_switch pops (six zero registers, then the
// entry point as return address) above a null return address for fiber_entry itself, so
// that backtraces end there and the entry sees the ABI's stack alignment.
void* fresh_stack(Fiber& f) {
    auto top = reinterpret_cast<std::uintptr_t>(f.stack + kStack) & ~std::uintptr_t(15);
    auto** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&fiber_entry);
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    return sp;
}

void ensure_fibers(unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        Fiber& f = g_run.fibers[i];
        if (f.stack) continue;
        void* m = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (m == MAP_FAILED) die("cannot map a %zu-byte fiber stack for CUDA thread %u", kStack, i);
        if (mprotect(m, kGuard, PROT_NONE) != 0) die("cannot protect the guard page of fiber stack %u", i);
        f.stack = static_cast<unsigned char*>(m) + kGuard;
#if SSR_EMU_TSAN
        f.tsan = __tsan_create_fiber(0);
#endif
    }
}

// Scheduler -> fiber f.
SSR_EMU_NO_TSAN void resume(Fiber& f) {
    g_run.cur = &f;
    tl_thread_idx = f.idx;
#if SSR_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack, kStack);
#endif
#if SSR_EMU_TSAN
    // The first entry synchronises with the scheduler (the launch's parameters, the
    // previous block); later ones do not, so threads of a block race unless they sync.
    __tsan_switch_to_fiber(f.tsan, f.fresh ? 0 : 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
    f.fresh = false;
    ssr_emu_switch(&g_run.sched_sp, f.sp);
#if SSR_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// The running fiber -> scheduler. `last`: the fiber has returned and is never resumed
// (ASan frees its fake stack).
SSR_EMU_NO_TSAN void suspend(bool last) {
    Fiber& f = *g_run.cur;
#if SSR_EMU_ASAN
    __sanitizer_start_switch_fiber(last ? nullptr : &f.fake_stack, g_run.sched_bottom, g_run.sched_size);
#endif
#if SSR_EMU_TSAN
    __tsan_switch_to_fiber(g_run.sched_tsan, 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
    ssr_emu_switch(&f.sp, g_run.sched_sp);
#if SSR_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
    (void)last;
}

// Suspends the running fiber until *on != val.
SSR_EMU_NO_TSAN void wait_until_changed(Wait kind, const std::uint64_t* on, std::uint64_t val) {
    Fiber& f = *g_run.cur;
    f.wait = kind;
    f.wait_on = on;
    f.wait_val = val;
    while (*on == val) suspend(false);
    f.wait = Wait::None;
    f.wait_on = nullptr;
}

SSR_EMU_NO_TSAN void release_barrier() {
    g_run.arrived = 0;
    g_run.gen++;
}

// A thread returned from the kernel: later barriers of the block wait without it.
SSR_EMU_NO_TSAN void thread_exit(Fiber& f) {
    unsigned tid = static_cast<unsigned>(&f - g_run.fibers);
    Warp& w = g_run.warps[tid / 32];
    if (w.arrived > 0) die("thread %u exited while its warp waits in __shfl_xor_sync (partial warp)", tid);
    w.live--;
#if SSR_EMU_TSAN
    __tsan_release(&g_run.barrier_token[g_run.gen & 1]);
    __tsan_release(&g_run.block_end_token);
#endif
    g_run.live--;
    if (g_run.live > 0 && g_run.arrived == g_run.live) release_barrier();
    f.done = true;
}

SSR_EMU_NO_TSAN void fiber_entry() {
#if SSR_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_run.sched_bottom, &g_run.sched_size);
#endif
    g_run.inv(g_run.fn, g_run.params);
    thread_exit(*g_run.cur);
    suspend(true);
    die("a returned CUDA thread was resumed");
}

[[noreturn]] void deadlock(unsigned block) {
    unsigned at_barrier = 0, at_shuffle = 0, exited = 0;
    for (unsigned i = 0; i < g_run.n; i++) {
        const Fiber& f = g_run.fibers[i];
        if (f.done) exited++;
        else if (f.wait == Wait::Barrier) at_barrier++;
        else if (f.wait == Wait::Shuffle) at_shuffle++;
    }
    die("block %u: no thread can proceed: %u wait in __syncthreads, %u in __shfl_xor_sync, %u have returned (a "
        "barrier not every thread reaches: divergent __syncthreads or shuffle)",
        block, at_barrier, at_shuffle, exited);
}

SSR_EMU_NO_TSAN void run_block(unsigned b) {
    unsigned n = g_run.n, bx = g_block_dim.x, by = g_block_dim.y, gx = g_grid_dim.x, gy = g_grid_dim.y;
    tl_block_idx = uint3{b % gx, (b / gx) % gy, b / (gx * gy)};
    g_run.live = n;
    g_run.arrived = 0;
    for (unsigned i = 0; i < g_run.n_warps; i++) {
        g_run.warps[i].live = n - 32 * i < 32 ? n - 32 * i : 32;
        g_run.warps[i].arrived = 0;
    }
    for (unsigned t = 0; t < n; t++) {
        Fiber& f = g_run.fibers[t];
        f.idx = uint3{t % bx, (t / bx) % by, t / (bx * by)};
        f.done = false;
        f.fresh = true;
        f.wait = Wait::None;
        f.wait_on = nullptr;
        f.sp = fresh_stack(f);
    }
    for (unsigned remaining = n; remaining > 0;) {
        unsigned resumed = 0;
        for (unsigned t = 0; t < n; t++) {
            Fiber& f = g_run.fibers[t];
            if (f.done || (f.wait_on && *f.wait_on == f.wait_val)) continue;
            resume(f);
            resumed++;
            if (f.done) remaining--;
        }
        if (resumed == 0) deadlock(b);
    }
#if SSR_EMU_TSAN
    // Every thread of this block happens before every thread of the next (which reuses
    // the shared memory); the first entry of each fiber synchronises with the scheduler.
    __tsan_acquire(&g_run.block_end_token);
#endif
}

}  // namespace

void run_grid(Invoker inv, void* fn, void** params, unsigned blocks, unsigned threads, void (*after_block)()) {
    ensure_fibers(threads);
    g_run.inv = inv;
    g_run.fn = fn;
    g_run.params = params;
    g_run.n = threads;
    g_run.n_warps = (threads + 31) / 32;
#if SSR_EMU_TSAN
    g_run.sched_tsan = __tsan_get_current_fiber();
#endif
    for (unsigned b = 0; b < blocks; b++) {
        run_block(b);
        after_block();
    }
    g_run.cur = nullptr;
}

SSR_EMU_NO_TSAN void syncthreads() {
#if SSR_EMU_TSAN
    __tsan_release(&g_run.barrier_token[g_run.gen & 1]);
#endif
    std::uint64_t gen = g_run.gen;
    if (++g_run.arrived == g_run.live) release_barrier();
    else wait_until_changed(Wait::Barrier, &g_run.gen, gen);
#if SSR_EMU_TSAN
    __tsan_acquire(&g_run.barrier_token[gen & 1]);
#endif
}

SSR_EMU_NO_TSAN std::uint64_t shfl_xor_bits(unsigned mask, std::uint64_t bits, int off) {
    unsigned tid = static_cast<unsigned>(g_run.cur - g_run.fibers);
    unsigned lane = tid % 32, warp = tid / 32;
    if (mask != 0xffffffffu) die("__shfl_xor_sync with a partial mask %#x (thread %u): not emulated", mask, tid);
    if (off < 0 || off >= 32) die("__shfl_xor_sync lane offset %d out of range", off);
    Warp& w = g_run.warps[warp];
    unsigned width = g_run.n - 32 * warp < 32 ? g_run.n - 32 * warp : 32;
    if (width < 32)
        die("__shfl_xor_sync on a partial warp: warp %u of a %u-thread block has %u threads, the full mask names 32",
            warp, g_run.n, width);
    if (w.live < 32)
        die("__shfl_xor_sync on a partial warp: %u of warp %u's lanes have exited the kernel", 32 - w.live, warp);
    std::uint64_t gen = w.gen;
    w.slot[gen & 1][lane] = bits;
#if SSR_EMU_TSAN
    __tsan_release(&w.slot[gen & 1][0]);
#endif
    if (++w.arrived == 32) {
        w.arrived = 0;
        w.gen++;
    } else {
        wait_until_changed(Wait::Shuffle, &w.gen, gen);
    }
#if SSR_EMU_TSAN
    __tsan_acquire(&w.slot[gen & 1][0]);
#endif
    return w.slot[gen & 1][lane ^ static_cast<unsigned>(off)];
}

}  // namespace emu
