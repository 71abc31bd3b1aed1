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
        temperature: None,
        top_p: None,
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

#[test]
fn the_sampling_temperature_is_optional_and_round_trips() {
    // Old files (no temperature) still read: `the_documented_example_parses` above.
    let line = r#"{"role":"solver","group_id":"g","token_ids":[1,2],"loss_mask":[0,1],"logprobs":[0,-0.5],"reward":1.0,"temperature":0.7,"top_p":0.95}"#;
    let got = parse_trajectories(line.as_bytes(), Path::new("x")).unwrap();
    assert_eq!(got[0].temperature, Some(0.7));
    assert_eq!(got[0].top_p, Some(0.95));
    assert_eq!(got[0].training_temperature(), Some(0.7));
    let again = serde_json::to_string(&got[0]).unwrap();
    assert!(again.contains("\"temperature\":0.7") && again.contains("\"top_p\":0.95"));
    // Greedy log-probs are untempered: trained at 1.
    let greedy = Trajectory {
        temperature: Some(0.0),
        ..sample()
    };
    assert_eq!(greedy.training_temperature(), Some(1.0));
    assert_eq!(sample().training_temperature(), None);
}

#[test]
fn bad_sampling_settings_are_rejected() {
    let bad_t = Trajectory {
        temperature: Some(-1.0),
        ..sample()
    };
    assert_eq!(bad_t.validate(), Err(InvalidTrajectory::Temperature(-1.0)));
    let bad_p = Trajectory {
        top_p: Some(1.5),
        ..sample()
    };
    assert_eq!(bad_p.validate(), Err(InvalidTrajectory::TopP(1.5)));
}

#[test]
fn one_file_has_one_temperature() {
    let at = |t: Option<f32>| Trajectory {
        temperature: t,
        ..sample()
    };
    assert_eq!(common_temperature(&[]), Ok(None));
    assert_eq!(common_temperature(&[at(None), at(None)]), Ok(None));
    assert_eq!(
        common_temperature(&[at(Some(0.7)), at(Some(0.7))]),
        Ok(Some(0.7))
    );
    let e = common_temperature(&[at(Some(0.7)), at(Some(0.7)), at(Some(1.0))]).unwrap_err();
    assert_eq!(e.index, 2);
    assert!(e.to_string().contains("temperature 1"), "{e}");
    let e = common_temperature(&[at(Some(0.7)), at(None)]).unwrap_err();
    assert!(e.to_string().contains("none recorded"), "{e}");
}
