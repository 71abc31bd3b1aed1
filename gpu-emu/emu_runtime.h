//! The seam between the fake driver and the kernel translation units: the kernel
//! registry each compiled `kernels/*.cu` adds its `extern "C"` kernels to, by name.
//!
//! Owns: turning a kernel's C++ signature into an invoker over cuLaunchKernel's
//! `void** kernelParams` (each parameter read with its declared type, as the GPU does).
//! Does not own: launching or limits (`driver.cc`), the CUDA language (`cuda_emu.h`).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace emu {

using Invoker = void (*)(void* fn, void** params);

// Registers kernel `name`; returns true so it can initialise a namespace-scope constant.
bool register_kernel(const char* name, void* fn, Invoker inv, std::size_t n_params);

template <typename... A, std::size_t... I>
void call_with(void (*f)(A...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<A>*>(p[I])...);
}

template <typename... A>
bool register_fn(const char* name, void (*f)(A...)) {
    Invoker inv = [](void* fn, void** p) {
        call_with(reinterpret_cast<void (*)(A...)>(fn), p, std::index_sequence_for<A...>{});
    };
    return register_kernel(name, reinterpret_cast<void*>(f), inv, sizeof...(A));
}

}  // namespace emu

#define SSR_EMU_KERNEL(name) static const bool ssr_emu_registered_##name = ::emu::register_fn(#name, &name);
