//! Integration tests of `ssr-game`: the verifier's checks and cheats, evaluation,
//! episodes and the procedural injectors, on small real repositories.

mod cargo_deps;
mod doctor;
mod evaluate_episode;
mod examples_e2e;
mod fixture;
mod layouts;
mod process_sandbox;
mod real_traits;
mod red_team_rewards;
mod solver_cheats;
mod verify_checks;
