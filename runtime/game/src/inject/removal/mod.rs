//! Removal candidates: replace one function's body with a stub that keeps the module
//! importable and the signature (and Python docstring) intact, so the solver must
//! re-implement the behaviour.
//! - Python (`python`): the body after the docstring becomes `raise NotImplementedError`.
//! - Rust (`rust`): the body becomes `panic!("removed")`, which type-checks for every
//!   return type (`Default::default()` would not).
//!
//! Functions inside `#[cfg(test)]` modules, trait declarations without a body and
//! bodies that are already stubs are skipped.
//!
//! This file holds the shared strategy: the [`RemovalSite`] every language's scan
//! returns (the function, its lines, the file with its body stubbed) and the choice of
//! scan by framework ([`sites`]). Each language's file finds its functions and their
//! bodies its own way (Python by a line scan that knows strings and brackets, Rust by
//! brace matching).
//!
//! Does not own: weakening or verification (the pipeline in `inject`).

mod python;
mod rust;

pub use python::python_sites;
pub use rust::rust_sites;

use super::scripts::Framework;

/// One function whose body can be removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalSite {
    pub file: String,
    pub function: String,
    /// The function's lines in the original text (0-based, end exclusive): from its
    /// first decorator (Python) or its `fn` line (Rust) to the end of its body. The
    /// held-out split maps a patch's changed lines to functions with it.
    pub lines: std::ops::Range<usize>,
    /// The file's text with the body replaced.
    pub stubbed: String,
}

impl RemovalSite {
    fn new(file: &str, function: String, lines: std::ops::Range<usize>, stubbed: String) -> Self {
        RemovalSite {
            file: file.to_string(),
            function,
            lines,
            stubbed,
        }
    }
}

/// The leading whitespace of a line, as written (spaces, tabs or both).
fn indent_str(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// Removal sites of a code file for the framework.
pub fn sites(framework: Framework, file: &str, text: &str) -> Vec<RemovalSite> {
    match framework {
        Framework::Pytest => python_sites(file, text),
        Framework::Cargo => rust_sites(file, text),
    }
}

/// The names of the functions of `sites`, in order (for the languages' tests).
#[cfg(test)]
fn site_names(sites: &[RemovalSite]) -> Vec<&str> {
    sites.iter().map(|x| x.function.as_str()).collect()
}
