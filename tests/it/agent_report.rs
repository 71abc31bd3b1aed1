//! `ssr report` writes an HTML report whose plots all render in headless Chromium.

use ssr_agent::rundir::{RoundMetrics, RunDir, RunMeta};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

#[test]
fn agent_report_renders_every_plot_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::open(tmp.path()).unwrap();
    run.write_meta(&RunMeta {
        id: "t".into(),
        seed: 3,
        policy: "scripted".into(),
        created_unix: 0,
        config: serde_json::json!({}),
        starts: 1,
    })
    .unwrap();
    for round in 0..3u32 {
        let phase_ms = BTreeMap::from([
            ("inject+verify".to_string(), 1000 + 100 * u64::from(round)),
            ("solve+evaluate".to_string(), 2000),
        ]);
        run.append_metrics(&RoundMetrics {
            round,
            injector_episodes: 2,
            model_valid: round.min(2),
            validity_rate: f64::from(round.min(2)) / 2.0,
            procedural_attempted: 1,
            procedural_valid: 1,
            solver_episodes: 4,
            solved: round + 1,
            solve_rate: f64::from(round + 1) / 4.0,
            mean_injector_reward: Some(-0.5 + 0.2 * f64::from(round)),
            mean_solver_reward: Some(-0.5 + 0.5 * f64::from(round)),
            mean_injector_turns: Some(5.0),
            mean_solver_turns: Some(3.0 + f64::from(round)),
            phase_ms,
            wall_ms: 3000,
            ..Default::default()
        })
        .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ssr"))
        .args(["report", "--json"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["rounds"], 3);
    let html = tmp.path().join("report.html");
    assert!(html.is_file());

    let Some(chromium) = chromium() else {
        eprintln!(
            "skipped the browser check: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let dom = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in ssr_agent::report::PLOT_IDS {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("plot {id} missing from the rendered DOM"));
        let end = at + dom[at..].find("</svg>").expect("svg closed");
        let svg = &dom[at..end];
        assert!(
            svg.contains("<circle") || svg.contains("<rect"),
            "plot {id} has no marks"
        );
    }
    let shot = tmp.path().join("report.png");
    let s = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--window-size=1200,1400",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        s.status.success() && shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "screenshot failed"
    );
}
