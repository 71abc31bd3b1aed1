//! The run report: a self-contained HTML page (inline SVG plots, no scripts, no
//! network) and the summary table printed by `ssr report` and at the end of a run.
//!
//! Owns: the plots (validity rate, solve rate, rewards, episode lengths, time per
//! phase, the held-out learning curves next to the training loss, all per round) and
//! the summary, where infrastructure failures (episodes
//! whose model failed, attempts the sandbox could not score) are counted apart from
//! scored ones. Does not own: the numbers (read from `metrics.jsonl` and `run.json`).

use crate::rundir::{RoundMetrics, RunMeta};
use std::fmt::Write as _;

/// The ids of the plots every report contains (checked by the headless-browser test).
pub const PLOT_IDS: [&str; 7] = [
    "plot-validity",
    "plot-solve",
    "plot-rewards",
    "plot-lengths",
    "plot-phases",
    "plot-heldout",
    "plot-loss",
];

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One named series of (round, value) points.
struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plot area of a line chart: the SVG's size, its margins (left, right, top,
/// bottom), and the data ranges mapped onto it.
struct Frame {
    w: f64,
    h: f64,
    l: f64,
    r: f64,
    t: f64,
    b: f64,
    x_max: f64,
    y_min: f64,
    y_max: f64,
}

impl Frame {
    /// The frame of `all` points: x from 0 to the last round (at least 1); y over
    /// `y_fixed`, else from the lowest value (or 0) to the highest, widened when flat.
    fn new(all: &[(f64, f64)], y_fixed: Option<(f64, f64)>) -> Frame {
        let x_max = all.iter().map(|p| p.0).fold(1.0f64, f64::max);
        let (mut y_min, mut y_max) = y_fixed.unwrap_or_else(|| {
            let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() {
                (lo.min(0.0), hi.max(lo + 1e-9))
            } else {
                (0.0, 1.0)
            }
        });
        if (y_max - y_min).abs() < 1e-9 {
            y_min -= 0.5;
            y_max += 0.5;
        }
        Frame {
            w: 520.0,
            h: 260.0,
            l: 50.0,
            r: 130.0,
            t: 30.0,
            b: 36.0,
            x_max,
            y_min,
            y_max,
        }
    }

    fn px(&self, x: f64) -> f64 {
        self.l + (x / self.x_max) * (self.w - self.l - self.r)
    }

    fn py(&self, y: f64) -> f64 {
        self.t + (1.0 - (y - self.y_min) / (self.y_max - self.y_min)) * (self.h - self.t - self.b)
    }

    /// The axes, the y ticks with grid lines, the round ticks and the x label.
    fn axes(&self, s: &mut String) {
        let Frame {
            w, h, l, r, t, b, ..
        } = *self;
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
            h - b,
            w - r,
            h - b
        );
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="#333"/>"##,
            h - b
        );
        for i in 0..=4 {
            let y = self.y_min + (self.y_max - self.y_min) * f64::from(i) / 4.0;
            let _ = write!(
                s,
                r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{:.2}</text><line x1="{l}" y1="{1}" x2="{}" y2="{1}" stroke="#eee"/>"##,
                l - 4.0,
                self.py(y),
                y,
                w - r
            );
        }
        let rounds = self.x_max.round() as i64;
        let step = (rounds / 8).max(1);
        for x in (0..=rounds).step_by(step as usize) {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{x}</text>"#,
                self.px(x as f64),
                h - b + 14.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">round</text>"#,
            (l + w - r) / 2.0,
            h - 4.0
        );
    }

    /// Series `i`: its line (two points or more), its points with a tooltip each, and
    /// its legend entry.
    fn series(&self, s: &mut String, i: usize, se: &Series) {
        let c = COLORS[i % COLORS.len()];
        if se.points.len() > 1 {
            let pts: Vec<String> = se
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
        }
        for (x, y) in &se.points {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{}: round {x}, {y:.3}</title></circle>"#,
                self.px(*x),
                self.py(*y),
                esc(se.name)
            );
        }
        let ly = self.t + 14.0 * i as f64 + 6.0;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            self.w - self.r + 8.0,
            ly,
            self.w - self.r + 22.0,
            ly + 9.0,
            esc(se.name)
        );
    }

    /// The note shown in the middle of a chart with nothing to draw.
    fn no_data(&self, s: &mut String) {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#888">no data yet</text>"##,
            (self.l + self.w - self.r) / 2.0,
            (self.t + self.h - self.b) / 2.0
        );
    }
}

