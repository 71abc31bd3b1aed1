//! Judging a cargo run (`Reporter::read_cargo`): what cargo's own lines say about
//! the run's binaries ([`LogFacts`]), the events the canary module wrote
//! ([`Events`]), and the rules that make a binary's run tampered or incomplete
//! ([`Judge`]; the rules are listed in the parent module's docs).

use super::PlacedTarget;
use crate::reporter::{Canary, ReporterReading};
use crate::trusted::{TrustedResults, TrustedStatus, suffix_match};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

static RUNNING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*Running (?:unittests )?(\S+)").unwrap());
static DOC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*Doc-tests (\S+)").unwrap());
static HEADER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^running \d+ tests?$").unwrap());
static RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^test result: (?:ok|FAILED)\. .*?(\d+) filtered out").unwrap());
static RERUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"to rerun pass [`']--test ([^`'\s]+)[`']").unwrap());

/// What cargo's own lines say about the run's binaries.
#[derive(Default)]
pub(super) struct LogFacts {
    /// Targets with a `Running` line (package-relative paths).
    running: BTreeSet<String>,
    /// Test target names cargo reported failing (`to rerun pass --test NAME`).
    failed: BTreeSet<String>,
    /// Target → the `filtered out` counts of its `test result:` lines.
    filtered: BTreeMap<String, Vec<usize>>,
}

impl LogFacts {
    pub(super) fn read(log: &str) -> LogFacts {
        let mut f = LogFacts::default();
        let mut target = String::from("unknown");
        // As the trusted parser: a block's summary belongs to the binary that opened it.
        let mut block = target.clone();
        for line in log.lines().map(str::trim_end) {
            if let Some(c) = DOC.captures(line) {
                target = format!("doc:{}", &c[1]);
            } else if let Some(c) = RUNNING.captures(line) {
                target = c[1].to_string();
                f.running.insert(target.clone());
            } else if HEADER.is_match(line) {
                block = target.clone();
            } else if let Some(c) = RESULT.captures(line) {
                let n = c[1].parse().unwrap_or(0);
                f.filtered.entry(block.clone()).or_default().push(n);
            }
            if let Some(c) = RERUN.captures(line) {
                f.failed.insert(c[1].replace('-', "_"));
            }
        }
        f
    }

    /// The log targets that are `file` (`crates/a/tests/x.rs` is `tests/x.rs`).
    fn targets_of<'a>(&'a self, file: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.running.iter().filter(move |t| suffix_match(file, t))
    }
}

/// The events file, by target.
#[derive(Default)]
pub(super) struct Events {
    started: BTreeSet<String>,
    /// (target, canary) → the kinds it wrote (`pass`, `fail`).
    canary: BTreeMap<(String, String), BTreeSet<String>>,
    /// target → thread names that panicked.
    panics: BTreeMap<String, BTreeSet<String>>,
}

impl Events {
    pub(super) fn read(text: &str) -> Events {
        let mut e = Events::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["start", t] => {
                    e.started.insert(t.to_string());
                }
                ["canary", t, name, kind] => {
                    e.canary
                        .entry((t.to_string(), name.to_string()))
                        .or_default()
                        .insert(kind.to_string());
                }
                ["panic", t, thread] => {
                    e.panics
                        .entry(t.to_string())
                        .or_default()
                        .insert(thread.to_string());
                }
                // Anything else was not written by the module: ignored, the rules
                // below never need a line to be absent.
                _ => {}
            }
        }
        e
    }
}

/// The judgement of one oracle binary.
pub(super) struct Judge<'a> {
    pub(super) target: &'a PlacedTarget,
    pub(super) module: &'a str,
    pub(super) canaries: Vec<&'a Canary>,
    pub(super) facts: &'a LogFacts,
    pub(super) events: &'a Events,
    pub(super) results: &'a TrustedResults,
}

