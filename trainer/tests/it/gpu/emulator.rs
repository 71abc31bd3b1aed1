//! The emulated device's strictness (gpu-emu/): each misuse a GPU refuses or faults on is
//! refused by the emulator with a message naming its check. These run only on `ssr-emu`
//! (on a real GPU the same misuses fault differently and some would corrupt the context).
//!
//! A misuse that aborts the process (a sanitizer report, a partial-warp shuffle) or whose
//! message goes to stderr runs in a child: this test binary re-run on the ignored
//! [`emulator_misuse_child`] with `SSR_EMU_CASE` set; the parent asserts the child failed
//! and that its stderr names the check. Does not own: the GPU parity tests (the other
//! modules), which are the emulator's positive tests.

use std::process::Command;

use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use ssr_trainer::gpu::Gpu;
use ssr_trainer::gpu::compile::Kernel;

/// The emulated device, or `None` (printed) on anything else.
fn emulated(test: &str) -> Option<Gpu> {
    let gpu = super::gpu_or_skip(test)?;
    if gpu.info().name != "ssr-emu" {
        eprintln!(
            "not applicable {test}: device {} is not the emulator",
            gpu.info().name
        );
        return None;
    }
    Some(gpu)
}

/// Runs misuse `case` in a child and asserts it fails with `check` in its stderr.
fn expect_refusal(test: &str, case: &str, check: &str) {
    if emulated(test).is_none() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gpu::emulator::emulator_misuse_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SSR_EMU_CASE", case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "{test}: the misuse {case} was not refused\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(check) || stdout.contains(check),
        "{test}: the misuse {case} failed without naming the check {check:?}\n{stdout}\n{stderr}"
    );
    eprintln!("{test}: refused, naming {check:?}");
}

#[test]
fn launch_of_1025_threads_is_refused() {
    expect_refusal(
        "launch_of_1025_threads_is_refused",
        "launch_1025",
        "exceeds the 1024-thread block limit",
    );
}

#[test]
fn dynamic_shared_memory_over_48k_without_opt_in_is_refused() {
    expect_refusal(
        "dynamic_shared_memory_over_48k_without_opt_in_is_refused",
        "dyn_smem_49k",
        "needs the opt-in attribute",
    );
}

#[test]
fn misaligned_float4_load_is_caught_by_ubsan() {
    expect_refusal(
        "misaligned_float4_load_is_caught_by_ubsan",
        "misaligned_float4",
        "requires 16 byte alignment",
    );
}

#[test]
fn memcpy_one_element_past_its_allocation_is_refused() {
    expect_refusal(
        "memcpy_one_element_past_its_allocation_is_refused",
        "memcpy_past_end",
        "cuMemcpyDtoH source bounds check",
    );
}

#[test]
fn gemm_with_a_wrong_leading_dimension_is_refused() {
    expect_refusal(
        "gemm_with_a_wrong_leading_dimension_is_refused",
        "gemm_bad_ld",
        "cublasGemmEx check: ldb = 7",
    );
}

#[test]
fn zero_byte_allocation_is_refused() {
    expect_refusal(
        "zero_byte_allocation_is_refused",
        "zero_byte_alloc",
        "zero-byte allocation",
    );
}

#[test]
fn missing_driver_symbol_fails_naming_itself() {
    expect_refusal(
        "missing_driver_symbol_fails_naming_itself",
        "missing_symbol",
        "Missing symbol cuCtxGetFlags",
    );
}

#[test]
fn shuffle_on_a_partial_warp_aborts() {
    expect_refusal(
        "shuffle_on_a_partial_warp_aborts",
        "partial_warp",
        "__shfl_xor_sync on a partial warp",
    );
}

#[test]
fn never_written_device_memory_reads_as_nan() {
    const TEST: &str = "never_written_device_memory_reads_as_nan";
    let Some(gpu) = emulated(TEST) else {
        return;
    };
    let n = 1000;
    let mut x = gpu.upload(&vec![1.0f32; n]).unwrap();
    // SAFETY: deliberately never written: the emulator fills fresh memory with NaN bytes
    // (a GPU leaves whatever was there), so a kernel reading it produces NaN, not 1.0.
    let y = unsafe { gpu.stream().alloc::<f32>(n) }.unwrap();
    gpu.add_in_place(&mut x, &y).unwrap();
    let got = gpu.download(&x).unwrap();
    assert!(
        got.iter().all(|v| v.is_nan()),
        "{TEST}: the NaN fill of fresh allocations did not show: {:?}",
        &got[..4]
    );
}