/// A line chart over rounds. `y_fixed` pins the y range (rates in [0, 1]).
fn line_chart(id: &str, title: &str, series: &[Series], y_fixed: Option<(f64, f64)>) -> String {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let f = Frame::new(&all, y_fixed);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t_}">"#,
        w = f.w,
        h = f.h,
        t_ = esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        f.l,
        esc(title)
    );
    f.axes(&mut s);
    for (i, se) in series.iter().enumerate() {
        f.series(&mut s, i, se);
    }
    if all.is_empty() {
        f.no_data(&mut s);
    }
    s.push_str("</svg>");
    s
}

/// Stacked bars of time per phase per round, in seconds.
fn phase_chart(id: &str, metrics: &[RoundMetrics]) -> String {
    let (w, h, l, r, t, b) = (520.0, 260.0, 50.0, 130.0, 30.0, 36.0);
    let mut phases: Vec<String> = metrics
        .iter()
        .flat_map(|m| m.phase_ms.keys().cloned())
        .collect();
    phases.sort();
    phases.dedup();
    let totals: Vec<f64> = metrics
        .iter()
        .map(|m| m.phase_ms.values().sum::<u64>() as f64 / 1000.0)
        .collect();
    let y_max = totals.iter().copied().fold(1e-9, f64::max);
    let n = metrics.len().max(1) as f64;
    let bw = ((w - l - r) / n * 0.7).max(2.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="time per phase">"#
    );
    let _ = write!(
        s,
        r#"<text x="{l}" y="18" font-size="14" font-weight="bold">Time per phase (s)</text>"#
    );
    let _ = write!(
        s,
        r##"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="#333"/>"##,
        h - b,
        w - r,
        h - b,
        h - b
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = t + (1.0 - v / y_max) * (h - t - b);
        let _ = write!(
            s,
            r#"<text x="{}" y="{y:.1}" font-size="10" text-anchor="end">{v:.1}</text>"#,
            l - 4.0
        );
    }
    for (i, m) in metrics.iter().enumerate() {
        let x = l + (i as f64 + 0.15) * (w - l - r) / n;
        let mut y = h - b;
        for (pi, p) in phases.iter().enumerate() {
            let secs = m.phase_ms.get(p).copied().unwrap_or(0) as f64 / 1000.0;
            let ph = secs / y_max * (h - t - b);
            y -= ph;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{ph:.1}" fill="{}"><title>round {}: {} {secs:.1} s</title></rect>"#,
                COLORS[pi % COLORS.len()],
                m.round,
                esc(p)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            x + bw / 2.0,
            h - b + 14.0,
            m.round
        );
    }
    for (pi, p) in phases.iter().enumerate() {
        let ly = t + 14.0 * pi as f64 + 6.0;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{ly}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            w - r + 8.0,
            COLORS[pi % COLORS.len()],
            w - r + 22.0,
            ly + 9.0,
            esc(p)
        );
    }
    if metrics.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#888">no data yet</text>"##,
            (l + w - r) / 2.0,
            (t + h - b) / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

fn pts(metrics: &[RoundMetrics], f: impl Fn(&RoundMetrics) -> Option<f64>) -> Vec<(f64, f64)> {
    metrics
        .iter()
        .filter_map(|m| f(m).map(|v| (f64::from(m.round), v)))
        .collect()
}

/// Totals over the whole run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub rounds: u32,
    pub injector_episodes: u32,
    pub model_valid: u32,
    pub procedural_valid: u32,
    pub higher_order_bugs: u32,
    pub solver_episodes: u32,
    pub solved: u32,
    /// Solver attempts not scored (infra).
    pub infra_attempts: u32,
    /// Episodes whose model call failed, of `model_episodes`.
    pub model_failures: u32,
    pub model_episodes: u32,
    /// The first model failure's message.
    pub model_error: Option<String>,
    /// Injector episodes with no reward (infra, or too few scored attempts).
    pub injectors_unrewarded: u32,
    /// Valid bugs the held-out split kept out of training.
    pub held_out_excluded: u32,
    /// Unsolved episodes cut by a budget that gave no trajectory (`compact_filtering`).
    pub trajectories_truncated: u32,
    /// Solved attempts turned into supervised demonstrations (`rft`).
    pub rft_demos: u32,
    pub malformed_calls: u32,
    pub sampled_tokens: u64,
    pub wall_ms: u64,
}

