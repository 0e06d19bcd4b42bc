//! The all-MiniLM-L6-v2 model itself, synchronous: tokenise, run the
//! transformer with tract, mean-pool over the attention mask, normalise.
//! [`super::MiniLmEmbedder`] runs it on blocking threads.

use std::time::{Duration, Instant};

use mnemosyne_core::{Error, Result};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use tract_onnx::prelude::*;

use super::assets::{MINILM_DIMS, MODEL_ONNX, TOKENIZER_JSON};
use super::fold::fold_weight_dequantisation;
use crate::shared::l2_normalise;

/// Padded tokens (texts × longest text) of one run of the transformer; a
/// text longer than this runs alone. Its attention holds 12 heads × batch ×
/// seq² floats, 3 MiB at 256. Measured on the eval memories (one thread,
/// batches of 64): 256 gives 26.6 texts/s, 128 gives 24.9, 512 gives 23.5
/// and 2 048 gives 19.9 (and 25 MB of attention scores a run, whose first
/// appearance long after start-up looks like growth in a soak): tract's
/// matrix products gain little from more rows, and padding costs.
pub const RUN_PADDED_TOKENS_MAX: usize = 256;

/// Texts as token ids, and how many of them were cut at the token cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Token ids of each text, in order.
    pub ids: Vec<Vec<u32>>,
    /// Texts longer than the token cap, embedded from their first tokens.
    pub truncated: usize,
}

/// Cuts texts (their token ids) into runs of the transformer: indices of
/// texts of similar length, at most [`RUN_PADDED_TOKENS_MAX`] padded tokens
/// a run (a longer text runs alone). Every index appears in exactly one run.
pub fn plan_runs(ids: &[Vec<u32>]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let mut runs = Vec::new();
    let mut start = 0;
    while start < order.len() {
        // Sorted by length: the last text of a run is its longest.
        let mut end = start + 1;
        while end < order.len()
            && (end + 1 - start) * ids[order[end]].len() <= RUN_PADDED_TOKENS_MAX
        {
            end += 1;
        }
        runs.push(order[start..end].to_vec());
        start = end;
    }
    runs
}

