//! Bounded keyword search over FTS5: term statistics decide the plan.
//!
//! Ranking every document that contains a frequent word is what makes plain
//! FTS5 slow (on 100k memories a word in most documents costs ~5 ms just for
//! BM25's IDF pass, ~180 ms at p99 to rank). So each query word is first
//! probed with a bounded read ([`PROBE_SQL`], at most
//! [`FREQUENT_TERM_DOCS`] rowids, no scoring):
//!
//! - **rare** words (in fewer than `FREQUENT_TERM_DOCS` documents) generate
//!   candidates ranked by BM25, at most [`KEYWORD_CANDIDATES_MAX`];
//! - **frequent** words never go through BM25. They add
//!   [`FREQUENT_TERM_BONUS`] per word present to candidates found by rare
//!   words, and contribute candidates of their own only from a recency window:
//!   the newest documents, up to `FREQUENT_TERM_DOCS` per frequent word.
//!
//! So a query made only of frequent words returns the newest memories holding
//! the most of them, and every query reads a bounded number of index entries.

use mnemosyne_core::KeywordQuery;

use crate::fts_query::match_any;
use crate::rows::{MEMORY_COLUMNS, SqlValue, push_filters};

/// Documents above which a word counts as frequent.
pub const FREQUENT_TERM_DOCS: i64 = 500;

/// Candidates ranked by BM25 before filters apply. Filters that reject more
/// than this many of the best matches can return fewer hits than asked.
pub const KEYWORD_CANDIDATES_MAX: i64 = 2_000;

/// Score added per frequent query word present in a result: about what BM25
/// gives one occurrence of a word found in a quarter of all documents.
pub const FREQUENT_TERM_BONUS: f64 = 1.0;

/// Probe for one quoted word (`?1`) with `?2` = [`FREQUENT_TERM_DOCS`] - 1:
/// returns the rowid of its `FREQUENT_TERM_DOCS`-th newest document, or no
/// row when the word is rare.
pub const PROBE_SQL: &str = "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?1 \
     ORDER BY rowid DESC LIMIT 1 OFFSET ?2";

/// What a probe found out about one query word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermStat {
    /// The word.
    pub term: String,
    /// For a frequent word: the lowest rowid of its recency window.
    pub window_start: Option<i64>,
}

/// The probe expression for one word.
pub fn probe_expression(term: &str) -> String {
    match_any(std::slice::from_ref(&term.to_owned()))
}

/// SQL and parameters of the search; rows are the memory columns then the score.
pub fn keyword_sql(query: &KeywordQuery, stats: &[TermStat]) -> (String, Vec<SqlValue>) {
    let rare: Vec<String> =
        stats.iter().filter(|s| s.window_start.is_none()).map(|s| s.term.clone()).collect();
    let frequent: Vec<String> =
        stats.iter().filter(|s| s.window_start.is_some()).map(|s| s.term.clone()).collect();
    let window_start = stats.iter().filter_map(|s| s.window_start).max();
    let mut params: Vec<SqlValue> = Vec::new();
    let bind = |params: &mut Vec<SqlValue>, value: SqlValue| {
        params.push(value);
        format!("?{}", params.len())
    };
    let mut ctes: Vec<String> = Vec::new();
    let mut sources: Vec<&str> = Vec::new();
    if !rare.is_empty() {
        let expression = bind(&mut params, match_any(&rare).into());
        let cap = bind(&mut params, KEYWORD_CANDIDATES_MAX.into());
        ctes.push(format!(
            "rare(seq, bm25) AS MATERIALIZED (SELECT rowid, -rank FROM memories_fts \
             WHERE memories_fts MATCH {expression} ORDER BY rank LIMIT {cap})"
        ));
        sources.push("SELECT seq, bm25 FROM rare");
    }
    let mut bonus_terms: Vec<String> = Vec::new();
    if let Some(start) = window_start {
        let start = bind(&mut params, start.into());
        let expression = bind(&mut params, match_any(&frequent).into());
        ctes.push(format!(
            "recent(seq) AS MATERIALIZED (SELECT rowid FROM memories_fts \
             WHERE memories_fts MATCH {expression} AND rowid >= {start})"
        ));
        sources.push(if rare.is_empty() {
            "SELECT seq, 0.0 FROM recent"
        } else {
            "SELECT seq, 0.0 FROM recent WHERE seq NOT IN (SELECT seq FROM rare)"
        });
        for (index, term) in frequent.iter().enumerate() {
            let alone = bind(&mut params, probe_expression(term).into());
            let mut present = format!(
                "SELECT rowid FROM memories_fts WHERE memories_fts MATCH {alone} AND rowid >= {start}"
            );
            if !rare.is_empty() {
                let with_rare =
                    bind(&mut params, format!("({}) AND {}", match_any(&rare), probe_expression(term)).into());
                present.push_str(&format!(
                    " UNION SELECT rowid FROM memories_fts WHERE memories_fts MATCH {with_rare}"
                ));
            }
            ctes.push(format!("present_{index}(seq) AS MATERIALIZED ({present})"));
            bonus_terms.push(format!("(c.seq IN present_{index})"));
        }
    }
    ctes.push(format!("cand(seq, bm25) AS ({})", sources.join(" UNION ALL ")));
    let bonus = if bonus_terms.is_empty() {
        String::new()
    } else {
        let weight = bind(&mut params, SqlValue::Real(FREQUENT_TERM_BONUS));
        format!(" + {weight} * ({})", bonus_terms.join(" + "))
    };
    let mut sql = format!(
        "WITH {} SELECT {MEMORY_COLUMNS}, c.bm25{bonus} AS score \
         FROM cand c JOIN memories m ON m.seq = c.seq WHERE 1 = 1",
        ctes.join(", ")
    );
    push_filters(&mut sql, &mut params, &query.namespaces, &query.tags, query.include_archived);
    let limit = bind(&mut params, i64::from(query.limit).into());
    sql.push_str(&format!(" ORDER BY score DESC, m.seq DESC LIMIT {limit}"));
    (sql, params)
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
        }
    }

    fn stat(term: &str, window_start: Option<i64>) -> TermStat {
        TermStat { term: term.into(), window_start }
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