pub fn summarize(metrics: &[RoundMetrics]) -> Summary {
    let mut s = Summary {
        rounds: metrics.len() as u32,
        ..Default::default()
    };
    for m in metrics {
        s.injector_episodes += m.injector_episodes;
        s.model_valid += m.model_valid;
        s.procedural_valid += m.procedural_valid;
        s.higher_order_bugs += m.higher_order_bugs;
        s.solver_episodes += m.solver_episodes;
        s.solved += m.solved;
        s.infra_attempts += m.infra_attempts;
        s.model_failures += m.model_failures;
        s.model_episodes += m.model_episodes;
        if s.model_error.is_none() {
            s.model_error.clone_from(&m.model_error);
        }
        s.injectors_unrewarded += m.injectors_unrewarded;
        s.held_out_excluded += m.held_out_excluded;
        s.trajectories_truncated += m.trajectories_truncated;
        s.rft_demos += m.rft_demos;
        s.malformed_calls += m.malformed_calls;
        s.sampled_tokens += m.sampled_tokens;
        s.wall_ms += m.wall_ms;
    }
    s
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// The per-round table as plain text (one screen for a short run).
pub fn summary_table(metrics: &[RoundMetrics]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>5} {:>9} {:>11} {:>10} {:>6} {:>7} {:>8} {:>6} {:>8} {:>8} {:>7}",
        "round",
        "injector",
        "valid(mdl)",
        "valid(prc)",
        "h-o",
        "solver",
        "solved",
        "infra",
        "r_inj",
        "r_sol",
        "secs"
    );
    for m in metrics {
        let _ = writeln!(
            s,
            "{:>5} {:>9} {:>11} {:>10} {:>6} {:>7} {:>8} {:>6} {:>8} {:>8} {:>7.1}",
            m.round,
            m.injector_episodes,
            m.model_valid,
            m.procedural_valid,
            m.higher_order_bugs,
            m.solver_episodes,
            m.solved,
            m.infra_attempts,
            opt(m.mean_injector_reward),
            opt(m.mean_solver_reward),
            m.wall_ms as f64 / 1000.0
        );
    }
    let t = summarize(metrics);
    let _ = writeln!(
        s,
        "total: {} rounds, {} injector episodes, {} valid bugs from the model, {} procedural, {} higher-order; {}/{} scored solver attempts solved ({} not scored: infra); {} malformed tool calls; {} tokens sampled; {:.1} s",
        t.rounds,
        t.injector_episodes,
        t.model_valid,
        t.procedural_valid,
        t.higher_order_bugs,
        t.solved,
        t.solver_episodes.saturating_sub(t.infra_attempts),
        t.infra_attempts,
        t.malformed_calls,
        t.sampled_tokens,
        t.wall_ms as f64 / 1000.0
    );
    if t.model_failures > 0 || t.injectors_unrewarded > 0 {
        let _ = writeln!(
            s,
            "infrastructure: {} of {} episodes failed to reach the model (no reward, no training){}; {} injector episodes unrewarded",
            t.model_failures,
            t.model_episodes,
            t.model_error
                .as_deref()
                .map_or_else(String::new, |e| format!(", first: {e}")),
            t.injectors_unrewarded
        );
    }
    if t.held_out_excluded > 0 {
        let _ = writeln!(
            s,
            "held-out split: {} valid bugs excluded from training (not solved, not trained on)",
            t.held_out_excluded
        );
    }
    if let Some(line) = signal_settings_line(&t) {
        let _ = writeln!(s, "{line}");
    }
    for m in metrics {
        if let Some(h) = &m.heldout {
            let _ = writeln!(s, "held-out before round {}: {}", m.round, h.summary());
        }
    }
    s
}

/// What the learning-signal settings did over the run (`compact_filtering`, `rft`), or
/// nothing when neither acted.
fn signal_settings_line(t: &Summary) -> Option<String> {
    (t.trajectories_truncated > 0 || t.rft_demos > 0).then(|| {
        format!(
            "learning-signal settings: {} truncated unsolved episodes gave no trajectory (compact filtering); {} solved attempts became supervised demonstrations (rft)",
            t.trajectories_truncated, t.rft_demos
        )
    })
}