/// The child side of [`expect_refusal`]: performs the misuse named by `SSR_EMU_CASE` and
/// panics with whatever error it got. Ignored: only run as a child.
#[test]
#[ignore = "run as a child by the emulator's refusal tests"]
fn emulator_misuse_child() {
    let case = std::env::var("SSR_EMU_CASE").expect("SSR_EMU_CASE");
    let gpu = Gpu::open().unwrap();
    let stream = gpu.stream().clone();
    let cfg = |grid: u32, block: u32, smem: u32| LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    };
    match case.as_str() {
        "launch_1025" => {
            let mut x = gpu.upload(&vec![1.0f32; 2048]).unwrap();
            let y = gpu.upload(&vec![1.0f32; 2048]).unwrap();
            let n = 2048i64;
            let f = gpu.function(Kernel::AddInPlace).unwrap();
            let mut b = stream.launch_builder(&f);
            b.arg(&mut x).arg(&y).arg(&n);
            // SAFETY: the arguments match add_in_place(float*, const float*, long long).
            let r = unsafe { b.launch(cfg(2, 1025, 0)) };
            panic!("launch of 1025 threads: {r:?}");
        }
        "dyn_smem_49k" => {
            let (t, hd) = (32i32, 64i32);
            let q = gpu.upload(&vec![0.5f32; (t * hd) as usize]).unwrap();
            let mut out = gpu.zeros::<f32>((t * hd) as usize).unwrap();
            let mut lse = gpu.zeros::<f32>(t as usize).unwrap();
            let (q0, nh, nkv, scale) = (0i32, 1i32, 1i32, 0.125f32);
            let f = gpu.function(Kernel::AttentionForward).unwrap();
            let mut b = stream.launch_builder(&f);
            b.arg(&q)
                .arg(&q)
                .arg(&q)
                .arg(&t)
                .arg(&q0)
                .arg(&nh)
                .arg(&nkv);
            b.arg(&hd).arg(&scale).arg(&mut out).arg(&mut lse);
            // SAFETY: the arguments match attention_forward; the launch is refused before
            // it runs (49 KiB of dynamic shared memory without the opt-in attribute).
            let r = unsafe { b.launch(cfg(1, 32, 49 * 1024)) };
            panic!("49 KiB dynamic shared memory: {r:?}");
        }
        "misaligned_float4" | "partial_warp" => {
            // logprobs_from_logits_f32 with vec_ok = 1 reads float4s; a row starting one
            // float into the allocation is not 16-byte aligned. A 48-thread block has a
            // partial second warp, which the block reduction's shuffle refuses.
            let (rows, vocab) = (1i32, 64i32);
            let logits = gpu.upload(&vec![0.25f32; 1 + vocab as usize]).unwrap();
            let targets = gpu.upload(&[3u32]).unwrap();
            let mut lp = gpu.zeros::<f32>(1).unwrap();
            let mut ent = gpu.zeros::<f32>(1).unwrap();
            let (inv_t, null) = (1.0f32, 0u64);
            let (view, vec_ok, block) = if case == "misaligned_float4" {
                (logits.slice(1..), 1i32, 64u32)
            } else {
                (logits.slice(0..vocab as usize), 0i32, 48u32)
            };
            let f = gpu.function(Kernel::LogprobsFromLogitsF32).unwrap();
            let mut b = stream.launch_builder(&f);
            b.arg(&view)
                .arg(&targets)
                .arg(&rows)
                .arg(&vocab)
                .arg(&inv_t);
            b.arg(&vec_ok).arg(&mut lp).arg(&mut ent);
            b.arg(&null).arg(&null).arg(&null);
            // SAFETY: the arguments match logprobs_from_logits_f32 (null gradients); the
            // misuse is the alignment or the block size, which the emulator aborts on.
            let r = unsafe { b.launch(cfg(1, block, 0)) };
            let got = gpu.download(&lp);
            panic!("{case} ran: {r:?} {got:?}");
        }
        "memcpy_past_end" => {
            let x = gpu.upload(&[1.0f32; 16]).unwrap();
            let mut host = vec![0.0f32; 17];
            let (ptr, _guard) = x.device_ptr(&stream);
            // SAFETY: deliberately one element past the allocation; the emulator refuses
            // before copying, and the host buffer has room for 17 elements.
            let r = unsafe {
                cudarc::driver::sys::cuMemcpyDtoH_v2(host.as_mut_ptr().cast(), ptr, 17 * 4)
            }
            .result();
            panic!("memcpy of 17 elements from a 16-element allocation: {r:?}");
        }
        "zero_byte_alloc" => {
            let mut p = 0u64;
            // SAFETY: a plain allocation call on the current context's stream.
            let r = unsafe { cudarc::driver::sys::cuMemAllocAsync(&mut p, 0, stream.cu_stream()) }
                .result();
            panic!("zero-byte allocation: {r:?}");
        }
        "gemm_bad_ld" => {
            // C[4,4] = A[4,8] B[8,4] row-major, passed column-major with lda = 7 < k = 8.
            let a = gpu.upload(&[1.0f32; 32]).unwrap();
            let b = gpu.upload(&[1.0f32; 32]).unwrap();
            let mut c = gpu.zeros::<f32>(16).unwrap();
            let (alpha, beta) = (1.0f32, 0.0f32);
            let (pa, _ga) = a.device_ptr(&stream);
            let (pb, _gb) = b.device_ptr(&stream);
            let (pc, _gc) = cudarc::driver::DevicePtrMut::device_ptr_mut(&mut c, &stream);
            use cudarc::cublas::sys::{
                cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType,
            };
            let blas = cudarc::cublas::CudaBlas::new(stream.clone()).unwrap();
            // SAFETY: live buffers of 32, 32 and 16 f32; the wrong lda is the misuse.
            let r = unsafe {
                cudarc::cublas::result::gemm_ex(
                    *blas.handle(),
                    cublasOperation_t::CUBLAS_OP_N,
                    cublasOperation_t::CUBLAS_OP_N,
                    4,
                    4,
                    8,
                    (&alpha as *const f32).cast(),
                    pb as *const _,
                    cudaDataType::CUDA_R_32F,
                    4,
                    pa as *const _,
                    cudaDataType::CUDA_R_32F,
                    7,
                    (&beta as *const f32).cast(),
                    pc as *mut _,
                    cudaDataType::CUDA_R_32F,
                    4,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
                )
            };
            panic!("GEMM with lda 7 for k 8: {r:?}");
        }
        "missing_symbol" => {
            let mut flags = 0u32;
            // SAFETY: a query with a valid out-pointer; the emulator does not provide it,
            // so cudarc's loader panics naming the symbol.
            let r = unsafe { cudarc::driver::sys::cuCtxGetFlags(&mut flags) };
            panic!("cuCtxGetFlags returned {r:?}");
        }
        other => panic!("unknown SSR_EMU_CASE {other}"),
    }
}

/// Compiles every kernel source with NVRTC into the emulated device's kernel cache
/// (`$SSR_KERNEL_CACHE/ssr-emu`). `scripts/gpu_emu.sh` runs it first, without the
/// sanitizer runtime: NVRTC 13 crashes (a null dereference inside
/// `nvrtcCompileProgram`) when AddressSanitizer is preloaded, so the sanitized run reads
/// the PTX from this cache instead of compiling. Ignored: only run by the script.
#[test]
#[ignore = "run by scripts/gpu_emu.sh before the sanitized run"]
fn emulator_fill_kernel_cache() {
    use ssr_trainer::gpu::EMULATED_DEVICE_NAME;
    use ssr_trainer::gpu::compile::{self, KernelSource};
    let dir = compile::default_cache_dir().join(EMULATED_DEVICE_NAME);
    let arch = compile::arch_flag(9, 0);
    for src in KernelSource::ALL {
        compile::compile(src, &arch, &dir).unwrap_or_else(|e| panic!("{}: {e}", src.file_name()));
    }
}
