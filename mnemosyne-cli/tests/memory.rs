//! remember, recall, get, update, forget, link, list, count through the real binary.

mod common;

use common::{Sandbox, parse_json};

#[test]
fn remember_then_recall_finds_it_as_text_and_json() {
    let sandbox = Sandbox::new();
    let id = sandbox.remember(&[
        "tokio runtime panics when you block inside async code",
        "--namespace",
        "project:atlas",
        "--importance",
        "8",
        "--type",
        "bugfix",
        "--tag",
        "Rust",
        "--tag",
        "async,tokio",
        "--summary",
        "do not block in async",
    ]);
    assert_eq!(id.len(), 36, "prints the id: {id}");
    sandbox.remember(&["an unrelated note about gardening"]);

    let text = sandbox.ok(&["recall", "blocking tokio"]);
    assert!(text.starts_with("#1  score "), "{text}");
    assert!(text.contains(&id), "{text}");
    assert!(
        text.contains("project:atlas  importance 8  bugfix  tags: async, rust, tokio"),
        "{text}"
    );
    assert!(text.contains("tokio runtime panics"), "{text}");
    assert!(!text.contains("gardening"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("1 result, all that matched"),
        "{text}"
    );

    let recall = sandbox.json(&["recall", "tokio", "--namespace", "session:atlas/s1"]);
    assert_eq!(recall["truncated"], false);
    assert_eq!(recall["limit"], 100);
    let hits = recall["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{recall}");
    let memory = &hits[0]["memory"];
    assert_eq!(memory["id"], id.as_str());
    assert_eq!(memory["namespace"], "project:atlas");
    assert_eq!(memory["importance"], 8);
    assert_eq!(memory["memory_type"], "bugfix");
    assert_eq!(memory["summary"], "do not block in async");
    assert_eq!(
        memory["tags"],
        serde_json::json!(["async", "rust", "tokio"])
    );
    assert_eq!(memory["archived"], false);
    assert!(hits[0]["score"].is_number());
    assert_eq!(hits[0]["signals"]["keyword_rank"], 1);

    // A namespace that does not see project:atlas finds nothing.
    let recall = sandbox.json(&["recall", "tokio", "--namespace", "project:other"]);
    assert_eq!(recall["hits"].as_array().unwrap().len(), 0);
    let text = sandbox.ok(&["recall", "tokio", "--namespace", "project:other"]);
    assert_eq!(text.trim(), "no memories matched");
}

#[test]
fn remember_with_json_prints_the_memory() {
    let sandbox = Sandbox::new();
    let memory = sandbox.json(&["remember", "json shape", "--tag", "b,a"]);
    for field in [
        "id",
        "namespace",
        "content",
        "summary",
        "memory_type",
        "importance",
        "tags",
        "links",
        "created_at",
        "updated_at",
        "accessed_at",
        "access_count",
        "archived",
    ] {
        assert!(memory.get(field).is_some(), "missing {field}: {memory}");
    }
    assert_eq!(memory["namespace"], "global");
    assert_eq!(memory["importance"], 5);
    assert_eq!(memory["memory_type"], "note");
    assert_eq!(memory["tags"], serde_json::json!(["a", "b"]));
    let got = sandbox.json(&["get", memory["id"].as_str().unwrap()]);
    assert_eq!(got["content"], "json shape");
    assert_eq!(got["access_count"], 1);
}

#[test]
fn recall_says_when_it_truncated_at_the_limit() {
    let sandbox = Sandbox::new();
    for i in 0..3 {
        sandbox.remember(&[&format!("cache eviction note {i}")]);
    }
    let recall = sandbox.json(&["recall", "cache", "--limit", "2"]);
    assert_eq!(recall["hits"].as_array().unwrap().len(), 2);
    assert_eq!(recall["truncated"], true);
    assert_eq!(recall["limit"], 2);
    let text = sandbox.ok(&["recall", "cache", "--limit", "2"]);
    assert_eq!(
        text.lines().last(),
        Some("2 results, truncated at the limit of 2: more memories matched"),
        "{text}"
    );
    assert!(text.contains("#2  score"), "{text}");
    assert!(!text.lines().any(|line| line.starts_with("#3 ")), "{text}");
    assert!(
        text.contains("why: keyword #"),
        "each hit says which signals found it: {text}"
    );
}

#[test]
fn recall_preview_is_one_cut_line() {
    let sandbox = Sandbox::new();
    let long = format!("needle {}", "word ".repeat(100));
    sandbox.remember(&[&format!("{long}\nsecond line")]);
    let output = sandbox.run_with(&["recall", "needle"], &[("COLUMNS", "60")]);
    let text = common::ok(output, &["recall"]);
    let preview = text.lines().nth(2).unwrap();
    assert!(preview.ends_with('…'), "{preview:?}");
    assert_eq!(preview.chars().count(), 60, "{preview:?}");
    assert!(!text.contains("second line"), "{text}");
}

#[test]
fn content_can_come_from_stdin() {
    let sandbox = Sandbox::new();
    let output = sandbox.run_stdin(&["remember", "-", "--json"], b"piped in\nline two\n");
    let memory = parse_json(&common::ok(output, &["remember", "-"]));
    assert_eq!(memory["content"], "piped in\nline two");
    let output = sandbox.run_stdin(&["remember", "-"], b"");
    let line = common::fail(output, &["remember", "-"]);
    assert!(line.contains("content is empty"), "{line}");
    assert_eq!(sandbox.count(), 1);
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    let sandbox = Sandbox::new();
    let id = sandbox.remember(&["the only memory", "--tag", "keep"]);
    let unknown = common::id(42);
    let before = sandbox.dump();
    let too_long = "x".repeat(64 * 1024 + 1);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["remember", "x", "--importance", "0"],
            "importance must be between 1 and 10",
        ),
        (
            vec!["remember", "x", "--importance", "11"],
            "importance must be between 1 and 10",
        ),
        (
            vec!["remember", "x", "--importance", "high"],
            "importance must be a whole number",
        ),
        (vec!["remember", ""], "content is empty"),
        (vec!["remember", "  \n "], "content is empty"),
        (vec!["remember", &too_long], "memory_content_bytes_max"),
        (
            vec!["remember", "x", "--namespace", "project:"],
            "malformed namespace",
        ),
        (
            vec!["remember", "x", "--namespace", "team:x"],
            "malformed namespace",
        ),
        (
            vec!["remember", "x", "--type", "wisdom"],
            "unknown memory type \"wisdom\"",
        ),
        (
            vec!["remember", "x", "--tag", "has space"],
            "must not contain whitespace",
        ),
        (
            vec!["remember", "x", "--link", &unknown],
            "memory not found",
        ),
        (vec!["remember", "x", "--link", "nope"], "not a memory id"),
        (
            vec![
                "remember",
                "x",
                "--link",
                "01900000-0000-7000-8000-000000000001:likes",
            ],
            "unknown link type",
        ),
        (vec!["get", "nope"], "not a memory id"),
        (vec!["get", &unknown], "memory not found"),
        (
            vec!["update", &unknown, "--importance", "3"],
            "memory not found",
        ),
        (
            vec!["update", &id, "--importance", "0"],
            "importance must be between 1 and 10",
        ),
        (vec!["update", &id, "--content", ""], "content is empty"),
        (
            vec!["update", &id, "--type", "wisdom"],
            "unknown memory type",
        ),
        (
            vec!["update", &id, "--namespace", "session:x"],
            "malformed namespace",
        ),
        (vec!["update", &id], "nothing to update"),
        (vec!["forget", &unknown], "memory not found"),
        (vec!["forget", &unknown, "--hard"], "memory not found"),
        (vec!["forget", "1234"], "not a memory id"),
        (vec!["link", &id, &unknown], "memory not found"),
        (vec!["link", &id, &id], "cannot link to itself"),
        (
            vec!["link", &id, &unknown, "--type", "likes"],
            "unknown link type",
        ),
        (vec!["list", "--limit", "0"], "limit must be between 1 and"),
        (vec!["list", "--limit", "1001"], "list_page_rows_max"),
        (vec!["recall", "!!!"], "no words"),
        (
            vec!["recall", "x", "--limit", "0"],
            "limit must be at least 1",
        ),
    ];
    for (args, expected) in cases {
        let line = sandbox.fail(&args);
        assert!(
            line.contains(expected),
            "{args:?}: want {expected:?} in {line:?}"
        );
        assert_eq!(sandbox.dump(), before, "{args:?} changed the database");
    }
    assert_eq!(sandbox.count(), 1);
}

