//! Turns user text into a safe FTS5 `MATCH` expression.
//!
//! User text never reaches `MATCH` raw: it is split into words (letters and
//! digits), each word becomes a double-quoted string, and the strings are
//! joined with `OR`. Operators, column filters, `*`, `NEAR`, quotes and
//! parentheses in the input are just separators.

/// Words kept from one query; more are dropped (bounded work per query).
pub const QUERY_TERMS_MAX: usize = 16;

/// The distinct lower-cased words of `text`, at most [`QUERY_TERMS_MAX`].
pub fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word = word.to_lowercase();
        if !terms.contains(&word) {
            terms.push(word);
            if terms.len() == QUERY_TERMS_MAX {
                break;
            }
        }
    }
    terms
}

/// `"a" OR "b"` for the given terms (which hold only letters and digits).
pub fn match_any(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_quotes_are_only_separators() {
        let terms = query_terms("\"foo* OR bar) NEAR( col:baz ^x -y AND");
        assert_eq!(
            terms,
            ["foo", "or", "bar", "near", "col", "baz", "x", "y", "and"]
        );
        assert_eq!(match_any(&terms[..2]), "\"foo\" OR \"or\"");
    }

    #[test]
    fn terms_are_lowercased_deduplicated_and_bounded() {
        assert_eq!(query_terms("Tokio tokio TOKIO über"), ["tokio", "über"]);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_terms(&many).len(), QUERY_TERMS_MAX);
        assert!(query_terms("!!! ... ()").is_empty());
    }
}
