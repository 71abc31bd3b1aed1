//! Measures training throughput on a GGUF model: one RL step over a synthetic sequence,
//! with the forward-only time of the same sequence as the baseline.
//!
//! `cargo run -p ssr-trainer --example train_throughput -- MODEL.gguf [SEQ_LEN]`

use ssr_trainer::gguf::load_model;
use ssr_trainer::train::measure_training_throughput;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: train_throughput MODEL.gguf [SEQ_LEN]")?;
    let seq_len: usize = args.next().map_or(Ok(512), |s| s.parse())?;
    let (_, weights) = load_model(&path)?;
    eprintln!(
        "{} parameters, {} threads, {seq_len} tokens",
        weights.num_params(),
        rayon::current_num_threads()
    );
    let t = measure_training_throughput(&weights, seq_len)?;
    println!("{}", serde_json::to_string_pretty(&t)?);
    println!(
        "training {:.1} tokens/s vs forward-only {:.1} tokens/s: ratio {:.3}",
        t.train_tokens_per_second,
        t.forward_tokens_per_second,
        t.train_tokens_per_second / t.forward_tokens_per_second
    );
    Ok(())
}
