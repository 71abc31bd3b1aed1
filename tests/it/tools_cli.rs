//! `ssr tools`: the custom-tool workflow of `tools-wasm/README.md` as a user runs it.

use crate::ssr;

/// Regression: `ssr tools check tools/X/tool.toml` (step 5 of the custom-tool README)
/// failed with "two tools are named `X`", naming the same file twice, because `./tools`
/// was scanned as well as the file under check.
#[test]
fn tools_check_of_a_manifest_in_the_scanned_tools_folder_is_not_its_own_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("tools/outline");
    std::fs::create_dir_all(&tool).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools-wasm/outline");
    std::fs::copy(example.join("tool.toml"), tool.join("tool.toml")).unwrap();
    let component = ssr_toolhost::tools_wasm_dir().join("ssr_tool_outline.wasm");
    std::fs::copy(&component, tool.join("outline.wasm")).unwrap_or_else(|e| {
        panic!(
            "{} (built by ssr-toolhost's build.rs): {e}",
            component.display()
        )
    });
    let out = ssr()
        .current_dir(dir.path())
        .args(["tools", "check", "tools/outline/tool.toml", "--no-cache"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ok: `outline`"), "{stdout}");
    // The folder is still scanned where it should be: `list` finds the tool there.
    let out = ssr()
        .current_dir(dir.path())
        .args(["tools", "list", "--no-cache"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("outline")), "{listed}");
}
