//! Locating the embedded SmolLM2 GGUF for tests that need the real model.

use std::path::PathBuf;

/// `$SSR_MODEL`, else `<repo>/.models/SmolLM2-135M-Instruct.Q4_1.gguf`; `None` (with
/// the reason printed, so the skip is visible in test output) when absent.
pub fn smollm2(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("SSR_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP {test}: model not found at {} (set SSR_MODEL or run scripts/setup.sh)",
            path.display()
        );
        None
    }
}
