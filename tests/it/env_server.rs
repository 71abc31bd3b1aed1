//! `ssr env serve` as a trainer meets it: the real binary on a free port, real
//! sandboxes, the scripted policy (recorded turns in the request) instead of a model.
//! Episodes, tasks, rounds with the spec's injector reward, bad input of every kind,
//! capacity, cancel during a tool call, a vanished client, the token, and OpenEnv's
//! WebSocket protocol under 64 concurrent sessions.

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
        let o = crate::ssr()
            .current_dir(root())
            .args(["examples", "create", "--json", "--out"])
            .arg(&repos)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
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

#[test]
fn env_server_plays_tasks_episodes_and_rounds() {
    // Exact turns need the model's tokenizer (the embedded model's GGUF).
    if crate::embedded_model_or_skip().is_none() {
        return;
    }
    let s = Server::start(&["--slots", "4"]);
    let h = s.get("/health");
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["slots"], 4);

    let task = s.task();
    let tasks = s.get("/v1/tasks?repo=textkit&role=solver");
    assert!(
        tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["task_id"] == task.as_str()),
        "{tasks}"
    );

    // A solver that looks and submits nothing: scored −1, with exact turns.
    let r = client()
        .post(s.url("/v1/episodes"))
        .json(&json!({
            "role": "solver", "repo": "textkit", "task_id": task, "seed": 1,
            "script": {"solver": [[bash("ls"), "<tool: submit>\n</tool>"]]}
        }))
        .send()
        .unwrap();
    let id = r.headers()["x-episode-id"].to_str().unwrap().to_string();
    let v: Value = r.json().unwrap();
    assert_eq!(v["episode_id"], id.as_str());
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["reward"], -1.0, "{v}");
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{v}");
    let (first, second) = (&turns[0], &turns[1]);
    let p0 = first["prompt_token_ids"].as_array().unwrap().len();
    let c0 = first["completion_token_ids"].as_array().unwrap().len();
    let p1 = second["prompt_token_ids"].as_array().unwrap().len();
    assert!(p0 > 0 && c0 > 0, "{first}");
    // Append-only: the second prompt extends the first prompt and its completion.
    assert!(p1 > p0 + c0, "{p0} {c0} {p1}");
    assert_eq!(
        second["prompt_token_ids"].as_array().unwrap()[..p0],
        first["prompt_token_ids"].as_array().unwrap()[..]
    );
    assert!(v["timing"]["env_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["messages"].as_array().unwrap().len() >= 4, "{v}");

    // One round: the injector's bug, G = 2 attempts (one solves), the spec's reward.
    let (code, round) = s.post(
        "/v1/rounds",
        &json!({"repo": "textkit", "G": 2, "seed": 7, "script": recorded_turns(),
                "limits": {"max_turns": 8}}),
    );
    assert_eq!(code, 200, "{round}");
    assert_eq!(round["bug"]["valid"], true, "{round}");
    assert_eq!(
        (round["solved"].as_u64(), round["attempts"].as_u64()),
        (Some(1), Some(2)),
        "{round}"
    );
    let trajs = round["trajectories"].as_array().unwrap();
    assert_eq!(trajs.len(), 3, "{round}");
    let injector = trajs.iter().find(|t| t["role"] == "injector").unwrap();
    // SSR_SPEC.md section 7: s = 1/2, α = 0.8 → 1 − 1.8 · 0.5 = 0.1.
    let reward = injector["reward"].as_f64().unwrap();
    assert!((reward - 0.1).abs() < 1e-6, "{injector}");
    let solvers: Vec<&Value> = trajs.iter().filter(|t| t["role"] == "solver").collect();
    assert_eq!(solvers[0]["group_id"], solvers[1]["group_id"]);
    assert_ne!(solvers[0]["group_id"], injector["group_id"]);
    let mut rewards: Vec<f64> = solvers
        .iter()
        .map(|t| t["reward"].as_f64().unwrap())
        .collect();
    rewards.sort_by(f64::total_cmp);
    assert_eq!(rewards, vec![-1.0, 1.0]);
    assert!(
        s.leftover_workspaces().is_empty(),
        "{:?}",
        s.leftover_workspaces()
    );
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

#[test]
fn env_server_bad_input_gets_clear_errors_and_keeps_serving() {
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--slots", "1"]);
    let c = client();
    let r = c
        .post(s.url("/v1/episodes"))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().unwrap()["code"], "BAD_REQUEST");
    let script =
        json!({"solver": [["<tool: submit>\n</tool>"]], "injector": [["<tool: submit>\n</tool>"]]});
    let cases = [
        (
            json!({"role": "solver", "repo": "nope", "task_id": "x", "script": script}),
            404,
            "UNKNOWN_REPO",
        ),
        (
            json!({"role": "solver", "repo": "../etc", "task_id": "x", "script": script}),
            400,
            "PATH_NOT_ALLOWED",
        ),
        (
            json!({"role": "solver", "repo": "textkit", "task_id": "/etc/passwd", "script": script}),
            400,
            "PATH_NOT_ALLOWED",
        ),
        (
            json!({"role": "solver", "repo": "textkit", "task_id": "no-such-bug", "script": script}),
            404,
            "UNKNOWN_TASK",
        ),
        (
            json!({"role": "injector", "repo": "textkit"}),
            400,
            "BAD_REQUEST",
        ),
        (
            json!({"role": "pilot", "repo": "textkit"}),
            400,
            "BAD_REQUEST",
        ),
    ];
    for (body, code, name) in cases {
        let (got, v) = s.post("/v1/episodes", &body);
        assert_eq!(
            (got, v["code"].as_str()),
            (code, Some(name)),
            "{body} → {v}"
        );
    }
    let (code, v) = s.post(
        "/v1/rounds",
        &json!({"repo": "textkit", "G": 0, "script": script}),
    );
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{v}"
    );

    // A model URL that refuses connections: an infrastructure failure, no reward.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let (code, v) = s.post(
        "/v1/episodes",
        &json!({"role": "injector", "repo": "textkit", "llm": {"base_url": refused}}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), &v["reward"]),
        (Some("infra_error"), &Value::Null),
        "{v}"
    );
    // A model that answers garbage: the agent's error, no reward.
    let garbage = fake_model(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{garbage}",
    );
    let (code, v) = s.post(
        "/v1/episodes",
        &json!({"role": "injector", "repo": "textkit", "llm": {"base_url": garbage}}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), &v["reward"]),
        (Some("agent_error"), &Value::Null),
        "{v}"
    );

    // Over capacity while an episode sleeps in a tool call; then cancel it mid-call.
    let task = s.task();
    let marker = format!("sleep 37.{}", std::process::id());
    let body = json!({"role": "solver", "repo": "textkit", "task_id": task, "episode_id": "e-long",
                      "script": {"solver": [[bash(&marker)]]}});
    let url = s.url("/v1/episodes");
    let long = std::thread::spawn(move || {
        client()
            .post(url)
            .json(&body)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    });
    let t0 = Instant::now();
    while processes_with(&marker) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the tool call never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, v) = s.post(
        "/v1/episodes",
        &json!({"role": "solver", "repo": "textkit", "task_id": task, "script": script}),
    );
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("CAPACITY_REACHED")),
        "{v}"
    );
    let r = c.delete(s.url("/v1/episodes/e-long")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        processes_with(&marker),
        0,
        "the cancelled call's command still runs"
    );
    assert!(
        s.leftover_workspaces().is_empty(),
        "{:?}",
        s.leftover_workspaces()
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(s.store.to_str().unwrap()), "{mounts}");
    let v = long.join().unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");
    let r = c.delete(s.url("/v1/episodes/e-long")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // A client that goes away mid-episode: its episode and sandbox end.
    let marker = format!("sleep 38.{}", std::process::id());
    let body = json!({"role": "solver", "repo": "textkit", "task_id": task,
                      "script": {"solver": [[bash(&marker)]]}})
    .to_string();
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        raw,
        "POST /v1/episodes HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let t0 = Instant::now();
    while processes_with(&marker) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the tool call never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(raw);
    let t0 = Instant::now();
    while s.get("/health")["episodes_running"] != 0 || processes_with(&marker) > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the vanished client's episode lives on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = s.get("/health");
    assert_eq!(
        (h["slots_free"].as_u64(), h["episodes_running"].as_u64()),
        (Some(1), Some(0)),
        "{h}"
    );
}

