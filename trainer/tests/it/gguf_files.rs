//! GGUF reading: every value type, alignment, and each kind of bad file gives its
//! typed error (files written by the test).

use ssr_trainer::Config;
use ssr_trainer::gguf::model::{config_metadata, weights_to_tensors};
use ssr_trainer::gguf::quant::TensorType;
use ssr_trainer::gguf::{GgufError, GgufFile, RawTensor, Value, load_model, write_gguf};
use ssr_trainer::weights::Weights;

fn tiny_weights() -> Weights {
    let c = Config {
        vocab_size: 64,
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        ffn_dim: 64,
        ..Config::tiny()
    };
    let mut w = Weights::zeros(&c);
    let mut i = 0u32;
    w.for_each_mut(|_, t| {
        for x in t.iter_mut() {
            i = i.wrapping_mul(1664525).wrapping_add(1013904223);
            *x = (i >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        }
    });
    w
}

fn file(metadata: &[(String, Value)], tensors: &[RawTensor]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), write_gguf(metadata, tensors)).unwrap();
    f
}

#[test]
fn every_value_type_round_trips() {
    let md: Vec<(String, Value)> = vec![
        ("u8".into(), Value::U8(7)),
        ("i8".into(), Value::I8(-7)),
        ("u16".into(), Value::U16(700)),
        ("i16".into(), Value::I16(-700)),
        ("u32".into(), Value::U32(70000)),
        ("i32".into(), Value::I32(-70000)),
        ("u64".into(), Value::U64(1 << 40)),
        ("i64".into(), Value::I64(-(1 << 40))),
        ("f32".into(), Value::F32(1.5)),
        ("f64".into(), Value::F64(-2.25)),
        ("bool".into(), Value::Bool(true)),
        ("str".into(), Value::String("héllo".into())),
        (
            "arr".into(),
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
        ),
        (
            "nested".into(),
            Value::Array(vec![Value::Array(vec![Value::I32(1), Value::I32(2)])]),
        ),
        ("general.alignment".into(), Value::U32(32)),
    ];
    let f = file(&md, &[]);
    let g = GgufFile::open(f.path()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata, md);
    assert_eq!(g.get_u64("u64").unwrap(), 1 << 40);
    assert!(matches!(
        g.get_str("u8"),
        Err(GgufError::WrongKeyType { .. })
    ));
    assert!(matches!(g.get_u64("absent"), Err(GgufError::MissingKey(_))));
}

#[test]
fn model_round_trips_through_f32_gguf() {
    let w = tiny_weights();
    let f = file(
        &config_metadata(&w.config),
        &weights_to_tensors(&w, TensorType::F32).unwrap(),
    );
    let (_, back) = load_model(f.path()).unwrap();
    assert_eq!(back, w);
}

#[test]
fn model_through_q8_0_stays_within_half_a_step() {
    let w = tiny_weights();
    let f = file(
        &config_metadata(&w.config),
        &weights_to_tensors(&w, TensorType::Q8_0).unwrap(),
    );
    let (_, back) = load_model(f.path()).unwrap();
    // Values lie in [-0.5, 0.5): the Q8_0 step is at most 0.5/127, the error half that
    // (plus the f16 rounding of the scale).
    let mut worst = 0.0f32;
    back.for_each(|name, t| {
        let mut orig = None;
        w.for_each(|n, o| {
            if n == name {
                orig = Some(o.to_vec())
            }
        });
        for (a, b) in t.iter().zip(orig.unwrap()) {
            worst = worst.max((a - b).abs());
        }
    });
    assert!(worst <= 0.5 / 127.0 * 0.5 * 1.01, "worst error {worst}");
}

#[test]
fn wrong_magic_is_rejected() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), b"GGML\x03\0\0\0 and then some more bytes").unwrap();
    match GgufFile::open(f.path()) {
        Err(GgufError::BadMagic { found }) => assert_eq!(&found, b"GGML"),
        other => panic!("expected BadMagic, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    let w = tiny_weights();
    let bytes = write_gguf(
        &config_metadata(&w.config),
        &weights_to_tensors(&w, TensorType::F32).unwrap(),
    );
    // Every cut inside the header and a sample inside the data: never a panic.
    let header_end = 2000.min(bytes.len());
    for cut in (0..header_end).chain((header_end..bytes.len()).step_by(997)) {
        match GgufFile::from_bytes(bytes[..cut].to_vec()) {
            Err(GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }) => {}
            other => panic!("cut at {cut}: expected Truncated/TensorOutOfBounds, got {other:?}"),
        }
    }
}

