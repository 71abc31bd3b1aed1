//! The kernel registry and its run-time compilation: typed kernel ids, the `kernels/*.cu`
//! source each comes from, NVRTC options, and the on-disk PTX cache keyed by source hash,
//! options and GPU architecture.
//!
//! Does not own: launching (each op's module does that) or the device context (`context.rs`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::GpuError;

/// One `kernels/*.cu` file, embedded in the binary at build time so that a carried binary
/// needs no source tree next to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSource {
    Logprobs,
    Rl,
    Model,
    Attention,
    Optim,
}

impl KernelSource {
    pub const ALL: [KernelSource; 5] = [
        KernelSource::Logprobs,
        KernelSource::Rl,
        KernelSource::Model,
        KernelSource::Attention,
        KernelSource::Optim,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            KernelSource::Logprobs => "logprobs.cu",
            KernelSource::Rl => "rl.cu",
            KernelSource::Model => "model.cu",
            KernelSource::Attention => "attention.cu",
            KernelSource::Optim => "optim.cu",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            KernelSource::Logprobs => include_str!("../../../kernels/logprobs.cu"),
            KernelSource::Rl => include_str!("../../../kernels/rl.cu"),
            KernelSource::Model => include_str!("../../../kernels/model.cu"),
            KernelSource::Attention => include_str!("../../../kernels/attention.cu"),
            KernelSource::Optim => include_str!("../../../kernels/optim.cu"),
        }
    }

    /// NVRTC options besides the architecture. `--use_fast_math` (cudarc's `use_fast_math`
    /// only emits `--fmad=true`, see NOTES) everywhere except the optimizer: AdamW updates
    /// the f32 master weights, where approximate sqrt/division would drift from the CPU
    /// twin step after step; the cost there is negligible (one pass over the parameters).
    pub fn options(self) -> &'static [&'static str] {
        match self {
            KernelSource::Optim => &["--std=c++17"],
            _ => &["--std=c++17", "--use_fast_math"],
        }
    }
}

/// Every kernel function the backend launches. The name is the `extern "C"` symbol in the
/// source file and, minus the dtype suffix, the name of its CPU twin in `trainer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    LogprobsFromLogitsF32,
    LogprobsFromLogitsBf16,
    /// The LM head's row pass: f32 logits in, bf16 logits gradient out (for the bf16 GEMMs).
    LmHeadRows,
    Advantages,
    PolicyLoss,
    /// One-block deterministic sum of a f32 array (loss and statistics reductions).
    SumF32,
    CastF32ToBf16,
    CastBf16ToF32,
    EmbeddingForward,
    EmbeddingBackward,
    RmsnormForward,
    /// RMSNorm writing the bf16 GEMM operand (Bf16 precision mode).
    RmsnormForwardBf16,
    RmsnormBackward,
    RopeForward,
    RopeBackward,
    SwigluForward,
    /// SwiGLU writing the bf16 operand of the down projection (Bf16 precision mode).
    SwigluForwardBf16,
    SwigluBackward,
    AddInPlace,
    /// The LM head's scoring rows gathered into its bf16 operand.
    GatherRowsBf16,
    /// The LM head's hidden gradient added back to its rows.
    ScatterRowsAdd,
    AttentionForward,
    AttentionBackwardPreprocess,
    AttentionBackwardDq,
    /// dk and dv.
    AttentionBackward,
    AdamwStep,
    SumSquares,
    ScaleInPlace,
}

impl Kernel {
    /// Every kernel, for checks that each is defined and compiled.
    pub const ALL: [Kernel; 28] = [
        Kernel::LogprobsFromLogitsF32,
        Kernel::LogprobsFromLogitsBf16,
        Kernel::LmHeadRows,
        Kernel::Advantages,
        Kernel::PolicyLoss,
        Kernel::SumF32,
        Kernel::CastF32ToBf16,
        Kernel::CastBf16ToF32,
        Kernel::EmbeddingForward,
        Kernel::EmbeddingBackward,
        Kernel::RmsnormForward,
        Kernel::RmsnormForwardBf16,
        Kernel::RmsnormBackward,
        Kernel::RopeForward,
        Kernel::RopeBackward,
        Kernel::SwigluForward,
        Kernel::SwigluForwardBf16,
        Kernel::SwigluBackward,
        Kernel::AddInPlace,
        Kernel::GatherRowsBf16,
        Kernel::ScatterRowsAdd,
        Kernel::AttentionForward,
        Kernel::AttentionBackwardPreprocess,
        Kernel::AttentionBackwardDq,
        Kernel::AttentionBackward,
        Kernel::AdamwStep,
        Kernel::SumSquares,
        Kernel::ScaleInPlace,
    ];

    pub fn source(self) -> KernelSource {
        use Kernel::*;
        match self {
            LogprobsFromLogitsF32 | LogprobsFromLogitsBf16 | LmHeadRows => KernelSource::Logprobs,
            Advantages | PolicyLoss | SumF32 => KernelSource::Rl,
            CastF32ToBf16 | CastBf16ToF32 | EmbeddingForward | EmbeddingBackward
            | RmsnormForward | RmsnormForwardBf16 | RmsnormBackward | RopeForward
            | RopeBackward | SwigluForward | SwigluForwardBf16 | SwigluBackward | AddInPlace
            | GatherRowsBf16 | ScatterRowsAdd => KernelSource::Model,
            AttentionForward
            | AttentionBackwardPreprocess
            | AttentionBackwardDq
            | AttentionBackward => KernelSource::Attention,
            AdamwStep | SumSquares | ScaleInPlace => KernelSource::Optim,
        }
    }

