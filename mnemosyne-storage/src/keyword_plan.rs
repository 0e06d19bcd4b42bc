//! Bounded keyword search over FTS5: term statistics decide the plan.
//!
//! Ranking every document that contains a frequent word is what makes plain
//! FTS5 slow (on 100k memories a word in most documents costs ~5 ms just for
//! BM25's IDF pass, ~200 ms at p99 to rank). So each query word is first
//! probed with a bounded read ([`PROBE_SQL`]: at most [`FREQUENT_TERM_DOCS`]
//! rowids, no scoring):
//!
//! - **rare** words (in fewer than `FREQUENT_TERM_DOCS` documents) generate
//!   candidates ranked by FTS5's BM25, at most [`candidates_max`];
//! - **frequent** words never go through FTS5's BM25. Their document count is
//!   estimated from the probe (the `FREQUENT_TERM_DOCS`-th newest match tells
//!   how densely the word occurs), which gives their BM25 IDF; a candidate
//!   holding the word gains that IDF (BM25 of one occurrence in a document of
//!   average length). They add candidates of their own only from a recency
//!   window: the newest documents, about `FREQUENT_TERM_DOCS` per word.
//!
//! So a query made only of frequent words returns the newest memories holding
//! the most informative of them, and every query reads a bounded number of
//! index entries.

use mnemosyne_core::KeywordQuery;

use crate::fts_query::match_any;
use crate::rows::{MEMORY_COLUMNS, SqlValue, push_filters};

/// Documents from which a word counts as frequent.
pub const FREQUENT_TERM_DOCS: i64 = 200;

/// Fewest keyword candidates ranked before filters apply.
pub const KEYWORD_CANDIDATES_MIN: i64 = 300;
/// Most keyword candidates ranked before filters apply.
pub const KEYWORD_CANDIDATES_MAX: i64 = 4_000;

/// Candidates ranked by BM25 before filters, for `limit` results: four per
/// result within [`KEYWORD_CANDIDATES_MIN`]..=[`KEYWORD_CANDIDATES_MAX`].
/// Filters that reject more than that many of the best matches return fewer
/// hits than asked.
pub fn candidates_max(limit: u32) -> i64 {
    (i64::from(limit) * 4).clamp(KEYWORD_CANDIDATES_MIN, KEYWORD_CANDIDATES_MAX)
}

/// Smallest score a frequent word adds, so presence still orders results
/// when a word is in nearly every document (where BM25's IDF goes to zero).
pub const FREQUENT_TERM_IDF_MIN: f64 = 0.05;

/// Probe for one quoted word (`?1`) with `?2` = [`FREQUENT_TERM_DOCS`] - 1:
/// returns the rowid of its `FREQUENT_TERM_DOCS`-th newest document and the
/// highest rowid, or no row when the word is rare.
pub const PROBE_SQL: &str = "SELECT rowid, (SELECT max(seq) FROM memories) FROM memories_fts \
     WHERE memories_fts MATCH ?1 ORDER BY rowid DESC LIMIT 1 OFFSET ?2";

/// A frequent word's recency window and estimated weight.
#[derive(Clone, Debug, PartialEq)]
pub struct FrequentTerm {
    /// Lowest rowid of its recency window.
    pub window_start: i64,
    /// Estimated BM25 IDF, at least [`FREQUENT_TERM_IDF_MIN`].
    pub idf: f64,
}

/// What a probe found out about one query word.
#[derive(Clone, Debug, PartialEq)]
pub struct TermStat {
    /// The word.
    pub term: String,
    /// `None` for a rare word.
    pub frequent: Option<FrequentTerm>,
}

impl TermStat {
    /// From the probe's row `(window_start, max_rowid)`, if it returned one.
    pub fn from_probe(term: String, row: Option<(i64, i64)>) -> Self {
        let frequent = row.map(|(window_start, max_rowid)| {
            let span = (max_rowid - window_start + 1).max(1) as f64;
            let documents = max_rowid.max(1) as f64;
            let containing = (FREQUENT_TERM_DOCS as f64 * documents / span).min(documents);
            let idf = ((documents - containing + 0.5) / (containing + 0.5)).ln();
            FrequentTerm {
                window_start,
                idf: idf.max(FREQUENT_TERM_IDF_MIN),
            }
        });
        Self { term, frequent }
    }
}

