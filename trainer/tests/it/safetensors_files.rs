//! safetensors + config.json loading: the Q/K permutation is checked against an
//! independent HF-style (rotate_half) forward, and bad files give typed errors.

use ssr_trainer::Config;
use ssr_trainer::infer::{Engine, Precision};
use ssr_trainer::safetensors::{
    Dtype, SafetensorsError, load_dir, weights_to_hf_tensors, write_safetensors,
};
use ssr_trainer::tokenizer::Tokenizer;
use std::collections::HashMap;

fn config_json(c: &Config) -> String {
    serde_json::json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "hidden_size": c.dim, "intermediate_size": c.ffn_dim, "num_attention_heads": c.n_heads,
        "num_hidden_layers": c.n_layers, "num_key_value_heads": c.n_kv_heads, "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta, "max_position_embeddings": c.max_seq_len, "vocab_size": c.vocab_size,
        "tie_word_embeddings": c.tied_embeddings,
    })
    .to_string()
}

fn write_dir(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    c: &Config,
    dtype: Dtype,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(c)).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        write_safetensors(tensors, dtype),
    )
    .unwrap();
    dir
}

/// The HF llama forward in f64 on HF-layout tensors (rotate_half RoPE).
fn hf_forward(t: &HashMap<String, Vec<f32>>, c: &Config, ids: &[u32]) -> Vec<f64> {
    let (d, hd, nh, nkv, ff) = (c.dim, c.head_dim(), c.n_heads, c.n_kv_heads, c.ffn_dim);
    let w = |n: &str| -> Vec<f64> { t[n].iter().map(|&x| x as f64).collect() };
    let lin = |x: &[f64], w: &[f64], out: usize| -> Vec<f64> {
        let k = x.len();
        (0..out)
            .map(|o| (0..k).map(|i| x[i] * w[o * k + i]).sum())
            .collect()
    };
    let norm = |x: &[f64], g: &[f64]| -> Vec<f64> {
        let inv = 1.0
            / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + c.norm_eps as f64).sqrt();
        x.iter().zip(g).map(|(v, g)| v * inv * g).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        let half = hd / 2;
        for head in v.chunks_mut(hd) {
            for i in 0..half {
                let a = pos as f64 * (c.rope_theta as f64).powf(-((2 * i) as f64) / hd as f64);
                let (x0, x1) = (head[i], head[i + half]);
                head[i] = x0 * a.cos() - x1 * a.sin();
                head[i + half] = x1 * a.cos() + x0 * a.sin();
            }
        }
    };
    let emb = w("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| emb[i as usize * d..(i as usize + 1) * d].to_vec())
        .collect();
    for l in 0..c.n_layers {
        let p = |s: &str| w(&format!("model.layers.{l}.{s}.weight"));
        let (wq, wk, wv, wo) = (
            p("self_attn.q_proj"),
            p("self_attn.k_proj"),
            p("self_attn.v_proj"),
            p("self_attn.o_proj"),
        );
        let (g1, g2) = (p("input_layernorm"), p("post_attention_layernorm"));
        let (wg, wu, wd) = (p("mlp.gate_proj"), p("mlp.up_proj"), p("mlp.down_proj"));
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let h = norm(x, &g1);
            let mut q = lin(&h, &wq, nh * hd);
            let mut k = lin(&h, &wk, nkv * hd);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(lin(&h, &wv, nkv * hd));
        }
        for (pos, x) in xs.iter_mut().enumerate() {
            let mut att = vec![0.0; nh * hd];
            for h in 0..nh {
                let g = h / (nh / nkv);
                let s: Vec<f64> = (0..=pos)
                    .map(|t| {
                        (0..hd)
                            .map(|i| qs[pos][h * hd + i] * ks[t][g * hd + i])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for t in 0..=pos {
                    for i in 0..hd {
                        att[h * hd + i] += e[t] / z * vs[t][g * hd + i];
                    }
                }
            }
            let o = lin(&att, &wo, d);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = norm(x, &g2);
            let gate = lin(&h, &wg, ff);
            let up = lin(&h, &wu, ff);
            let act: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let o = lin(&act, &wd, d);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
    }
    let head = if c.tied_embeddings {
        emb
    } else {
        w("lm_head.weight")
    };
    let g = w("model.norm.weight");
    xs.iter()
        .flat_map(|x| lin(&norm(x, &g), &head, c.vocab_size))
        .collect()
}

#[test]
fn safetensors_matches_hf_rotate_half_forward() {
    let engine = crate::engine::small_engine(Precision::F32);
    let w = engine.weights().clone();
    let c = w.config.clone();
    let hf = weights_to_hf_tensors(&w);
    let dir = write_dir(&hf, &c, Dtype::F32);
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded, w, "permute then unpermute is the identity");
    let ids = [3u32, 100, 7, 250, 42, 42, 9];
    let by_name: HashMap<String, Vec<f32>> = hf.into_iter().map(|(n, _, t)| (n, t)).collect();
    let want = hf_forward(&by_name, &c, &ids);
    let e = Engine::from_weights(
        loaded,
        Tokenizer::bytes_only(&["<|im_end|>", "<|endoftext|>"]),
        Precision::F32,
    )
    .unwrap();
    let got = e.logits(&ids).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    // f32 engine vs f64 reference on O(1) logits: measured ~1e-6.
    assert!(
        worst < 1e-4,
        "safetensors model differs from the HF forward by {worst}"
    );
}

#[test]
fn half_precision_dtypes_load() {
    let w = crate::engine::small_engine(Precision::F32)
        .weights()
        .clone();
    for (dtype, tol) in [(Dtype::F16, 1e-3f32), (Dtype::BF16, 4e-3)] {
        let dir = write_dir(&weights_to_hf_tensors(&w), &w.config, dtype);
        let back = load_dir(dir.path()).unwrap();
        let worst = back
            .tok_embeddings
            .iter()
            .zip(&w.tok_embeddings)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= tol, "{dtype:?}: {worst}");
    }
}