#[test]
fn bad_input_does_not_create_the_database() {
    let sandbox = Sandbox::new();
    sandbox.fail(&["remember", "x", "--importance", "11"]);
    sandbox.fail(&["remember", ""]);
    sandbox.fail(&["update", &common::id(1)]);
    assert!(
        !sandbox.db.exists(),
        "a refused command created the database"
    );
}

#[test]
fn forget_archives_by_default_and_hard_deletes() {
    let sandbox = Sandbox::new();
    let id = sandbox.remember(&["archived knowledge about quokkas"]);
    let status = sandbox.json(&["forget", &id]);
    assert_eq!(status, serde_json::json!({"id": id, "status": "archived"}));

    let recall = sandbox.json(&["recall", "quokkas"]);
    assert_eq!(recall["hits"].as_array().unwrap().len(), 0);
    let list = sandbox.json(&["list"]);
    assert_eq!(list, serde_json::json!({"memories": []}));
    let got = sandbox.json(&["get", &id]);
    assert_eq!(got["archived"], true);
    let recall = sandbox.json(&["recall", "quokkas", "--include-archived"]);
    assert_eq!(recall["hits"].as_array().unwrap().len(), 1);
    let list = sandbox.json(&["list", "--include-archived"]);
    assert_eq!(list["memories"].as_array().unwrap().len(), 1);
    assert_eq!(sandbox.json(&["count"])["count"], 0);
    assert_eq!(sandbox.count(), 1);

    let restored = sandbox.json(&["update", &id, "--restore"]);
    assert_eq!(restored["archived"], false);
    assert_eq!(sandbox.json(&["count"])["count"], 1);

    let status = sandbox.json(&["forget", &id, "--hard"]);
    assert_eq!(status, serde_json::json!({"id": id, "status": "deleted"}));
    let line = sandbox.fail(&["get", &id]);
    assert_eq!(line, format!("error: memory not found: {id}"));
    assert_eq!(sandbox.count(), 0);
}

