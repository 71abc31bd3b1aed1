//! `ssr serve` against the real `openai` Python package (tests/reference/openai_client_check.py).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn agent_serve_works_with_the_openai_python_package() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        eprintln!("skipped: the embedded model is not set up (run `just setup`)");
        return;
    }
    let has_openai = Command::new("python3")
        .args(["-c", "import openai, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_openai {
        eprintln!(
            "skipped: python3 with the `openai` and `pytest` packages is not available (pip install openai)"
        );
        return;
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "tests/reference/openai_client_check.py",
        ])
        .current_dir(&root)
        .env("SSR_BIN", env!("CARGO_BIN_EXE_ssr"))
        .env("SSR_MODEL", &model)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("5 passed"), "{text}");
}
