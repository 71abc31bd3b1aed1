//! The episode API (`/v1/*`, `/health`), the token, capacity, cancel, `ssr episode`.

use super::*;

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
    let long = post_in_background(url, body);
    wait_for_process(&marker);
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
    wait_for_process(&marker);
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
        // The request names its model (or none): the caller's environment must not.
        c.current_dir(root())
            .args(["episode", "--input"])
            .arg(&input)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("AGL_OPENAI_BASE_URL");
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
    // The 30 s limit below counts from here, as the wait's own clock did.
    let t0 = Instant::now();
    wait_for_process(&marker);
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

/// A client-chosen `episode_id` that is running, or under which an injector's bug is
/// already stored, is refused with 409 `DUPLICATE_ID`, and the server keeps serving.
/// Regressions: the stored-bug case was found inside the episode, after the answer's
/// 200 had gone out, and reached the client as `infra_error`; a running id on a full
/// server was answered 429, which clients retry.
#[test]
fn env_server_refuses_a_duplicate_episode_id_with_409() {
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--slots", "1"]);
    // An injector that submits nothing: its verdict (rejected) is stored under its id.
    let idle = json!({"role": "injector", "repo": "textkit", "episode_id": "dup-stored",
                      "limits": {"max_turns": 1},
                      "script": {"injector": [["<tool: submit>\n</tool>"]]}});
    let (code, v) = s.post("/v1/episodes", &idle);
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("truncated")),
        "{v}"
    );
    let (code, v) = s.post("/v1/episodes", &idle);
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("DUPLICATE_ID")),
        "{v}"
    );

    // A running episode's id.
    let marker = format!("sleep 36.{}", std::process::id());
    let long = json!({"role": "injector", "repo": "textkit", "episode_id": "dup-running",
                      "script": {"injector": [[bash(&marker)]]}});
    let (url, body) = (s.url("/v1/episodes"), long.clone());
    let first = post_in_background(url, body);
    wait_for_process(&marker);
    let (code, v) = s.post("/v1/episodes", &long);
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("DUPLICATE_ID")),
        "{v}"
    );
    // Its one slot is busy, yet the answer is 409, not 429; the running episode goes on.
    assert_eq!(s.get("/health")["episodes_running"], 1);
    assert!(
        processes_with(&marker) > 0,
        "the running episode's call ended"
    );
    let r = client()
        .delete(s.url("/v1/episodes/dup-running"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(first.join().unwrap()["status"], "cancelled");
}

/// Runs `ssr env serve` with `args`, which it must refuse before it listens; its stderr.
fn refused_at_start(args: &[&str]) -> String {
    let mut child = crate::ssr()
        .current_dir(root())
        .args(["env", "serve", "--port", "0", "--json"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // A server that accepted the arguments would serve forever: bound the wait.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`ssr env serve {}` did not refuse to start", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    err
}

#[test]
fn env_serve_refuses_two_repositories_with_one_name() {
    // Named alike by the operator.
    let err = refused_at_start(&["--repo", "same=.", "--repo", "same=."]);
    assert!(err.contains("two repositories are named `same`"), "{err}");
    // Named alike by default: two paths to folders of one name.
    let here = root().canonicalize().unwrap();
    let name = here.file_name().unwrap().to_string_lossy().into_owned();
    let err = refused_at_start(&["--repo", ".", "--repo", here.to_str().unwrap()]);
    assert!(
        err.contains(&format!("two repositories are named `{name}`")),
        "{err}"
    );
    assert!(err.contains("--repo NAME=DIR"), "{err}");
}

/// `limits.episode_timeout_s` ends an episode whose tool call outlives it (the per-call
/// limit is far longer): the answer is `truncated` with its reward, and the call's
/// command, the workspace and its mounts are gone when it comes.
#[test]
fn episode_timeout_ends_an_episode_stuck_in_a_tool_call() {
    if !bwrap_or_skip() {
        return;
    }
    let s = Server::start(&["--slots", "1"]);
    let marker = format!("sleep 600.{}", std::process::id());
    let t0 = Instant::now();
    let (code, v) = s.post(
        "/v1/episodes",
        &json!({"role": "injector", "repo": "textkit",
                "script": {"injector": [[bash(&marker), "<tool: submit>\n</tool>"]]},
                "limits": {"episode_timeout_s": 2, "tool_timeout_s": 900}}),
    );
    let took = t0.elapsed();
    assert_eq!(code, 200, "{v}");
    // Not submitted: the injector's validity reward is −1.
    assert_eq!(
        (v["status"].as_str(), v["reward"].as_f64()),
        (Some("truncated"), Some(-1.0)),
        "{v}"
    );
    assert_eq!(v["turns"].as_array().unwrap().len(), 1, "{v}");
    // Without the deadline the call would have run to the host's 120 s exec limit.
    assert!(took < Duration::from_secs(60), "{took:?}");
    eprintln!("episode_timeout_s = 2 answered after {took:.1?}");
    assert_eq!(processes_with(&marker), 0, "the timed-out call still runs");
    assert!(
        s.leftover_workspaces().is_empty(),
        "{:?}",
        s.leftover_workspaces()
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(s.store.to_str().unwrap()), "{mounts}");
    assert_eq!(s.get("/health")["slots_free"], 1);
}

/// `ssr episode` with a request that names no model reads `OPENAI_BASE_URL` (what
/// Agent Lightning and one-process-per-episode launchers set) and plays against it.
#[test]
fn ssr_episode_reads_the_model_url_from_openai_base_url() {
    if !bwrap_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    create_examples(&repos);
    let body = r#"{"choices":[{"text":"<tool: submit>\n","finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3}}"#;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let url = fake_model(answer);
    let input = dir.path().join("task.json");
    std::fs::write(
        &input,
        json!({"role": "injector", "repo": "textkit", "episode_id": "from-env",
               "limits": {"max_turns": 1}})
        .to_string(),
    )
    .unwrap();
    let o = crate::ssr()
        .current_dir(root())
        .args(["episode", "--input"])
        .arg(&input)
        .arg("--repo")
        .arg(format!(
            "textkit={}",
            repos.join("python-textkit").display()
        ))
        .arg("--store")
        .arg(dir.path().join("store"))
        .env("OPENAI_BASE_URL", &url)
        .env_remove("AGL_OPENAI_BASE_URL")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The fake model's submit, with no artifact: one turn, out of turns, validity −1.
    assert_eq!(
        (v["status"].as_str(), v["reward"].as_f64()),
        (Some("truncated"), Some(-1.0)),
        "{v}"
    );
    let said: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(said, vec!["<tool: submit>\n"], "{v}");
}
