//! Checkpoints: round trip, typed errors on damaged files.
//! (Exact resume of a whole training run is tested in `train.rs`.)

use crate::grad::{random_vec, rng};
use ssr_trainer::checkpoint::{self, CheckpointError};
use ssr_trainer::optim::{AdamW, AdamWConfig};
use ssr_trainer::{Config, Weights};
use std::collections::BTreeMap;

fn random_weights(config: &Config, seed: u64) -> Weights {
    let mut r = rng(seed);
    let mut w = Weights::zeros(config);
    w.for_each_mut(|_, t| {
        let v = random_vec(&mut r, t.len(), 1.0);
        t.copy_from_slice(&v);
    });
    w
}

#[test]
fn round_trip_is_bit_exact_with_optimizer_state_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let config = Config {
            tied_embeddings: tied,
            ..Config::tiny()
        };
        let w = random_weights(&config, 1);
        let mut opt = AdamW::new(AdamWConfig::default(), &config);
        opt.m = random_weights(&config, 2);
        opt.v = random_weights(&config, 3);
        opt.step = 7;
        let extra = BTreeMap::from([("rng".to_string(), "abc".to_string())]);
        checkpoint::save(dir.path(), &w, Some(&opt), 7, &extra).unwrap();
        let ck = checkpoint::load(dir.path()).unwrap();
        assert_eq!(ck.weights, w);
        assert_eq!(ck.optimizer.as_ref(), Some(&opt));
        assert_eq!(ck.step, 7);
        assert_eq!(ck.extra, extra);
    }
}

#[test]
fn weights_only_checkpoint_loads_without_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(&Config::tiny(), 4);
    checkpoint::save(dir.path(), &w, None, 0, &BTreeMap::new()).unwrap();
    let ck = checkpoint::load(dir.path()).unwrap();
    assert_eq!(ck.weights, w);
    assert!(ck.optimizer.is_none());
}

#[test]
fn damaged_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::tiny();
    let w = random_weights(&config, 5);
    let opt = AdamW::new(AdamWConfig::default(), &config);
    checkpoint::save(dir.path(), &w, Some(&opt), 3, &BTreeMap::new()).unwrap();

    // Optimizer state from another step: refused.
    let other = tempfile::tempdir().unwrap();
    checkpoint::save(other.path(), &w, Some(&opt), 4, &BTreeMap::new()).unwrap();
    std::fs::copy(
        other.path().join(checkpoint::OPTIMIZER_FILE),
        dir.path().join(checkpoint::OPTIMIZER_FILE),
    )
    .unwrap();
    assert!(matches!(
        checkpoint::load(dir.path()),
        Err(CheckpointError::StepMismatch {
            model_step: 3,
            optimizer_step: 4,
            ..
        })
    ));

    // Truncated model file.
    let model = dir.path().join(checkpoint::MODEL_FILE);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        checkpoint::load(dir.path()),
        Err(CheckpointError::Format { .. })
    ));

    // Missing directory.
    let missing = dir.path().join("nope");
    assert!(matches!(
        checkpoint::load(&missing),
        Err(CheckpointError::Io { .. })
    ));
}