#[test]
fn absurd_array_length_is_truncation_not_allocation() {
    let mut bytes = write_gguf(&[("a".into(), Value::Array(vec![Value::U64(1)]))], &[]);
    // The array length field sits right after: magic(4) ver(4) counts(16) key(8+1) type(4) elem(4).
    let at = 4 + 4 + 16 + 9 + 4 + 4;
    bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(bytes),
        Err(GgufError::Truncated {
            what: "array length",
            ..
        })
    ));
}

#[test]
fn unknown_tensor_type_is_rejected() {
    let t = RawTensor {
        name: "x".into(),
        dims: vec![32],
        type_id: 12,
        data: vec![0; 144],
    };
    match GgufFile::open(file(&[], &[t]).path()) {
        Err(GgufError::UnknownTensorType { name, type_id: 12 }) => assert_eq!(name, "x"),
        other => panic!("expected UnknownTensorType, got {other:?}"),
    }
}

#[test]
fn unknown_value_type_is_rejected() {
    let mut bytes = write_gguf(&[("k".into(), Value::U8(1))], &[]);
    let at = 4 + 4 + 16 + 9;
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(bytes),
        Err(GgufError::UnknownValueType { type_id: 99, .. })
    ));
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let w = tiny_weights();
    let mut tensors = weights_to_tensors(&w, TensorType::F32).unwrap();
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "blk.1.ffn_up.weight")
        .unwrap();
    t.dims = vec![64, 32]; // transposed: same element count, wrong shape
    match load_model(file(&config_metadata(&w.config), &tensors).path()) {
        Err(GgufError::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "blk.1.ffn_up.weight");
            assert_eq!((expected, found), (vec![32, 64], vec![64, 32]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn missing_tensor_and_bad_architecture() {
    let w = tiny_weights();
    let mut tensors = weights_to_tensors(&w, TensorType::F32).unwrap();
    tensors.retain(|t| t.name != "blk.0.attn_k.weight");
    assert!(
        matches!(load_model(file(&config_metadata(&w.config), &tensors).path()), Err(GgufError::MissingTensor(n)) if n == "blk.0.attn_k.weight")
    );
    let mut md = config_metadata(&w.config);
    md[0].1 = Value::String("mamba".into());
    assert!(
        matches!(load_model(file(&md, &[]).path()), Err(GgufError::UnsupportedArchitecture(a)) if a == "mamba")
    );
}

#[test]
fn partial_block_and_unsupported_version() {
    let t = RawTensor {
        name: "q".into(),
        dims: vec![33],
        type_id: TensorType::Q8_0.id(),
        data: vec![0; 68],
    };
    assert!(matches!(
        GgufFile::open(file(&[], &[t]).path()),
        Err(GgufError::PartialBlock { .. })
    ));
    let mut bytes = write_gguf(&[], &[]);
    bytes[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(bytes),
        Err(GgufError::UnsupportedVersion(9))
    ));
}

#[test]
fn missing_file_is_io_error() {
    assert!(matches!(
        GgufFile::open("/nonexistent/model.gguf"),
        Err(GgufError::Io { .. })
    ));
}

#[test]
fn smollm2_loads_with_expected_config() {
    let Some(path) = crate::model_files::smollm2("smollm2_loads_with_expected_config") else {
        return;
    };
    let (f, w) = load_model(&path).unwrap();
    assert_eq!(w.config, Config::smollm2_135m());
    assert_eq!(f.tensors.len(), 272);
    assert_eq!(w.num_params(), 134_515_008);
}

/// The end-to-end runs' tiny model (`testing::tiny_model`) loads as the real one does:
/// its GGUF gives back exactly the seeded weights (F32, no quantization), the engine
/// opens it, and its tokenizer is SmolLM2's (same ids as the embedded model's).
#[test]
fn tiny_model_gguf_round_trips_with_smollm2_tokenizer() {
    use ssr_trainer::testing::tiny_model;
    let Some(source) = crate::model_files::smollm2("tiny_model_gguf_round_trips") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let written = tiny_model::write(&source, &path, tiny_model::SEED).unwrap();
    assert_eq!(written, tiny_model::weights(tiny_model::SEED));
    let (f, loaded) = load_model(&path).unwrap();
    assert_eq!(loaded.config, tiny_model::config());
    assert_eq!(loaded, written, "F32 tensors are exact");
    let engine = ssr_trainer::infer::Engine::load(&path).unwrap();
    let real =
        ssr_trainer::tokenizer::Tokenizer::from_gguf(&GgufFile::open(&source).unwrap()).unwrap();
    let text = "def f(x):\n    return x + 1  # <|im_start|>";
    assert_eq!(engine.tokenizer().encode(text), real.encode(text));
    assert!(
        engine.tokenizer().chat_template.is_some(),
        "the chat template is copied"
    );
    assert!(f.get_str("general.name").unwrap().contains("tiny"));
}
