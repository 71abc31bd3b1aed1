//! The trusted reporter's channel: named pipes (FIFOs) in a directory outside the
//! workspace, read by the host as the run goes.
//!
//! Why pipes and not files: the channel must be writable from inside the run (the
//! plugin, the unittest hook and the cargo canary module write to it), and its path
//! is discoverable there (`/proc/self/fd`, the plugin's closure, the canary module's
//! source). A plain file can be rewritten at exit by the code under test, turning its
//! own failures into passes after the reporter wrote them. Bytes written into a pipe
//! are taken by the host's reader thread as they arrive, so what was written cannot
//! be taken back afterwards: a rewrite at exit can only append, and the reporter
//! (`Reporter::read`) treats contradicting events for one test as tampering.
//!
//! The pipes are write-only for the run (mode 0200 once the host's reader is open)
//! and their directory is mounted read-only: the run, which has no capabilities,
//! cannot read bytes before the host does, chmod the pipes, or swap them for files
//! (a FIFO on a read-only mount stays writable).
//!
//! A pipe made on the host works through every backend's bind mount (bubblewrap,
//! the rootfs image path, `docker run -v` on a Linux engine: one kernel, one pipe).
//! Where no FIFO can be made (a filesystem without them), the channel falls back to
//! a plain file, read after the run, and says so ([`ChannelText::notes`]): that run
//! keeps every other defence, but not this one.
//!
//! Residual, stated in `ARCHITECTURE.md`: code in the test process can still hook
//! the reporter in memory before it writes (its closures, `os.write`); the canaries
//! with secret names, the call wrapper and the patch scan are what catch that.
//!
//! Does not own: what the events mean (`reporter`), or the run (`testrun`).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most bytes kept per stream: an honest suite writes a few lines per test; a
/// process that floods the channel gets the rest dropped and the run marked.
const MAX_STREAM_BYTES: usize = 64 << 20;
/// How often the reader looks for new bytes. A writer blocks only when it fills the
/// pipe's buffer (64 KiB) faster than this, and only until the next look.
const POLL: Duration = Duration::from_millis(5);

/// The channel directory and one stream per name, read while the run goes.
pub struct Channel {
    dir: tempfile::TempDir,
    streams: Vec<(String, Stream)>,
    stop: Arc<AtomicBool>,
}

enum Stream {
    /// A FIFO and the thread that drains it.
    Pipe(JoinHandle<Drained>),
    /// The fallback: a plain file, read when the run is over.
    File(String),
}

#[derive(Default)]
struct Drained {
    bytes: Vec<u8>,
    overflowed: bool,
    error: Option<String>,
}

/// What the channel's streams held at the end of the run.
#[derive(Debug, Default)]
pub struct ChannelText {
    /// Stream name → its bytes, in the order they were written.
    pub streams: BTreeMap<String, Vec<u8>>,
    /// Signs that the channel was abused (flooded).
    pub tampered: Vec<String>,
    /// Facts about the run's defences (a plain-file fallback).
    pub notes: Vec<String>,
}

