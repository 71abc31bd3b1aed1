//! Data parallelism over NCCL: one process per GPU, gradients all-reduced (averaged)
//! after each backward, so every rank takes the same optimizer step.
//!
//! Launch (one process per GPU; each opens device 0 of its `CUDA_VISIBLE_DEVICES`):
//! ```text
//! rm -f /tmp/ssr-nccl-id
//! for r in 0 1 2 3; do
//!   CUDA_VISIBLE_DEVICES=$r SSR_RANK=$r SSR_WORLD_SIZE=4 SSR_NCCL_ID_FILE=/tmp/ssr-nccl-id \
//!     ssr train ... &
//! done; wait
//! ```
//! Rank 0 creates the NCCL unique id and writes it (hex) to `SSR_NCCL_ID_FILE`; the other
//! ranks wait for the file (up to 120 s). For several machines, put the file on a shared
//! filesystem (NCCL then connects over the network it finds).
//!
//! Does not own: which buffers are reduced (the trainer passes every gradient tensor).

use std::path::Path;
use std::time::{Duration, Instant};

use cudarc::driver::CudaSlice;
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::context::{Gpu, LibraryProbe};
use super::error::GpuError;
use super::nvtx::Range;

/// An NCCL communicator bound to one GPU's stream.
pub struct Communicator {
    comm: Comm,
    pub rank: usize,
    pub world_size: usize,
}

// SAFETY: cudarc's `Comm` holds a raw `ncclComm_t` (hence not `Send`). NCCL allows a
// communicator to be used from any thread as long as calls on it are not concurrent;
// `Communicator` is not `Sync` and its only owner, `GpuTrainer`, calls it from `step`
// (`&mut self`), so moving it to another thread (a trainer behind a mutex) keeps every
// call serialized. The stream it is bound to is `Send + Sync` in cudarc.
unsafe impl Send for Communicator {}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish()
    }
}

fn nccl_err(op: &'static str) -> impl FnOnce(cudarc::nccl::result::NcclError) -> GpuError {
    move |e| GpuError::Nccl {
        op,
        detail: format!("{:?}", e.0),
    }
}

fn require_nccl() -> Result<(), GpuError> {
    if LibraryProbe::run().nccl {
        Ok(())
    } else {
        Err(GpuError::Nccl {
            op: "load",
            detail: "libnccl not found on the library path".into(),
        })
    }
}

/// A new NCCL unique id, hex-encoded (create on rank 0, share with the others).
pub fn new_unique_id() -> Result<String, GpuError> {
    require_nccl()?;
    // cudarc panics while loading a libnccl that lacks a symbol of the configured
    // version: keep that a typed error.
    let id = std::panic::catch_unwind(Id::new)
        .map_err(|_| GpuError::Nccl {
            op: "load",
            detail: "libnccl is older than NCCL 2.26".into(),
        })?
        .map_err(nccl_err("get unique id"))?;
    let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
    Ok(hex::encode(bytes))
}

impl Communicator {
    /// Joins the communicator `id_hex` as `rank` of `world_size` on `gpu`'s stream.
    pub fn init(gpu: &Gpu, rank: usize, world_size: usize, id_hex: &str) -> Result<Self, GpuError> {
        require_nccl()?;
        if rank >= world_size {
            return Err(GpuError::Invalid {
                op: "nccl init",
                detail: format!("rank {rank} of world size {world_size}"),
            });
        }
        let bytes = hex::decode(id_hex.trim()).map_err(|e| GpuError::Invalid {
            op: "nccl init",
            detail: format!("id: {e}"),
        })?;
        let internal: [std::ffi::c_char; 128] = bytes
            .iter()
            .map(|&b| b as std::ffi::c_char)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| GpuError::Invalid {
                op: "nccl init",
                detail: format!("id has {} bytes, not 128", bytes.len()),
            })?;
        let _r = Range::new("nccl init");
        let comm = Comm::from_rank(gpu.stream().clone(), rank, world_size, Id::uninit(internal))
            .map_err(nccl_err("init rank"))?;
        Ok(Communicator {
            comm,
            rank,
            world_size,
        })
    }

    /// From `SSR_RANK`, `SSR_WORLD_SIZE` and `SSR_NCCL_ID_FILE` (module doc); `Ok(None)`
    /// when `SSR_WORLD_SIZE` is unset or 1 (single process, nothing to reduce).
    pub fn from_env(gpu: &Gpu) -> Result<Option<Self>, GpuError> {
        let var = |k: &str| std::env::var(k).ok();
        let world: usize = match var("SSR_WORLD_SIZE") {
            None => return Ok(None),
            Some(w) => w.parse().map_err(|_| GpuError::Invalid {
                op: "nccl env",
                detail: format!("SSR_WORLD_SIZE={w}"),
            })?,
        };
        if world <= 1 {
            return Ok(None);
        }
        let rank: usize = var("SSR_RANK")
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| GpuError::Invalid {
                op: "nccl env",
                detail: "SSR_RANK missing or not a number".into(),
            })?;
        let file = var("SSR_NCCL_ID_FILE").ok_or_else(|| GpuError::Invalid {
            op: "nccl env",
            detail: "SSR_NCCL_ID_FILE not set".into(),
        })?;
        let id = exchange_id(Path::new(&file), rank, Duration::from_secs(120))?;
        Self::init(gpu, rank, world, &id).map(Some)
    }

    /// Averages `buf` over all ranks, in place (gradients after a backward).
    pub fn all_reduce_mean(&self, buf: &mut CudaSlice<f32>) -> Result<(), GpuError> {
        let _r = Range::new("nccl all_reduce");
        self.comm
            .all_reduce_in_place(buf, &ReduceOp::Avg)
            .map_err(nccl_err("all_reduce"))?;
        Ok(())
    }
}

/// Rank 0 writes a fresh id to `file` (temporary name, then rename); others poll for it.
fn exchange_id(file: &Path, rank: usize, timeout: Duration) -> Result<String, GpuError> {
    let io = |source| GpuError::Io {
        path: file.to_path_buf(),
        source,
    };
    if rank == 0 {
        let id = new_unique_id()?;
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, &id).map_err(io)?;
        std::fs::rename(&tmp, file).map_err(io)?;
        return Ok(id);
    }
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(file)
            && s.trim().len() == 256
        {
            return Ok(s);
        }
        if start.elapsed() > timeout {
            return Err(GpuError::Nccl {
                op: "exchange id",
                detail: format!(
                    "{} not written by rank 0 within {timeout:?}",
                    file.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The id exchange needs no GPU and no NCCL on the ranks that read it.
    #[test]
    fn non_zero_rank_reads_the_id_file_rank_zero_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id");
        let id = "ab".repeat(128);
        std::fs::write(&file, &id).unwrap();
        assert_eq!(
            exchange_id(&file, 1, Duration::from_millis(500)).unwrap(),
            id
        );
    }

    #[test]
    fn missing_or_partial_id_file_times_out_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id");
        std::fs::write(&file, "abcd").unwrap(); // a partial write is not an id
        let e = exchange_id(&file, 2, Duration::from_millis(250)).unwrap_err();
        assert!(
            matches!(
                e,
                GpuError::Nccl {
                    op: "exchange id",
                    ..
                }
            ),
            "{e}"
        );
    }
}
