//! A self-play run on a container image (`image` in [`SelfPlayConfig`], `ssr selfplay
//! --image`): the image's environment the run's commands enter, the repository taken
//! out of it, and the check that the run starts from a clean original.
//!
//! Owns: the run-level rules: a resumed run takes the repository again and refuses an
//! image or base patch that changed under it (its bugs were made on the recorded
//! ones); a run on an image starts only when its repository passes its whole suite
//! there (SWE-bench images hold the benchmark's own bug until the gold patch, the base
//! patch, is applied). Does not own: entering the image or taking the repository out
//! (`ssr_game::image::ImageGame`, shared with every game command), the "no" and its fix
//! (`ssr_game::doctor::failing_original_problem`, shared with `ssr doctor`).

use super::SelfPlayConfig;
use super::game_arena::{GameArena, Stage};
use super::open::OpenError;
use ssr_game::doctor::{failing_on_original, failing_original_problem};
use ssr_game::image::{ImageGame, ImageMeta, ImageRepo, read_base_patch};
use std::sync::Arc;

/// The run's image environment, when its settings name an image.
pub fn open_image(cfg: &SelfPlayConfig) -> Result<Option<ImageGame>, OpenError> {
    let Some(image) = &cfg.image else {
        if cfg.base_patch.is_some() || cfg.workdir.is_some() {
            return Err(OpenError::ImageSettingWithoutImage);
        }
        return Ok(None);
    };
    ImageGame::open(image, cfg.image_exec, cfg.workdir.clone())
        .map(Some)
        .map_err(|source| OpenError::Image {
            image: image.clone(),
            source,
        })
}

/// The repository at the image's repository path with the run's base patch applied.
/// For a resumed run (`recorded`), the image's content and the base patch must be the
/// ones the run was started on.
pub fn take_repo(
    game: &ImageGame,
    cfg: &SelfPlayConfig,
    recorded: Option<&ImageMeta>,
) -> Result<ImageRepo, OpenError> {
    let base_patch = cfg.base_patch.as_deref().map(read_base_patch).transpose()?;
    let taken = game.take_repo(base_patch.as_deref())?;
    if let Some(rec) = recorded {
        let what = if rec.image_id != taken.meta.image_id {
            Some(format!(
                "the image {} is now {}, the run was started on {}",
                rec.image, taken.meta.image_id, rec.image_id
            ))
        } else if rec.base_patch != taken.meta.base_patch {
            Some("the base patch file changed since the run was started".to_string())
        } else {
            None
        };
        if let Some(what) = what {
            return Err(OpenError::ImageChanged(what));
        }
    }
    Ok(taken)
}

/// The stage of a run on `game`: its sandbox and run environment.
pub fn stage(game: ImageGame) -> Stage {
    Stage {
        sandbox: Arc::new(game.sandbox),
        run_env: game.run_env,
    }
}

/// Refuses to play on an image whose repository does not pass its whole suite there,
/// naming the failing tests and the setting that fixes it (`base_patch`).
pub fn check_clean_original(arena: &GameArena, cfg: &SelfPlayConfig) -> Result<(), OpenError> {
    let failing = failing_on_original(arena.sandbox.as_ref(), &arena.repo, &arena.verify)
        .map_err(OpenError::OriginalDidNotRun)?;
    if failing.is_empty() {
        return Ok(());
    }
    let p = failing_original_problem(&failing, cfg.base_patch.is_some());
    Err(OpenError::OriginalFails {
        cause: p.cause,
        fix: p.fix,
    })
}