/// The five plots, in [`PLOT_IDS`] order.
fn plots(metrics: &[RoundMetrics]) -> String {
    let validity = [
        Series {
            name: "model bugs valid",
            points: pts(metrics, |m| Some(m.validity_rate)),
        },
        Series {
            name: "procedural valid",
            points: pts(metrics, |m| {
                (m.procedural_attempted > 0)
                    .then(|| f64::from(m.procedural_valid) / f64::from(m.procedural_attempted))
            }),
        },
    ];
    let solve = [Series {
        name: "solve rate",
        points: pts(metrics, |m| (m.solver_episodes > 0).then_some(m.solve_rate)),
    }];
    let rewards = [
        Series {
            name: "injector",
            points: pts(metrics, |m| m.mean_injector_reward),
        },
        Series {
            name: "solver",
            points: pts(metrics, |m| m.mean_solver_reward),
        },
    ];
    let lengths = [
        Series {
            name: "injector turns",
            points: pts(metrics, |m| m.mean_injector_turns),
        },
        Series {
            name: "solver turns",
            points: pts(metrics, |m| m.mean_solver_turns),
        },
    ];
    let mut h = String::from("<div class=\"plots\">");
    h.push_str(&line_chart(
        PLOT_IDS[0],
        "Validity rate of injected bugs",
        &validity,
        Some((0.0, 1.0)),
    ));
    h.push_str(&line_chart(
        PLOT_IDS[1],
        "Solve rate",
        &solve,
        Some((0.0, 1.0)),
    ));
    h.push_str(&line_chart(
        PLOT_IDS[2],
        "Mean reward",
        &rewards,
        Some((-1.0, 1.0)),
    ));
    h.push_str(&line_chart(
        PLOT_IDS[3],
        "Episode length (turns)",
        &lengths,
        None,
    ));
    h.push_str(&phase_chart(PLOT_IDS[4], metrics));
    h.push_str(&learning_curves(metrics));
    h.push_str("</div>");
    h
}

/// The held-out evaluation per round (its point at round N measures the weights round
/// N sampled from) and, next to it, the training loss.
fn learning_curves(metrics: &[RoundMetrics]) -> String {
    let held = |f: fn(&crate::selfplay::heldout::HeldoutReport) -> Option<f64>| {
        pts(metrics, move |m| m.heldout.as_ref().and_then(f))
    };
    let heldout = [
        Series {
            name: "held-out pass@K",
            points: held(|h| h.solve_rate),
        },
        Series {
            name: "95% Wilson low",
            points: held(|h| h.solve_rate_ci95.map(|c| c.0)),
        },
        Series {
            name: "95% Wilson high",
            points: held(|h| h.solve_rate_ci95.map(|c| c.1)),
        },
        Series {
            name: "malformed-call rate",
            points: held(|h| h.malformed_rate),
        },
        Series {
            name: "valid injector artifacts",
            points: held(|h| h.valid_artifact_rate),
        },
    ];
    let loss = [Series {
        name: "training loss",
        points: pts(metrics, |m| m.train_loss),
    }];
    let mut h = line_chart(
        PLOT_IDS[5],
        "Held-out evaluation",
        &heldout,
        Some((0.0, 1.0)),
    );
    h.push_str(&line_chart(PLOT_IDS[6], "Training loss", &loss, None));
    h
}

