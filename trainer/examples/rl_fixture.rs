//! Writes a small RL fixture for trying `ssr train`: a policy checkpoint and a
//! trajectory file of on-policy rollouts (behaviour log-probs computed by the policy
//! itself) in two groups with rewards +1 / -1.
//!
//! `cargo run -p ssr-trainer --example rl_fixture -- OUT_DIR [MODEL.gguf]`
//!
//! Without a model, the policy is a tiny random model (`Config::tiny()`) saved to
//! `OUT_DIR/model`; with a GGUF file, the trajectories are scored by it and
//! `--model MODEL.gguf` is what to pass to `ssr train`.

use rand::{Rng, SeedableRng};
use ssr_trainer::train::next_token_logprobs;
use ssr_trainer::trajectory::{Role, Trajectory, write_trajectories};
use ssr_trainer::{Config, Weights, checkpoint, gguf};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: rl_fixture OUT_DIR [MODEL.gguf]")?,
    );
    std::fs::create_dir_all(&out)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (weights, len) = match args.next() {
        Some(path) => (gguf::load_model(&path)?.1, 48),
        None => {
            let mut w = Weights::zeros(&Config::tiny());
            w.for_each_mut(|name, t| {
                for x in t.iter_mut() {
                    *x = if name.contains("norm") {
                        1.0
                    } else {
                        rng.gen_range(-0.3..0.3)
                    };
                }
            });
            checkpoint::save(&out.join("model"), &w, None, 0, &Default::default())?;
            (w, 16)
        }
    };
    // Token ids from the low range of the vocabulary (ordinary text pieces for BPE vocabularies).
    let vocab = weights.config.vocab_size.min(5000) as u32;
    let mut trajectories = Vec::new();
    for g in 0..2 {
        let prompt: Vec<u32> = (0..len / 2).map(|_| rng.gen_range(3..vocab)).collect();
        for k in 0..4 {
            let mut tokens = prompt.clone();
            tokens.extend((0..len / 2).map(|_| rng.gen_range(3..vocab)));
            let positions: Vec<usize> = (prompt.len()..tokens.len()).collect();
            let (lp, _) = next_token_logprobs(&weights, &tokens, &positions, 1.0);
            let mut logprobs = vec![0.0; tokens.len()];
            for (&p, l) in positions.iter().zip(lp) {
                logprobs[p] = l;
            }
            trajectories.push(Trajectory {
                role: if g == 0 { Role::Solver } else { Role::Injector },
                group_id: format!("group-{g}"),
                loss_mask: (0..tokens.len())
                    .map(|i| u8::from(i >= prompt.len()))
                    .collect(),
                token_ids: tokens,
                logprobs,
                reward: if k % 2 == 0 { 1.0 } else { -1.0 },
                advantage: None,
                temperature: None,
                top_p: None,
                metadata: serde_json::json!({ "fixture": true, "k": k }),
            });
        }
    }
    let path = out.join("trajectories.jsonl");
    write_trajectories(&path, &trajectories)?;
    eprintln!(
        "wrote {} trajectories to {}",
        trajectories.len(),
        path.display()
    );
    Ok(())
}
