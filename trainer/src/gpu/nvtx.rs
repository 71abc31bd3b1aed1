//! NVTX ranges around phases and kernels, so `nsys`/`ncu` timelines name what runs.
//! Uses the `nvtx` crate (NVTX 3, header-only, no CUDA library needed); the calls cost a
//! string copy and do nothing unless a profiler has injected itself.

/// A pushed NVTX range, popped on drop.
#[derive(Debug)]
pub struct Range(());

impl Range {
    pub fn new(name: impl std::fmt::Display) -> Range {
        nvtx::range_push!("{name}");
        Range(())
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        nvtx::range_pop!();
    }
}
