//! The `[embedder]` table of the config file.

use mnemosyne_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::hash::HASH_DEFAULT_DIMS;
use crate::http::endpoint_url;
pub use mnemosyne_core::EMBEDDING_DIMS_MAX;

/// Environment variable read for the API key of an `http` embedder when the
/// config names none; when it is unset, no key is sent.
pub const DEFAULT_API_KEY_ENV: &str = "MNEMOSYNE_EMBEDDER_API_KEY";

/// Which embedder to use, as the `[embedder]` table of the config file:
///
/// ```toml
/// [embedder]
/// kind = "minilm"   # the default: all-MiniLM-L6-v2 in-process, 384 dims
/// ```
///
/// ```toml
/// [embedder]
/// kind = "hash"   # offline and deterministic; lexical only
/// dims = 384      # optional
/// ```
///
/// ```toml
/// [embedder]
/// kind = "http"
/// base_url = "http://127.0.0.1:11434"   # POST {base_url}/v1/embeddings
/// model = "nomic-embed-text"
/// dims = 768                             # required: checked on every answer
/// api_key_env = "OPENAI_API_KEY"         # optional
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbedderConfig {
    /// [`super::MiniLmEmbedder`]: all-MiniLM-L6-v2 run in-process (the
    /// default); its token cap and concurrency are limits
    /// (`embedding_tokens_max`, `embedding_inferences_max`).
    Minilm {},
    /// [`super::HashEmbedder`]: feature hashing, offline, deterministic.
    Hash {
        /// Dimensions of the vectors (default 384).
        #[serde(default = "default_hash_dims")]
        dims: usize,
    },
    /// [`super::HttpEmbedder`]: any OpenAI-compatible `/v1/embeddings`.
    Http {
        /// Scheme, host and port (and path prefix, if any) of the server;
        /// `/v1/embeddings` is appended (only `/embeddings` if it already
        /// ends in `/v1`).
        base_url: String,
        /// Model name sent in each request.
        model: String,
        /// Dimensions the model returns; an answer of another length is an
        /// error.
        dims: usize,
        /// Environment variable holding the API key, sent as
        /// `Authorization: Bearer`. When given, the variable must be set;
        /// when omitted, [`DEFAULT_API_KEY_ENV`] is read if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_key_env: Option<String>,
    },
}

// A struct variant, not a unit one: `deny_unknown_fields` then refuses
// `dims` or any other key under `kind = "minilm"` instead of ignoring it.
impl Default for EmbedderConfig {
    fn default() -> Self {
        Self::Minilm {}
    }
}

fn default_hash_dims() -> usize {
    HASH_DEFAULT_DIMS
}

impl EmbedderConfig {
    /// Checks what can be checked without a network: dims in range, a
    /// model name, an `http` or `https` base URL.
    pub fn validate(&self) -> Result<()> {
        let dims = match self {
            Self::Minilm {} => return Ok(()),
            Self::Hash { dims } => *dims,
            Self::Http {
                base_url,
                model,
                dims,
                api_key_env,
            } => {
                endpoint_url(base_url)?;
                if model.trim().is_empty() {
                    return Err(Error::invalid("embedder model must not be empty"));
                }
                if api_key_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(Error::invalid("embedder api_key_env must not be empty"));
                }
                *dims
            }
        };
        if dims == 0 || dims > EMBEDDING_DIMS_MAX {
            return Err(Error::invalid(format!(
                "embedder dims {dims} out of range: must be 1 to {EMBEDDING_DIMS_MAX}"
            )));
        }
        Ok(())
    }
}

