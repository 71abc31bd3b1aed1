//! The four log formats: recognising a log and reading it into statuses plus, when the
//! framework's own final summary is missing or disagrees with the per-test lines, the
//! reason the run is incomplete (see the module doc of `trusted`).

use super::{LogFormat, TrustedResults, TrustedStatus, record};
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A status line of the summary section. The rest of the line is the node id, then
/// for some statuses ` - <message>`; the id may hold spaces inside its parameter
/// brackets, so it is split off by [`pytest_node_id`], not by the regex.
static PYTEST_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+)$").unwrap());
/// `SKIPPED [2] tests/test_b.py:3: why`: skips are grouped with a count.
static PYTEST_SKIP_GROUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^SKIPPED \[(\d+)\] ").unwrap());
/// A failing status outside the summary: the verbose progress line or a summary-style
/// line anywhere.
/// Three shapes: `<id> FAILED [ 50%]` (verbose progress; the id's parameters run to
/// the last `]` before the status), `[gw0] [ 50%] FAILED <id>` (pytest-xdist's verbose
/// progress) and `FAILED <id> - <message>` (summary style; the id is split off by
/// [`pytest_node_id`]).
static PYTEST_FAIL_ANYWHERE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:(\S+::[^\s\[]+(?:\[.*\])?) (?:FAILED|ERROR)\b|(?:\[gw\d+\] \[\s*\d+%\] )?(?:FAILED|ERROR) (\S+::.+)$)",
    )
    .unwrap()
});
static PYTEST_SUMMARY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^=+ short test summary info =+$").unwrap());
/// pytest's final line: `=== 1 failed, 2 passed, 1 skipped in 0.03s ===` (the `=` are
/// left out with `-q`), or `no tests ran in 0.01s`.
static PYTEST_FINAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:=+ )?((?:\d+ \w+)(?:, \d+ \w+)*|no tests ran) in [\d.]+s(?: \([^)]*\))?(?: =+)?$",
    )
    .unwrap()
});
static COUNT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d+) (\w+)").unwrap());

static CARGO_RUNNING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*Running (?:unittests )?(\S+)").unwrap());
static CARGO_DOC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*Doc-tests (\S+)").unwrap());
static CARGO_TEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^test (.+?) \.\.\. (ok|FAILED|ignored)(?:,.*)?$").unwrap());
static CARGO_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^running (\d+) tests?$").unwrap());
static CARGO_RESULT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;").unwrap()
});

static GO_RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \(").unwrap());
/// The end of a package: `ok  \tpkg\t0.01s`, `FAIL\tpkg\t0.01s`, or a bare `PASS`/`FAIL`.
static GO_PACKAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(ok|FAIL)(?:\s+\S+.*)?$").unwrap());

static UNITTEST_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\w+) \(([\w.]+)\) \.\.\. ?(.*)$").unwrap());
/// `test_x (mod.Class.test_x)` alone on its line: a docstring line or the test's own
/// output comes before the status.
static UNITTEST_NAME_ONLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\w+) \(([\w.]+)\)$").unwrap());
static UNITTEST_STATUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:.* \.\.\. ?)?(ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$")
        .unwrap()
});
static UNITTEST_FAIL_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(FAIL|ERROR): (\w+) \(([\w.]+)\)").unwrap());
static UNITTEST_RAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^Ran (\d+) tests? in ").unwrap());
static UNITTEST_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(OK|FAILED)(?: \((.*)\))?$").unwrap());

/// Recognises the format of a log, or `None` when it is none of the four.
/// Order matters: pytest's summary is the most specific marker, then cargo's
/// `running N tests` header, then go's `--- PASS:` lines, then unittest's footer.
pub fn detect(log: &str) -> Option<LogFormat> {
    if log.lines().any(|l| PYTEST_SUMMARY.is_match(l.trim_end())) {
        return Some(LogFormat::Pytest);
    }
    if log.lines().any(|l| CARGO_HEADER.is_match(l.trim_end()))
        && log.lines().any(|l| CARGO_TEST.is_match(l.trim_end()))
    {
        return Some(LogFormat::CargoTest);
    }
    if log.lines().any(|l| GO_RESULT.is_match(l)) {
        return Some(LogFormat::GoTest);
    }
    if log.lines().any(|l| UNITTEST_RAN.is_match(l.trim_end())) {
        return Some(LogFormat::Unittest);
    }
    None
}

