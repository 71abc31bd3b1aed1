//! Demonstrations for the warm start (`ssr demos`): from verified bugs whose fix is
//! known (the reverse of the bug patch), episodes a knowing policy would play, run
//! through the real agent loop on the real tools and the real game, then kept as
//! [`Demo`]s (token ids and the assistant-only loss mask) for `ssr sft`.
//!
//! A solver demonstration plays in the bug's history-free buggy workspace and must
//! solve it (the evaluator's outcome); an injector demonstration plays in a copy of the
//! original and its submitted artifact must verify. Each must fit the budgets the
//! policy plays under (turns, new tokens per turn, context): one that needs more is
//! dropped and counted with its reason, never cut.
//!
//! Owns: which bugs give demonstrations (verified first-order bugs not excluded; the
//! injector's only from procedural ones), the drop reasons, the demonstration file.
//! Does not own: the turns' wording ([`script`]), playing them ([`replay`]: the agent
//! loop renders and tokenizes), the held-out split (the caller's `--exclude` list),
//! the record format and the supervised step (`ssr_trainer::train::sft`).

pub mod replay;
pub mod script;

use crate::budget::Budgets;
use crate::chat::TextCodec;
use crate::selfplay::arena::{Arena, ArenaError};
use crate::toolcall::ToolCallSyntax;
use serde::{Deserialize, Serialize};
use ssr_game::bug_store::{self, BugStore, StoreError};
use ssr_game::{Bug, BugSource};
pub use ssr_trainer::train::Demo;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which roles get demonstrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoRoles {
    Solver,
    Injector,
    Both,
}

impl DemoRoles {
    fn solver(self) -> bool {
        self != DemoRoles::Injector
    }
    fn injector(self) -> bool {
        self != DemoRoles::Solver
    }
}

/// How demonstrations are played: the settings self-play plays under.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub roles: DemoRoles,
    pub syntax: ToolCallSyntax,
    pub solver_budgets: Budgets,
    pub injector_budgets: Budgets,
    /// The model's context window, when smaller than a budget's it is the limit.
    pub model_context: Option<usize>,
    /// The injector prompt's minimum of passing tests (the verifier's setting).
    pub min_passing_tests: usize,
    pub temperature: f32,
    pub top_p: f32,
}

/// Why a bug gave no demonstration for a role (counted, not an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DropReason {
    /// The bug's verification rejected it.
    NotValid,
    /// A higher-order bug: its fix is not the reverse of one patch.
    HigherOrder,
    /// Injector demonstrations come from procedural bugs only.
    NotProcedural,
    /// A change the editor cannot replay, or a call the syntax cannot carry.
    Unsupported {
        detail: String,
    },
    /// A region to replace occurs more than once in its file.
    AmbiguousEdit {
        path: String,
    },
    TooManyTurns {
        needed: usize,
        max: u32,
    },
    TurnTooLong {
        turn: usize,
        tokens: usize,
        max: usize,
    },
    ContextTooLong {
        tokens: usize,
        max: usize,
    },
    /// The episode ended without its submission.
    NotSubmitted {
        end: String,
    },
    /// A call of the script failed (its observation says how).
    ToolError {
        turn: u32,
        observation: String,
    },
    /// The solver demonstration's patch does not solve the bug.
    NotSolved {
        summary: String,
    },
    /// The injector demonstration's artifact did not verify.
    InvalidArtifact {
        detail: String,
    },
}

impl DropReason {
    /// The reason's tag (its JSON `reason`), for counts.
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// One bug and role that gave no demonstration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub bug_id: String,
    pub role: ssr_game::Role,
    #[serde(flatten)]
    pub reason: DropReason,
}

/// What a build did: counts and every drop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoSummary {
    /// Bugs read.
    pub bugs: usize,
    /// Bugs left out because the exclusion list names them (held out).
    pub excluded: usize,
    pub solver_demos: usize,
    pub injector_demos: usize,
    pub dropped: Vec<Dropped>,
    /// Drops per reason tag.
    pub dropped_by_reason: BTreeMap<String, usize>,
}

/// The demonstrations and what was dropped.
#[derive(Clone, Debug)]
pub struct DemoSet {
    pub demos: Vec<Demo>,
    pub summary: DemoSummary,
}

/// Why demonstrations could not be built (bad input or a broken game, not a drop).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("no bugs in {0} (a bug directory holds bug.json; a store holds such directories)")]
    NoBugs(PathBuf),
    #[error("every one of the {0} bugs is excluded: nothing to build demonstrations from")]
    AllExcluded(usize),
    #[error("reading bug {path}: {source}")]
    Bug {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bug {bug}: {source}")]
    BadPatch {
        bug: String,
        #[source]
        source: script::ScriptError,
    },
    #[error(
        "bug {bug}: the reversed bug patch does not apply to the buggy {path}: its hunk's text is not there"
    )]
    DoesNotReverse { bug: String, path: String },
    #[error("bug {bug}: {source}")]
    Arena {
        bug: String,
        #[source]
        source: ArenaError,
    },
}