#[test]
fn update_changes_only_the_given_fields() {
    let sandbox = Sandbox::new();
    let id = sandbox.remember(&["first text", "--tag", "a,b", "--summary", "sum", "-i", "4"]);
    let updated = sandbox.json(&["update", &id, "--importance", "9", "--tag", "c"]);
    assert_eq!(updated["importance"], 9);
    assert_eq!(updated["tags"], serde_json::json!(["c"]));
    assert_eq!(updated["content"], "first text");
    assert_eq!(updated["summary"], "sum");
    let updated = sandbox.json(&[
        "update",
        &id,
        "--clear-summary",
        "--clear-tags",
        "--type",
        "decision",
        "--namespace",
        "project:p",
    ]);
    assert_eq!(updated["summary"], serde_json::Value::Null);
    assert_eq!(updated["tags"], serde_json::json!([]));
    assert_eq!(updated["memory_type"], "decision");
    assert_eq!(updated["namespace"], "project:p");
    let output = sandbox.run_stdin(&["update", &id, "--content", "-"], b"from stdin\n");
    assert_eq!(
        common::ok(output, &["update"]).trim(),
        format!("updated {id}")
    );
    assert_eq!(sandbox.json(&["get", &id])["content"], "from stdin");
    let line = sandbox.fail(&["update", &id, "--summary", "s", "--clear-summary"]);
    assert!(line.contains("cannot be used with"), "{line}");
}

