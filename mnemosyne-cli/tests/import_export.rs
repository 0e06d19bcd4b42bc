//! export and import through the real binary.

mod common;

use common::{Sandbox, id, memory_line, parse_json, unreachable_http_embedder, write_lines};

#[test]
fn import_with_a_bad_line_reports_it_and_imports_nothing() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("bad.jsonl");
    let cases: Vec<(String, &str)> = vec![
        ("{\"id\": ".to_owned(), "line 4: EOF while parsing"),
        ("garbage".to_owned(), "line 4: expected value"),
        (
            memory_line(4, "   "),
            "line 4: invalid input: content is empty",
        ),
        (
            memory_line(4, &"x".repeat(64 * 1024 + 1)),
            "line 4: invalid input: content is 65537 bytes",
        ),
        (
            memory_line(4, "ok").replace("project:import", "team:x"),
            "line 4: invalid input: malformed namespace",
        ),
        (
            memory_line(4, "ok").replace("\"content\"", "\"importance\":11,\"content\""),
            "line 4: invalid input: importance must be between 1 and 10",
        ),
        (
            memory_line(4, "ok").replace(&id(4), "not-an-id"),
            "line 4: ",
        ),
        (
            r#"{"content": "no id"}"#.to_owned(),
            "line 4: missing field `id`",
        ),
    ];
    for (bad, expected) in cases {
        // Line 3 is blank: blank lines are skipped but still counted.
        let lines = vec![
            memory_line(1, "one"),
            memory_line(2, "two"),
            String::new(),
            bad,
            memory_line(5, "five"),
        ];
        write_lines(&file, &lines);
        let line = sandbox.fail(&["import", file.to_str().unwrap()]);
        assert!(line.contains(expected), "want {expected:?} in {line:?}");
        assert!(
            !sandbox.db.exists(),
            "a refused import created the database"
        );
    }
    // The database exists and is still unchanged when the import is refused.
    sandbox.remember(&["already here"]);
    let before = sandbox.dump();
    let line = sandbox.fail(&["import", file.to_str().unwrap()]);
    assert!(line.starts_with("error: line 4: "), "{line}");
    assert_eq!(sandbox.dump(), before);
    assert_eq!(sandbox.count(), 1);
    let line = sandbox.fail(&["import", sandbox.path("missing.jsonl").to_str().unwrap()]);
    assert!(line.contains("missing.jsonl"), "{line}");
}

