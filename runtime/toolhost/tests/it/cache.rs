//! The compiled-component cache: a hit after the first compile, and a tampered or
//! truncated entry recompiled, never trusted.

use crate::support::Repo;
use sha2::{Digest, Sha256};
use ssr_toolhost::{CacheOutcome, HostConfig, Policy, Role, ToolHost};

fn host_in(cache: &std::path::Path) -> ToolHost {
    ToolHost::new(HostConfig {
        policy: Policy::default(),
        tool_dirs: Vec::new(),
        cache_dir: Some(cache.to_path_buf()),
        standard_tools: true,
    })
    .unwrap()
}

fn editor_entry(cache: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn tampered_cache_entry_is_recompiled_not_trusted() {
    let cache = tempfile::tempdir().unwrap();
    let first = host_in(cache.path());
    assert!(first.tools().all(|t| t.cache == CacheOutcome::Compiled));
    drop(first);
    let second = host_in(cache.path());
    assert!(second.tools().all(|t| t.cache == CacheOutcome::Hit));
    drop(second);

    // Flip bytes in the middle of one artifact (its checksum no longer matches).
    let victim = editor_entry(cache.path());
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&victim, &bytes).unwrap();
    let third = host_in(cache.path());
    let replaced: Vec<_> = third
        .tools()
        .filter(|t| t.cache == CacheOutcome::Replaced)
        .collect();
    assert_eq!(replaced.len(), 1);
    // The recompiled tool works.
    let repo = Repo::new(&[("a.txt", "x\n")]);
    let name = replaced[0].name().to_string();
    let args = if name == "search" {
        r#"{"pattern":"x"}"#
    } else if name == "editor" {
        r#"{"command":"view","path":"a.txt"}"#
    } else {
        "{}"
    };
    third
        .call(&repo.episode(Role::Solver), &name, args, Default::default())
        .unwrap();
    drop(third);

    // A forged checksum beside forged bytes is caught by wasmtime's own header check,
    // and the entry is replaced again.
    let victim = editor_entry(cache.path());
    std::fs::write(&victim, b"forged").unwrap();
    let sum = victim.with_extension("sha256");
    std::fs::write(&sum, hex::encode(Sha256::digest(b"forged"))).unwrap();
    let fourth = host_in(cache.path());
    assert_eq!(
        fourth
            .tools()
            .filter(|t| t.cache == CacheOutcome::Replaced)
            .count(),
        1
    );
}