type Parsed = (TrustedResults, Option<String>);

/// Counts of a summary line (`1 failed, 2 passed`) by word, plural folded.
fn counts(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in COUNT.captures_iter(text) {
        let word = match &c[2] {
            "errors" => "error",
            "warnings" => "warning",
            w => w,
        };
        *out.entry(word.to_string()).or_insert(0) += c[1].parse::<usize>().unwrap_or(0);
    }
    out
}

/// The node id at the start of the rest of a summary line (`<id>` or
/// `<id> - <message>`).
///
/// Why not "up to the first space": parametrized ids hold whatever the parameters
/// print as (`test_fmt[a b]`, `test_q['x - y']`, non-ASCII, hundreds of characters),
/// and losing one makes the count cross-check call a complete run incomplete. A node
/// id is `path::name` then optionally `[params]`; the params end at a `]` that ends
/// the line or is followed by ` - `. Of several such `]` (a message can hold `]` too)
/// the first is taken: a parameter holding `] - ` is the one shape this cannot tell
/// from a message, and there the id read is a prefix of the real one, which then
/// matches no id of the injector's and fails nothing.
pub(crate) fn pytest_node_id(rest: &str) -> &str {
    let message = rest.find(" - ");
    let Some(open) = rest.find('[').filter(|&b| message.is_none_or(|d| b < d)) else {
        return &rest[..message.unwrap_or(rest.len())];
    };
    rest[open..]
        .match_indices(']')
        .map(|(k, _)| open + k + 1)
        .find(|&end| rest[end..].is_empty() || rest[end..].starts_with(" - "))
        .map_or(&rest[..message.unwrap_or(rest.len())], |end| &rest[..end])
}

pub(super) fn parse_pytest(log: &str) -> Parsed {
    let lines: Vec<&str> = log.lines().map(str::trim_end).collect();
    let mut out = TrustedResults::new();
    // Failing statuses anywhere in the log.
    let mut failing = Vec::new();
    for line in &lines {
        if let Some(c) = PYTEST_FAIL_ANYWHERE.captures(line) {
            let id = match (c.get(1), c.get(2)) {
                (Some(progress), _) => progress.as_str(),
                (None, Some(rest)) => pytest_node_id(rest.as_str()),
                (None, None) => continue,
            };
            failing.push(id.to_string());
        }
    }
    // The final summary section: from the last header to the first final line after it.
    let Some(start) = lines.iter().rposition(|l| PYTEST_SUMMARY.is_match(l)) else {
        return (out, Some("no `short test summary info` section".into()));
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| PYTEST_FINAL.is_match(l))
        .map(|k| start + 1 + k);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &lines[start + 1..end.unwrap_or(lines.len())] {
        if let Some(c) = PYTEST_SKIP_GROUP.captures(line) {
            *seen.entry("skipped").or_insert(0) += c[1].parse::<usize>().unwrap_or(0);
            continue;
        }
        if let Some(c) = PYTEST_LINE.captures(line) {
            let (status, word) = match &c[1] {
                "PASSED" => (TrustedStatus::Passed, "passed"),
                "XPASS" => (TrustedStatus::Passed, "xpassed"),
                "FAILED" => (TrustedStatus::Failed, "failed"),
                "ERROR" => (TrustedStatus::Failed, "error"),
                "XFAIL" => (TrustedStatus::Other, "xfailed"),
                _ => (TrustedStatus::Other, "skipped"),
            };
            *seen.entry(word).or_insert(0) += 1;
            record(&mut out, pytest_node_id(&c[2]).to_string(), status);
        }
    }
    for id in failing {
        out.insert(id, TrustedStatus::Failed);
    }
    let Some(end) = end else {
        return (
            out,
            Some("pytest's final summary line (`=== N passed in Xs ===`) is missing".into()),
        );
    };
    let stated = counts(lines[end]);
    for word in ["passed", "failed", "error", "xpassed"] {
        let said = stated.get(word).copied().unwrap_or(0);
        let read = seen.get(word).copied().unwrap_or(0);
        if said != read {
            return (
                out,
                Some(format!(
                    "pytest's final line says {said} {word} but the summary section lists {read}"
                )),
            );
        }
    }
    (out, None)
}

