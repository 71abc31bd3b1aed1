//! A guest's stdout and stderr: kept up to a byte cap, the rest counted and dropped, so
//! a guest printing hundreds of megabytes costs the host a bounded buffer and never
//! fails the guest's writes (which would turn a chatty tool into a trap).

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: u64,
}

/// A capped, shareable capture buffer. Clones share the same buffer.
#[derive(Clone, Debug)]
pub struct BoundedOutput {
    cap: usize,
    inner: Arc<Mutex<Buffer>>,
}

impl BoundedOutput {
    pub fn new(cap: usize) -> Self {
        BoundedOutput {
            cap,
            inner: Arc::new(Mutex::new(Buffer::default())),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.cap.saturating_sub(b.kept.len());
        let take = room.min(bytes.len());
        b.kept.extend_from_slice(&bytes[..take]);
        b.dropped += (bytes.len() - take) as u64;
    }

    /// The kept bytes (lossy UTF-8) and how many were dropped.
    pub fn contents(&self) -> (String, u64) {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (String::from_utf8_lossy(&b.kept).into_owned(), b.dropped)
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BoundedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for BoundedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Cuts `text` to about `max` bytes, keeping head and tail around a visible marker.
pub(crate) fn cut_to(text: &str, max: usize) -> String {
    let marker_room = 80.min(max);
    let keep = max - marker_room;
    let mut head = keep / 2;
    while head > 0 && !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (keep - keep / 2);
    while tail < text.len() && !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[... {} bytes truncated by the tool host ...]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_cap_and_counts_the_rest() {
        let out = BoundedOutput::new(10);
        out.push(b"0123456789abcdef");
        out.push(b"more");
        let (kept, dropped) = out.contents();
        assert_eq!(kept, "0123456789");
        assert_eq!(dropped, 10);
    }
}
