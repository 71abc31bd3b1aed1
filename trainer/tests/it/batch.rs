//! Continuous batching against generation alone: a sequence decoded with others (joining
//! and leaving at different steps, through `generate_batch`, `DecodeBatch` and the
//! `Batcher` thread) emits exactly the tokens and log-probabilities it emits alone.

use crate::engine::small_engine;
use ssr_trainer::infer::batch::DecodeBatch;
use ssr_trainer::infer::batcher::Batcher;
use ssr_trainer::infer::sampling::SamplingOptions;
use ssr_trainer::infer::{Engine, FinishReason, GenerateOptions, Generation, Precision};
use std::sync::{Arc, RwLock};

/// Prompts of different lengths with different settings: greedy and sampled (own
/// seeds), different lengths, a stop string, one that ends at once (`max_tokens` 1).
fn requests() -> Vec<(Vec<u32>, GenerateOptions)> {
    let texts = [
        "hello",
        "the quick brown fox",
        "a",
        "fn main() { println!(\"hi\"); }",
        "lorem ipsum dolor sit amet",
        "xyz",
        "0123456789",
        "batching",
        "one more than a tile",
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let prompt = t.bytes().map(u32::from).collect();
            let opts = GenerateOptions {
                max_tokens: if i == 2 { 1 } else { 5 + 3 * i },
                sampling: SamplingOptions {
                    temperature: if i % 2 == 0 { 0.0 } else { 0.9 },
                    top_k: if i == 3 { 20 } else { 0 },
                    top_p: if i == 5 { 0.9 } else { 1.0 },
                    seed: 7 + i as u64,
                },
                stop: if i == 4 { vec!["e".into()] } else { Vec::new() },
                stop_at_eos: i % 3 != 0,
                top_logprobs: 0,
            };
            (prompt, opts)
        })
        .collect()
}

/// Equal apart from timings, logprobs compared bit for bit.
fn assert_same(batched: &Generation, alone: &Generation, what: &str) {
    assert_eq!(batched.token_ids, alone.token_ids, "{what}: tokens");
    assert_eq!(batched.text, alone.text, "{what}: text");
    assert_eq!(batched.finish, alone.finish, "{what}: finish");
    assert_eq!(batched.prompt_tokens, alone.prompt_tokens, "{what}");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&batched.logprobs),
        bits(&alone.logprobs),
        "{what}: logprobs"
    );
    assert_eq!(
        bits(&batched.raw_logprobs),
        bits(&alone.raw_logprobs),
        "{what}: raw logprobs"
    );
}

fn alone(e: &Engine, reqs: &[(Vec<u32>, GenerateOptions)]) -> Vec<Generation> {
    reqs.iter()
        .map(|(p, o)| e.generate(p, o).unwrap())
        .collect()
}

#[test]
fn batched_generation_matches_generation_alone() {
    for precision in [Precision::Fast, Precision::F32] {
        let e = small_engine(precision);
        let reqs = requests();
        let want = alone(&e, &reqs);
        let refs: Vec<(&[u32], &GenerateOptions)> =
            reqs.iter().map(|(p, o)| (p.as_slice(), o)).collect();
        let got = e.generate_batch(&refs);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_same(
                g.as_ref().unwrap(),
                w,
                &format!("{precision:?} request {i}"),
            );
        }
        // The set exercises what it claims to: sequences leave at different steps.
        assert!(want.iter().any(|g| g.finish == FinishReason::Length));
        assert_eq!(want[2].token_ids.len(), 1);
    }
}

/// Sequences join a batch that is already decoding and leave it in between.
#[test]
fn sequences_joining_and_leaving_mid_batch_match_generation_alone() {
    let e = small_engine(Precision::Fast);
    let reqs = requests();
    let want = alone(&e, &reqs);
    let mut got: Vec<Option<Generation>> = vec![None; reqs.len()];
    let mut batch = DecodeBatch::new(&e);
    let mut next = 0;
    let mut steps = 0;
    while next < reqs.len() || !batch.is_empty() {
        // One newcomer every other step.
        if next < reqs.len() && steps % 2 == 0 {
            let (p, o) = &reqs[next];
            if let Some((i, r)) = batch.join(next, p, o) {
                got[i] = Some(r.unwrap());
            }
            next += 1;
        }
        for (i, r) in batch.step() {
            got[i] = Some(r.unwrap());
        }
        steps += 1;
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_same(g.as_ref().unwrap(), w, &format!("request {i}"));
    }
}

#[test]
fn a_refused_request_leaves_the_batch_running() {
    let e = small_engine(Precision::Fast);
    let reqs = requests();
    let mut batch = DecodeBatch::new(&e);
    assert!(batch.join(0, &reqs[1].0, &reqs[1].1).is_none());
    let (key, err) = batch.join(1, &[], &reqs[1].1).unwrap();
    assert_eq!(key, 1);
    assert!(err.is_err(), "an empty prompt is refused");
    let (_, err) = batch.join(2, &[100_000], &reqs[1].1).unwrap();
    assert!(err.is_err(), "an id outside the vocabulary is refused");
    let mut done = Vec::new();
    while !batch.is_empty() {
        done.extend(batch.step());
    }
    assert_eq!(done.len(), 1);
    assert_same(
        done[0].1.as_ref().unwrap(),
        &e.generate(&reqs[1].0, &reqs[1].1).unwrap(),
        "survivor",
    );
}

/// The server's path: requests from several threads through one `Batcher`.
#[test]
fn concurrent_requests_through_the_batcher_match_generation_alone() {
    let e = small_engine(Precision::Fast);
    let reqs = requests();
    let want = alone(&e, &reqs);
    let engine = Arc::new(RwLock::new(e));
    // A bound below the number of requests: some wait in the queue.
    let batcher = Arc::new(Batcher::spawn(engine, 4).unwrap());
    let handles: Vec<_> = reqs
        .iter()
        .cloned()
        .map(|(p, o)| {
            let b = batcher.clone();
            std::thread::spawn(move || b.submit(p, o).unwrap().wait())
        })
        .collect();
    for (i, (h, w)) in handles.into_iter().zip(&want).enumerate() {
        assert_same(&h.join().unwrap().unwrap(), w, &format!("request {i}"));
    }
    let err = batcher
        .submit(Vec::new(), reqs[0].1.clone())
        .unwrap()
        .wait();
    assert!(err.is_err(), "a bad request is a typed error, not a hang");
}

#[test]
fn smollm2_batched_generation_matches_generation_alone() {
    let Some(path) =
        crate::model_files::smollm2("smollm2_batched_generation_matches_generation_alone")
    else {
        return;
    };
    let e = Engine::load(path).unwrap();
    let t = e.tokenizer();
    let reqs: Vec<(Vec<u32>, GenerateOptions)> = ["capital of France", "a poem", "Rust", "2+2"]
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let prompt = t.encode(&format!(
                "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
            ));
            let opts = GenerateOptions {
                max_tokens: 12,
                sampling: SamplingOptions {
                    temperature: if i % 2 == 0 { 0.0 } else { 0.7 },
                    seed: i as u64,
                    ..Default::default()
                },
                ..Default::default()
            };
            (prompt, opts)
        })
        .collect();
    let want = alone(&e, &reqs);
    let refs: Vec<(&[u32], &GenerateOptions)> =
        reqs.iter().map(|(p, o)| (p.as_slice(), o)).collect();
    for (i, (g, w)) in e.generate_batch(&refs).iter().zip(&want).enumerate() {
        assert_same(g.as_ref().unwrap(), w, &format!("smollm2 request {i}"));
    }
}
