//! The local model, loaded from the files compiled into the binary: it
//! embeds meaning, batches give the same vectors as single texts, long texts
//! are cut and counted, empty ones refused.

use mnemosyne_core::{Embedder, Limits};
use mnemosyne_embed::{
    MINILM_DIMS, MINILM_MODEL_ID, MiniLmEmbedder, MiniLmModel, RUN_PADDED_TOKENS_MAX, plan_runs,
};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn a_paraphrase_is_nearer_than_an_unrelated_text() {
    let embedder = MiniLmEmbedder::new(&Limits::default());
    assert_eq!(embedder.model_id(), MINILM_MODEL_ID);
    let vectors = embedder
        .embed(&[
            "prevent a retried request from billing the buyer a second time",
            "Send an Idempotency-Key header on POST /payments so that retries never double charge",
            "the nightly backup job writes its archive to the wrong bucket",
        ])
        .await
        .unwrap();
    assert_eq!(vectors.len(), 3);
    for vector in &vectors {
        assert_eq!(vector.len(), MINILM_DIMS);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
    }
    let related = cosine(&vectors[0], &vectors[1]);
    let unrelated = cosine(&vectors[0], &vectors[2]);
    assert!(
        related > unrelated + 0.2,
        "paraphrase {related} vs unrelated {unrelated}"
    );
    assert!(embedder.stats().load_ms() > 0);
    assert_eq!(embedder.stats().texts_embedded(), 3);
}

#[tokio::test]
async fn a_batch_gives_the_vectors_of_its_texts_one_by_one() {
    let embedder = MiniLmEmbedder::new(&Limits::default());
    // Different lengths, so the batch pads the shorter ones.
    let texts = [
        "tokio runtime dropped inside an async context",
        "WAL",
        "the CI cache for cargo is keyed on the lock file and the toolchain version, restored before the build",
    ];
    let batch = embedder.embed(&texts).await.unwrap();
    for (text, from_batch) in texts.iter().zip(&batch) {
        let alone = embedder.embed(&[text]).await.unwrap().remove(0);
        let similarity = cosine(&alone, from_batch);
        assert!(similarity > 0.9999, "{text}: {similarity}");
    }
    let again = embedder.embed(&texts).await.unwrap();
    assert_eq!(again, batch, "deterministic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_runs_on_two_threads_keeps_its_order() {
    let limits = Limits {
        embedding_inferences_max: 2,
        ..Limits::default()
    };
    let embedder = MiniLmEmbedder::new(&limits);
    // 12 texts of 30 to 140 words: several runs of the transformer, which
    // finish out of order on two blocking threads.
    let texts: Vec<String> = (0..12)
        .map(|i| {
            (0..30 + i * 10)
                .map(|w| format!("word{} about sqlite locks {i}", w % 7))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let ids: Vec<Vec<u32>> = {
        let model = MiniLmModel::load(256).unwrap();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        model.tokenize(&refs).unwrap().ids
    };
    let runs = plan_runs(&ids);
    assert!(runs.len() >= 6, "{} runs", runs.len());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = embedder.embed(&refs).await.unwrap();
    assert_eq!(batch.len(), texts.len());
    for (text, from_batch) in refs.iter().zip(&batch) {
        let alone = embedder.embed(&[text]).await.unwrap().remove(0);
        let similarity = cosine(&alone, from_batch);
        assert!(similarity > 0.9999, "{similarity}");
    }
}

#[test]
fn runs_hold_each_text_once_within_the_padded_token_cap() {
    let lengths = [3usize, 300, 40, 40, 41, 7, 128, 129, 2, 60];
    let ids: Vec<Vec<u32>> = lengths.iter().map(|&n| vec![1; n]).collect();
    let runs = plan_runs(&ids);
    let mut seen: Vec<usize> = runs.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
    for run in &runs {
        let longest = run.iter().map(|&i| lengths[i]).max().unwrap();
        assert!(
            run.len() == 1 || run.len() * longest <= RUN_PADDED_TOKENS_MAX,
            "{run:?}"
        );
    }
    // The 300-token text runs alone; short texts share a run.
    assert!(runs.iter().any(|r| r == &[1]));
    assert!(runs.iter().any(|r| r.len() >= 3));
}

#[tokio::test]
async fn a_text_over_the_token_cap_is_embedded_from_its_start_and_counted() {
    let limits = Limits {
        embedding_tokens_max: 32,
        ..Limits::default()
    };
    let embedder = MiniLmEmbedder::new(&limits);
    let head = "the deploy failed because the migration locked the jobs table";
    let long = format!("{head} {}", "and then the retries piled up ".repeat(200));
    let exactly_cap = "word ".repeat(30); // 30 tokens + [CLS] + [SEP] = 32
    let vectors = embedder
        .embed(&[&long, exactly_cap.trim(), head])
        .await
        .unwrap();
    assert_eq!(embedder.stats().texts_truncated(), 1, "only the long text");
    // The first 32 tokens carry the head: the cut text stays near it.
    assert!(cosine(&vectors[0], &vectors[2]) > 0.7);
}

#[tokio::test]
async fn empty_and_whitespace_texts_are_refused_and_odd_text_is_embedded() {
    let embedder = MiniLmEmbedder::new(&Limits::default());
    for bad in ["", "   \n\t"] {
        let err = embedder.embed(&["fine", bad]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: text 1 of the batch is empty or only whitespace: nothing to embed"
        );
    }
    // Text with no word of the vocabulary (emoji, control-free symbols)
    // tokenises to [UNK]s and still gets a normalised vector.
    let vectors = embedder.embed(&["🦀🦀🦀", "∮∯∰"]).await.unwrap();
    assert!(vectors.iter().all(|v| v.len() == MINILM_DIMS));
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn preload_loads_and_warms_the_model_without_counting_texts() {
    let embedder = MiniLmEmbedder::new(&Limits::default());
    embedder.preload().await.unwrap();
    assert!(embedder.stats().load_ms() > 0);
    assert_eq!(embedder.stats().texts_embedded(), 0);
    // Every inference permit came back: two embeds at once still run.
    let (a, b) = tokio::join!(embedder.embed(&["one"]), embedder.embed(&["two"]));
    assert_eq!((a.unwrap().len(), b.unwrap().len()), (1, 1));
    assert_eq!(embedder.stats().texts_embedded(), 2);
}
