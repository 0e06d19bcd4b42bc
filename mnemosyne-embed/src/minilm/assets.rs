//! The model compiled into the binary: its files, its id and its size.

/// Length of every vector of the model.
pub const MINILM_DIMS: usize = 384;

/// The model's id: its name, its weights (int8) and the first 8 hex digits
/// of the sha256 of `model.onnx`, so that vectors of any other model or file
/// are stale and `reindex` replaces them.
pub const MINILM_MODEL_ID: &str = "minilm-l6-v2-int8-8199be6f";

/// `model/model.onnx`: all-MiniLM-L6-v2, int8 weights (see `model/NOTICE`).
pub(crate) static MODEL_ONNX: &[u8] = include_bytes!("../../model/model.onnx");

/// `model/tokenizer.json`: its WordPiece tokenizer.
pub(crate) static TOKENIZER_JSON: &[u8] = include_bytes!("../../model/tokenizer.json");