/// The probe expression for one word.
pub fn probe_expression(term: &str) -> String {
    match_any(std::slice::from_ref(&term.to_owned()))
}

/// SQL and parameters ranking the candidates of the search: rows are
/// `(seq, score)`, best first (ties: newest first), before any filter.
/// Only seqs and scores are sorted; [`candidate_rows_sql`] then loads the
/// best candidates that pass the filters, a slice at a time, so a search
/// reads about `limit` memory rows rather than one per candidate.
pub fn keyword_sql(query: &KeywordQuery, stats: &[TermStat]) -> (String, Vec<SqlValue>) {
    let rare: Vec<String> = stats
        .iter()
        .filter(|s| s.frequent.is_none())
        .map(|s| s.term.clone())
        .collect();
    let frequent: Vec<(&String, &FrequentTerm)> = stats
        .iter()
        .filter_map(|s| s.frequent.as_ref().map(|f| (&s.term, f)))
        .collect();
    let frequent_terms: Vec<String> = frequent.iter().map(|(term, _)| (*term).clone()).collect();
    let window_start = frequent.iter().map(|(_, f)| f.window_start).max();
    let mut params: Vec<SqlValue> = Vec::new();
    let bind = |params: &mut Vec<SqlValue>, value: SqlValue| {
        params.push(value);
        format!("?{}", params.len())
    };
    let mut ctes: Vec<String> = Vec::new();
    let mut sources: Vec<&str> = Vec::new();
    if !rare.is_empty() {
        let expression = bind(&mut params, match_any(&rare).into());
        let cap = bind(&mut params, candidates_max(query.limit).into());
        ctes.push(format!(
            "rare(seq, bm25) AS MATERIALIZED (SELECT rowid, -rank FROM memories_fts \
             WHERE memories_fts MATCH {expression} ORDER BY rank LIMIT {cap})"
        ));
        sources.push("SELECT seq, bm25 FROM rare");
    }
    let mut bonus_terms: Vec<String> = Vec::new();
    if let Some(start) = window_start {
        let start = bind(&mut params, start.into());
        let expression = bind(&mut params, match_any(&frequent_terms).into());
        ctes.push(format!(
            "recent(seq) AS MATERIALIZED (SELECT rowid FROM memories_fts \
             WHERE memories_fts MATCH {expression} AND rowid >= {start})"
        ));
        sources.push(if rare.is_empty() {
            "SELECT seq, 0.0 FROM recent"
        } else {
            "SELECT seq, 0.0 FROM recent WHERE seq NOT IN (SELECT seq FROM rare)"
        });
        for (index, (term, stat)) in frequent.iter().enumerate() {
            let alone = bind(&mut params, probe_expression(term).into());
            let mut present = format!(
                "SELECT rowid FROM memories_fts WHERE memories_fts MATCH {alone} AND rowid >= {start}"
            );
            if !rare.is_empty() {
                let with_rare = bind(
                    &mut params,
                    format!("({}) AND {}", match_any(&rare), probe_expression(term)).into(),
                );
                present.push_str(&format!(
                    " UNION SELECT rowid FROM memories_fts WHERE memories_fts MATCH {with_rare}"
                ));
            }
            ctes.push(format!("present_{index}(seq) AS MATERIALIZED ({present})"));
            let weight = bind(&mut params, SqlValue::Real(stat.idf));
            bonus_terms.push(format!("{weight} * (c.seq IN present_{index})"));
        }
    }
    ctes.push(format!(
        "cand(seq, bm25) AS ({})",
        sources.join(" UNION ALL ")
    ));
    let bonus: String = bonus_terms
        .iter()
        .map(|term| format!(" + {term}"))
        .collect();
    let sql = format!(
        "WITH {} SELECT c.seq, c.bm25{bonus} AS score FROM cand c ORDER BY score DESC, c.seq DESC",
        ctes.join(", ")
    );
    (sql, params)
}

