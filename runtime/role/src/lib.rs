//! The two roles of the self-play game (SSR_SPEC.md section 1): the injector makes a
//! bug, the solver fixes it.
//!
//! Owns: the [`Role`] type and its one spelling (`injector`, `solver`) in JSON, TOML,
//! run directories, trajectories and command-line flags. Does not own: anything a role
//! may do (grants are the tool host's, rewards the game's).
//!
//! Why a crate of its own: the tool host (grants per role), the game, the agent
//! (episodes and records) and the trainer (trajectory records) all name a role, and the
//! trainer and the tool host are leaves that must not depend on the game or on each
//! other. A leaf crate with only `serde` is the one place all four can share without a
//! cycle; `ssr-game`, `ssr-toolhost` and `ssr-trainer` re-export it.

use serde::{Deserialize, Serialize};

/// A role of the self-play game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Injector,
    Solver,
}

impl Role {
    /// Both roles, injector first.
    pub const ALL: [Role; 2] = [Role::Injector, Role::Solver];

    /// The one spelling of the role (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Injector => "injector",
            Role::Solver => "solver",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected injector or solver)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "injector" => Ok(Role::Injector),
            "solver" => Ok(Role::Solver),
            other => Err(UnknownRole(other.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_in_serde_display_and_parse() {
        for role in Role::ALL {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
    }

    #[test]
    fn an_unknown_name_is_a_typed_error() {
        let e = "Solver".parse::<Role>().unwrap_err();
        assert_eq!(e, UnknownRole("Solver".into()));
        assert!(e.to_string().contains("injector or solver"));
        assert!(serde_json::from_str::<Role>("\"judge\"").is_err());
    }
}