impl ChannelText {
    /// One stream's text (empty when nothing was written).
    pub fn text(&self, name: &str) -> String {
        self.streams
            .get(name)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
}

impl Channel {
    /// Makes `dir`'s streams `names` and starts reading them.
    pub fn open(dir: tempfile::TempDir, names: &[&str]) -> std::io::Result<Channel> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = Vec::new();
        for name in names {
            let path = dir.path().join(name);
            let stream = match make_fifo(&path) {
                Ok(()) => {
                    // Opened here, before the run starts: a writer's blocking open
                    // always finds a reader.
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path)?;
                    // Then write-only: the run (its owner, with no capabilities)
                    // cannot open it to read bytes before the host does, and, with
                    // the directory mounted read-only, cannot chmod or replace it.
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o200))?;
                    let stop = stop.clone();
                    Stream::Pipe(std::thread::spawn(move || drain(file, &stop)))
                }
                Err(e) => {
                    std::fs::write(&path, "")?;
                    Stream::File(format!(
                        "the reporter's channel {name} is a plain file in this run (no FIFO: {e}): \
                         code under test could rewrite it"
                    ))
                }
            };
            streams.push((name.to_string(), stream));
        }
        Ok(Channel { dir, streams, stop })
    }

    /// The directory to mount into the run.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the directory can be mounted read-only: every stream is a pipe (a
    /// FIFO on a read-only mount stays writable; the fallback file would not).
    pub fn read_only_mount(&self) -> bool {
        self.streams
            .iter()
            .all(|(_, s)| matches!(s, Stream::Pipe(_)))
    }

    /// A stream's path, the same inside the run.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops reading (call after the run has ended: every writer is gone, so the last
    /// drain takes every byte written) and returns what each stream held.
    pub fn finish(mut self) -> ChannelText {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = ChannelText::default();
        for (name, stream) in std::mem::take(&mut self.streams) {
            let bytes = match stream {
                Stream::Pipe(thread) => {
                    let d = thread.join().unwrap_or_else(|_| Drained {
                        error: Some("its reader panicked".into()),
                        ..Drained::default()
                    });
                    if d.overflowed {
                        out.tampered.push(format!(
                            "the reporter's channel {name} was flooded past {} MiB",
                            MAX_STREAM_BYTES >> 20
                        ));
                    }
                    if let Some(e) = d.error {
                        out.notes
                            .push(format!("the reporter's channel {name} failed: {e}"));
                    }
                    d.bytes
                }
                Stream::File(note) => {
                    out.notes.push(note);
                    std::fs::read(self.dir.path().join(&name)).unwrap_or_default()
                }
            };
            out.streams.insert(name, bytes);
        }
        out
    }
}

impl Drop for Channel {
    /// A run that ended in an error never calls `finish`: its readers stop here.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn make_fifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // Readable and writable by its owner only, as the plain file was: every backend
    // runs the test process as the caller (bubblewrap, podman keep-id) or as root.
    // SAFETY: `c` is a valid NUL-terminated path that lives across the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `file` (a FIFO opened non-blocking) until `stop` is set, then once more.
/// "No writer now" (end of file) and "nothing yet" both mean: look again later.
fn drain(mut file: std::fs::File, stop: &AtomicBool) -> Drained {
    let mut out = Drained::default();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        // Read before the drain: a stop seen here means the drain below is the last.
        let stopping = stop.load(Ordering::SeqCst);
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if out.bytes.len() + n <= MAX_STREAM_BYTES => {
                    out.bytes.extend_from_slice(&chunk[..n]);
                }
                Ok(_) => out.overflowed = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
        if stopping {
            return out;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bytes_written_cannot_be_rewritten_afterwards() {
        let ch = Channel::open(tempfile::tempdir().unwrap(), &["events.tsv"]).unwrap();
        let p = ch.path("events.tsv");
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(b"call\tt\traised\n").unwrap();
        drop(w);
        std::thread::sleep(Duration::from_millis(50));
        // A rewrite at exit: a truncating open of the same path only appends.
        std::fs::write(&p, b"call\tt\treturned\n").unwrap();
        // And what was written cannot be read back by anyone but the host (root
        // bypasses the mode).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::fs::File::open(&p).is_err());
        }
        assert!(ch.read_only_mount());
        let text = ch.finish();
        assert_eq!(
            text.text("events.tsv"),
            "call\tt\traised\ncall\tt\treturned\n"
        );
        assert!(text.notes.is_empty() && text.tampered.is_empty());
    }

    #[test]
    fn a_stream_nobody_wrote_is_empty() {
        let ch = Channel::open(tempfile::tempdir().unwrap(), &["a", "b"]).unwrap();
        let text = ch.finish();
        assert_eq!(text.text("a"), "");
        assert_eq!(text.text("missing"), "");
    }
}
