//! Builds the WASM tools (the separate `tools-wasm` workspace, target wasm32-wasip2)
//! and embeds the standard ones, like wasmtime's `test-programs`: `cargo test` works
//! from a clean clone without a separate step.
//!
//! The nested build uses `tools-wasm/target`, the same directory as `just tools`, so
//! the two share their output (cargo's lock serialises them). When the build fails
//! (for example the wasm32-wasip2 target is not installed) this script warns and
//! embeds nothing; the host then looks for the files at run time and says what to do.
//! Set `SSR_SKIP_TOOLS_BUILD=1` to skip the nested build.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

const STANDARD: [&str; 4] = ["bash", "editor", "search", "submit"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let tools = manifest_dir.join("../../tools-wasm");
    let tools = tools.canonicalize().unwrap_or(tools);
    for entry in [
        "Cargo.toml",
        "Cargo.lock",
        "wit",
        "guest",
        "editor",
        "search",
        "submit",
        "bash",
        "outline",
        "testing",
    ] {
        println!("cargo:rerun-if-changed={}", tools.join(entry).display());
    }
    println!("cargo:rerun-if-env-changed=SSR_SKIP_TOOLS_BUILD");
    let out_dir = tools.join("target/wasm32-wasip2/release");

    let built = if env::var_os("SSR_SKIP_TOOLS_BUILD").is_some() {
        println!(
            "cargo:warning=SSR_SKIP_TOOLS_BUILD is set: the WASM tools are not built or embedded"
        );
        false
    } else {
        build_tools(&tools)
    };

    let mut code = String::new();
    writeln!(code, "/// Where the tools-wasm build puts its components.").unwrap();
    writeln!(
        code,
        "pub const TOOLS_WASM_DIR: &str = {:?};",
        out_dir.display().to_string()
    )
    .unwrap();
    writeln!(
        code,
        "/// The standard tools compiled into this binary (None: not built)."
    )
    .unwrap();
    writeln!(code, "pub const EMBEDDED: &[(&str, Option<&[u8]>)] = &[").unwrap();
    for name in STANDARD {
        let file = out_dir.join(format!("ssr_tool_{name}.wasm"));
        if built && file.exists() {
            writeln!(
                code,
                "    ({name:?}, Some(include_bytes!({:?}))),",
                file.display().to_string()
            )
            .unwrap();
        } else {
            writeln!(code, "    ({name:?}, None),").unwrap();
        }
    }
    writeln!(code, "];").unwrap();
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("standard_tools.rs");
    std::fs::write(out, code).expect("write standard_tools.rs");
}

fn build_tools(tools: &std::path::Path) -> bool {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(tools.join("Cargo.toml"))
    .current_dir(tools);
    // The outer build's settings must not leak into the nested one: flags for the
    // host target, the outer target dir, or clippy as the compiler wrapper.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            println!(
                "cargo:warning=building tools-wasm failed (is `rustup target add wasm32-wasip2` done?); the standard tools are not embedded. Last lines: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
            false
        }
        Err(e) => {
            println!("cargo:warning=could not run cargo to build tools-wasm: {e}");
            false
        }
    }
}
