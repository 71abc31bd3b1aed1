# Thin recipes: each delegates to cargo or the ssr program. `just --list` shows them.

# Install system packages, the wasm target, Python test tools and the embedded model (idempotent).
setup:
    bash scripts/setup.sh

# Build the WASM tools (a separate workspace, target wasm32-wasip2).
tools:
    cargo build --manifest-path tools-wasm/Cargo.toml --target wasm32-wasip2 --release

# Run every test of the workspace (GPU tests skip with a printed reason where there is no GPU).
test: tools
    cargo test --workspace

# Benchmarks, each printing a ratio against a baseline measured in the same run.
bench what="sandbox":
    cargo run --release -- bench {{what}}