impl Judge<'_> {
    /// The log status of a test path inside this binary (`adds`, `m::c`).
    fn status(&self, path: &str) -> Option<TrustedStatus> {
        let mut found = None;
        for (id, st) in self.results {
            let Some(prefix) = id.strip_suffix(path).and_then(|p| p.strip_suffix("::")) else {
                continue;
            };
            if prefix == "unknown" || suffix_match(&self.target.file, prefix) {
                found = match (found, *st) {
                    (Some(TrustedStatus::Failed), _) | (_, TrustedStatus::Failed) => {
                        Some(TrustedStatus::Failed)
                    }
                    _ => Some(*st),
                };
            }
        }
        found
    }

    pub(super) fn run(&self, out: &mut ReporterReading) {
        let file = &self.target.file;
        let events_of = |name: &str| self.events.canary.get(&(file.clone(), name.to_string()));
        let started = self.events.started.contains(file);
        let running = self.facts.targets_of(file).next().is_some();
        let mut statuses = BTreeMap::new();
        for c in &self.canaries {
            statuses.insert(
                c.name.clone(),
                self.status(&format!("{}::{}", self.module, c.name)),
            );
        }
        let any_result = self.results.iter().any(|(id, _)| {
            self.facts
                .targets_of(file)
                .any(|t| id.starts_with(&format!("{t}::")))
        });
        if !started {
            if running && any_result {
                out.tampered.push(format!(
                    "the log holds results of {file}'s test binary, but ssr's reporter never started in it"
                ));
            }
            return;
        }
        let binary_failed = self
            .facts
            .failed
            .contains(&self.target.name.replace('-', "_"));
        let mut missing = Vec::new();
        let mut ran_unreported = Vec::new();
        let mut must_fail_ran = false;
        for c in &self.canaries {
            let kinds = events_of(&c.name);
            let ran = kinds.is_some_and(|k| k.contains(c.must()));
            must_fail_ran |= ran && !c.must_pass;
            let want = if c.must_pass {
                TrustedStatus::Passed
            } else {
                TrustedStatus::Failed
            };
            match statuses[&c.name] {
                Some(st) if st != want => out.tampered.push(format!(
                    "canary {}::{} of {file}, which must {}, was reported {}",
                    self.module,
                    c.name,
                    c.must(),
                    crate::reporter::status_word(st)
                )),
                Some(TrustedStatus::Passed) if !ran => out.tampered.push(format!(
                    "canary {}::{} of {file} was reported passed but never ran",
                    self.module, c.name
                )),
                Some(_) => {}
                None if ran => ran_unreported.push(c.name.clone()),
                None => missing.push(c.name.clone()),
            }
        }
        if must_fail_ran && !binary_failed {
            out.tampered.push(format!(
                "{file}'s test binary exited with status 0 although its must-fail canaries failed: \
                 a test ended the process or forged its status"
            ));
        }
        self.judge_missing(&missing, &ran_unreported, binary_failed, out);
        self.judge_panics(out);
    }

    /// Canaries with no log status: filtered out by the script (incomplete), lost
    /// with a crashed binary (incomplete), or hidden (tampered).
    fn judge_missing(
        &self,
        missing: &[String],
        ran_unreported: &[String],
        binary_failed: bool,
        out: &mut ReporterReading,
    ) {
        let file = &self.target.file;
        let n = missing.len() + ran_unreported.len();
        if n == 0 {
            return;
        }
        let filtered: usize = self
            .facts
            .targets_of(file)
            .filter_map(|t| self.facts.filtered.get(t))
            .flatten()
            .sum();
        let summaries = self
            .facts
            .targets_of(file)
            .any(|t| self.facts.filtered.contains_key(t));
        if ran_unreported.is_empty() && summaries && filtered >= missing.len() {
            out.incomplete.get_or_insert_with(|| {
                format!(
                    "the script filtered out {n} canaries of {file}: cargo runs of the oracle binaries must not filter by name"
                )
            });
        } else if binary_failed && !summaries {
            out.incomplete.get_or_insert_with(|| {
                format!("{file}'s test binary failed before {n} canaries reported (a crash)")
            });
        } else {
            out.tampered.push(format!(
                "{n} canaries of {file} have no result in the log: its test binary ended early or its output was forged"
            ));
        }
    }

    /// A test reported passed whose thread panicked.
    fn judge_panics(&self, out: &mut ReporterReading) {
        if self.target.panic_exempt {
            return;
        }
        let Some(threads) = self.events.panics.get(&self.target.file) else {
            return;
        };
        for thread in threads {
            if thread == "main" || thread.starts_with(&format!("{}::", self.module)) {
                continue;
            }
            if self.status(thread) == Some(TrustedStatus::Passed) {
                out.tampered.push(format!(
                    "{}::{thread} was reported passed, but its test panicked",
                    self.target.file
                ));
            }
        }
    }
}