pub(super) fn parse_cargo(log: &str) -> Parsed {
    let mut out = TrustedResults::new();
    let mut incomplete = None;
    let mut target = String::from("unknown");
    // The target of the open block: a test binary's lines belong to the binary that
    // printed `running N tests`, even when cargo's next `Running` line comes first
    // (output delayed through a pipe the code under test put in front of stdout).
    let mut block_target = target.clone();
    // The open block: (declared count, passed, failed, ignored, lines seen).
    let mut block: Option<(usize, usize, usize, usize)> = None;
    let mut declared = 0;
    let note = |why: String, incomplete: &mut Option<String>| {
        incomplete.get_or_insert(why);
    };
    for line in log.lines() {
        let line = line.trim_end();
        if let Some(c) = CARGO_DOC.captures(line) {
            target = format!("doc:{}", &c[1]);
            continue;
        }
        if let Some(c) = CARGO_RUNNING.captures(line) {
            target = c[1].to_string();
            continue;
        }
        if let Some(c) = CARGO_HEADER.captures(line) {
            if block.is_some() {
                note(
                    format!("a `running N tests` block of {target} has no `test result:` line"),
                    &mut incomplete,
                );
            }
            declared = c[1].parse().unwrap_or(0);
            block = Some((0, 0, 0, 0));
            block_target = target.clone();
            continue;
        }
        if let Some(c) = CARGO_TEST.captures(line) {
            let status = match &c[2] {
                "ok" => TrustedStatus::Passed,
                "FAILED" => TrustedStatus::Failed,
                _ => TrustedStatus::Other,
            };
            match block.as_mut() {
                Some(b) => {
                    b.3 += 1;
                    match status {
                        TrustedStatus::Passed => b.0 += 1,
                        TrustedStatus::Failed => b.1 += 1,
                        TrustedStatus::Other => b.2 += 1,
                    }
                }
                None => note(
                    format!("test line outside a `running N tests` block: {line}"),
                    &mut incomplete,
                ),
            }
            let owner = if block.is_some() {
                &block_target
            } else {
                &target
            };
            record(&mut out, format!("{owner}::{}", &c[1]), status);
            continue;
        }
        if let Some(c) = CARGO_RESULT.captures(line) {
            let Some((p, f, i, n)) = block.take() else {
                note(
                    "a `test result:` line outside a block".into(),
                    &mut incomplete,
                );
                continue;
            };
            let said: Vec<usize> = (1..=3).map(|k| c[k].parse().unwrap_or(0)).collect();
            if said != [p, f, i] || n != declared {
                note(
                    format!(
                        "in {block_target} `test result:` says {} passed, {} failed, {} ignored of {declared} but the test lines show {p}, {f}, {i} of {n}",
                        said[0], said[1], said[2]
                    ),
                    &mut incomplete,
                );
            }
        }
    }
    if block.is_some() {
        note(
            format!("the last `running N tests` block ({target}) has no `test result:` line"),
            &mut incomplete,
        );
    }
    (out, incomplete)
}

pub(super) fn parse_go(log: &str) -> Parsed {
    let mut out = TrustedResults::new();
    let mut incomplete = None;
    // Tests since the last package line, and whether one of them failed.
    let mut open = 0usize;
    let mut failed_in_package = false;
    let mut packages = 0usize;
    for line in log.lines() {
        let line = line.trim_end();
        if let Some(c) = GO_RESULT.captures(line) {
            let status = match &c[1] {
                "PASS" => TrustedStatus::Passed,
                "FAIL" => TrustedStatus::Failed,
                _ => TrustedStatus::Other,
            };
            open += 1;
            failed_in_package |= status == TrustedStatus::Failed;
            record(&mut out, c[2].to_string(), status);
            continue;
        }
        if let Some(c) = GO_PACKAGE.captures(line) {
            if &c[1] == "ok" && failed_in_package && incomplete.is_none() {
                incomplete = Some(format!(
                    "go reports `{line}` for a package with a failed test"
                ));
            }
            packages += 1;
            open = 0;
            failed_in_package = false;
        }
    }
    if open > 0 || packages == 0 {
        incomplete
            .get_or_insert("go's `ok`/`FAIL` package line after the last test is missing".into());
    }
    (out, incomplete)
}

