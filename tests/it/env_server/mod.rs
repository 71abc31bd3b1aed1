//! `ssr env serve` as a trainer meets it: the real binary on a free port, real
//! sandboxes, the scripted policy (recorded turns in the request) instead of a model.
//! Episodes, tasks, rounds with the spec's injector reward, bad input of every kind,
//! capacity, cancel during a tool call, a vanished client, the token, and OpenEnv's
//! WebSocket protocol under 64 concurrent sessions.
//!
//! This file holds the server fixture and helpers; `http.rs` the episode API and
//! `ssr episode`, `ws.rs` OpenEnv's protocol.

mod http;
mod ws;

use crate::selfplay_scripted::recorded_turns;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `ssr env serve` over a fresh copy of the example repository.
struct Server {
    child: Child,
    base: String,
    store: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bwrap_or_skip() -> bool {
    if Path::new("/usr/bin/bwrap").exists() {
        return true;
    }
    eprintln!("skipped: bubblewrap is not installed (apt-get install bubblewrap)");
    false
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let repos = tmp.path().join("repos");
        create_examples(&repos);
        let store = tmp.path().join("store");
        let (child, base) = Server::launch(&repos.join("python-textkit"), &store, extra);
        Server {
            child,
            base,
            store,
            _tmp: tmp,
        }
    }

    /// Starts `ssr env serve` over `repo` with `store`; its process and base URL.
    fn launch(repo: &Path, store: &Path, extra: &[&str]) -> (Child, String) {
        let mut child = crate::ssr()
            .current_dir(root())
            .args(["env", "serve", "--port", "0", "--json"])
            .arg("--repo")
            .arg(format!("textkit={}", repo.display()))
            .arg("--store")
            .arg(store)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not the --json line ({e}): {line:?}"));
        (child, v["base_url"].as_str().unwrap().to_string())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = client().post(self.url(path)).json(body).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> Value {
        client().get(self.url(path)).send().unwrap().json().unwrap()
    }

    /// Episode workspaces left in the server's scratch directory (its own, under the
    /// store's: servers may share a store).
    fn leftover_workspaces(&self) -> Vec<PathBuf> {
        let scratch = self
            .store
            .join(format!("textkit/scratch/{}", self.child.id()));
        std::fs::read_dir(&scratch)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let n = p.file_name().unwrap_or_default().to_string_lossy();
                        n.starts_with("sol-") || n.starts_with("inj-")
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes one procedural bug and returns its task id.
    fn task(&self) -> String {
        let (code, v) = self.post(
            "/v1/tasks",
            &json!({"repo": "textkit", "count": 2, "seed": 3}),
        );
        assert_eq!(code, 200, "{v}");
        let ids = v["task_ids"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert!(!ids.is_empty(), "no valid procedural bug: {v}");
        ids[0].as_str().unwrap().to_string()
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

fn bash(cmd: &str) -> String {
    format!("<tool: bash>\n{cmd}\n</tool>")
}

/// The example repositories under `repos` (`ssr examples create`).
fn create_examples(repos: &Path) {
    let o = crate::ssr()
        .current_dir(root())
        .args(["examples", "create", "--json", "--out"])
        .arg(repos)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// POSTs `body` to `url` on a thread of its own (an episode that runs until it is
/// cancelled or ends); the thread returns the response's JSON.
fn post_in_background(url: String, body: Value) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || {
        client()
            .post(url)
            .json(&body)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    })
}

/// Waits (at most 60 s) until a process whose command line holds `marker` runs: the
/// episode's tool call has started.
fn wait_for_process(marker: &str) {
    let t0 = Instant::now();
    while processes_with(marker) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the tool call never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line holds `needle` (the sandboxed commands of a test).
fn processes_with(needle: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.contains("processes_with") {
                n += 1;
            }
        }
    }
    n
}

/// A local "model server" answering every request with `answer` (raw HTTP).
fn fake_model(answer: &'static str) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 65536];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}
