//! GGML tensor element types and their dequantization to f32.
//!
//! Owns the byte layouts of F32, F16, BF16, Q8_0, Q4_0 and Q4_1 (the block formats
//! llama.cpp writes for small llama models) and the inverse of Q8_0 for writers.
//! Does not own: the file structure (`gguf::format`) or which tensor means what
//! (`gguf::model`).

use half::{bf16, f16};

/// Element type of a tensor, with GGML's numeric ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
}

impl TensorType {
    /// Maps a GGML type id; `None` for types this reader does not dequantize.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
            Self::BF16 => "BF16",
        }
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
        }
    }

    /// Bytes that `n` elements occupy, or `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let (be, bb) = self.block();
        n.is_multiple_of(be as u64)
            .then(|| n / be as u64 * bb as u64)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `bytes` (exactly `ty.bytes_for(out.len())` long) into `out`.
pub fn dequantize(ty: TensorType, bytes: &[u8], out: &mut [f32]) {
    let (be, bb) = ty.block();
    debug_assert_eq!(bytes.len(), out.len() / be * bb);
    match ty {
        TensorType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        TensorType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        TensorType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        TensorType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(34)) {
                let d = f16_at(b, 0);
                for (j, x) in o.iter_mut().enumerate() {
                    *x = d * (b[2 + j] as i8) as f32;
                }
            }
        }
        TensorType::Q4_0 => {
            // 16 bytes of nibbles: low nibble of byte j is element j, high is j+16.
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(18)) {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    let q = b[2 + j];
                    o[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    o[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        TensorType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(20)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for j in 0..16 {
                    let q = b[4 + j];
                    o[j] = d * (q & 0x0f) as f32 + m;
                    o[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
        }
    }
}

/// Encodes f32 values as `ty` (F32, F16, BF16 or Q8_0; the 4-bit formats are read-only
/// here). Returns `None` for an unsupported target or a partial block.
pub fn quantize(ty: TensorType, values: &[f32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(ty.bytes_for(values.len() as u64)? as usize);
    match ty {
        TensorType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        TensorType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        TensorType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        TensorType::Q8_0 => {
            for block in values.chunks_exact(32) {
                let (d, qs) = quantize_q8_block(block);
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(qs.iter().map(|q| *q as u8));
            }
        }
        TensorType::Q4_0 | TensorType::Q4_1 => return None,
    }
    Some(out)
}

/// Symmetric 8-bit quantization of one 32-element block, as llama.cpp does it:
/// `d = max|x| / 127`, `q = round(x / d)`. The scale is rounded to f16 first
/// (that is what is stored), so the codes are computed against the stored scale.
pub fn quantize_q8_block(block: &[f32]) -> (f32, [i8; 32]) {
    let amax = block.iter().fold(0.0f32, |a, x| a.max(x.abs()));
    let d = f16::from_f32(amax / 127.0).to_f32();
    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut qs = [0i8; 32];
    for (q, x) in qs.iter_mut().zip(block) {
        *q = (x * inv).round().clamp(-127.0, 127.0) as i8;
    }
    (d, qs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_layout() {
        // d = 0.5, m = -1, nibbles: byte j = (j+1)<<4 | j  (low = j, high = j+1 mod 16)
        let mut b = Vec::new();
        b.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        for j in 0..16u8 {
            b.push((((j + 1) & 15) << 4) | j);
        }
        let mut out = [0.0f32; 32];
        dequantize(TensorType::Q4_1, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * j as f32 - 1.0);
            assert_eq!(out[j + 16], 0.5 * ((j + 1) % 16) as f32 - 1.0);
        }
    }

    #[test]
    fn q4_0_block_layout() {
        let mut b = Vec::new();
        b.extend_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b.extend((0..16u8).map(|j| (15 - j) << 4 | j));
        let mut out = [0.0f32; 32];
        dequantize(TensorType::Q4_0, &b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 2.0 * (j as f32 - 8.0));
            assert_eq!(out[j + 16], 2.0 * ((15 - j) as f32 - 8.0));
        }
    }

    #[test]
    fn q8_0_round_trip_within_half_a_step() {
        let v: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) / 7.0)
            .collect();
        let bytes = quantize(TensorType::Q8_0, &v).unwrap();
        assert_eq!(bytes.len(), 68);
        let mut back = vec![0.0; 64];
        dequantize(TensorType::Q8_0, &bytes, &mut back);
        for (blk, bblk) in v.chunks(32).zip(back.chunks(32)) {
            let step = blk.iter().fold(0.0f32, |a, x| a.max(x.abs())) / 127.0;
            for (a, b) in blk.iter().zip(bblk) {
                assert!((a - b).abs() <= 0.5 * step * 1.01, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn half_formats_round_trip() {
        let v = [1.0f32, -2.5, 0.0, 65504.0];
        for ty in [TensorType::F16, TensorType::BF16, TensorType::F32] {
            let mut back = [0.0; 4];
            dequantize(ty, &quantize(ty, &v).unwrap(), &mut back);
            assert_eq!(back[..3], v[..3], "{ty:?}");
        }
    }
}