pub(super) fn parse_unittest(log: &str) -> Parsed {
    let mut out = TrustedResults::new();
    let mut pending: Option<String> = None;
    let mut failing = Vec::new();
    let mut fail_blocks = 0usize;
    let mut ran: Option<usize> = None;
    let mut end: Option<(String, String)> = None;
    let id_of = |name: &str, qual: &str| {
        // Python 3.11 prints `test_x (mod.Class.test_x)`; older versions print
        // `test_x (mod.Class)`. Normalise both to `mod.Class.test_x`.
        if qual.ends_with(&format!(".{name}")) {
            qual.to_string()
        } else {
            format!("{qual}.{name}")
        }
    };
    let status_of = |s: &str| match s {
        "ok" | "unexpected success" => Some(TrustedStatus::Passed),
        "FAIL" | "ERROR" => Some(TrustedStatus::Failed),
        s if s.starts_with("skipped") || s == "expected failure" => Some(TrustedStatus::Other),
        _ => None,
    };
    for line in log.lines() {
        let line = line.trim_end();
        if let Some(c) = UNITTEST_FAIL_BLOCK.captures(line) {
            fail_blocks += 1;
            failing.push(id_of(&c[2], &c[3]));
            continue;
        }
        if let Some(c) = UNITTEST_RAN.captures(line) {
            ran = c[1].parse().ok();
            end = None;
            continue;
        }
        if ran.is_some()
            && end.is_none()
            && let Some(c) = UNITTEST_END.captures(line)
        {
            end = Some((
                c[1].to_string(),
                c.get(2).map_or("", |m| m.as_str()).to_string(),
            ));
            continue;
        }
        if let Some(c) = UNITTEST_NAME_ONLY.captures(line) {
            pending = Some(id_of(&c[1], &c[2]));
            continue;
        }
        if let Some(c) = UNITTEST_LINE.captures(line) {
            let id = id_of(&c[1], &c[2]);
            match status_of(c[3].trim()) {
                Some(s) => {
                    record(&mut out, id, s);
                    pending = None;
                }
                // The test printed before its status: the status comes on a later line.
                None => pending = Some(id),
            }
            continue;
        }
        if let Some(id) = &pending
            && let Some(c) = UNITTEST_STATUS.captures(line)
            && let Some(s) = status_of(&c[1])
        {
            record(&mut out, id.clone(), s);
            pending = None;
        }
    }
    for id in failing {
        out.insert(id, TrustedStatus::Failed);
    }
    let Some(ran) = ran else {
        return (out, Some("unittest's `Ran N tests` line is missing".into()));
    };
    let Some((verdict, detail)) = end else {
        return (
            out,
            Some("unittest's `OK`/`FAILED (...)` line is missing".into()),
        );
    };
    if out.len() != ran {
        let why = format!(
            "unittest ran {ran} tests but {} have a status line",
            out.len()
        );
        return (out, Some(why));
    }
    let stated = counts_eq(&detail);
    let said_failing =
        stated.get("failures").copied().unwrap_or(0) + stated.get("errors").copied().unwrap_or(0);
    if said_failing != fail_blocks || (verdict == "OK") != (fail_blocks == 0) {
        return (
            out,
            Some(format!(
                "unittest says `{verdict} ({detail})` but the log holds {fail_blocks} FAIL/ERROR reports"
            )),
        );
    }
    (out, None)
}

/// `failures=1, errors=2` → {failures: 1, errors: 2}.
fn counts_eq(text: &str) -> BTreeMap<String, usize> {
    text.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}
