//! Hybrid recall, recall modes, the `[embedder]` table and `reindex`.

mod common;

use common::{Sandbox, unreachable_http_embedder};

#[test]
fn vector_mode_finds_a_typo_that_keyword_mode_misses() {
    let sandbox = Sandbox::new();
    sandbox.remember(&["lease reaper deadlocks"]);
    sandbox.remember(&["frontend build uses vite"]);
    let keyword = sandbox.json(&["recall", "deadlcoks", "--mode", "keyword"]);
    assert!(keyword["hits"].as_array().unwrap().is_empty(), "{keyword}");
    let vector = sandbox.json(&["recall", "deadlcoks", "--mode", "vector"]);
    let hits = vector["hits"].as_array().unwrap();
    assert!(
        hits[0]["memory"]["content"]
            .as_str()
            .unwrap()
            .contains("reaper"),
        "{vector}"
    );
    assert!(hits[0]["signals"]["keyword_rank"].is_null());
    assert_eq!(hits[0]["signals"]["vector_rank"], 1);
    let hybrid = sandbox.json(&["recall", "deadlcoks reaper"]);
    let top = &hybrid["hits"][0]["signals"];
    assert_eq!(top["keyword_rank"], 1, "{hybrid}");
    assert_eq!(top["vector_rank"], 1, "{hybrid}");
}

#[test]
fn linked_memories_come_with_their_hit() {
    let sandbox = Sandbox::new();
    let hit = sandbox.remember(&["pool exhaustion returns PoolTimeout after five seconds"]);
    let fix = sandbox.remember(&[
        "raise pool_readers_max for the importer",
        "--link",
        &format!("{}:fixes", hit.trim()),
    ]);
    let recall = sandbox.json(&["recall", "PoolTimeout exhaustion"]);
    let linked = recall["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["memory"]["id"] == fix.trim())
        .expect("the linked memory is recalled");
    assert_eq!(linked["signals"]["linked_from"], hit.trim());
}

#[test]
fn a_hash_database_is_stale_under_the_default_model_until_reindex() {
    let sandbox = Sandbox::new();
    // A database written with the hash embedder (the default before minilm).
    let config = sandbox.path("hash.toml");
    std::fs::write(&config, "[embedder]\nkind = \"hash\"\ndims = 384\n").unwrap();
    let config = config.to_str().unwrap();
    for text in [
        "Send an Idempotency-Key header on POST /payments so that retries never charge twice",
        "the nightly backup job writes its archive to the wrong bucket",
        "third note about the release checklist",
    ] {
        sandbox.remember(&["--config", config, text]);
    }
    let report = sandbox.json(&["--config", config, "reindex"]);
    assert_eq!(
        report["embedded"], 0,
        "vectors were made on remember: {report}"
    );
    assert_eq!(report["model"], "hash-v1-384");

    // Opened with the default embedder: recall works, and says the vectors are stale.
    let query = "prevent a retried request from billing the buyer a second time";
    let recall = sandbox.json(&["recall", query]);
    assert_eq!(recall["vectors_stale"], 3, "{recall}");
    let text = sandbox.ok(&["recall", query, "--mode", "vector"]);
    assert!(
        text.contains("note: 3 memories have no vector from minilm-l6-v2-int8-8199be6f"),
        "{text}"
    );
    assert!(text.contains("mnemosyne reindex"), "{text}");
    let doctor = sandbox.run(&["doctor"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.contains("3 memories have no vector"), "{doctor}");
    assert!(doctor.contains("run `mnemosyne reindex`"), "{doctor}");

    let report = sandbox.json(&["reindex"]);
    assert_eq!(report["embedded"], 3, "{report}");
    assert_eq!(report["model"], "minilm-l6-v2-int8-8199be6f");
    assert_eq!(sandbox.json(&["reindex"])["embedded"], 0);
    // By meaning now: the query shares no word with the memory.
    let recall = sandbox.json(&["recall", query, "--mode", "vector"]);
    assert!(recall.get("vectors_stale").is_none(), "{recall}");
    let first = recall["hits"][0]["memory"]["content"].as_str().unwrap();
    assert!(first.starts_with("Send an Idempotency-Key"), "{recall}");
    let text = sandbox.ok(&["reindex"]);
    assert_eq!(
        text.trim(),
        "re-embedded 0 memories with minilm-l6-v2-int8-8199be6f"
    );
}

#[test]
fn bad_embedder_tables_are_one_line_errors() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("config.toml");
    for (text, expected) in [
        ("[embedder]\nkind = \"magic\"\n", "magic"),
        ("[embedder]\nkind = \"hash\"\ndims = 0\n", "dims"),
        (
            "[embedder]\nkind = \"http\"\nmodel = \"m\"\ndims = 8\n",
            "base_url",
        ),
        (
            "[embedder]\nkind = \"http\"\nbase_url = \"ftp://x\"\nmodel = \"m\"\ndims = 8\n",
            "http",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let line = sandbox.fail(&["--config", config.to_str().unwrap(), "count"]);
        assert!(
            line.contains(expected),
            "{text:?}: want {expected:?} in {line:?}"
        );
    }
}

#[test]
fn an_unreachable_http_embedder_fails_remember_cleanly_and_stores_nothing() {
    let sandbox = Sandbox::new();
    let (config, port) = unreachable_http_embedder(&sandbox);
    let line = sandbox.fail(&["--config", &config, "remember", "hello"]);
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "names the endpoint: {line}"
    );
    assert_eq!(sandbox.count(), 0);
}

#[test]
fn hybrid_recall_survives_an_embedder_that_is_down() {
    let sandbox = Sandbox::new();
    sandbox.remember(&["the lease reaper holds the queue lock"]);
    let (config, port) = unreachable_http_embedder(&sandbox);
    let config = config.as_str();
    let recall = sandbox.json(&["--config", config, "recall", "reaper lock"]);
    assert_eq!(recall["hits"].as_array().unwrap().len(), 1, "{recall}");
    let degraded = recall["degraded"]
        .as_str()
        .expect("says it lost the vector signal");
    assert!(
        degraded.contains(&format!("127.0.0.1:{port}")),
        "{degraded}"
    );
    let text = sandbox.ok(&["--config", config, "recall", "reaper lock"]);
    assert!(
        text.contains("answered from keywords and links only"),
        "{text}"
    );
    let line = sandbox.fail(&[
        "--config",
        config,
        "recall",
        "reaper lock",
        "--mode",
        "vector",
    ]);
    assert!(line.contains("embedding"), "{line}");
    let healthy = sandbox.json(&["recall", "reaper lock"]);
    assert!(healthy.get("degraded").is_none(), "{healthy}");
}
