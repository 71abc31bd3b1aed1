//! Runs `ssr_repo::bench::snapshot_vs_copy` and prints its JSON result.
//!
//! `cargo run -p ssr-repo --example snapshot_bench -- [N_FILES] [ROUNDS]` (defaults 10000, 5).
//! The `ssr bench sandbox` command is the user-facing way; this example exists so the
//! library's benchmark can be run on its own.

fn main() {
    let mut args = std::env::args().skip(1);
    let n_files = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    match ssr_repo::bench::snapshot_vs_copy(n_files, rounds) {
        Ok(result) => match serde_json::to_string_pretty(&result) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("serialising the result: {e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("snapshot benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
