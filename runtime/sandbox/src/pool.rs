//! The one pool of pre-started sandboxes of this process, and the one keeper thread
//! that starts them off the execs' critical path.
//!
//! It keeps one warm launcher (any exec on the host's root can take it; refilled after
//! every take) and, for up to [`CAPACITY`] workspaces seen recently, a ready sandbox
//! for a workspace seen at least twice (a workspace exec'd once, as a verifier's test
//! run, costs nothing extra). A ready sandbox unused for [`IDLE`] is dropped.
//!
//! Owns: which pre-started sandboxes exist, taking and refilling them, eviction and
//! idling. Every sandbox it lets go is a [`Prestarted`], whose drop kills it. Does not
//! own: how either kind is started (`ready`, `warm`) or released (`prestart`).
//!
//! Why a dedicated, process-long thread: `PR_SET_PDEATHSIG` fires when the *thread*
//! that forked the child exits; a sandbox started by a short-lived worker thread would
//! die with it.

use crate::cgroup::CgroupHost;
use crate::prestart::Prestarted;
use crate::probe::BwrapInfo;
use crate::{ready, warm};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How many workspaces are remembered (parked or only seen). The least recently used
/// is dropped, and its ready sandbox killed, past this.
const CAPACITY: usize = 8;

/// A ready sandbox unused for this long is killed (its workspace is probably gone).
const IDLE: Duration = Duration::from_secs(30);

/// What the keeper is asked to start.
enum Request {
    /// A warm launcher for this bubblewrap, when none is parked.
    Warm {
        info: BwrapInfo,
        cgroups: CgroupHost,
    },
    /// A ready sandbox for `key`, when the key is still remembered and has none.
    Ready {
        key: ready::Key,
        info: BwrapInfo,
        cgroups: CgroupHost,
        /// Where the shim starts (the workspace's guest path).
        guest: PathBuf,
    },
}

/// One remembered workspace.
struct Entry {
    key: ready::Key,
    ready: Option<Prestarted>,
    last_used: Instant,
}

#[derive(Default)]
struct Parked {
    /// The warm launcher and the bubblewrap it runs.
    warm: Option<(PathBuf, Prestarted)>,
    /// Workspaces, least recently used first.
    workspaces: Vec<Entry>,
}

struct Pool {
    parked: Mutex<Parked>,
    requests: Mutex<mpsc::Sender<Request>>,
}

fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("ssr-sandbox-keeper".into())
            .spawn(move || keeper(rx))
            .ok()?;
        Some(Pool {
            parked: Mutex::new(Parked::default()),
            requests: Mutex::new(tx),
        })
    })
    .as_ref()
}

impl Pool {
    fn parked(&self) -> Option<MutexGuard<'_, Parked>> {
        self.parked.lock().ok()
    }

    fn ask(&self, request: Request) {
        if let Ok(tx) = self.requests.lock() {
            let _ = tx.send(request);
        }
    }
}

fn keeper(rx: mpsc::Receiver<Request>) {
    loop {
        match rx.recv_timeout(IDLE / 4) {
            Ok(Request::Warm { info, cgroups }) => park_warm(&info, &cgroups),
            Ok(Request::Ready {
                key,
                info,
                cgroups,
                guest,
            }) => park_ready(&key, &info, &cgroups, &guest),
            Err(RecvTimeoutError::Timeout) => prune_idle(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn park_warm(info: &BwrapInfo, cgroups: &CgroupHost) {
    let Some(p) = pool() else { return };
    if p.parked().is_none_or(|v| v.warm.is_some()) {
        return;
    }
    let Ok(launcher) = warm::start(info, cgroups) else {
        return;
    };
    if let Some(mut v) = p.parked()
        && v.warm.is_none()
    {
        v.warm = Some((info.path.clone(), launcher));
    }
    // Otherwise `launcher` drops here, killed: one was parked meanwhile.
}

fn park_ready(key: &ready::Key, info: &BwrapInfo, cgroups: &CgroupHost, guest: &Path) {
    let Some(p) = pool() else { return };
    // Still wanted and not parked already (requests can pile up)?
    let wanted = |v: &Parked| {
        v.workspaces
            .iter()
            .any(|e| &e.key == key && e.ready.is_none())
    };
    if !p.parked().is_some_and(|v| wanted(&v)) {
        return;
    }
    let Ok(sandbox) = ready::start(key, info, cgroups, guest) else {
        return;
    };
    if let Some(mut v) = p.parked()
        && let Some(e) = v
            .workspaces
            .iter_mut()
            .find(|e| &e.key == key && e.ready.is_none())
    {
        e.ready = Some(sandbox);
    }
    // Otherwise `sandbox` drops here, killed: its workspace was forgotten meanwhile.
}

/// Drops ready sandboxes unused for [`IDLE`].
fn prune_idle() {
    let Some(p) = pool() else { return };
    let stale: Vec<Prestarted> = match p.parked() {
        Some(mut v) => {
            let now = Instant::now();
            v.workspaces
                .iter_mut()
                .filter(|e| now.duration_since(e.last_used) > IDLE)
                .filter_map(|e| e.ready.take())
                .collect()
        }
        None => return,
    };
    // Killed outside the lock.
    drop(stale);
}

/// Takes the warm launcher for `info`'s bubblewrap, if one is parked, and asks the
/// keeper to park the next one.
pub(crate) fn take_warm(info: &BwrapInfo, cgroups: &CgroupHost) -> Option<Prestarted> {
    let pool = pool()?;
    let taken = pool.parked().and_then(|mut v| match &v.warm {
        Some((bwrap, _)) if *bwrap == info.path => v.warm.take().map(|(_, p)| p),
        _ => None,
    });
    pool.ask(Request::Warm {
        info: info.clone(),
        cgroups: cgroups.clone(),
    });
    // A launcher killed from outside is useless (dropped here).
    taken.and_then(|mut p| p.alive().then_some(p))
}

/// Takes the ready sandbox parked for `key`, if any, and asks the keeper to park the
/// next one when this key has been seen before (so a workspace used once costs
/// nothing).
pub(crate) fn take_ready(
    key: &ready::Key,
    info: &BwrapInfo,
    cgroups: &CgroupHost,
    guest: &Path,
) -> Option<Prestarted> {
    let pool = pool()?;
    let (taken, evicted, seen_before) = {
        let mut v = pool.parked()?;
        let list = &mut v.workspaces;
        match list.iter().position(|e| &e.key == key) {
            Some(i) => {
                let mut e = list.remove(i);
                e.last_used = Instant::now();
                let taken = e.ready.take();
                list.push(e);
                (taken, None, true)
            }
            None => {
                let evicted = (list.len() >= CAPACITY).then(|| list.remove(0));
                list.push(Entry {
                    key: key.clone(),
                    ready: None,
                    last_used: Instant::now(),
                });
                (None, evicted, false)
            }
        }
    };
    // Killed outside the lock.
    drop(evicted);
    if seen_before {
        pool.ask(Request::Ready {
            key: key.clone(),
            info: info.clone(),
            cgroups: cgroups.clone(),
            guest: guest.to_path_buf(),
        });
    }
    // One killed from outside, or whose set-up failed, is useless (dropped here).
    let mut r = taken?;
    (r.alive() && ready::confirm(&mut r).is_ok()).then_some(r)
}