/// SQL and parameters loading candidates in the order given: `?1` is a
/// JSON array of seqs; rows are the memory columns then the position in
/// that array, for the memories that pass the query's filters.
pub fn candidate_rows_sql(query: &KeywordQuery) -> (String, Vec<SqlValue>) {
    let mut params = vec![SqlValue::Null];
    // CROSS JOIN fixes the join order: walk the given seqs and look each
    // memory up, never scan memories by a namespace index.
    let mut sql = format!(
        "SELECT {MEMORY_COLUMNS}, j.key FROM json_each(?1) j \
         CROSS JOIN memories m ON m.seq = j.value WHERE 1 = 1"
    );
    push_filters(
        &mut sql,
        &mut params,
        &query.namespaces,
        &query.tags,
        query.include_archived,
        query.min_importance,
    );
    (sql, params)
}

/// The next slice of ranked candidates to load, given how many were
/// loaded (`taken`) and how many more hits are wanted: all of them first
/// (nothing filtered out is the common case), then four times as many
/// each round, so a filter that rejects most candidates costs a few
/// statements, never one per candidate.
pub fn next_chunk(taken: usize, wanted: usize) -> usize {
    wanted.max(taken.saturating_mul(3)).max(1)
}

/// A JSON array of the seqs, for `json_each`.
pub fn seqs_json(seqs: &[(i64, f64)]) -> String {
    let mut json = String::with_capacity(seqs.len() * 8 + 2);
    json.push('[');
    for (i, (seq, _)) in seqs.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&seq.to_string());
    }
    json.push(']');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> KeywordQuery {
        KeywordQuery {
            text: String::new(),
            namespaces: Vec::new(),
            tags: Vec::new(),
            limit: 10,
            include_archived: false,
            min_importance: None,
        }
    }

    fn stat(term: &str, window_start: Option<i64>) -> TermStat {
        TermStat {
            term: term.into(),
            frequent: window_start.map(|w| FrequentTerm {
                window_start: w,
                idf: 1.5,
            }),
        }
    }

    #[test]
    fn probe_density_estimates_idf() {
        // The FREQUENT_TERM_DOCS-th newest match sits 100 * FREQUENT_TERM_DOCS
        // rows back in 100 000: the word is in about 1% of the documents.
        let start = 100_000 - 100 * FREQUENT_TERM_DOCS + 1;
        let stat = TermStat::from_probe("w".into(), Some((start, 100_000)));
        let idf = stat.frequent.unwrap().idf;
        let expected = ((100_000.0 - 1_000.0 + 0.5) / 1_000.5f64).ln();
        assert!(idf > 4.0);
        assert!((idf - expected).abs() < 0.01, "{idf} vs {expected}");
        // A word in every document still adds a little.
        let everywhere = TermStat::from_probe(
            "w".into(),
            Some((100_000 - FREQUENT_TERM_DOCS + 1, 100_000)),
        );
        assert_eq!(everywhere.frequent.unwrap().idf, FREQUENT_TERM_IDF_MIN);
        assert!(TermStat::from_probe("w".into(), None).frequent.is_none());
    }

    #[test]
    fn candidates_scale_with_the_limit_within_bounds() {
        assert_eq!(candidates_max(10), KEYWORD_CANDIDATES_MIN);
        assert_eq!(candidates_max(100), 400);
        assert_eq!(candidates_max(1_000), KEYWORD_CANDIDATES_MAX);
    }

    #[test]
    fn rare_words_only_rank_by_bm25_without_a_window() {
        let (sql, params) = keyword_sql(&query(), &[stat("lease", None), stat("reaper", None)]);
        assert!(sql.contains("rare(seq"));
        assert!(!sql.contains("recent("));
        assert_eq!(params[0], SqlValue::Text("\"lease\" OR \"reaper\"".into()));
    }

    #[test]
    fn frequent_words_never_reach_bm25() {
        let (sql, params) = keyword_sql(&query(), &[stat("the", Some(90)), stat("reaper", None)]);
        let rare_expression = &params[0];
        assert_eq!(*rare_expression, SqlValue::Text("\"reaper\"".into()));
        assert!(sql.contains("rowid >= ?3"), "{sql}");
        assert!(params.contains(&SqlValue::Text("(\"reaper\") AND \"the\"".into())));
        let (sql, _) = keyword_sql(&query(), &[stat("the", Some(90))]);
        assert!(!sql.contains("rank"), "{sql}");
    }

    #[test]
    fn the_window_is_the_tightest_of_the_frequent_words() {
        let (_, params) = keyword_sql(&query(), &[stat("a", Some(10)), stat("b", Some(70))]);
        assert_eq!(params[0], SqlValue::Int(70));
    }
}
