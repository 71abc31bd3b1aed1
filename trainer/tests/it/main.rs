//! The integration tests of `ssr-trainer`, one module per area.

mod checkpoint;
mod grad;
mod optim;
mod rl;
mod trajectory;
