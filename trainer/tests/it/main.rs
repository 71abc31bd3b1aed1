//! The integration tests of `ssr-trainer`, one module per area.

mod gpu;
mod grad;
mod rl;