#[test]
fn env_server_off_loopback_needs_a_token_and_checks_it() {
    let o = crate::ssr()
        .current_dir(root())
        .args([
            "env", "serve", "--host", "0.0.0.0", "--port", "0", "--repo", ".",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--token"), "{err}");
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--token", "s3cret"]);
    let r = client().get(s.url("/health")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client()
        .get(s.url("/health"))
        .bearer_auth("s3cret")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client()
        .get(s.url("/v1/tasks?repo=textkit"))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ask(ws: &mut Ws, msg: Value) -> Value {
    ws.send(Message::text(msg.to_string())).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn ws_url(s: &Server) -> String {
    format!("{}/ws", s.base.replacen("http://", "ws://", 1))
}

#[test]
fn openenv_websocket_protocol_steps_an_episode() {
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--slots", "2"]);
    let task = s.task();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&s)).await.unwrap();
        let e = ask(&mut ws, json!({"type": "dance"})).await;
        assert_eq!((e["type"].as_str(), e["data"]["code"].as_str()), (Some("error"), Some("UNKNOWN_TYPE")), "{e}");
        ws.send(Message::text("{oops")).await.unwrap();
        let e = match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
            f => panic!("{f:?}"),
        };
        assert_eq!(e["data"]["code"], "INVALID_JSON", "{e}");
        let e = ask(&mut ws, json!({"type": "reset", "data": {"role": "solver", "repo": "../x", "task_id": task}})).await;
        assert_eq!(e["data"]["code"], "VALIDATION_ERROR", "{e}");

        let o = ask(&mut ws, json!({"type": "reset", "data": {"role": "solver", "repo": "textkit", "task_id": task, "episode_id": "ws-1"}})).await;
        assert_eq!(o["type"], "observation", "{o}");
        assert_eq!(o["data"]["done"], false);
        let obs = &o["data"]["observation"];
        assert_eq!(obs["messages"].as_array().unwrap().len(), 2, "{obs}");
        assert!(obs["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "bash"), "{obs}");
        let turns_left = obs["turns_left"].as_u64().unwrap();

        let l = ask(&mut ws, json!({"type": "step", "data": {"type": "list_tools"}})).await;
        assert!(l["data"]["observation"]["tools"].as_array().unwrap().len() >= 3, "{l}");
        let o = ask(&mut ws, json!({"type": "step", "data": {"type": "call_tool", "tool_name": "bash", "arguments": {"command": "echo from-the-sandbox"}}})).await;
        let msgs = o["data"]["observation"]["messages"].as_array().unwrap();
        assert!(msgs.last().unwrap()["content"].as_str().unwrap().contains("from-the-sandbox"), "{o}");
        assert_eq!(o["data"]["observation"]["turns_left"].as_u64().unwrap(), turns_left - 1);
        let st = ask(&mut ws, json!({"type": "state"})).await;
        assert_eq!((st["data"]["episode_id"].as_str(), st["data"]["step_count"].as_u64()), (Some("ws-1"), Some(1)), "{st}");
        // MCP over HTTP on this session's workspace.
        let m: Value = reqwest::Client::new()
            .post(format!("{}/mcp", s.base))
            .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "bash", "arguments": {"command": "echo mcp-ok"}, "session_id": "ws-1"}}))
            .send().await.unwrap().json().await.unwrap();
        assert!(m["result"]["content"][0]["text"].as_str().unwrap().contains("mcp-ok"), "{m}");
        assert!(m.get("error").is_none(), "{m}");

        let done = ask(&mut ws, json!({"type": "step", "data": {"text": "<tool: submit>\n"}})).await;
        assert_eq!(done["data"]["done"], true, "{done}");
        assert_eq!(done["data"]["reward"], -1.0, "{done}");
        let e = ask(&mut ws, json!({"type": "step", "data": {"text": "again"}})).await;
        assert_eq!(e["type"], "error", "{e}");

        // A client that goes away loses its sandbox within a second.
        let o = ask(&mut ws, json!({"type": "reset", "data": {"role": "solver", "repo": "textkit", "task_id": task}})).await;
        assert_eq!(o["data"]["done"], false, "{o}");
        drop(ws);
        let t0 = Instant::now();
        loop {
            let h: Value = reqwest::get(format!("{}/health", s.base)).await.unwrap().json().await.unwrap();
            if h["episodes_running"] == 0 && s.leftover_workspaces().is_empty() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_millis(1500), "{h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn sixty_four_concurrent_websocket_episodes_none_lost_none_leaked() {
    if !bwrap_or_skip() {
        return;
    }
    const N: usize = 64;
    let s = Server::start(&["--slots", "64"]);
    let task = s.task();
    let idle = rss_kib(s.child.id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<()>(N);
        // Every session stays open until all are measured.
        let release = std::sync::Arc::new(tokio::sync::Barrier::new(N + 1));
        let mut set = tokio::task::JoinSet::new();
        for k in 0..N {
            let (url, task, opened, release) = (ws_url(&s), task.clone(), opened_tx.clone(), release.clone());
            set.spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                let o = ask(&mut ws, json!({"type": "reset", "data": {"role": "solver", "repo": "textkit", "task_id": task, "episode_id": format!("load-{k}")}})).await;
                assert_eq!(o["type"], "observation", "{o}");
                let o = ask(&mut ws, json!({"type": "step", "data": {"text": bash(&format!("echo episode-{k}"))}})).await;
                let last = o["data"]["observation"]["messages"].as_array().unwrap().last().unwrap().clone();
                assert!(last["content"].as_str().unwrap().contains(&format!("episode-{k}")), "{o}");
                opened.send(()).await.unwrap();
                release.wait().await;
                ws.send(Message::text(json!({"type": "close"}).to_string())).await.unwrap();
                // No reply to `close`: the server ends the session with a close frame.
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | None => {}
                    other => panic!("after close: {other:?}"),
                }
            });
        }
        for _ in 0..N {
            opened_rx.recv().await.unwrap();
        }
        let open = rss_kib(s.child.id());
        eprintln!(
            "{N} open WebSocket episodes after {:.1} s: server RSS {} MiB (idle {} MiB), {} KiB per open episode",
            t0.elapsed().as_secs_f64(),
            open / 1024,
            idle / 1024,
            open.saturating_sub(idle) / N as u64
        );
        let h: Value = reqwest::get(format!("{}/health", s.base)).await.unwrap().json().await.unwrap();
        assert_eq!(h["episodes_running"], N as u64, "{h}");
        release.wait().await;
        let mut finished = 0;
        while let Some(r) = set.join_next().await {
            r.unwrap();
            finished += 1;
        }
        assert_eq!(finished, N);
    });
    let t0 = Instant::now();
    while s.get("/health")["episodes_running"] != 0 || !s.leftover_workspaces().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "episodes leaked: {}",
            s.get("/health")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.get("/health")["slots_free"], N as u64);
}

