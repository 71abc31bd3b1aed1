//! Rewards of both roles (`SSR_SPEC.md` section 7): the solver's ±1 and the
//! injector's reward from the solve rate of its bug, with α = 0.8 by default, plus the
//! validity-only variant the paper found almost as good.
//!
//! Does not own: deciding whether an attempt solved the bug (that is `evaluate`).

use serde::{Deserialize, Serialize};

/// Which injector reward is used.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InjectorRewardKind {
    /// −1 rejected; −α when the solve rate is 0 or 1; else `1 − (1 + α)·s`.
    SolveRate { alpha: f64 },
    /// −1 rejected, +1 valid (the solve rate is ignored).
    ValidityOnly,
}

impl Default for InjectorRewardKind {
    fn default() -> Self {
        InjectorRewardKind::SolveRate { alpha: 0.8 }
    }
}

/// Reward settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardConfig {
    pub injector: InjectorRewardKind,
    /// First-order solver attempts per bug (G).
    pub attempts_per_bug: usize,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            injector: InjectorRewardKind::default(),
            attempts_per_bug: 8,
        }
    }
}

/// +1 for a solved attempt, −1 otherwise.
pub fn solver_reward(solved: bool) -> f64 {
    if solved { 1.0 } else { -1.0 }
}

/// The injector's reward. `solved` is how many of the bug's `attempts` first-order
/// solver attempts scored +1; `valid` is the verifier's verdict. With no attempts
/// (the bug was valid but never attempted) the solve rate is taken as 0.
pub fn injector_reward(
    kind: InjectorRewardKind,
    valid: bool,
    solved: usize,
    attempts: usize,
) -> f64 {
    if !valid {
        return -1.0;
    }
    match kind {
        InjectorRewardKind::ValidityOnly => 1.0,
        InjectorRewardKind::SolveRate { alpha } => {
            let s = if attempts == 0 {
                0.0
            } else {
                solved.min(attempts) as f64 / attempts as f64
            };
            if s == 0.0 || s == 1.0 {
                -alpha
            } else {
                1.0 - (1.0 + alpha) * s
            }
        }
    }
}

/// Lines of each patch the similarity looks at (its matcher is quadratic in the worst
/// case; a patch longer than this is compared on its first lines).
const SIMILARITY_LINES: usize = 4000;
/// The highest shaped reward of a failed attempt: below a solve's +1, always.
pub const SHAPED_MAX: f64 = 0.99;

/// How alike two patches are: Python's `difflib.SequenceMatcher(None, a, b,
/// autojunk=False).ratio()` over their lines (Ratcliff/Obershelp: twice the matched
/// lines over all lines), in [0, 1]. SWE-RL's patch-similarity reward is built on it.
pub fn patch_similarity(a: &str, b: &str) -> f64 {
    let a: Vec<&str> = a.split_inclusive('\n').take(SIMILARITY_LINES).collect();
    let b: Vec<&str> = b.split_inclusive('\n').take(SIMILARITY_LINES).collect();
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let mut b2j: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (j, line) in b.iter().enumerate() {
        b2j.entry(line).or_default().push(j);
    }
    let matched = matching_lines(&a, &b2j, (0, a.len()), (0, b.len()));
    2.0 * matched as f64 / total as f64
}

