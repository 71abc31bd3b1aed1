//! Role prompts: the injector's instructions for each strategy (SSR_SPEC.md section 8),
//! the solver's system prompt, and the tools section shared by both. The solver's task
//! text (the fixed template of section 4) is the game's (`ssr_game::episode::task_text`).
//!
//! Owns: the wording (this project's own). Does not own: the artifact's file rules
//! beyond describing them (the verifier enforces them), or the tools' behaviour.

use crate::toolcall::ToolCallSyntax;
use crate::tools::ToolSpec;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the injector is told to make its bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// "Introduce a bug", nothing more (the paper's weakest baseline).
    Direct,
    /// Remove code, then repair imports so the project still runs.
    Removal,
    /// Revert code to an earlier version found in the git history.
    History,
}

/// Which strategies injector rollouts use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyMix {
    /// Removal or history, 50/50 per rollout (the paper's best).
    #[default]
    RemovalOrHistory,
    Removal,
    History,
    Direct,
}

impl StrategyMix {
    pub fn pick(self, rng: &mut impl Rng) -> Strategy {
        match self {
            StrategyMix::RemovalOrHistory => {
                if rng.gen_bool(0.5) {
                    Strategy::Removal
                } else {
                    Strategy::History
                }
            }
            StrategyMix::Removal => Strategy::Removal,
            StrategyMix::History => Strategy::History,
            StrategyMix::Direct => Strategy::Direct,
        }
    }
}

/// The tools section: each tool's name, description and arguments, and how to call.
pub fn tools_section(tools: &[ToolSpec], syntax: ToolCallSyntax) -> String {
    let mut s = String::from(
        "## Tools\nYou act only through tools. Each of your turns must contain exactly one tool call and nothing after it; its result comes back as the next message.\n\n",
    );
    for t in tools {
        s.push_str(&format!(
            "- `{}`: {}\n  arguments (JSON schema): {}\n",
            t.name,
            t.description.trim(),
            t.parameters
        ));
    }
    let example = tools
        .iter()
        .find_map(|t| t.shape().primary_arg.map(|a| (t.name.clone(), a)))
        .unwrap_or_else(|| ("bash".into(), "command".into()));
    s.push_str("\nCall syntax, for example:\n");
    s.push_str(&syntax.example(&example.0, &example.1, "ls"));
    if syntax == ToolCallSyntax::Cwm {
        s.push_str("\nThe block body is either a JSON object of arguments, or for a tool with a main text argument (such as a bash command) that text itself.");
    }
    s.push('\n');
    s
}

/// The injector's system prompt for a strategy.
pub fn injector_system(
    strategy: Strategy,
    tools: &[ToolSpec],
    syntax: ToolCallSyntax,
    min_passing_tests: usize,
) -> String {
    let how = match strategy {
        Strategy::Direct => "Introduce a bug into the code of the repository.".to_string(),
        Strategy::Removal => "Make the bug by taking functionality away: delete meaningful hunks of code, or the whole body of a function, class or file. Then make only the small compatibility edits needed so that the project still imports, builds and runs (keep names that other code uses; a stub may return a neutral value). A solver will have to write the removed behaviour again from the tests alone.".to_string(),
        Strategy::History => "Make the bug by going back in time: read the history with `git log` and `git show`, pick commits that fixed bugs or added behaviour (bug fixes first), and revert their code changes — whole files, parts of a commit, or a combination of commits. Then make only the small compatibility edits needed so that the project still imports, builds and runs.".to_string(),
    };
    format!(
        "You are a software engineer who writes realistic bugs for a bug-fixing exercise. You work in a real repository at your current directory.\n\n\
## Goal\n{how}\n\n\
## Steps\n\
1. Explore the repository and find out how its tests are run.\n\
2. Choose at least {min_passing_tests} tests that pass on the current code and that run in well under 90 seconds.\n\
3. Change the code (never the test files you chose) so that some of those tests fail, but not all of them.\n\
4. Weaken the tests that expose your change: delete those test functions or relax their assertions so the change is hidden. Do not just comment them out.\n\
5. Write the five files of the bug artifact into the directory `ssr_artifact/` at the repository root, then call the submit tool.\n\n\
## The five files\n\
- `test_script.sh`: a bash script that runs your chosen tests verbosely from the repository root.\n\
- `test_files.txt`: the test files your tests live in, one relative path per line.\n\
- `test_parser.py`: reads the test log on standard input and prints a JSON object mapping each test id to \"passed\" or \"failed\".\n\
- `bug_inject.diff`: a git diff of your code change (no file listed in `test_files.txt`).\n\
- `test_weaken.diff`: a git diff that only touches files listed in `test_files.txt` and removes or weakens the tests that catch the bug.\n\
Produce the diffs with `git diff`, for example `git diff -- src/ > ssr_artifact/bug_inject.diff`. Every check runs from a fresh copy of the original repository, so the diffs must apply to it cleanly.\n\n{}",
        tools_section(tools, syntax)
    )
}

/// The injector's first user message.
pub fn injector_task(repo_name: &str) -> String {
    format!(
        "The repository `{repo_name}` is checked out in your working directory with its full git history. Create the bug artifact as described, then submit."
    )
}

/// The solver's system prompt.
pub fn solver_system(tools: &[ToolSpec], syntax: ToolCallSyntax) -> String {
    format!(
        "You are a software engineer fixing code in a real repository at your current directory. Find out how to run the tests yourself. Edit the code, not the tests. When the code is fixed, call the submit tool; your changes to the working tree are your answer.\n\n{}",
        tools_section(tools, syntax)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn bash() -> ToolSpec {
        ToolSpec {
            name: "bash".into(),
            description: "run a command".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        }
    }

    #[test]
    fn strategies_differ_and_mix_is_balanced() {
        let t = [bash()];
        let r = injector_system(Strategy::Removal, &t, ToolCallSyntax::Cwm, 5);
        let h = injector_system(Strategy::History, &t, ToolCallSyntax::Cwm, 5);
        assert!(r.contains("taking functionality away") && h.contains("git log"));
        assert!(r.contains("<tool: bash>\nls\n</tool>"));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let removals = (0..1000)
            .filter(|_| StrategyMix::RemovalOrHistory.pick(&mut rng) == Strategy::Removal)
            .count();
        assert!((400..600).contains(&removals), "{removals}");
    }
}
