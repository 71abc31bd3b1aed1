//! The inject phase: the round's model injector episodes and its procedural bugs, run
//! together (one task each, bounded by the episode semaphore), each bug judged and
//! stored as it is made.
//!
//! Owns: an injector episode from its strategy pick to its verdict, a procedural bug
//! from its seed to its verdict, resuming both from the bug store and the index.
//! Does not own: the checks (the arena, over `ssr-game`), storage layout
//! (`BugStore`), rewards (the round).

use super::arena::{Judged, World};
use super::table::{Done, Played, Table, join_all};
use super::{SelfPlayError, derive_seed, record_of};
use crate::episode::{EpisodeSpec, run_episode};
use crate::prompts;
use crate::rundir::{InjectorOutcome, Outcome};
use crate::transcript::EpisodeEnd;
use rand::SeedableRng;
use ssr_game::bug_store::Judgement;
use ssr_game::{Bug, BugSource, Role, Verdict};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The verdict code of an injector episode whose model failed (infra, not a rejected
/// artifact: left out of the rejections and the validity rate).
pub const MODEL_FAILED: &str = "model_failed";

/// The first-order bugs of a round.
#[derive(Debug, Default)]
pub struct MadeBugs {
    /// The injector episodes, by id.
    pub injectors: Vec<Done>,
    /// Verdicts on every first-order bug: the model's by id, then the procedural ones.
    pub verdicts: Vec<Verdict>,
    /// The valid bugs, kept in memory for the rest of the round.
    pub bugs: BTreeMap<String, Arc<Bug>>,
}

/// One finished task of the phase.
enum Made {
    // Boxed: an episode's record is large next to a procedural bug's verdict.
    Injector(Box<Done>, Verdict, Option<Arc<Bug>>),
    Procedural(Verdict, Option<Arc<Bug>>),
}

impl Made {
    fn id(&self) -> String {
        match self {
            Made::Injector(d, ..) => d.record.episode_id.clone(),
            Made::Procedural(v, _) => v.bug_id.clone(),
        }
    }
}

/// Runs (or resumes) the round's injector episodes and procedural bugs together.
pub async fn inject_phase(
    table: &Table,
    round: u32,
    permits: &Arc<Semaphore>,
) -> Result<Played<MadeBugs>, SelfPlayError> {
    let cfg = &table.config;
    table.progress.phase(
        round,
        "inject",
        u64::from(cfg.injector_rollouts + cfg.procedural_per_round),
    );
    let mut set = JoinSet::new();
    for k in 0..cfg.injector_rollouts {
        let id = format!("r{round}-inj{k}");
        let (table, permits) = (table.clone(), permits.clone());
        set.spawn(async move { injector_bug(&table, round, k, id, permits).await });
    }
    for k in 0..cfg.procedural_per_round {
        let id = format!("r{round}-proc{k}");
        let (table, permits) = (table.clone(), permits.clone());
        set.spawn(async move { procedural_bug(&table, id, permits).await });
    }
    let made = match join_all(set, table.progress.as_ref(), Made::id).await? {
        Played::Finished(m) => m,
        Played::Interrupted => return Ok(Played::Interrupted),
    };
    let (mut model, mut procedural) = (Vec::new(), Vec::new());
    let mut out = MadeBugs::default();
    for m in made {
        let (verdict, bug) = match m {
            Made::Injector(done, v, bug) => {
                out.injectors.push(*done);
                model.push(v.clone());
                (v, bug)
            }
            Made::Procedural(v, bug) => {
                procedural.push(v.clone());
                (v, bug)
            }
        };
        if let Some(bug) = bug.filter(|_| verdict.valid) {
            out.bugs.insert(verdict.bug_id.clone(), bug);
        }
    }
    out.injectors
        .sort_by(|a, b| a.record.episode_id.cmp(&b.record.episode_id));
    // Procedural ids sort by number, not text (`proc10` after `proc9`).
    let number = |v: &Verdict| {
        v.bug_id
            .rsplit("proc")
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    };
    model.sort_by(|a, b| a.bug_id.cmp(&b.bug_id));
    procedural.sort_by_key(number);
    out.verdicts = model.into_iter().chain(procedural).collect();
    Ok(Played::Finished(out))
}

/// A judgement read back from the bug store: its verdict and, when valid, the bug.
fn stored(judgement: Judgement) -> (Verdict, Option<Arc<Bug>>) {
    let verdict = judgement.verdict();
    match judgement {
        Judgement::Made(bug) if verdict.valid => (verdict, Some(Arc::new(*bug))),
        _ => (verdict, None),
    }
}

/// Stores a fresh judgement: the bug when there is one (its report is its verdict),
/// else the rejection.
fn store(table: &Table, judged: Judged) -> Result<(Verdict, Option<Arc<Bug>>), SelfPlayError> {
    match &judged.bug {
        Some(bug) => {
            table.bugs.write(bug)?;
        }
        None => table.bugs.write_rejection(&judged.verdict)?,
    }
    Ok((judged.verdict, judged.bug.map(Arc::new)))
}

/// One injector episode outside a round (the environment server's): its record, its
/// verdict and the bug when it made one (stored in the table's bug store under `id`).
/// `None` when shutdown stopped it.
pub async fn injector_episode(
    table: &Table,
    id: String,
    permits: Arc<Semaphore>,
) -> Result<Option<(Done, Verdict, Option<Arc<Bug>>)>, SelfPlayError> {
    Ok(match injector_bug(table, 0, 0, id, permits).await? {
        Some(Made::Injector(done, verdict, bug)) => Some((*done, verdict, bug)),
        Some(Made::Procedural(..)) | None => None,
    })
}

/// One injector episode, its bug judged and stored. `None` when shutdown stopped it.
async fn injector_bug(
    table: &Table,
    round: u32,
    k: u32,
    id: String,
    permits: Arc<Semaphore>,
) -> Result<Option<Made>, SelfPlayError> {
    if let Some(rec) = table.finished.get(&id)
        && let Some(judgement) = table.bugs.judgement(&id)?
    {
        let (verdict, bug) = stored(judgement);
        return Ok(Some(Made::Injector(
            Box::new(Done::resumed(rec)),
            verdict,
            bug,
        )));
    }
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|e| SelfPlayError::Task(e.to_string()))?;
    let cfg = &table.config;
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, &format!("{id}/strategy")));
    let strategy = cfg.strategy.pick(&mut rng);
    let world = table.arena.injector_world(&id).await?;
    let specs = world.tools.specs();
    let spec = EpisodeSpec {
        episode_id: id.clone(),
        role: Role::Injector,
        attempt: k,
        system: prompts::injector_system(strategy, &specs, cfg.syntax, cfg.min_passing_tests),
        task: prompts::injector_task(&table.arena.repo_name()),
        budgets: cfg.injector_budgets.clone(),
        syntax: cfg.syntax,
        sampling: table.sampling(&id),
    };
    let stop = world.cancel_on(&table.shutdown);
    let transcript = run_episode(
        table.policy.as_ref(),
        world.tools.as_ref(),
        &spec,
        &table.shutdown,
    )
    .await;
    drop(stop);
    if !transcript.finished() {
        return Ok(None);
    }
    table.bugs.clear(&id)?;
    let judged = judge_submission(table, &world, &id, &transcript.end).await?;
    let (verdict, bug) = store(table, judged)?;
    let outcome = Outcome::Injector(InjectorOutcome {
        reason: verdict.reason.clone(),
        strategy,
        valid: verdict.valid,
    });
    let group = format!("r{round}-injector");
    let mut record = record_of(&transcript, round, Some(id.clone()), group, None, outcome);
    if verdict.is_infra() {
        record.infra = Some(
            verdict
                .reason
                .clone()
                .unwrap_or_else(|| "the verification could not run".into()),
        );
    }
    table.journal.record(&transcript, &record)?;
    let done = Done {
        record,
        transcript: Some(transcript),
        patch: None,
    };
    Ok(Some(Made::Injector(Box::new(done), verdict, bug)))
}

