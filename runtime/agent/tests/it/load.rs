//! Load: 256 concurrent solver episodes, each with the real WASM tools (the bash shim
//! into a bubblewrap sandbox, role-aware submit), against an OpenAI-compatible server
//! that answers after a fixed latency. All must finish with
//! no error and no sandbox process left; the memory each waiting episode costs is
//! printed (`cargo test -p ssr-agent load -- --nocapture`).

use crate::support::ByteCodec;
use ssr_agent::policy::openai::{OpenAiConfig, OpenAiPolicy};
use ssr_agent::serve::{ReplayCompleter, Server};
use ssr_agent::shutdown::{self, Shutdown};
use ssr_agent::wasm_tools::{SharedHost, WasmTools};
use ssr_agent::{Budgets, EpisodeEnd, EpisodeSpec, Sampling, ToolCallSyntax, run_episode};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EPISODES: usize = 256;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Processes (other than us) whose command line mentions bwrap and whose parent is us.
fn our_bwrap_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .unwrap_or("");
            let cmd = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default();
            ppid == me && cmd.contains("bwrap")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_256_concurrent_solver_episodes_against_a_slow_server() {
    // Without the warm pool: its one parked launcher (a bwrap waiting for arguments, owned
    // by the pool and killed with this process) would be counted as a leaked episode
    // sandbox by `our_bwrap_children` below, which must see episode processes only.
    let sandbox = match ssr_sandbox::BwrapSandbox::new(ssr_sandbox::Environment::default()) {
        Ok(s) => Arc::new(s.with_warm_pool(false)) as Arc<dyn ssr_sandbox::Sandbox>,
        Err(e) => {
            eprintln!("skipped: no sandbox backend here ({e})");
            return;
        }
    };
    let latency = Duration::from_millis(400);
    let completer = Arc::new(ReplayCompleter {
        turns: vec![
            "<tool: bash>\nls && cat notes.txt\n</tool>".into(),
            "<tool: submit>\n</tool>".into(),
        ],
        latency,
        codec: Arc::new(ByteCodec),
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), completer)
        .await
        .unwrap();
    let url = format!("http://{}/v1", server.local_addr().unwrap());
    let (stop_server, rx) = shutdown::channel();
    let server_task = tokio::spawn(server.run(rx));
    let policy = Arc::new(
        OpenAiPolicy::new(
            OpenAiConfig {
                base_url: url,
                model: "replay".into(),
                max_concurrent: EPISODES,
                ..Default::default()
            },
            Some(Arc::new(ByteCodec)),
        )
        .unwrap(),
    );
    let host = SharedHost::new(crate::support::tool_host(
        ssr_toolhost::Policy::default(),
        &[],
    ));
    let root = tempfile::tempdir().unwrap();
    let baseline = rss_kib();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..EPISODES {
        let ws = root.path().join(format!("ws{i}"));
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("notes.txt"), format!("episode {i}\n")).unwrap();
        let episode = ssr_toolhost::Episode {
            oracle_files: vec!["notes.txt".into()],
            sandbox: Some(sandbox.clone()),
            ..ssr_toolhost::Episode::new(ssr_toolhost::Role::Solver, ws)
        };
        let tools = WasmTools::new(host.clone(), episode).unwrap();
        let policy = policy.clone();
        let peak = peak.clone();
        set.spawn(async move {
            let spec = EpisodeSpec {
                episode_id: format!("load{i}"),
                role: ssr_role::Role::Solver,
                attempt: i as u32,
                system: "sys".into(),
                task: "task".into(),
                // The point is concurrency without errors, not latency: on a loaded
                // 2-core machine a call may queue behind the host's in-flight bound.
                budgets: Budgets {
                    call_timeout_ms: 120_000,
                    ..Budgets::embedded()
                },
                syntax: ToolCallSyntax::Cwm,
                sampling: Sampling::default(),
            };
            let t = run_episode(policy.as_ref(), &tools, &spec, &Shutdown::never()).await;
            peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
            t
        });
    }
    // Sample memory while the episodes wait on the server.
    tokio::time::sleep(latency / 2).await;
    peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
    let mut done = 0;
    while let Some(t) = set.join_next().await {
        let t = t.expect("episode task");
        assert_eq!(
            t.end,
            EpisodeEnd::Submitted,
            "{}: {:?}",
            t.episode_id,
            t.end
        );
        assert_eq!(
            t.stats.tool_errors, 0,
            "{}: {:?}",
            t.episode_id, t.turns[0].observation
        );
        assert_eq!(t.stats.malformed_calls, 0);
        assert!(
            t.turns[0]
                .observation
                .as_deref()
                .unwrap()
                .contains("episode ")
        );
        done += 1;
    }
    let wall = started.elapsed();
    assert_eq!(done, EPISODES);
    assert_eq!(our_bwrap_children(), 0, "sandbox processes left behind");
    stop_server.request();
    server_task.await.unwrap().unwrap();
    let per_episode = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline) as f64
        / EPISODES as f64;
    println!(
        "load: {EPISODES} episodes in {:.2} s (2 turns each, {} ms server latency; serial lower bound {:.1} s); peak RSS +{:.0} KiB, {per_episode:.1} KiB per waiting episode",
        wall.as_secs_f64(),
        latency.as_millis(),
        (EPISODES * 2) as f64 * latency.as_secs_f64(),
        (peak
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(baseline)) as f64
    );
}