/// The API key to send: from `api_key_env` (which must then be set and not
/// empty) or else from [`DEFAULT_API_KEY_ENV`] if that is set.
pub(super) fn resolve_api_key(
    api_key_env: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>> {
    match api_key_env {
        Some(name) => match env(name) {
            Some(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_owned())),
            _ => Err(Error::invalid(format!(
                "embedder api key variable {name} is not set (named by api_key_env)"
            ))),
        },
        None => Ok(env(DEFAULT_API_KEY_ENV)
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        embedder: EmbedderConfig,
    }

    fn parse(text: &str) -> std::result::Result<EmbedderConfig, String> {
        toml::from_str::<File>(text)
            .map(|f| f.embedder)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn default_is_minilm_and_hash_defaults_to_384() {
        assert_eq!(parse("").unwrap(), EmbedderConfig::Minilm {});
        assert_eq!(
            parse("[embedder]\nkind = \"minilm\"\n").unwrap(),
            EmbedderConfig::Minilm {}
        );
        let err = parse("[embedder]\nkind = \"minilm\"\ndims = 768\n").unwrap_err();
        assert!(err.contains("dims"), "{err}");
        assert_eq!(
            parse("[embedder]\nkind = \"hash\"\n").unwrap(),
            EmbedderConfig::Hash { dims: 384 }
        );
        assert_eq!(
            parse("[embedder]\nkind = \"hash\"\ndims = 128\n").unwrap(),
            EmbedderConfig::Hash { dims: 128 }
        );
    }

    #[test]
    fn http_table_parses() {
        let config = parse(
            "[embedder]\nkind = \"http\"\nbase_url = \"http://127.0.0.1:11434\"\n\
             model = \"nomic-embed-text\"\ndims = 768\n",
        )
        .unwrap();
        assert_eq!(
            config,
            EmbedderConfig::Http {
                base_url: "http://127.0.0.1:11434".into(),
                model: "nomic-embed-text".into(),
                dims: 768,
                api_key_env: None,
            }
        );
        config.validate().unwrap();
        let config = parse(
            "[embedder]\nkind = \"http\"\nbase_url = \"https://api.openai.com/v1\"\n\
             model = \"text-embedding-3-small\"\ndims = 1536\napi_key_env = \"OPENAI_API_KEY\"\n",
        )
        .unwrap();
        assert!(
            matches!(&config, EmbedderConfig::Http { api_key_env: Some(v), .. } if v == "OPENAI_API_KEY")
        );
        // Round trip through TOML.
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<EmbedderConfig>(&text).unwrap(), config);
    }

    #[test]
    fn mistakes_are_refused_with_their_name() {
        let err = parse("[embedder]\nkind = \"hash\"\ndimz = 3\n").unwrap_err();
        assert!(err.contains("dimz"), "{err}");
        let err = parse("[embedder]\nkind = \"onnx\"\n").unwrap_err();
        assert!(err.contains("onnx"), "{err}");
        let err = parse("[embedder]\nkind = \"http\"\nmodel = \"m\"\ndims = 3\n").unwrap_err();
        assert!(err.contains("base_url"), "{err}");
        let err = parse("[embedder]\nkind = \"http\"\nbase_url = \"http://x\"\nmodel = \"m\"\n")
            .unwrap_err();
        assert!(err.contains("dims"), "{err}");
    }

    #[test]
    fn validate_checks_ranges_urls_and_names() {
        let http = |base_url: &str, model: &str, dims: usize| EmbedderConfig::Http {
            base_url: base_url.into(),
            model: model.into(),
            dims,
            api_key_env: None,
        };
        let err = EmbedderConfig::Hash { dims: 0 }.validate().unwrap_err();
        assert!(err.to_string().contains("dims 0"), "{err}");
        assert!(EmbedderConfig::Hash { dims: 20_000 }.validate().is_err());
        let err = http("ftp://host", "m", 3).validate().unwrap_err();
        assert!(err.to_string().contains("ftp://host"), "{err}");
        let err = http("not a url", "m", 3).validate().unwrap_err();
        assert!(err.to_string().contains("not a url"), "{err}");
        let err = http("http://host", " ", 3).validate().unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
        http("http://host:8080/prefix/", "m", 3).validate().unwrap();
    }

    #[test]
    fn api_key_comes_from_the_named_or_default_variable() {
        let env = |name: &str| match name {
            "SET" => Some(" sk-1 ".to_owned()),
            "EMPTY" => Some(String::new()),
            DEFAULT_API_KEY_ENV => Some("sk-default".to_owned()),
            _ => None,
        };
        assert_eq!(
            resolve_api_key(Some("SET"), env).unwrap().as_deref(),
            Some("sk-1")
        );
        let err = resolve_api_key(Some("EMPTY"), env).unwrap_err();
        assert!(err.to_string().contains("EMPTY"), "{err}");
        assert!(resolve_api_key(Some("UNSET"), env).is_err());
        assert_eq!(
            resolve_api_key(None, env).unwrap().as_deref(),
            Some("sk-default")
        );
        assert_eq!(resolve_api_key(None, |_| None).unwrap(), None);
    }
}
