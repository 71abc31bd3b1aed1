//! The `embedded` policy: the trainer's inference [`Engine`] in-process (SmolLM2-135M
//! by default), run on blocking threads so episodes on the async runtime keep moving.
//!
//! Owns: the [`TextCodec`] over the trainer's tokenizer, mapping the engine's
//! generation to a [`Generation`], a bound on concurrent generations, and swapping in
//! new weights after a training step. Does not own: the numerics (the trainer).

use super::{FinishReason, GenerateRequest, Generation, Policy, PolicyError, Prompt};
use crate::chat::{Template, TextCodec, encode_pieces};
use ssr_trainer::infer::sampling::SamplingOptions;
use ssr_trainer::infer::{Engine, FinishReason as EngineFinish, GenerateOptions};
use ssr_trainer::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;

/// The trainer's tokenizer as the agent's [`TextCodec`].
#[derive(Clone, Debug)]
pub struct TrainerCodec {
    tokenizer: Arc<Tokenizer>,
}

impl TrainerCodec {
    pub fn new(tokenizer: Tokenizer) -> Self {
        TrainerCodec {
            tokenizer: Arc::new(tokenizer),
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

impl TextCodec for TrainerCodec {
    fn encode_text(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode_ordinary(text)
    }

    fn encode_control(&self, control: &str) -> Vec<u32> {
        match self.tokenizer.token_id(control) {
            Some(id) => vec![id],
            None => self.tokenizer.encode_ordinary(control),
        }
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode_lossy(ids)
    }

    fn end_of_message(&self) -> Option<u32> {
        self.tokenizer.end_of_turn_id()
    }

    fn template(&self) -> Template {
        Template::from(self.tokenizer.template().clone())
    }
}

/// Text of sampled ids as the agent records it: every id decoded except a final
/// end-of-message token. Keeping the text a function of the ids is what makes the
/// transcript and the trajectory agree byte for byte.
pub fn text_of_ids(codec: &dyn TextCodec, ids: &[u32]) -> String {
    let body = match (ids.last(), codec.end_of_message()) {
        (Some(last), Some(eom)) if *last == eom => &ids[..ids.len() - 1],
        _ => ids,
    };
    codec.decode(body)
}

/// The engine behind a lock: generations share it (read), a training step swaps its
/// weights (write).
pub struct EmbeddedPolicy {
    engine: Arc<RwLock<Engine>>,
    codec: Arc<TrainerCodec>,
    permits: Arc<Semaphore>,
    name: String,
}

impl EmbeddedPolicy {
    /// Loads a GGUF model. `max_concurrent` bounds simultaneous generations (each uses
    /// every core through the engine's own threads, so 1 is right on a small machine).
    pub fn load(path: &Path, max_concurrent: usize) -> Result<Self, PolicyError> {
        // GPU generation when a GPU is usable, else the CPU engine.
        let engine = Engine::load_on(path, ssr_trainer::Device::Auto)
            .map_err(|e| PolicyError::Engine(format!("{}: {e}", path.display())))?;
        let name = path
            .file_stem()
            .map_or_else(|| "embedded".into(), |s| s.to_string_lossy().into_owned());
        Ok(Self::from_engine(engine, name, max_concurrent))
    }

    /// Loads a GGUF model (tokenizer, chat template, architecture) and, when `weights`
    /// names a training checkpoint (or a directory of them: its newest), plays with
    /// the checkpoint's weights instead of the GGUF's: the warm start `ssr sft` writes.
    pub fn load_with_weights(
        path: &Path,
        weights: Option<&Path>,
        max_concurrent: usize,
    ) -> Result<Self, PolicyError> {
        let Some(ckpt) = weights else {
            return Self::load(path, max_concurrent);
        };
        let mut engine = Engine::load_on(path, ssr_trainer::Device::Auto)
            .map_err(|e| PolicyError::Engine(format!("{}: {e}", path.display())))?;
        let w = ssr_trainer::train::run::load_weights(ckpt)
            .map_err(|e| PolicyError::Engine(format!("{}: {e}", ckpt.display())))?;
        engine
            .set_weights(w)
            .map_err(|e| PolicyError::Engine(format!("{}: {e}", ckpt.display())))?;
        let name = ckpt
            .file_name()
            .map_or_else(|| "embedded".into(), |s| s.to_string_lossy().into_owned());
        Ok(Self::from_engine(engine, name, max_concurrent))
    }

    pub fn from_engine(engine: Engine, name: String, max_concurrent: usize) -> Self {
        let codec = Arc::new(TrainerCodec::new(engine.tokenizer().clone()));
        EmbeddedPolicy {
            engine: Arc::new(RwLock::new(engine)),
            codec,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            name,
        }
    }

    /// The shared engine (the server and the trainer step use it).
    pub fn engine(&self) -> Arc<RwLock<Engine>> {
        self.engine.clone()
    }

    pub fn trainer_codec(&self) -> Arc<TrainerCodec> {
        self.codec.clone()
    }

    /// Runs a generation on a blocking thread under the concurrency bound.
    pub async fn generate_ids(
        &self,
        prompt: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<ssr_trainer::infer::Generation, PolicyError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PolicyError::Engine(e.to_string()))?;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let engine = engine
                .read()
                .map_err(|_| PolicyError::Engine("engine lock poisoned".into()))?;
            engine
                .generate(&prompt, &opts)
                .map_err(|e| PolicyError::Engine(e.to_string()))
        })
        .await
        .map_err(|e| PolicyError::Engine(format!("generation task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl Policy for EmbeddedPolicy {
    fn name(&self) -> String {
        format!("embedded:{}", self.name)
    }

    fn codec(&self) -> Option<Arc<dyn TextCodec>> {
        Some(self.codec.clone())
    }

    fn context_tokens(&self) -> Option<usize> {
        self.engine.read().ok().map(|e| e.config().max_seq_len)
    }

    async fn generate(&self, request: GenerateRequest) -> Result<Generation, PolicyError> {
        let ids = match request.prompt {
            Prompt::Tokens(ids) => ids,
            Prompt::Chat(messages) => {
                let pieces = self.codec.template().pieces(&messages, true)?;
                encode_pieces(Some(self.codec.as_ref()), &pieces).1
            }
        };
        let s = &request.sampling;
        let opts = GenerateOptions {
            max_tokens: s.max_tokens,
            sampling: SamplingOptions {
                temperature: s.temperature,
                top_k: 0,
                top_p: s.top_p,
                seed: s.seed,
            },
            stop: s.stop.clone(),
            stop_at_eos: true,
            top_logprobs: 0,
        };
        let g = self.generate_ids(ids, opts).await?;
        Ok(Generation {
            policy_version: None,
            text: text_of_ids(self.codec.as_ref(), &g.token_ids),
            finish: match g.finish {
                EngineFinish::Eos => FinishReason::EndOfMessage,
                EngineFinish::Stop(_) => FinishReason::Stop,
                EngineFinish::Length | EngineFinish::ContextFull => FinishReason::Length,
            },
            token_ids: g.token_ids,
            logprobs: Some(g.logprobs),
            stop_in_text: true,
            prompt_tokens: g.prompt_tokens,
            exact_tokens: true,
            endpoint: "embedded".into(),
        })
    }
}
