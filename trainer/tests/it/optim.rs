//! AdamW: the update against a hand computation, warm-up, clipping, decay exclusions.

use ssr_trainer::optim::{AdamW, AdamWConfig, grad_norm};
use ssr_trainer::{Config, Weights};

fn filled(config: &Config, value: f32) -> Weights {
    let mut w = Weights::zeros(config);
    w.for_each_mut(|_, t| t.fill(value));
    w
}

#[test]
fn first_steps_match_a_hand_computation() {
    let config = Config::tiny();
    let cfg = AdamWConfig {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.5,
        warmup_steps: 0,
        max_grad_norm: None,
    };
    let mut opt = AdamW::new(cfg, &config);
    let mut w = filled(&config, 1.0);
    // Step 1 with g = 2: m̂ = 2, v̂ = 4, update = 1 (up to eps).
    let mut g = filled(&config, 2.0);
    let stats = opt.step(&mut w, &mut g);
    assert_eq!(stats.step, 1);
    let decayed = 1.0f64 * (1.0 - 0.1 * 0.5) - 0.1;
    assert!((w.layers[0].wq[0] as f64 - decayed).abs() < 1e-6);
    // Norm gains are not decayed.
    assert!((w.layers[0].attn_norm[0] as f64 - 0.9).abs() < 1e-6);
    // Step 2 with g = -2: m = 0.9*0.2 - 0.2 = -0.02, m̂ = -0.02/0.19; v = 0.99*0.04+0.04 = 0.0796, v̂ = 0.0796/0.0199 = 4.
    let before = w.layers[0].attn_norm[0] as f64;
    let mut g = filled(&config, -2.0);
    opt.step(&mut w, &mut g);
    let mhat = -0.02 / 0.19;
    let want = before - 0.1 * mhat / 2.0;
    assert!((w.layers[0].attn_norm[0] as f64 - want).abs() < 1e-6);
}

#[test]
fn warmup_is_linear_then_constant() {
    let cfg = AdamWConfig {
        lr: 1.0,
        warmup_steps: 4,
        ..AdamWConfig::default()
    };
    let lrs: Vec<f32> = (1..=6).map(|t| cfg.lr_at(t)).collect();
    assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
}

#[test]
fn gradients_above_the_max_norm_are_scaled_to_it() {
    let config = Config::tiny();
    let cfg = AdamWConfig {
        max_grad_norm: Some(0.5),
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(cfg, &config);
    let mut w = filled(&config, 0.0);
    let mut g = filled(&config, 1.0);
    let before = grad_norm(&g);
    let stats = opt.step(&mut w, &mut g);
    assert!(stats.clipped);
    assert!((stats.grad_norm as f64 - before).abs() < 1e-3 * before);
    assert!((grad_norm(&g) - 0.5).abs() < 1e-4);
    // Under the max: untouched.
    let mut small = filled(&config, 1e-5);
    let copy = small.clone();
    assert!(!opt.step(&mut w, &mut small).clipped);
    assert_eq!(small, copy);
}