#[test]
fn bad_checkpoints_are_typed_errors() {
    let w = crate::engine::small_engine(Precision::F32)
        .weights()
        .clone();
    let c = w.config.clone();
    let mut hf = weights_to_hf_tensors(&w);
    // Shape mismatch.
    let t = hf
        .iter_mut()
        .find(|t| t.0 == "model.layers.0.mlp.up_proj.weight")
        .unwrap();
    t.1 = vec![t.1[1], t.1[0]];
    let dir = write_dir(&hf, &c, Dtype::F32);
    assert!(
        matches!(load_dir(dir.path()), Err(SafetensorsError::ShapeMismatch { name, .. }) if name == "model.layers.0.mlp.up_proj.weight")
    );
    // Missing tensor.
    let mut hf = weights_to_hf_tensors(&w);
    hf.retain(|t| t.0 != "model.norm.weight");
    let dir = write_dir(&hf, &c, Dtype::F32);
    assert!(
        matches!(load_dir(dir.path()), Err(SafetensorsError::MissingTensor(n)) if n == "model.norm.weight")
    );
    // Truncated file: header length beyond the end, then data beyond the end.
    let bytes = write_safetensors(&weights_to_hf_tensors(&w), Dtype::F32);
    for cut in [4, 20, bytes.len() - 1] {
        std::fs::write(dir.path().join("model.safetensors"), &bytes[..cut]).unwrap();
        let r = load_dir(dir.path());
        assert!(
            matches!(
                r,
                Err(SafetensorsError::BadHeader { .. }
                    | SafetensorsError::HeaderTooLarge { .. }
                    | SafetensorsError::BadDataRange { .. })
            ),
            "cut {cut}: {r:?}"
        );
    }
    // Unknown dtype.
    let mut bad = bytes.clone();
    let pos = bad.windows(5).position(|x| x == b"\"F32\"").unwrap();
    bad[pos + 1..pos + 4].copy_from_slice(b"I32");
    std::fs::write(dir.path().join("model.safetensors"), &bad).unwrap();
    assert!(
        matches!(load_dir(dir.path()), Err(SafetensorsError::UnsupportedDtype { dtype, .. }) if dtype == "I32")
    );
    // Bad config.
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    assert!(matches!(
        load_dir(dir.path()),
        Err(SafetensorsError::Config(_))
    ));
}