    /// The `extern "C"` symbol.
    pub fn symbol(self) -> &'static str {
        use Kernel::*;
        match self {
            LogprobsFromLogitsF32 => "logprobs_from_logits_f32",
            LogprobsFromLogitsBf16 => "logprobs_from_logits_bf16",
            LmHeadRows => "lm_head_rows",
            Advantages => "advantages",
            PolicyLoss => "policy_loss",
            SumF32 => "sum_f32",
            CastF32ToBf16 => "cast_f32_to_bf16",
            CastBf16ToF32 => "cast_bf16_to_f32",
            EmbeddingForward => "embedding_forward",
            EmbeddingBackward => "embedding_backward",
            RmsnormForward => "rmsnorm_forward",
            RmsnormForwardBf16 => "rmsnorm_forward_bf16",
            RmsnormBackward => "rmsnorm_backward",
            RopeForward => "rope_forward",
            RopeBackward => "rope_backward",
            SwigluForward => "swiglu_forward",
            SwigluForwardBf16 => "swiglu_forward_bf16",
            SwigluBackward => "swiglu_backward",
            AddInPlace => "add_in_place",
            GatherRowsBf16 => "gather_rows_bf16",
            ScatterRowsAdd => "scatter_rows_add",
            AttentionForward => "attention_forward",
            AttentionBackwardPreprocess => "attention_backward_preprocess",
            AttentionBackwardDq => "attention_backward_dq",
            AttentionBackward => "attention_backward",
            AdamwStep => "adamw_step",
            SumSquares => "sum_squares",
            ScaleInPlace => "scale_in_place",
        }
    }
}

/// Where compiled PTX is kept: `$SSR_KERNEL_CACHE`, else `$XDG_CACHE_HOME/ssr/kernels`,
/// else `$HOME/.cache/ssr/kernels`, else a folder under the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SSR_KERNEL_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("ssr/kernels");
    }
    if let Some(p) = std::env::var_os("HOME") {
        return PathBuf::from(p).join(".cache/ssr/kernels");
    }
    std::env::temp_dir().join("ssr-kernels")
}

/// The architecture flag NVRTC gets, read from the device's compute capability
/// (`sm_90` on the lent H100/H200).
pub fn arch_flag(major: i32, minor: i32) -> String {
    format!("--gpu-architecture=sm_{major}{minor}")
}

/// The cache file for a source compiled with `options` for `arch`: the name carries the
/// source file, the first 16 hex digits of SHA-256(source, options) and the architecture,
/// so an edited kernel or a different GPU never loads stale PTX.
pub fn cache_path(dir: &Path, src: KernelSource, arch: &str, options: &[String]) -> PathBuf {
    let mut h = Sha256::new();
    h.update(src.text().as_bytes());
    for o in options {
        h.update([0u8]);
        h.update(o.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    let stem = src.file_name().trim_end_matches(".cu");
    let arch_tag = arch.rsplit('=').next().unwrap_or(arch);
    dir.join(format!("{stem}-{}-{arch_tag}.ptx", &digest[..16]))
}

/// Compiles `src` for the architecture `arch` (an `arch_flag`), reading and writing the
/// PTX cache in `cache_dir`. Returns the PTX text.
pub fn compile(src: KernelSource, arch: &str, cache_dir: &Path) -> Result<String, GpuError> {
    let mut options: Vec<String> = src.options().iter().map(|s| s.to_string()).collect();
    options.push(arch.to_string());
    let path = cache_path(cache_dir, src, arch, &options);
    match std::fs::read_to_string(&path) {
        Ok(ptx) if !ptx.is_empty() => return Ok(ptx),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(GpuError::Io { path, source }),
    }
    let _range = super::nvtx::Range::new(format!("nvrtc {}", src.file_name()));
    let opts = cudarc::nvrtc::CompileOptions {
        options: options.clone(),
        name: Some(src.file_name().to_string()),
        ..Default::default()
    };
    let ptx =
        cudarc::nvrtc::compile_ptx_with_opts(src.text(), opts).map_err(|e| GpuError::Compile {
            source_name: src.file_name(),
            arch: arch.to_string(),
            log: match e {
                cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                    log.to_string_lossy().into_owned()
                }
                other => format!("{other:?}"),
            },
        })?;
    let text = ptx.to_src();
    // A cache that cannot be written is only slower, never wrong: write to a temporary
    // name and rename so a concurrent reader never sees half a file, and ignore failures
    // (read-only home, full disk) rather than failing the computation.
    if std::fs::create_dir_all(cache_dir).is_ok() {
        let tmp = path.with_extension(format!("ptx.tmp{}", std::process::id()));
        if std::fs::write(&tmp, &text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_changes_with_arch_and_options() {
        let dir = Path::new("/c");
        let a = cache_path(dir, KernelSource::Logprobs, &arch_flag(9, 0), &["x".into()]);
        let b = cache_path(dir, KernelSource::Logprobs, &arch_flag(8, 0), &["x".into()]);
        let c = cache_path(dir, KernelSource::Logprobs, &arch_flag(9, 0), &["y".into()]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(
            a.to_string_lossy().ends_with("-sm_90.ptx"),
            "{}",
            a.display()
        );
        assert!(a.to_string_lossy().contains("/c/logprobs-"));
    }

    #[test]
    fn every_kernel_symbol_is_defined_in_its_source() {
        let all = Kernel::ALL;
        for k in all {
            let text = k.source().text();
            let needle = format!("void {}(", k.symbol());
            assert!(
                text.contains(&needle),
                "{} lacks `{needle}`",
                k.source().file_name()
            );
            assert!(text.contains("extern \"C\""), "{}", k.source().file_name());
        }
    }
}
