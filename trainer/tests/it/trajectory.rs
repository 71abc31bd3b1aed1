//! The trajectory JSON-lines format: round trip and errors with line numbers.

use ssr_trainer::trajectory::*;
use std::path::Path;

fn sample() -> Trajectory {
    Trajectory {
        role: Role::Solver,
        group_id: "bug-17".into(),
        token_ids: vec![1, 42, 7, 9],
        loss_mask: vec![0, 0, 1, 1],
        logprobs: vec![0.0, 0.0, -0.5, -1.25],
        reward: 1.0,
        advantage: None,
        metadata: serde_json::json!({"episode": "e3"}),
    }
}

#[test]
fn round_trip_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut b = sample();
    b.role = Role::Injector;
    b.advantage = Some(-0.5);
    write_trajectories(&path, &[sample(), b.clone()]).unwrap();
    assert_eq!(read_trajectories(&path).unwrap(), vec![sample(), b]);
}

#[test]
fn the_documented_example_parses() {
    let line = r#"{"role":"solver","group_id":"bug-17","token_ids":[1,42,7,9],"loss_mask":[0,0,1,1],"logprobs":[0,0,-0.5,-1.25],"reward":1.0,"metadata":{"episode":"e3"}}"#;
    let got = parse_trajectories(line.as_bytes(), Path::new("x")).unwrap();
    assert_eq!(got, vec![sample()]);
}

fn error_for(line: &str) -> String {
    let text = format!("\n{}\n{line}\n", serde_json::to_string(&sample()).unwrap());
    parse_trajectories(text.as_bytes(), Path::new("t.jsonl"))
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_lines_are_reported_with_their_line_number() {
    let e = error_for("{not json");
    assert!(e.starts_with("t.jsonl:3: malformed"), "{e}");
    let e = error_for(
        r#"{"role":"judge","group_id":"g","token_ids":[1],"loss_mask":[0],"logprobs":[0],"reward":0}"#,
    );
    assert!(e.contains(":3:") && e.contains("judge"), "{e}");
    let e = error_for(
        r#"{"role":"solver","group_id":"g","token_ids":[1,2],"loss_mask":[0],"logprobs":[0,0],"reward":0}"#,
    );
    assert!(
        e.contains(":3: invalid") && e.contains("loss_mask has 1 entries"),
        "{e}"
    );
    let e = error_for(
        r#"{"role":"solver","group_id":"g","token_ids":[1,2],"loss_mask":[0,1],"logprobs":[0,0.5],"reward":0}"#,
    );
    assert!(e.contains("logprobs[1]"), "{e}");
    let e = error_for(
        r#"{"role":"solver","group_id":"g","token_ids":[1,2],"loss_mask":[1,1],"logprobs":[0,0],"reward":0}"#,
    );
    assert!(e.contains("first token"), "{e}");
    let e = error_for(
        r#"{"role":"solver","group_id":"g","token_ids":[1],"loss_mask":[0],"logprobs":[0],"reward":0,"rewrd":1}"#,
    );
    assert!(e.contains("rewrd"), "{e}");
}

#[test]
fn token_ids_are_checked_against_the_vocabulary() {
    assert!(sample().check_vocab(43).is_ok());
    assert_eq!(
        sample().check_vocab(42),
        Err(InvalidTrajectory::Token {
            index: 1,
            token: 42,
            vocab: 42
        })
    );
}
