//! The static resource check without a GPU: `ptxas -arch=sm_90 -v` (PyPI wheel
//! `nvidia-cuda-nvcc`) on the PTX NVRTC produces for every kernel source. For every
//! launch size the host uses, registers × threads must fit the block's register file and
//! static plus dynamic shared memory the 48 KiB a block gets without opting in; spills
//! are reported. This is what a GPU refuses as "too many resources requested for launch".
//!
//! Does not own: compiling (compile.rs) or the launch sizes themselves, which the table
//! below mirrors from each launch site (named there).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use ssr_trainer::gpu::compile::{self, Kernel, KernelSource};
use ssr_trainer::gpu::logprobs::ROW_THREADS;
use ssr_trainer::gpu::{ATTENTION_THREADS, LibraryProbe, MAX_HEAD_DIM, attention_shared_bytes};

/// sm_90: 64 K 32-bit registers per block, 48 KiB shared memory without the opt-in.
const REGISTER_FILE: u64 = 65_536;
const SHARED_DEFAULT: u64 = 48 * 1024;

/// Threads per block of each kernel's launches (the launch sites: logprobs.rs and
/// lm_head.rs ROW_THREADS; rl.rs 128/256; model_ops.rs 128 for the column and row-index
/// kernels, else 256; attention.rs ATTENTION_THREADS, and 256 for the preprocess;
/// optim.rs 256).
fn launch_threads(k: Kernel) -> u32 {
    use Kernel::*;
    match k {
        LogprobsFromLogitsF32 | LogprobsFromLogitsBf16 | LmHeadRows => ROW_THREADS,
        Advantages | EmbeddingBackward | GatherRowsBf16 | ScatterRowsAdd => 128,
        AttentionForward | AttentionBackwardDq | AttentionBackward => ATTENTION_THREADS,
        _ => 256,
    }
}

/// ptxas from `$SSR_PTXAS` or the wheel in `.venv-cuda` (scripts/setup.sh).
fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSR_PTXAS") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-cuda/lib");
    std::fs::read_dir(&root).ok()?.flatten().find_map(|d| {
        let p = d.path().join("site-packages/nvidia/cu13/bin/ptxas");
        p.is_file().then_some(p)
    })
}

#[derive(Debug, Default, Clone)]
struct Resources {
    registers: u64,
    shared: u64,
    spill_stores: u64,
    spill_loads: u64,
}

/// Parses `ptxas -v`'s "Function properties for K / N bytes spill stores, M bytes spill
/// loads / Used R registers, ..., S bytes smem" per kernel.
fn parse(out: &str) -> HashMap<String, Resources> {
    let mut map = HashMap::new();
    let mut current: Option<String> = None;
    let num_before = |line: &str, unit: &str| -> Option<u64> {
        let i = line.find(unit)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    for line in out.lines() {
        if let Some(i) = line.find("Function properties for ") {
            let name = line[i + "Function properties for ".len()..]
                .trim()
                .to_string();
            map.entry(name.clone()).or_insert_with(Resources::default);
            current = Some(name);
        } else if let Some(name) = &current {
            let r = map.get_mut(name).unwrap();
            if let Some(v) = num_before(line, "bytes spill stores") {
                r.spill_stores = v;
            }
            if let Some(v) = num_before(line, "bytes spill loads") {
                r.spill_loads = v;
            }
            if let Some(v) = num_before(line, "registers") {
                r.registers = v;
                r.shared = num_before(line, "bytes smem").unwrap_or(0);
                current = None;
            }
        }
    }
    map
}

#[test]
fn every_kernel_fits_sm90_registers_and_shared_memory_per_ptxas() {
    const TEST: &str = "every_kernel_fits_sm90_registers_and_shared_memory_per_ptxas";
    if !LibraryProbe::run().nvrtc {
        super::skip(TEST, "libnvrtc not found");
        return;
    }
    let Some(ptxas) = ptxas() else {
        super::skip(TEST, "ptxas not found (scripts/setup.sh, or set SSR_PTXAS)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let arch = compile::arch_flag(9, 0);
    let mut failures = Vec::new();
    let mut checked = 0;
    for src in KernelSource::ALL {
        let ptx = compile::compile(src, &arch, dir.path()).unwrap();
        let file = dir.path().join(format!("{}.ptx", src.file_name()));
        std::fs::write(&file, &ptx).unwrap();
        let out = Command::new(&ptxas)
            .args(["-arch=sm_90", "-v", "-o", "/dev/null"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ptxas failed on {}:\n{text}",
            src.file_name()
        );
        let res = parse(&text);
        for k in Kernel::ALL.into_iter().filter(|k| k.source() == src) {
            let r = res
                .get(k.symbol())
                .unwrap_or_else(|| panic!("ptxas reported nothing for {}:\n{text}", k.symbol()));
            let threads = u64::from(launch_threads(k));
            // Registers are allocated per warp in units of 256 (8 per thread).
            let regs = r.registers.div_ceil(8) * 8 * threads.div_ceil(32) * 32;
            let dynamic = attention_shared_bytes(k, MAX_HEAD_DIM) as u64;
            eprintln!(
                "{:<32} {:>4} threads {:>3} registers ({regs:>6} of {REGISTER_FILE}) shared {:>5} + {:>5} B  spills {}/{} B",
                k.symbol(),
                threads,
                r.registers,
                r.shared,
                dynamic,
                r.spill_stores,
                r.spill_loads
            );
            if regs > REGISTER_FILE {
                failures.push(format!(
                    "{}: {} registers x {threads} threads = {regs} > the {REGISTER_FILE}-register file",
                    k.symbol(),
                    r.registers
                ));
            }
            if r.shared + dynamic > SHARED_DEFAULT {
                failures.push(format!(
                    "{}: {} B static + {dynamic} B dynamic shared memory > {SHARED_DEFAULT} B",
                    k.symbol(),
                    r.shared
                ));
            }
            if r.spill_stores > 0 || r.spill_loads > 0 {
                eprintln!("  spill: {} spills registers to local memory", k.symbol());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, Kernel::ALL.len());
    assert!(
        failures.is_empty(),
        "launch resources exceeded:\n{}",
        failures.join("\n")
    );
}