#[test]
fn ssr_episode_plays_a_request_file_without_a_server() {
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--slots", "1"]);
    let task = s.task();
    let repo = s.store.parent().unwrap().join("repos/python-textkit");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("task.json");
    let output = dir.path().join("result.json");
    std::fs::write(
        &input,
        json!({"role": "solver", "repo": "textkit", "task_id": task, "episode_id": "cli-1",
               "script": {"solver": [["<tool: submit>\n</tool>"]]}})
        .to_string(),
    )
    .unwrap();
    let episode = |extra: &[&Path]| {
        let mut c = crate::ssr();
        c.current_dir(root())
            .args(["episode", "--input"])
            .arg(&input);
        c.arg("--repo").arg(format!("textkit={}", repo.display()));
        c.arg("--store").arg(&s.store);
        if let Some(out) = extra.first() {
            c.arg("--output").arg(out);
        }
        c.output().unwrap()
    };
    let o = episode(&[&output]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(
        (v["episode_id"].as_str(), v["status"].as_str()),
        (Some("cli-1"), Some("ok")),
        "{v}"
    );
    assert_eq!(v["reward"], -1.0, "{v}");
    // No model and no OPENAI_BASE_URL: a clear error.
    std::fs::write(
        &input,
        json!({"role": "injector", "repo": "textkit"}).to_string(),
    )
    .unwrap();
    let o = episode(&[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("OPENAI_BASE_URL"),
        "{o:?}"
    );
}

/// Regression (Ray test): a second server on the same store removed the first one's
/// scratch directory, and the first then failed every episode. Also: SIGTERM (what Ray
/// and Kubernetes send) stops a server cleanly, its running episode's sandbox gone.
#[test]
fn servers_share_a_store_and_sigterm_stops_one_cleanly() {
    if !bwrap_or_skip() {
        return;
    }
    let a = Server::start(&["--slots", "2"]);
    let task = a.task();
    let repo = a.store.parent().unwrap().join("repos/python-textkit");
    let (mut b, b_base) = Server::launch(&repo, &a.store, &["--slots", "1"]);
    let episode = |base: &str, script: Value| {
        client()
            .post(format!("{base}/v1/episodes"))
            .json(&json!({"role": "solver", "repo": "textkit", "task_id": task, "script": script}))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    };
    let submit = json!({"solver": [["<tool: submit>\n</tool>"]]});
    let v = episode(&a.base, submit.clone());
    assert_eq!(v["status"], "ok", "{v}");
    let marker = format!("sleep 39.{}", std::process::id());
    let long = {
        let (base, script) = (b_base.clone(), json!({"solver": [[bash(&marker)]]}));
        let task = task.clone();
        std::thread::spawn(move || {
            client()
                .post(format!("{base}/v1/episodes"))
                .json(&json!({"role": "solver", "repo": "textkit", "task_id": task, "script": script}))
                .send()
                .ok()
                .and_then(|r| r.text().ok())
        })
    };
    let t0 = Instant::now();
    while processes_with(&marker) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the tool call never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &b.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = b.wait().unwrap();
    assert!(status.success(), "SIGTERM: {status:?}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(
        processes_with(&marker),
        0,
        "the stopped server's sandbox lives on"
    );
    let _ = long.join();
    // The other server on the same store still plays.
    let v = episode(&a.base, submit);
    assert_eq!(v["status"], "ok", "{v}");
}

#[test]
fn each_turn_records_the_policy_version_the_model_server_reports() {
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--slots", "1"]);
    let body = r#"{"choices":[{"text":"<tool: submit>\n","finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3}}"#;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Policy-Version: step-42\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let url = fake_model(answer);
    let (code, v) = s.post(
        "/v1/episodes",
        &json!({"role": "injector", "repo": "textkit", "limits": {"max_turns": 2},
                "llm": {"base_url": url, "policy_version_header": "x-policy-version"}}),
    );
    assert_eq!(code, 200, "{}", v["error"]);
    // Its submit finds no artifact twice: out of turns, not submitted, validity −1.
    assert_eq!(
        (v["status"].as_str(), v["reward"].as_f64()),
        (Some("truncated"), Some(-1.0))
    );
    let versions: Vec<&Value> = v["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["policy_version"])
        .collect();
    assert_eq!(versions, vec!["step-42", "step-42"]);
}