#[test]
fn export_then_import_round_trips_ids_links_and_tags() {
    let source = Sandbox::new();
    let a = source.remember(&[
        "alpha",
        "--tag",
        "x,y",
        "-n",
        "project:p",
        "-i",
        "9",
        "-t",
        "decision",
    ]);
    let b = source.remember(&["beta", "--link", &format!("{a}:fixes"), "--summary", "b"]);
    let c = source.remember(&["gamma\nwith two lines \"quoted\" and ünïcode"]);
    source.ok(&["link", &a, &c, "--type", "part_of"]);
    source.ok(&["forget", &c]);
    let file = source.path("export.jsonl");
    let report = source.json(&["export", "--include-archived", "-o", file.to_str().unwrap()]);
    assert_eq!(report["exported"], 3);
    assert_eq!(report["include_archived"], true);
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported.lines().count(), 3);
    for line in exported.lines() {
        parse_json(line);
    }
    let leftovers: Vec<_> = std::fs::read_dir(source.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Without --include-archived the archived memory stays out.
    let active = source.ok(&["export"]);
    let active_ids: Vec<String> = active
        .lines()
        .map(|line| parse_json(line)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(active_ids, [&*a, &*b]);

    let target = Sandbox::new();
    let report = target.json(&["import", file.to_str().unwrap()]);
    assert_eq!(
        report,
        serde_json::json!({
            "file": file.to_str().unwrap(),
            "memories": 3,
            "inserted": 3,
            "skipped": 0,
            "links_added": 2,
            "links_missing": 0,
            "links_over_limit": 0,
            "embedded": 3,
            "complete": true,
        })
    );
    let diagnostics = target.json(&["diagnostics"]);
    let missing = diagnostics["snapshot"]["gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "mnemosyne_embeddings_missing")
        .expect("diagnostics counts the memories missing a vector");
    assert_eq!(
        missing["value"], 0,
        "import made every vector: {diagnostics}"
    );
    assert_eq!(
        target.dump(),
        exported,
        "the import is exactly what was exported"
    );
    let got = target.json(&["get", &b]);
    assert_eq!(
        got["links"],
        serde_json::json!([{"target": a, "link_type": "fixes"}])
    );
    assert_eq!(
        target.json(&["get", &a])["tags"],
        serde_json::json!(["x", "y"])
    );
    assert_eq!(target.json(&["get", &c])["archived"], true);
    let recall = target.json(&["recall", "alpha"]);
    assert_eq!(recall["hits"][0]["memory"]["id"], a.as_str());
}

#[test]
fn export_pages_through_everything_by_id() {
    let sandbox = Sandbox::new();
    let mut ids: Vec<String> = (0..7)
        .map(|i| sandbox.remember(&[&format!("memory {i}")]))
        .collect();
    ids.sort();
    let output = sandbox.run_with(&["export"], &[("MNEMOSYNE_LIST_PAGE_ROWS_MAX", "3")]);
    let text = common::ok(output, &["export"]);
    let exported: Vec<String> = text
        .lines()
        .map(|line| parse_json(line)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exported, ids);
}

#[test]
fn import_on_conflict_fail_says_how_far_it_got_and_skip_skips() {
    let sandbox = Sandbox::new();
    let lines: Vec<String> = (1..=5)
        .map(|n| memory_line(n, &format!("memory {n}")))
        .collect();
    let file = sandbox.path("five.jsonl");
    write_lines(&file, &lines);
    let third = sandbox.path("third.jsonl");
    write_lines(&third, &lines[2..3]);
    let report = sandbox.json(&["import", third.to_str().unwrap()]);
    assert_eq!(report["inserted"], 1);

    let batch_of_two = [("MNEMOSYNE_IMPORT_BATCH_ROWS", "2")];
    let args = ["import", file.to_str().unwrap(), "--on-conflict", "fail"];
    let output = sandbox.run_with(&args, &batch_of_two);
    let line = common::fail(output, &args);
    assert_eq!(
        line,
        format!(
            "error: imported 2 memories (lines 1..=2); stopped at the batch starting at line 3: memory already exists: {}",
            id(3)
        )
    );
    assert_eq!(sandbox.count(), 3, "batch 1 stays, batch 2 rolled back");

    let args = [
        "import",
        file.to_str().unwrap(),
        "--on-conflict",
        "fail",
        "--json",
    ];
    let output = sandbox.run_with(&args, &batch_of_two);
    assert!(!output.status.success());
    let report = parse_json(&String::from_utf8(output.stdout.clone()).unwrap());
    assert_eq!(report["complete"], false);
    assert_eq!(report["stopped_at_line"], 1);
    assert_eq!(report["inserted"], 0);
    common::fail(output, &args);

    let report = parse_json(&common::ok(
        sandbox.run_with(&["import", file.to_str().unwrap(), "--json"], &batch_of_two),
        &["import"],
    ));
    assert_eq!(report["inserted"], 2);
    assert_eq!(report["skipped"], 3);
    assert_eq!(sandbox.count(), 5);

    let text = sandbox.ok(&["import", file.to_str().unwrap(), "--on-conflict", "skip"]);
    assert!(text.contains("inserted       0"), "{text}");
    assert!(text.contains("skipped        5"), "{text}");
    assert_eq!(sandbox.count(), 5);
}

#[test]
fn import_counts_links_to_missing_memories() {
    let sandbox = Sandbox::new();
    let mut line: serde_json::Value = parse_json(&memory_line(1, "linked"));
    line["links"] = serde_json::json!([
        {"target": id(2), "link_type": "depends_on"},
        {"target": id(99)},
    ]);
    let file = sandbox.path("links.jsonl");
    write_lines(&file, &[line.to_string(), memory_line(2, "target")]);
    let report = sandbox.json(&["import", file.to_str().unwrap()]);
    assert_eq!(report["links_added"], 1);
    assert_eq!(report["links_missing"], 1);
    let got = sandbox.json(&["get", &id(1)]);
    assert_eq!(
        got["links"],
        serde_json::json!([{"target": id(2), "link_type": "depends_on"}])
    );
}

#[test]
fn export_to_a_file_replaces_it_whole() {
    let sandbox = Sandbox::new();
    sandbox.remember(&["one"]);
    let file = sandbox.path("out.jsonl");
    std::fs::write(&file, "old content\n").unwrap();
    let text = sandbox.ok(&["export", "-o", file.to_str().unwrap()]);
    assert_eq!(
        text.trim(),
        format!("exported 1 memory to {}", file.display())
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(!written.contains("old content"));
    assert_eq!(written.lines().count(), 1);
    let line = sandbox.fail(&[
        "export",
        "-o",
        sandbox.path("no/such/dir/x.jsonl").to_str().unwrap(),
    ]);
    assert!(line.contains("cannot create"), "{line}");
}

/// The embedder is down: every memory and link is imported, the vectors are
/// missing, and the error says how to make them; `reindex` does.
#[test]
fn an_import_whose_embedder_is_down_keeps_the_memories_and_says_how_to_embed_them() {
    let sandbox = Sandbox::new();
    let lines: Vec<String> = (1..=2)
        .map(|n| memory_line(n, &format!("imported while the embedder is down {n}")))
        .collect();
    let file = sandbox.path("two.jsonl");
    write_lines(&file, &lines);
    let (config, port) = unreachable_http_embedder(&sandbox);
    let args = ["--config", &config, "import", file.to_str().unwrap()];
    let line = sandbox.fail(&args);
    assert!(
        line.starts_with("error: imported 2 memories (0 skipped) and their links, 0 vectors made; embedding stopped: embedding error: "),
        "{line}"
    );
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(
        line.ends_with("run `mnemosyne reindex` (or start the server) to embed the rest"),
        "{line}"
    );
    assert_eq!(sandbox.count(), 2);
    let missing = |sandbox: &Sandbox| {
        let diagnostics = sandbox.json(&["diagnostics"]);
        diagnostics["snapshot"]["gauges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "mnemosyne_embeddings_missing")
            .map(|g| g["value"].as_u64().unwrap())
            .expect("the gauge")
    };
    assert_eq!(missing(&sandbox), 2);
    let report = sandbox.json(&["reindex"]);
    assert_eq!(report["embedded"], 2, "{report}");
    assert_eq!(missing(&sandbox), 0);
    let recall = sandbox.json(&["recall", "embedder down", "--mode", "vector"]);
    assert_eq!(recall["hits"].as_array().unwrap().len(), 2, "{recall}");
}