/// The bugs at `path`: one bug directory (it holds `bug.json`), or a store of them.
pub fn load_bugs(path: &Path) -> Result<Vec<Bug>, DemoError> {
    let dirs = if path.join(bug_store::BUG_JSON).is_file() {
        vec![path.to_path_buf()]
    } else {
        bug_store::list(path).map_err(|source| DemoError::Bug {
            path: path.to_path_buf(),
            source,
        })?
    };
    if dirs.is_empty() {
        return Err(DemoError::NoBugs(path.to_path_buf()));
    }
    dirs.into_iter()
        .map(|dir| BugStore::read_dir(&dir).map_err(|source| DemoError::Bug { path: dir, source }))
        .collect()
}

/// The ids of an exclusion file: one bug id per line; blank lines and `#` comments
/// skipped.
pub fn read_exclusions(path: &Path) -> Result<BTreeSet<String>, DemoError> {
    let text = std::fs::read_to_string(path).map_err(|source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Builds the demonstrations of `bugs` (minus `exclude`) in `arena`, one bug and role
/// at a time; `progress` hears each one's id as it starts.
pub async fn build_demos(
    arena: &dyn Arena,
    codec: Arc<dyn TextCodec>,
    bugs: Vec<Bug>,
    exclude: &BTreeSet<String>,
    cfg: &DemoConfig,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<DemoSet, DemoError> {
    let mut summary = DemoSummary {
        bugs: bugs.len(),
        ..DemoSummary::default()
    };
    let (excluded, kept): (Vec<Bug>, Vec<Bug>) =
        bugs.into_iter().partition(|b| exclude.contains(&b.meta.id));
    summary.excluded = excluded.len();
    if kept.is_empty() {
        return Err(DemoError::AllExcluded(summary.excluded));
    }
    let player = replay::Player { arena, codec, cfg };
    let mut demos = Vec::new();
    for bug in &kept {
        let roles = [
            (cfg.roles.solver(), ssr_game::Role::Solver),
            (cfg.roles.injector(), ssr_game::Role::Injector),
        ];
        for role in roles.into_iter().filter(|(on, _)| *on).map(|(_, r)| r) {
            progress(&format!("{} ({})", bug.meta.id, role.as_str()));
            let made = match eligible(bug, role) {
                Err(reason) => Err(reason),
                Ok(()) if role == ssr_game::Role::Solver => player.solver(bug).await?,
                Ok(()) => player.injector(bug).await?,
            };
            match made {
                Ok(demo) => {
                    match role {
                        ssr_game::Role::Solver => summary.solver_demos += 1,
                        ssr_game::Role::Injector => summary.injector_demos += 1,
                    }
                    demos.push(demo);
                }
                Err(reason) => {
                    *summary.dropped_by_reason.entry(reason.kind()).or_default() += 1;
                    summary.dropped.push(Dropped {
                        bug_id: bug.meta.id.clone(),
                        role,
                        reason,
                    });
                }
            }
        }
    }
    Ok(DemoSet { demos, summary })
}

/// Whether `bug` can give a `role` demonstration at all.
fn eligible(bug: &Bug, role: ssr_game::Role) -> Result<(), DropReason> {
    if !bug.report.valid {
        return Err(DropReason::NotValid);
    }
    if bug.higher_order_patch.is_some() {
        return Err(DropReason::HigherOrder);
    }
    let procedural = matches!(bug.meta.source, None | Some(BugSource::Procedural));
    if role == ssr_game::Role::Injector && !procedural {
        return Err(DropReason::NotProcedural);
    }
    Ok(())
}

/// Writes demonstrations as JSON lines (whole or not at all: a temporary file renamed).
pub fn write_demos(path: &Path, demos: &[Demo]) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    for d in demos {
        let line = serde_json::to_string(d).map_err(|e| io(std::io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Why the game or the model of `ssr demos` could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenDemosError {
    #[error(transparent)]
    Arena(#[from] crate::selfplay::game_arena::OpenArenaError),
    #[error(transparent)]
    Codec(#[from] crate::selfplay::OpenError),
    #[error("reading the model's configuration from {path}: {reason}")]
    Model { path: PathBuf, reason: String },
}

/// What demonstrations are played with: the real game over `repo` with self-play's
/// settings (tool policy, test environment) and its tool host, workspaces under
/// `scratch`; the model's tokenizer and context window from its GGUF file.
pub fn open_game(
    settings: &crate::selfplay::SelfPlayConfig,
    repo: &Path,
    scratch: PathBuf,
    model: &Path,
) -> Result<
    (
        crate::selfplay::game_arena::GameArena,
        Arc<dyn TextCodec>,
        usize,
    ),
    OpenDemosError,
> {
    let codec = crate::selfplay::open::load_codec(model)?;
    let err = |reason: String| OpenDemosError::Model {
        path: model.to_path_buf(),
        reason,
    };
    let f = ssr_trainer::gguf::GgufFile::open(model).map_err(|e| err(e.to_string()))?;
    let context = ssr_trainer::gguf::config_from_gguf(&f)
        .map_err(|e| err(e.to_string()))?
        .max_seq_len;
    let tools = crate::selfplay::game_arena::tool_host(settings)?;
    let arena = crate::selfplay::game_arena::GameArena::open(settings, repo, scratch, tools)?;
    Ok((arena, codec, context))
}
