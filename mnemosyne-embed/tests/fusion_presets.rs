//! The storage crate picks hybrid recall's fusion preset by model id
//! prefix (`mnemosyne_storage::fusion::SEMANTIC_MODEL_ID_PREFIXES`) without
//! depending on this crate: these tests pin those prefixes to the ids the
//! embedders here really report, so that renaming a model id cannot silently
//! move it to the other preset.

use mnemosyne_core::Limits;
use mnemosyne_embed::{EmbedderConfig, HASH_DEFAULT_DIMS, build_embedder};
use mnemosyne_storage::fusion::{FusionWeights, SEMANTIC_MODEL_ID_PREFIXES};

fn model_id(config: EmbedderConfig) -> String {
    let embedder = build_embedder(&config, &Limits::default()).unwrap();
    embedder.model_id().to_owned()
}

/// The id of every kind of embedder, with whether its vectors are semantic.
fn every_kind() -> Vec<(String, bool)> {
    vec![
        (
            model_id(EmbedderConfig::Hash {
                dims: HASH_DEFAULT_DIMS,
            }),
            false,
        ),
        (model_id(EmbedderConfig::Hash { dims: 64 }), false),
        (model_id(EmbedderConfig::Minilm {}), true),
        (
            model_id(EmbedderConfig::Http {
                base_url: "http://127.0.0.1:11434".into(),
                model: "nomic-embed-text".into(),
                dims: 768,
                api_key_env: None,
            }),
            true,
        ),
    ]
}

#[test]
fn each_embedder_gets_the_preset_of_its_kind() {
    for (id, semantic) in every_kind() {
        let expected = if semantic {
            FusionWeights::SEMANTIC
        } else {
            FusionWeights::LEXICAL
        };
        assert_eq!(FusionWeights::for_model(&id), expected, "model id {id}");
    }
}

#[test]
fn every_semantic_prefix_names_an_embedder_here() {
    let ids = every_kind();
    for prefix in SEMANTIC_MODEL_ID_PREFIXES {
        assert!(
            ids.iter()
                .any(|(id, semantic)| *semantic && id.starts_with(prefix)),
            "no embedder's model id starts with {prefix:?}: {ids:?}"
        );
    }
}