/// The loaded model: tokenizer and optimised plan. `embed` takes `&self`;
/// one value serves any number of threads.
pub struct MiniLmModel {
    tokenizer: Tokenizer,
    plan: std::sync::Arc<TypedRunnableModel>,
    /// Position of `input_ids`, `attention_mask`, `token_type_ids` among the inputs.
    input_order: [usize; 3],
    load_time: Duration,
    load_phases: Vec<(&'static str, Duration)>,
}

impl std::fmt::Debug for MiniLmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmModel")
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

/// Vectors of a batch, in the order of the texts, and how many of the texts
/// were longer than the token cap.
#[derive(Debug)]
pub struct Embedded {
    /// One L2-normalised vector of [`MINILM_DIMS`] floats per text.
    pub vectors: Vec<Vec<f32>>,
    /// Texts cut to the token cap.
    pub truncated: usize,
}

fn model_error(what: &str, error: impl std::fmt::Display) -> Error {
    let message = format!("{error:#}").replace('\n', " ");
    Error::Embedding(format!("minilm: {what}: {message}"))
}

impl MiniLmModel {
    /// Loads the vendored files; each text is read up to `tokens_max` tokens
    /// (special tokens included).
    pub fn load(tokens_max: usize) -> Result<Self> {
        let started = Instant::now();
        let mut phases = Vec::new();
        let mut phase_start = started;
        let mut phase = |name: &'static str| {
            let now = Instant::now();
            phases.push((name, now - phase_start));
            phase_start = now;
        };
        let mut tokenizer = Tokenizer::from_bytes(TOKENIZER_JSON)
            .map_err(|e| model_error("cannot read tokenizer.json", e))?;
        // The file pads every text to 128 tokens; batches pad themselves.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: tokens_max,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| model_error("cannot set the token cap", e))?;
        phase("tokenizer");
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &MODEL_ONNX[..])
            .map_err(|e| model_error("cannot read model.onnx", e))?;
        phase("decode");
        fold_weight_dequantisation(&mut proto).map_err(|e| model_error("model.onnx", e))?;
        phase("fold");
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| model_error("cannot load model.onnx", e))?;
        drop(proto);
        phase("graph");
        let batch = model.symbols.sym("batch");
        let sequence = model.symbols.sym("sequence");
        let mut input_order = [usize::MAX; 3];
        let outlets = model
            .input_outlets()
            .map_err(|e| model_error("model.onnx", e))?
            .to_vec();
        for (position, outlet) in outlets.iter().enumerate() {
            let slot = match model.node(outlet.node).name.as_str() {
                "input_ids" => 0,
                "attention_mask" => 1,
                "token_type_ids" => 2,
                other => return Err(model_error("model.onnx", format!("unknown input {other}"))),
            };
            input_order[slot] = position;
            model
                .set_input_fact(
                    position,
                    InferenceFact::dt_shape(
                        i64::datum_type(),
                        tvec![batch.to_dim(), sequence.to_dim()],
                    ),
                )
                .map_err(|e| model_error("model.onnx", e))?;
        }
        if input_order.contains(&usize::MAX) || outlets.len() != 3 {
            return Err(model_error(
                "model.onnx",
                "expected the inputs input_ids, attention_mask and token_type_ids",
            ));
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| model_error("cannot optimise model.onnx", e))?;
        phase("optimise");
        Ok(Self {
            tokenizer,
            plan,
            input_order,
            load_time: started.elapsed(),
            load_phases: phases,
        })
    }

    /// How long [`MiniLmModel::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// How long each step of [`MiniLmModel::load`] took, in order.
    pub fn load_phases(&self) -> &[(&'static str, Duration)] {
        &self.load_phases
    }

    /// Token ids of `texts` (special tokens included, cut at the token cap),
    /// and how many texts were cut.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Tokenized> {
        let mut ids = Vec::with_capacity(texts.len());
        let mut truncated = 0;
        for text in texts {
            let encoding = self
                .tokenizer
                .encode(*text, true)
                .map_err(|e| model_error("cannot tokenise", e))?;
            if !encoding.get_overflowing().is_empty() {
                truncated += 1;
            }
            ids.push(encoding.get_ids().to_vec());
        }
        Ok(Tokenized { ids, truncated })
    }

    /// Embeds `texts`: similar lengths run together, at most
    /// [`RUN_PADDED_TOKENS_MAX`] padded tokens a run, one run after another.
    pub fn embed(&self, texts: &[&str]) -> Result<Embedded> {
        let Tokenized { ids, truncated } = self.tokenize(texts)?;
        let mut vectors = vec![Vec::new(); texts.len()];
        for run in plan_runs(&ids) {
            let tokens: Vec<&[u32]> = run.iter().map(|&i| ids[i].as_slice()).collect();
            for (vector, i) in self.run(&tokens)?.into_iter().zip(run) {
                vectors[i] = vector;
            }
        }
        Ok(Embedded { vectors, truncated })
    }

    /// One run of the transformer over `texts` (token ids), padded to the
    /// longest: one vector per text, in order.
    pub fn run(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let batch = texts.len();
        let sequence = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let mut ids = vec![0i64; batch * sequence];
        let mut mask = vec![0i64; batch * sequence];
        for (row, text) in texts.iter().enumerate() {
            for (column, &id) in text.iter().enumerate() {
                ids[row * sequence + column] = i64::from(id);
                mask[row * sequence + column] = 1;
            }
        }
        let tensor = |data: Vec<i64>| -> Result<TValue> {
            Tensor::from_shape(&[batch, sequence], &data)
                .map(|t| t.into_tvalue())
                .map_err(|e| model_error("input", e))
        };
        let mut inputs: [Option<TValue>; 3] = [None, None, None];
        inputs[self.input_order[0]] = Some(tensor(ids)?);
        inputs[self.input_order[1]] = Some(tensor(mask)?);
        inputs[self.input_order[2]] = Some(tensor(vec![0; batch * sequence])?);
        let inputs: TVec<TValue> = inputs.into_iter().flatten().collect();
        let outputs = self
            .plan
            .run(inputs)
            .map_err(|e| model_error("inference failed", e))?;
        let hidden = outputs
            .first()
            .ok_or_else(|| model_error("inference", "no output"))?
            .to_plain_array_view::<f32>()
            .map_err(|e| model_error("output", e))?;
        if hidden.shape() != [batch, sequence, MINILM_DIMS] {
            return Err(model_error(
                "output",
                format!(
                    "shape {:?}, expected [{batch}, {sequence}, {MINILM_DIMS}]",
                    hidden.shape()
                ),
            ));
        }
        let mut vectors = Vec::with_capacity(batch);
        for (row, text) in texts.iter().enumerate() {
            // Mean over the real tokens (the mask), as sentence-transformers pools.
            let mut vector = vec![0f32; MINILM_DIMS];
            for token in 0..text.len() {
                for (d, x) in vector.iter_mut().enumerate() {
                    *x += hidden[[row, token, d]];
                }
            }
            let count = text.len().max(1) as f32;
            vector.iter_mut().for_each(|x| *x /= count);
            l2_normalise(&mut vector)
                .ok_or_else(|| model_error("output", "a vector of zero or non-finite length"))?;
            vectors.push(vector);
        }
        Ok(vectors)
    }
}