/// One table row per round, then the rejections by reason over the whole run.
fn round_tables(metrics: &[RoundMetrics]) -> String {
    let mut h = String::from(
        "<h2>Rounds</h2><table><tr><th>round</th><th>injector episodes</th><th>valid (model)</th><th>valid (procedural)</th><th>higher-order</th><th>solver episodes</th><th>solved</th><th>not scored (infra)</th><th>model failures</th><th>mean r_inj</th><th>mean r_sol</th><th>malformed calls</th><th>truncated, no trajectory</th><th>rft demos</th><th>seconds</th></tr>",
    );
    for m in metrics {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
            m.round,
            m.injector_episodes,
            m.model_valid,
            m.procedural_valid,
            m.higher_order_bugs,
            m.solver_episodes,
            m.solved,
            m.infra_attempts,
            m.model_failures,
            opt(m.mean_injector_reward),
            opt(m.mean_solver_reward),
            m.malformed_calls,
            m.trajectories_truncated,
            m.rft_demos,
            m.wall_ms as f64 / 1000.0
        );
    }
    h.push_str("</table>");
    let mut rejections = std::collections::BTreeMap::<&str, u32>::new();
    for m in metrics {
        for (k, v) in &m.rejections {
            *rejections.entry(k).or_default() += v;
        }
    }
    if !rejections.is_empty() {
        h.push_str("<h2>Rejected artifacts by reason</h2><table>");
        for (k, v) in rejections {
            let _ = write!(
                h,
                "<tr><td style=\"text-align:left\">{}</td><td>{v}</td></tr>",
                esc(k)
            );
        }
        h.push_str("</table>");
    }
    h
}

/// The whole HTML report.
pub fn render_html(meta: Option<&RunMeta>, metrics: &[RoundMetrics]) -> String {
    let title = meta.map_or_else(
        || "self-play run".to_string(),
        |m| format!("self-play run {}", m.id),
    );
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:24px;color:#222}} .plots{{display:flex;flex-wrap:wrap;gap:16px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} pre{{background:#f6f6f6;padding:8px}}</style></head><body>",
        esc(&title)
    );
    let _ = write!(h, "<h1>{}</h1>", esc(&title));
    if let Some(m) = meta {
        let _ = write!(
            h,
            "<p>policy <b>{}</b>, seed <b>{}</b>, started {} time(s)</p>",
            esc(&m.policy),
            m.seed,
            m.starts
        );
    }
    h.push_str(&plots(metrics));
    h.push_str(&round_tables(metrics));
    let _ = write!(
        h,
        "<h2>Summary</h2><pre>{}</pre>",
        esc(&summary_table(metrics))
    );
    if let Some(m) = meta {
        let _ = write!(
            h,
            "<h2>Configuration</h2><pre>{}</pre>",
            esc(&serde_json::to_string_pretty(&m.config).unwrap_or_default())
        );
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plot_is_present_even_without_data() {
        for metrics in [
            vec![],
            vec![RoundMetrics {
                round: 0,
                validity_rate: 0.5,
                ..Default::default()
            }],
        ] {
            let html = render_html(None, &metrics);
            for id in PLOT_IDS {
                assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
            }
            assert!(!html.contains("<script"));
        }
    }

    #[test]
    fn the_learning_signal_settings_are_reported_when_they_acted() {
        let quiet = summary_table(&[RoundMetrics::default()]);
        assert!(!quiet.contains("learning-signal settings"), "{quiet}");
        let metrics = vec![
            RoundMetrics {
                round: 0,
                trajectories_truncated: 2,
                ..Default::default()
            },
            RoundMetrics {
                round: 1,
                trajectories_truncated: 1,
                rft_demos: 3,
                ..Default::default()
            },
        ];
        let table = summary_table(&metrics);
        assert!(
            table.contains("3 truncated unsolved episodes gave no trajectory"),
            "{table}"
        );
        assert!(table.contains("3 solved attempts became supervised demonstrations"));
        let html = render_html(None, &metrics);
        assert!(html.contains("<th>rft demos</th>"));
        assert!(
            html.contains("<td>2</td><td>0</td>"),
            "round 0's two columns"
        );
    }

    #[test]
    fn infrastructure_failures_are_counted_apart() {
        let metrics = vec![RoundMetrics {
            round: 0,
            solver_episodes: 4,
            solved: 1,
            infra_attempts: 2,
            model_failures: 3,
            model_episodes: 5,
            model_error: Some("the model failed: HTTP 500".into()),
            injectors_unrewarded: 1,
            ..Default::default()
        }];
        let table = summary_table(&metrics);
        assert!(
            table.contains("1/2 scored solver attempts solved (2 not scored: infra)"),
            "{table}"
        );
        assert!(
            table.contains("3 of 5 episodes failed to reach the model"),
            "{table}"
        );
        assert!(
            table.contains("first: the model failed: HTTP 500"),
            "{table}"
        );
        let html = render_html(None, &metrics);
        assert!(html.contains("<th>model failures</th>"));
    }
}
