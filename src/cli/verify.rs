//! `ssr verify ARTIFACT_DIR --repo DIR [--json]`: the seven checks of the game on one
//! bug artifact, every run in a fresh bubblewrap sandbox. Exit status 0 only for a
//! valid bug, 1 for a rejected artifact, 2 for an error (unreadable input).
//!
//! `--json` prints the `VerificationReport` (documented in `ssr_game::report`):
//! `{"valid", "rejected_by", "code", "reason", "checks": [{"check", "passed", "code",
//! "reason", "ms"}], "runs": [{"label", "phase", "prep_ms", "script_ms", "parser_ms",
//! "total_ms", "passed", "failed", "error"}], "fail_to_pass", "pass_to_pass",
//! "log_format", "parallel", "wall_ms"}`.
//!
//! Also owns the sandbox and settings every game subcommand uses ([`GameOpts::game_env`]):
//! bubblewrap over a minimal view of the host, or with `--image IMG` the image's
//! environment (`--image-exec rootfs`: bubblewrap over the image's unpacked root, the
//! default; `docker`: `docker run` per command), with the repository taken out of the
//! image when no `--repo` is given (`--workdir`, `--base-patch`).

use anyhow::Context;
use clap::Args;
use ssr_game::doctor::Origin;
use ssr_game::image::{ImageGame, ImageMeta, read_base_patch};
use ssr_game::{Artifact, RunEnv, Verifier, VerifyConfig};
use ssr_sandbox::{BwrapSandbox, Environment, ImageExec, Sandbox};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Settings shared by the game's subcommands.
#[derive(Args, Clone, Debug)]
pub struct GameOpts {
    /// Hard timeout of one test-script run, seconds.
    #[arg(long, default_value_t = 180.0)]
    pub hard_timeout: f64,
    /// The test script must finish within this on the original code, seconds.
    #[arg(long, default_value_t = 90.0)]
    pub soft_timeout: f64,
    /// Tests that must pass on the original code.
    #[arg(long, default_value_t = 5)]
    pub min_passing_tests: usize,
    /// Run the checks' test runs one after another instead of concurrently.
    #[arg(long)]
    pub sequential: bool,
    /// An environment variable every test run (and the agents' shell) gets, for test
    /// commands that need a setting, e.g. `--test-env DJANGO_SETTINGS_MODULE=app.test`;
    /// repeatable.
    #[arg(long = "test-env", value_name = "KEY=VALUE", value_parser = parse_test_env)]
    pub test_env: Vec<(String, String)>,
    /// A finding of the patch scan for test-runner tampering rejects (the bug in
    /// `verify`, the attempt in `evaluate`) instead of being a note.
    #[arg(long)]
    pub reject_tampering: bool,
    /// Run tests in this container image's environment (SWE-bench style: the image's
    /// root, interpreter and packages). Without `--repo` the repository is taken out of
    /// the image (at `--workdir`) and kept on the host with a history of its own.
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// The repository's path inside the image (default: the image's WORKDIR, else /repo).
    #[arg(long, requires = "image")]
    pub workdir: Option<PathBuf>,
    /// A patch applied to the image's repository first; the result is the clean original
    /// the game starts from (SWE-bench images hold the benchmark's bug until its gold
    /// patch is applied).
    #[arg(long, value_name = "FILE", requires = "image")]
    pub base_patch: Option<PathBuf>,
    /// How commands enter the image: `rootfs` (bubblewrap over the image's root, unpacked
    /// once and cached by image id) or `docker` (`docker run` per command).
    #[arg(long, default_value = "rootfs", value_name = "docker|rootfs")]
    pub image_exec: ImageExec,
}

/// Where the game runs: the sandbox, the settings and the original repository.
pub struct GameEnv {
    pub sandbox: Box<dyn Sandbox>,
    pub cfg: VerifyConfig,
    pub repo: PathBuf,
    /// The image the repository and tests come from, with `--image`.
    pub image: Option<ImageMeta>,
    /// One line saying where commands run (for reports).
    pub environment: String,
    /// Host or image, and whether a base patch was applied (`ssr doctor`'s checks).
    pub origin: Origin,
}

