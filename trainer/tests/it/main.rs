//! The integration tests of `ssr-trainer`, one module per area.

mod grad;
mod rl;
