//! `ssr bench env`: what the environment server adds to an episode. The same scripted
//! solver episode (look, then submit: one sandboxed command, one evaluation) is played
//! in-process on the engine and through `POST /v1/episodes` of a server in this
//! process, interleaved, and the per-episode overhead printed as a ratio.

use crate::cli::bench::Stats;
use crate::cli::env::{GameArgs, engine};
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use ssr_env::api::EpisodeRequest;
use ssr_env::engine::Players;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BenchEnvArgs {
    /// Measured episodes of each kind (after one unmeasured of each).
    #[arg(long, default_value_t = 10)]
    episodes: usize,
    /// The repository (default: the bundled example, created under .examples/).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    episodes: usize,
    in_process: Stats,
    server: Stats,
    overhead_median_ms: f64,
    ratio_median: f64,
}

pub fn run(args: BenchEnvArgs) -> anyhow::Result<ExitCode> {
    let repo = match &args.repo {
        Some(r) => r.clone(),
        None => ssr_agent::selfplay::open::bundled_example()?,
    };
    let store = tempfile::tempdir()?;
    let game = GameArgs {
        repos: vec![format!("bench={}", repo.display())],
        store: store.path().to_path_buf(),
        config: None,
        tokenizer: None,
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = rt.block_on(measure(&args, &game))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "episode (solver: one command, then submit and evaluation), {} of each, interleaved",
            report.episodes
        );
        println!(
            "  in-process   median {:8.1} ms  p99 {:8.1} ms",
            report.in_process.median_ms, report.in_process.p99_ms
        );
        println!(
            "  over HTTP    median {:8.1} ms  p99 {:8.1} ms",
            report.server.median_ms, report.server.p99_ms
        );
        println!(
            "  server overhead {:+.1} ms per episode, ratio {:.3}",
            report.overhead_median_ms, report.ratio_median
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(args: &BenchEnvArgs, game: &GameArgs) -> anyhow::Result<Report> {
    let engine = engine(game)?;
    let made = engine
        .make_tasks(&ssr_env::api::MakeTasks {
            repo: "bench".into(),
            strategy: None,
            count: 2,
            seed: 1,
        })
        .await?;
    let task = made
        .iter()
        .find(|v| v.valid)
        .map(|v| v.bug_id.clone())
        .context("the procedural injector made no valid bug on this repository")?;
    let request = |k: usize| -> anyhow::Result<EpisodeRequest> {
        Ok(serde_json::from_value(json!({
            "role": "solver", "repo": "bench", "task_id": task, "seed": k,
            "script": {"solver": [["<tool: bash>\nls\n</tool>", "<tool: submit>\n</tool>"]]}
        }))?)
    };
    let engine = Arc::new(engine);
    let config = ssr_env::ServeConfig {
        host: "127.0.0.1".into(),
        port: 0,
        slots: 2,
        token: None,
        max_episode: Duration::from_secs(600),
    };
    let in_process = engine.clone();
    let bound = ssr_env::bind_shared(&config, engine).await?;
    let url = format!("http://{}/v1/episodes", bound.addr);
    tokio::spawn(bound.serve(std::future::pending()));
    let http = reqwest::Client::new();
    let (mut direct, mut served) = (Vec::new(), Vec::new());
    for k in 0..=args.episodes {
        let req = request(k)?;
        let t0 = Instant::now();
        let players = Players {
            policy: in_process.policy(None, req.script.as_ref())?,
            arena: in_process.repo("bench")?.arena.clone(),
        };
        let shutdown = ssr_agent::shutdown::Shutdown::never();
        let r = in_process
            .episode(&req, &format!("direct-{k}"), players, shutdown)
            .await?;
        anyhow::ensure!(r.status.scored(), "in-process episode: {:?}", r.error);
        let d = t0.elapsed();
        let t0 = Instant::now();
        let v: serde_json::Value = http.post(&url).json(&req).send().await?.json().await?;
        anyhow::ensure!(v["status"] == "ok", "served episode: {v}");
        let s = t0.elapsed();
        if k > 0 {
            direct.push(d);
            served.push(s);
        }
    }
    let (a, b) = (Stats::of(&direct), Stats::of(&served));
    Ok(Report {
        episodes: args.episodes,
        overhead_median_ms: b.median_ms - a.median_ms,
        ratio_median: b.median_ms / a.median_ms.max(1e-9),
        in_process: a,
        server: b,
    })
}
