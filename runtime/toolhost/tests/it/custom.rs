//! Custom tools: a component and its `tool.toml` dropped in a tools folder are found at
//! start; the example `outline` tool works through the host; manifests that lie are
//! refused.

use crate::support::{Repo, cache_dir, ok};
use ssr_toolhost::{HostConfig, Policy, Role, ToolHost, ToolHostError, ToolOrigin};
use std::path::{Path, PathBuf};

fn example_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/outline/tool.toml")
}

/// A tools folder with the outline example installed as a user would: its manifest
/// and its component side by side.
fn tools_folder(manifest_text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("outline");
    std::fs::create_dir(&tool).unwrap();
    std::fs::write(tool.join("tool.toml"), manifest_text).unwrap();
    std::fs::copy(
        crate::support::guest_path("ssr_tool_outline"),
        tool.join("outline.wasm"),
    )
    .unwrap();
    dir
}

fn host_for(dir: &Path) -> Result<ToolHost, ToolHostError> {
    ToolHost::new(HostConfig {
        policy: Policy::default(),
        tool_dirs: vec![dir.to_path_buf()],
        cache_dir: Some(cache_dir()),
        standard_tools: true,
    })
}

#[test]
fn outline_is_discovered_and_lists_definitions() {
    let folder = tools_folder(&std::fs::read_to_string(example_manifest()).unwrap());
    let h = host_for(folder.path()).unwrap();
    let tool = h.tool("outline").expect("discovered");
    assert!(matches!(tool.origin, ToolOrigin::Custom { .. }));
    assert!(
        h.tools_for(Role::Solver)
            .iter()
            .any(|t| t.name() == "outline")
    );
    let repo = Repo::new(&[
        (
            "m.py",
            "import os\n\nclass A:\n    def f(self):\n        pass\n\nasync def g():\n    pass\n",
        ),
        (
            "lib.rs",
            "pub struct S;\nimpl S {\n    pub fn new() -> S { S }\n}\nfn main() {}\n",
        ),
    ]);
    let e = repo.episode(Role::Solver);
    let py = h
        .call(&e, "outline", r#"{"path":"m.py"}"#, Default::default())
        .unwrap();
    assert_eq!(
        ok(&py),
        "     3  class A\n     4    def f\n     7  async def g\n"
    );
    let rs = h
        .call(
            &e,
            "outline",
            r#"{"path":"/repo/lib.rs"}"#,
            Default::default(),
        )
        .unwrap();
    let text = ok(&rs);
    assert!(text.contains("     1  struct S"), "{text}");
    assert!(text.contains("     3    fn new"), "{text}");
    assert!(text.contains("     5  fn main"), "{text}");
    let other = h
        .call(&e, "outline", r#"{"path":"m.txt"}"#, Default::default())
        .unwrap();
    assert!(other.result.is_err());
}

#[test]
fn a_manifest_whose_name_differs_from_describe_is_refused() {
    let text = std::fs::read_to_string(example_manifest())
        .unwrap()
        .replace("name = \"outline\"", "name = \"liar\"");
    let folder = tools_folder(&text);
    let err = host_for(folder.path()).unwrap_err();
    assert!(err.to_string().contains("`liar`"), "{err}");
}

#[test]
fn a_custom_tool_cannot_shadow_a_standard_one() {
    let folder = tempfile::tempdir().unwrap();
    let tool = folder.path().join("editor2");
    std::fs::create_dir(&tool).unwrap();
    std::fs::write(
        tool.join("tool.toml"),
        "name = \"editor\"\ncomponent = \"e.wasm\"\n[grants]\nrepo = \"rw\"\nstate = true\n",
    )
    .unwrap();
    std::fs::copy(
        crate::support::guest_path("ssr_tool_editor"),
        tool.join("e.wasm"),
    )
    .unwrap();
    let err = host_for(folder.path()).unwrap_err();
    assert!(matches!(err, ToolHostError::DuplicateTool { .. }), "{err}");
}

#[test]
fn custom_tools_get_at_most_the_role_ceiling() {
    let folder = tempfile::tempdir().unwrap();
    let tool = folder.path().join("sneaky");
    std::fs::create_dir(&tool).unwrap();
    // It asks for rw, the default policy's ceiling for custom tools is ro.
    std::fs::write(
        tool.join("tool.toml"),
        "name = \"hostile\"\ncomponent = \"h.wasm\"\n[grants]\nrepo = \"rw\"\n",
    )
    .unwrap();
    std::fs::copy(
        crate::support::guest_path("ssr_testing_hostile"),
        tool.join("h.wasm"),
    )
    .unwrap();
    let h = host_for(folder.path()).unwrap();
    let repo = Repo::new(&[("a.txt", "original")]);
    let r = h
        .call(
            &repo.episode(Role::Solver),
            "hostile",
            r#"{"attack":"write_host","path":"a.txt"}"#,
            Default::default(),
        )
        .unwrap();
    assert!(ok(&r).starts_with("refused"), "{}", ok(&r));
    assert_eq!(repo.read("a.txt"), "original");
}
