//! What a pre-started sandbox's shim needs from the shell and the kernel: the shell's
//! path, quoting a command for `eval`, telling which names a shell can export, and the
//! pipe an exec writes its command into.
//!
//! Owns: [`SHELL`], [`shell_quote`], [`is_shell_name`], [`pipe`]. Does not own: the shims
//! themselves (`ready`, `warm`) or the processes reading the pipes (`prestart`). A leaf:
//! it imports nothing of this crate.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// The shell every shim runs under; a pre-started sandbox is only used when the root
/// filesystem has it.
pub(crate) const SHELL: &str = "/bin/sh";

/// Quotes `argv` for a shim's `eval`: every word in single quotes, so no character of
/// a word (`$`, backquotes, newlines) is ever interpreted.
pub(crate) fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True for a name a POSIX shell can set and read as a variable (letters, digits and
/// `_`, not starting with a digit).
pub fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A close-on-exec pipe `(read, write)`; `supervise` clears the flag on the end a
/// launcher inherits.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two fds and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_names_are_letters_digits_and_underscores_not_leading_digits() {
        assert!(is_shell_name("_A1"));
        assert!(is_shell_name("PATH"));
        assert!(!is_shell_name("A-B"));
        assert!(!is_shell_name("1A"));
        assert!(!is_shell_name(""));
    }

    #[test]
    fn quoted_words_come_back_exactly_through_the_shell() {
        let argv: Vec<String> = ["printf", "%s|", "a b", "c'd", "$HOME", "`x`", ""]
            .map(String::from)
            .to_vec();
        let out = std::process::Command::new(SHELL)
            .args(["-c", "eval \"$Q\""])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("Q", shell_quote(&argv))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|c'd|$HOME|`x`||");
    }
}