/// Parses one `--test-env KEY=VALUE`: the key must be a shell variable name (test
/// scripts are shell scripts that could not read another), the value is taken as it is.
pub fn parse_test_env(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    if !ssr_sandbox::is_shell_name(key) {
        return Err(format!(
            "`{key}` is not a variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The host's toolchains plus the operator's `--test-env` settings (which win).
pub fn run_env_with(test_env: impl IntoIterator<Item = (String, String)>) -> RunEnv {
    let mut env = RunEnv::host_toolchains();
    env.env.extend(test_env);
    env
}

impl GameOpts {
    /// Checks each value's range (the one place the game's settings are validated;
    /// [`GameOpts::game_env`] calls it for every game command). Destructured, so a
    /// setting added and not considered here does not compile.
    pub fn check(&self) -> anyhow::Result<()> {
        let GameOpts {
            hard_timeout,
            soft_timeout,
            min_passing_tests: _,
            sequential: _,
            test_env: _,
            reject_tampering: _,
            image: _,
            workdir: _,
            base_patch: _,
            image_exec: _,
        } = self;
        for (name, secs) in [
            ("hard-timeout", hard_timeout),
            ("soft-timeout", soft_timeout),
        ] {
            // A sandbox limit is a `Duration`: an infinite or NaN one cannot be made.
            anyhow::ensure!(
                secs.is_finite() && *secs > 0.0,
                "--{name} must be a positive number of seconds, got {secs}"
            );
        }
        Ok(())
    }

    pub fn verify_config(&self) -> VerifyConfig {
        VerifyConfig {
            hard_timeout_secs: self.hard_timeout,
            soft_timeout_secs: self.soft_timeout,
            min_passing_tests: self.min_passing_tests,
            parallel: !self.sequential,
            run_env: run_env_with(self.test_env.iter().cloned()),
            reject_tampering_findings: self.reject_tampering,
            ..VerifyConfig::default()
        }
    }
}

impl GameOpts {
    /// [`GameOpts::verify_config`] for the host repository `repo`: a cargo project's
    /// crates.io dependencies vendored and mounted (the sandbox has no network).
    pub fn verify_config_for(&self, repo: &Path) -> anyhow::Result<VerifyConfig> {
        let mut cfg = self.verify_config();
        cfg.run_env = cfg
            .run_env
            .with_cargo_deps(repo)
            .context("making the repository's Rust dependencies available offline")?;
        Ok(cfg)
    }

    /// The sandbox, settings and repository for `repo` (or, with `--image` and no
    /// `repo`, the repository taken out of the image).
    pub fn game_env(&self, repo: Option<&Path>) -> anyhow::Result<GameEnv> {
        self.check()?;
        let Some(image) = &self.image else {
            let repo = repo.context("--repo is required without --image")?;
            anyhow::ensure!(
                repo.is_dir(),
                "repository {} is not a directory",
                repo.display()
            );
            let repo = repo.canonicalize()?;
            return Ok(GameEnv {
                sandbox: Box::new(game_sandbox()?),
                cfg: self.verify_config_for(&repo)?,
                repo,
                image: None,
                environment:
                    "bubblewrap over a minimal view of the host, its toolchains, no network".into(),
                origin: Origin::Host,
            });
        };
        let game = ImageGame::open(image, self.image_exec, self.workdir.clone())
            .with_context(|| format!("entering image {image}"))?;
        let mut cfg = self.verify_config();
        // The image's own toolchain, never the host's.
        cfg.run_env = game.run_env.clone();
        cfg.run_env.env.extend(self.test_env.iter().cloned());
        let (repo, meta) = match repo {
            Some(r) => {
                anyhow::ensure!(r.is_dir(), "repository {} is not a directory", r.display());
                anyhow::ensure!(
                    self.base_patch.is_none(),
                    "--base-patch applies to the repository taken out of the image: drop --repo"
                );
                (r.canonicalize()?, None)
            }
            None => {
                let base_patch = self
                    .base_patch
                    .as_deref()
                    .map(read_base_patch)
                    .transpose()?;
                let taken = game.take_repo(base_patch.as_deref())?;
                (taken.repo, Some(taken.meta))
            }
        };
        Ok(GameEnv {
            environment: game.describe(),
            origin: Origin::Image {
                base_patch: self.base_patch.is_some(),
            },
            sandbox: Box::new(game.sandbox),
            cfg,
            repo,
            image: meta,
        })
    }
}

/// The sandbox the game runs tests in without `--image`: bubblewrap over a minimal view
/// of the host.
pub fn game_sandbox() -> anyhow::Result<BwrapSandbox> {
    BwrapSandbox::new(Environment::default()).context("starting the bubblewrap sandbox")
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Directory holding the five artifact files.
    pub artifact: PathBuf,
    /// The original repository (default with `--image`: taken out of the image).
    #[arg(long, required_unless_present = "image")]
    pub repo: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: GameOpts,
}

/// A `ssr verify` command line, destructured: the artifact, where the game runs
/// (settings checked by [`GameOpts::game_env`]) and how to print.
struct VerifyCli {
    artifact: PathBuf,
    repo: Option<PathBuf>,
    opts: GameOpts,
    json: bool,
}

/// Destructures the arguments (a flag added and not wired here does not compile).
fn resolve(args: VerifyArgs) -> VerifyCli {
    let VerifyArgs {
        artifact,
        repo,
        json,
        opts,
    } = args;
    VerifyCli {
        artifact,
        repo,
        opts,
        json,
    }
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyCli {
        artifact,
        repo,
        opts,
        json,
    } = resolve(args);
    let artifact = Artifact::read_dir(&artifact)?;
    let game = opts.game_env(repo.as_deref())?;
    let report = Verifier::new(&game.sandbox, game.cfg).verify(&game.repo, &artifact);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            println!(
                "{} check {} {:<17} {:>6} ms  {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.check.number(),
                serde_json::to_string(&c.check)?.trim_matches('"'),
                c.ms,
                c.reason
            );
        }
        println!("{}", report.summary());
        if report.valid {
            println!("FAIL_TO_PASS: {}", report.fail_to_pass.join(" "));
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::{GameOpts, parse_test_env};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: GameOpts,
    }

    fn opts(args: &[&str]) -> GameOpts {
        Cli::try_parse_from(std::iter::once("ssr").chain(args.iter().copied()))
            .expect("parses")
            .opts
    }

    /// Regression: `--hard-timeout inf` made a sandbox limit no `Duration` can hold
    /// (a panic in the first test run); every timeout is now checked up front.
    #[test]
    fn an_infinite_or_non_positive_timeout_is_refused_before_any_run() {
        assert!(opts(&[]).check().is_ok());
        for bad in [
            &["--hard-timeout", "inf"][..],
            &["--hard-timeout", "NaN"],
            &["--soft-timeout", "0"],
            &["--soft-timeout=-5"],
        ] {
            let err = opts(bad).check().unwrap_err().to_string();
            assert!(
                err.contains("must be a positive number of seconds"),
                "{err}"
            );
        }
    }

    #[test]
    fn test_env_takes_key_equals_value_and_refuses_bad_names() {
        assert_eq!(
            parse_test_env("A_1=x=y z").unwrap(),
            ("A_1".to_string(), "x=y z".to_string())
        );
        assert_eq!(parse_test_env("E=").unwrap(), ("E".into(), String::new()));
        assert!(
            parse_test_env("NOEQUALS")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(parse_test_env("1A=x").is_err());
        assert!(parse_test_env("A-B=x").is_err());
        assert!(parse_test_env("=x").is_err());
    }
}