/// The verdict on what an injector episode left: verified when it submitted. An
/// episode whose model failed is infra (its record says so and it gets no reward);
/// its verdict, kept so a resumed run does not replay it, is `model_failed`.
async fn judge_submission(
    table: &Table,
    world: &World,
    id: &str,
    end: &EpisodeEnd,
) -> Result<Judged, SelfPlayError> {
    if *end == EpisodeEnd::Submitted {
        return Ok(table.arena.verify_submission(world, id).await?);
    }
    if let Some(error) = end.model_failure() {
        return Ok(Judged::rejected(Verdict::rejected(
            id,
            BugSource::Model,
            MODEL_FAILED,
            format!("the model failed: {error}"),
        )));
    }
    Ok(Judged::rejected(Verdict::rejected(
        id,
        BugSource::Model,
        "not_submitted",
        format!("the episode ended without a submission ({end:?})"),
    )))
}

/// One procedural bug, judged and stored. `None` when shutdown came first.
async fn procedural_bug(
    table: &Table,
    id: String,
    permits: Arc<Semaphore>,
) -> Result<Option<Made>, SelfPlayError> {
    if let Some(judgement) = table.bugs.judgement(&id)? {
        let (verdict, bug) = stored(judgement);
        return Ok(Some(Made::Procedural(verdict, bug)));
    }
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|e| SelfPlayError::Task(e.to_string()))?;
    if table.shutdown.is_requested() {
        return Ok(None);
    }
    table.bugs.clear(&id)?;
    let judged = table
        .arena
        .procedural_bug(derive_seed(table.config.seed, &id), &id)
        .await?;
    let (verdict, bug) = store(table, judged)?;
    Ok(Some(Made::Procedural(verdict, bug)))
}