/// Lines matched in `a[alo..ahi]` against `b[blo..bhi]`: the longest matching block,
/// then the same on each side of it (difflib's `get_matching_blocks`).
fn matching_lines(
    a: &[&str],
    b2j: &std::collections::HashMap<&str, Vec<usize>>,
    (alo, ahi): (usize, usize),
    (blo, bhi): (usize, usize),
) -> usize {
    let mut stack = vec![(alo, ahi, blo, bhi)];
    let mut matched = 0;
    while let Some((alo, ahi, blo, bhi)) = stack.pop() {
        // difflib's find_longest_match: the earliest longest block.
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        let mut len_at: std::collections::HashMap<usize, usize> = Default::default();
        for (i, line) in a.iter().enumerate().take(ahi).skip(alo) {
            let mut next: std::collections::HashMap<usize, usize> = Default::default();
            for &j in b2j.get(line).map(Vec::as_slice).unwrap_or_default() {
                if j < blo {
                    continue;
                }
                if j >= bhi {
                    break;
                }
                let k = len_at.get(&j.wrapping_sub(1)).copied().unwrap_or(0) + 1;
                next.insert(j, k);
                if k > bestsize {
                    (besti, bestj, bestsize) = (i + 1 - k, j + 1 - k, k);
                }
            }
            len_at = next;
        }
        if bestsize == 0 {
            continue;
        }
        matched += bestsize;
        stack.push((alo, besti, blo, bestj));
        stack.push((besti + bestsize, ahi, bestj + bestsize, bhi));
    }
    matched
}

/// The shaped reward of a failed attempt whose bug's true fix is known: its patch's
/// similarity to the true fix mapped into [−1, [`SHAPED_MAX`]]. Never for a solved,
/// infra or tampered attempt (the caller decides those from the evaluator's outcome).
pub fn shaped_solver_reward(attempt_patch: &str, true_fix: &str) -> f64 {
    if attempt_patch.trim().is_empty() {
        return -1.0;
    }
    (2.0 * patch_similarity(attempt_patch, true_fix) - 1.0).min(SHAPED_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of Python's `difflib.SequenceMatcher(None, a.splitlines(True),
    /// b.splitlines(True), autojunk=False).ratio()`.
    #[test]
    fn patch_similarity_matches_difflib() {
        let cases = [
            ("a\nb\nc\nd\n", "a\nx\nc\nd\n", 0.75),
            ("", "x\n", 0.0),
            ("same\n", "same\n", 1.0),
            ("q\nw\ne\nr\nt\ny\n", "y\nt\nr\ne\nw\nq\n", 1.0 / 6.0),
            (
                "-x = 1\n+x = 2\n ctx\n",
                "-x = 1\n+x = 3\n ctx\n",
                2.0 / 3.0,
            ),
        ];
        for (a, b, want) in cases {
            let got = patch_similarity(a, b);
            assert!((got - want).abs() < 1e-12, "{a:?} {b:?}: {got} != {want}");
        }
    }

    #[test]
    fn a_shaped_reward_never_reaches_a_solve() {
        let fix = "-x = 1\n+x = 2\n";
        assert_eq!(shaped_solver_reward(fix, fix), SHAPED_MAX);
        assert_eq!(shaped_solver_reward("", fix), -1.0);
        assert_eq!(shaped_solver_reward("  \n", fix), -1.0);
        let r = shaped_solver_reward("-x = 1\n+x = 3\n", fix);
        assert!(r > -1.0 && r < SHAPED_MAX, "{r}");
    }

    /// The reward table of `SSR_SPEC.md` section 7, G = 8, α = 0.8.
    #[test]
    fn reward_table_of_section_7() {
        let k = InjectorRewardKind::default();
        let table = [
            (0, -0.8),
            (1, 0.775),
            (2, 0.55),
            (4, 0.10),
            (7, -0.575),
            (8, -0.8),
        ];
        for (solved, want) in table {
            let got = injector_reward(k, true, solved, 8);
            assert!((got - want).abs() < 1e-9, "k={solved}: {got} != {want}");
        }
        assert_eq!(injector_reward(k, false, 3, 8), -1.0);
    }

    #[test]
    fn validity_only_ignores_solve_rate() {
        let k = InjectorRewardKind::ValidityOnly;
        assert_eq!(injector_reward(k, true, 0, 8), 1.0);
        assert_eq!(injector_reward(k, true, 8, 8), 1.0);
        assert_eq!(injector_reward(k, false, 4, 8), -1.0);
    }

    #[test]
    fn solver_reward_is_plus_minus_one() {
        assert_eq!(solver_reward(true), 1.0);
        assert_eq!(solver_reward(false), -1.0);
    }
}