#[test]
fn link_connects_two_memories() {
    let sandbox = Sandbox::new();
    let a = sandbox.remember(&["first"]);
    let b = sandbox.remember(&["second", "--link", &format!("{a}:fixes")]);
    assert_eq!(
        sandbox.json(&["get", &b])["links"],
        serde_json::json!([{"target": a, "link_type": "fixes"}])
    );
    let status = sandbox.json(&["link", &a, &b, "--type", "depends_on"]);
    assert_eq!(
        status,
        serde_json::json!({"id": a, "status": "linked", "target": b, "link_type": "depends_on"})
    );
    let text = sandbox.ok(&["link", &a, &b]);
    assert_eq!(text.trim(), format!("linked {a} -> {b} (relates_to)"));
    let links = sandbox.json(&["get", &a])["links"].clone();
    assert_eq!(links.as_array().unwrap().len(), 2, "{links}");
    let text = sandbox.ok(&["get", &a]);
    assert!(
        text.contains(&format!("link        depends_on -> {b}")),
        "{text}"
    );
}

#[test]
fn list_filters_sorts_and_pages() {
    let sandbox = Sandbox::new();
    let low = sandbox.remember(&["low", "-i", "2", "-n", "project:a", "--tag", "t"]);
    let high = sandbox.remember(&["high", "-i", "9", "-n", "project:a"]);
    let other = sandbox.remember(&["other", "-i", "5", "-n", "project:b", "--tag", "t"]);
    let ids = |value: serde_json::Value| -> Vec<String> {
        value["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(sandbox.json(&["list"])), [&*other, &*high, &*low]);
    assert_eq!(
        ids(sandbox.json(&["list", "--sort", "importance"])),
        [&*high, &*other, &*low]
    );
    assert_eq!(
        ids(sandbox.json(&["list", "-n", "project:a"])),
        [&*high, &*low]
    );
    assert_eq!(ids(sandbox.json(&["list", "--tag", "T"])), [&*other, &*low]);
    assert_eq!(
        ids(sandbox.json(&["list", "--limit", "1", "--offset", "1"])),
        [&*high]
    );
    let text = sandbox.ok(&["list", "--limit", "2"]);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(
        text.lines().last(),
        Some("2 memories shown; there may be more: --offset 2")
    );
    let text = sandbox.ok(&["list", "-n", "project:b"]);
    assert!(
        text.starts_with(&format!("{other}  project:b  imp 5  other")),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 memory shown"));
    assert_eq!(sandbox.ok(&["count"]).trim(), "3");
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let sandbox = Sandbox::new();
    for args in [
        vec!["remember"],
        vec!["frobnicate"],
        vec!["list", "--sort", "random"],
        vec!["import", "x", "--on-conflict", "merge"],
    ] {
        let output = sandbox.run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        common::fail(output, &args);
    }
    let output = sandbox.run(&["remember", "x", "-i", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let output = sandbox.run(&["get", &common::id(1)]);
    assert_eq!(output.status.code(), Some(1));
    let help = sandbox.ok(&["--help"]);
    assert!(help.contains("remember"), "{help}");
}

#[test]
fn logs_go_to_stderr_and_data_to_stdout() {
    let sandbox = Sandbox::new();
    sandbox.remember(&["x"]);
    let output = sandbox.run(&["count", "--json", "-vv"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let value = parse_json(&common::ok(output, &["count"]));
    assert_eq!(value["count"], 1);
    assert!(stderr.contains("opening the database"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours when stderr is not a terminal: {stderr:?}"
    );
    let output = sandbox.run(&["count"]);
    assert!(
        output.stderr.is_empty(),
        "quiet by default: {:?}",
        output.stderr
    );
}

#[test]
fn context_prints_a_memory_with_its_linked_neighbourhood() {
    let sandbox = Sandbox::new();
    let centre = sandbox.remember(&["use WAL mode", "-t", "decision", "-i", "8"]);
    let fix = sandbox.remember(&[
        "readers blocked the writer",
        "-i",
        "6",
        "--link",
        &format!("{centre}:fixes"),
    ]);
    let far = sandbox.remember(&[
        "checkpoint starvation",
        "-i",
        "2",
        "--link",
        &format!("{fix}:relates_to"),
    ]);

    let json = sandbox.json(&["context", &centre]);
    assert_eq!(json["memory"]["id"], centre.as_str());
    assert_eq!(json["memory"]["access_count"], 1, "read like get");
    assert_eq!(json["neighbours"][0]["memory"]["id"], fix.as_str());
    assert_eq!(json["neighbours"][1]["memory"]["id"], far.as_str());
    assert_eq!(json["neighbours"][1]["hop"], 2);
    assert_eq!(
        json["edges"][0],
        serde_json::json!({"source": fix, "target": centre, "link_type": "fixes",
                           "from": centre, "direction": "incoming", "hop": 1})
    );
    assert_eq!(json["truncated"], false);

    let text = sandbox.ok(&["context", &centre, "--hops", "1"]);
    assert!(
        text.starts_with(&format!("{centre}  global  importance 8  decision\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "hop 1  {fix}  global  importance 6  note  via {centre}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  {fix} -[fixes]-> {centre}  (hop 1, incoming from {centre})"
        )),
        "{text}"
    );
    assert!(!text.contains(&far), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("1 linked memory within 1 hop (fan-out 8, limit 50)")
    );
    let text = sandbox.ok(&["context", &centre, "--limit", "2"]);
    assert!(
        text.trim_end()
            .ends_with("; truncated: more were within reach"),
        "{text}"
    );

    let line = sandbox.fail(&["context", &centre, "--hops", "3"]);
    assert_eq!(
        line,
        "error: invalid input: hops must be between 0 and 2 (context_hops_max), got 3"
    );
    let line = sandbox.fail(&["context", &centre, "--fan-out", "9"]);
    assert!(line.contains("context_fan_out_max"), "{line}");
    let line = sandbox.fail(&["context", "01900000-0000-7000-8000-000000000000"]);
    assert!(line.contains("not found"), "{line}");
    // A larger limit in the configuration lets a request ask for more.
    let args = ["context", centre.as_str(), "--hops", "3"];
    let text = common::ok(
        sandbox.run_with(&args, &[("MNEMOSYNE_CONTEXT_HOPS_MAX", "3")]),
        &args,
    );
    assert!(text.contains(&far), "{text}");
}

#[test]
fn min_importance_filters_list_and_recall() {
    let sandbox = Sandbox::new();
    let low = sandbox.remember(&["deploy checklist for staging", "-i", "3"]);
    let high = sandbox.remember(&["deploy checklist for production", "-i", "7"]);
    let ids = |value: serde_json::Value, key: &str| -> Vec<String> {
        value[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let memory = if key == "hits" { &m["memory"] } else { m };
                memory["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(
        ids(sandbox.json(&["list", "--min-importance", "7"]), "memories"),
        [&*high]
    );
    assert_eq!(
        ids(sandbox.json(&["list", "--min-importance", "3"]), "memories").len(),
        2
    );
    assert!(ids(sandbox.json(&["list", "--min-importance", "8"]), "memories").is_empty());
    assert_eq!(
        ids(
            sandbox.json(&["recall", "deploy checklist", "--min-importance", "4"]),
            "hits"
        ),
        [&*high]
    );
    assert!(ids(sandbox.json(&["recall", "deploy checklist"]), "hits").contains(&low));
    for bad in ["0", "11", "x"] {
        let output = sandbox.run(&["list", "--min-importance", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("importance must be"), "{bad}: {stderr}");
    }
}
