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
            r#"{"id": null}"#.to_owned(),
            "line 4: missing field `content`",
        ),
        (
            r#"{"content": "from another tool", "text": "a field import does not know"}"#
                .to_owned(),
            "line 4: unknown field `text`, expected one of `id`, `namespace`, `content`",
        ),
        (
            r#"{"content": "unsorted tags", "tags": ["b", "a"]}"#.to_owned(),
            "line 4: invalid input: tags must be lower-case, sorted and unique",
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
            "ids_created": 0,
            "created_ids": [],
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

/// Records from other tools: no id (a new one is made, listed in the
/// report), no namespace (global), no times (the import's), links from and
/// to them; only `content` is required.
#[test]
fn records_without_an_id_get_a_new_one_that_the_report_lists() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("foreign.jsonl");
    let mut linked: serde_json::Value = parse_json(r#"{"content": "links to a stored one"}"#);
    linked["links"] = serde_json::json!([{"target": id(1), "link_type": "fixes"}]);
    write_lines(
        &file,
        &[
            memory_line(1, "exported with an id"),
            r#"{"content": "only content, from another tool"}"#.to_owned(),
            String::new(),
            linked.to_string(),
            r#"{"content": "with a time and tags", "namespace": "project:other", "tags": ["a", "b"], "created_at": "2023-05-06T07:08:09Z", "importance": 8}"#.to_owned(),
        ],
    );
    let started = chrono_now_ms();
    let report = sandbox.json(&["import", file.to_str().unwrap()]);
    assert_eq!(report["memories"], 4, "{report}");
    assert_eq!(report["inserted"], 4, "{report}");
    assert_eq!(report["ids_created"], 3, "{report}");
    assert_eq!(report["links_added"], 1, "{report}");
    let created = report["created_ids"].as_array().unwrap();
    let lines: Vec<u64> = created
        .iter()
        .map(|c| c["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5]);
    let new_id = |line: usize| created[line]["id"].as_str().unwrap().to_owned();

    // Exported before any read: a read by id stamps accessed_at.
    let exported = sandbox.dump();
    let only = exported
        .lines()
        .map(parse_json)
        .find(|memory| memory["id"] == new_id(0).as_str())
        .expect("exported");
    assert_eq!(only["accessed_at"], only["created_at"], "{only}");
    assert_eq!(only["content"], "only content, from another tool");
    assert_eq!(only["namespace"], "global");
    assert_eq!(only["importance"], 5);
    assert_eq!(only["created_at"], only["updated_at"]);
    let linked = sandbox.json(&["get", &new_id(1)]);
    assert_eq!(
        linked["links"],
        serde_json::json!([{"target": id(1), "link_type": "fixes"}])
    );
    let dated = sandbox.json(&["get", &new_id(2)]);
    assert_eq!(dated["created_at"], "2023-05-06T07:08:09Z");
    assert_eq!(dated["updated_at"], "2023-05-06T07:08:09Z");
    assert_eq!(dated["namespace"], "project:other");
    // A new id is a UUIDv7 of its memory's creation time.
    assert_eq!(&new_id(2)[..13], "0187efe3-afa8", "{}", new_id(2));
    let undated_ms = u64::from_str_radix(&new_id(0).replace('-', "")[..12], 16).unwrap();
    assert!(undated_ms + 1 >= started, "{undated_ms} before {started}");

    // The text report counts and lists them too; a second run makes new ids.
    let text = sandbox.ok(&["import", file.to_str().unwrap()]);
    assert!(
        text.contains("ids created    3 (lines without an id)"),
        "{text}"
    );
    assert!(text.contains("inserted       3"), "{text}");
    assert!(
        text.contains("skipped        1 (id already stored)"),
        "{text}"
    );
    assert!(text.contains("  line 2  "), "{text}");
    assert_eq!(sandbox.count(), 7);
}

/// The report lists at most 100 new ids and counts every one.
#[test]
fn the_list_of_new_ids_is_bounded() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("many.jsonl");
    let lines: Vec<String> = (0..150)
        .map(|n| serde_json::json!({"content": format!("foreign record {n}")}).to_string())
        .collect();
    write_lines(&file, &lines);
    let output = sandbox.run_with(
        &["import", file.to_str().unwrap(), "--json"],
        &[("MNEMOSYNE_IMPORT_BATCH_ROWS", "40")],
    );
    let report = parse_json(&common::ok(output, &["import"]));
    assert_eq!(report["ids_created"], 150);
    let created = report["created_ids"].as_array().unwrap();
    assert_eq!(created.len(), 100);
    assert_eq!(created[99]["line"], 100);
    assert_eq!(sandbox.count(), 150);
    let text = sandbox.ok(&["import", file.to_str().unwrap()]);
    assert!(text.contains("  and 50 more"), "{text}");
}

fn chrono_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Records as the original system's `export` writes them (`MemoryNote`).
fn original_records() -> Vec<serde_json::Value> {
    use serde_json::json;
    let types = [
        "architecture_decision",
        "code_pattern",
        "bug_fix",
        "preference",
        "configuration",
        "constraint",
        "entity",
        "insight",
        "reference",
        "task",
        "agent_event",
        "constitution",
        "feature_spec",
        "implementation_plan",
        "task_breakdown",
        "quality_checklist",
        "clarification",
        "AgentEvent",
        "wisdom",
    ];
    let mut records: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .map(|(i, memory_type)| {
            json!({
                "id": format!("6f1c4a3e-8a0e-4c55-9d0c-{:012}", i + 1),
                "namespace": {"type": "project", "name": "atlas"},
                "created_at": "2025-10-28T15:46:55.123456789Z",
                "updated_at": "2025-10-28T15:46:55Z",
                "last_accessed_at": "2025-10-29T09:00:00Z",
                "content": format!("memory {} of type {memory_type}", i + 1),
                "summary": "a summary",
                "keywords": ["k"],
                "tags": ["Error Handling", "rust"],
                "context": "User-provided memory",
                "memory_type": memory_type,
                "importance": 7,
                "confidence": 0.8,
                "links": [],
                "related_files": [],
                "related_entities": [],
                "access_count": 3,
                "expires_at": null,
                "is_archived": false,
                "superseded_by": null,
                "embedding_model": "voyage-2"
            })
        })
        .collect();
    // Record 1 links to record 2 (extends) and to a memory that is nowhere;
    // record 3 is superseded by record 1.
    records[0]["links"] = json!([
        {"target_id": "6f1c4a3e-8a0e-4c55-9d0c-000000000002", "link_type": "extends",
         "strength": 0.5, "reason": "r", "created_at": "2025-10-28T15:46:55Z",
         "last_traversed_at": null, "user_created": true},
        {"target_id": "6f1c4a3e-8a0e-4c55-9d0c-999999999999", "link_type": "references"}
    ]);
    records[2]["superseded_by"] = json!("6f1c4a3e-8a0e-4c55-9d0c-000000000001");
    records[3]["namespace"] =
        json!({"type": "session", "project": "My App", "session_id": "abc123"});
    records[4]["namespace"] = json!({"type": "global"});
    records
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

#[test]
fn import_from_original_maps_every_shape_type_namespace_and_link() {
    let records = original_records();
    let n = records.len() as u64;
    for shape in ["array", "jsonl", "object"] {
        let sandbox = Sandbox::new();
        let file = sandbox.path("original.json");
        match shape {
            "array" => write_json(&file, &serde_json::Value::Array(records.clone())),
            "jsonl" => write_lines(
                &file,
                &records.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ),
            _ => write_json(
                &file,
                &serde_json::json!({"export_date": "2025-11-01", "namespace": "all",
                                    "total_memories": n, "memories": records}),
            ),
        }
        let report = sandbox.json(&["import", "--from-original", file.to_str().unwrap()]);
        assert_eq!(report["complete"], true, "{shape}: {report}");
        assert_eq!(report["records"], n, "{shape}");
        assert_eq!(report["inserted"], n, "{shape}");
        assert_eq!(report["skipped"], 0, "{shape}");
        assert_eq!(
            report["shape"],
            if shape == "array" { "array" } else { "objects" }
        );
        assert_eq!(sandbox.count(), n, "{shape}");
    }

    let sandbox = Sandbox::new();
    let file = sandbox.path("original.json");
    write_json(&file, &serde_json::Value::Array(records.clone()));
    let report = sandbox.json(&["import", "--from-original", file.to_str().unwrap()]);
    let types = &report["types"];
    for (mapping, count) in [
        ("architecture_decision -> decision", 1),
        ("code_pattern -> pattern", 1),
        ("bug_fix -> bugfix", 1),
        ("preference -> preference", 1),
        ("configuration -> note (tag configuration)", 1),
        ("constraint -> note (tag constraint)", 1),
        ("entity -> note (tag entity)", 1),
        ("insight -> note (tag insight)", 1),
        ("reference -> note (tag reference)", 1),
        ("task -> note (tag task)", 1),
        ("agent_event -> note (tag agent_event)", 2),
        ("constitution -> note (tag constitution)", 1),
        ("feature_spec -> note (tag feature_spec)", 1),
        ("implementation_plan -> note (tag implementation_plan)", 1),
        ("task_breakdown -> note (tag task_breakdown)", 1),
        ("quality_checklist -> note (tag quality_checklist)", 1),
        ("clarification -> note (tag clarification)", 1),
        ("wisdom -> note (tag wisdom)", 1),
    ] {
        assert_eq!(types[mapping], count, "{mapping} in {types}");
    }
    assert_eq!(
        report["namespaces_renamed"],
        serde_json::json!({"session:My App:abc123 -> session:My-App/abc123": 1})
    );
    assert_eq!(
        report["link_types"],
        serde_json::json!({"extends -> derived_from": 1, "references -> relates_to": 1,
                           "superseded_by -> supersedes": 1})
    );
    assert_eq!(report["links_added"], 2);
    assert_eq!(
        report["links_missing"], 1,
        "the target in neither the file nor the store"
    );
    assert_eq!(report["fields_not_kept"]["keywords"], n);
    assert_eq!(report["fields_not_kept"]["embedding_model"], n);
    assert!(report["embedded"].as_u64().unwrap() >= n);

    let get = |i: u32| sandbox.json(&["get", &format!("6f1c4a3e-8a0e-4c55-9d0c-{i:012}")]);
    let first = get(1);
    assert_eq!(first["memory_type"], "decision");
    assert_eq!(first["namespace"], "project:atlas");
    assert_eq!(first["importance"], 7);
    assert_eq!(first["summary"], "a summary");
    assert_eq!(first["tags"], serde_json::json!(["error-handling", "rust"]));
    assert_eq!(first["created_at"], "2025-10-28T15:46:55.123Z");
    assert_eq!(first["access_count"], 4, "3 in the file, plus this read");
    assert_eq!(
        first["links"],
        serde_json::json!([
            {"target": "6f1c4a3e-8a0e-4c55-9d0c-000000000002", "link_type": "derived_from"},
            {"target": "6f1c4a3e-8a0e-4c55-9d0c-000000000003", "link_type": "supersedes"},
        ])
    );
    assert_eq!(get(4)["namespace"], "session:My-App/abc123");
    assert_eq!(get(5)["namespace"], "global");
    let insight = get(8);
    assert_eq!(insight["memory_type"], "note");
    assert_eq!(
        insight["tags"],
        serde_json::json!(["error-handling", "insight", "rust"])
    );
    let text = sandbox.ok(&["import", "--from-original", file.to_str().unwrap()]);
    assert!(
        text.contains("  insight -> note (tag insight): 1\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("already stored  {n} (id already stored)")),
        "{text}"
    );

    // Again: every record is already stored; nothing changes.
    let before = sandbox.dump();
    let again = sandbox.json(&["import", "--from-original", file.to_str().unwrap()]);
    assert_eq!(
        (again["inserted"].clone(), again["already_stored"].clone()),
        (0.into(), n.into())
    );
    assert_eq!(sandbox.dump(), before);
    let refused = sandbox.fail(&[
        "import",
        "--from-original",
        file.to_str().unwrap(),
        "--on-conflict",
        "fail",
    ]);
    assert!(refused.contains("already"), "{refused}");
}

#[test]
fn import_from_original_skips_and_reports_bad_records_and_refuses_bad_json() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("original.jsonl");
    let mut lines: Vec<String> = original_records()
        .into_iter()
        .take(3)
        .map(|r| r.to_string())
        .collect();
    lines.insert(
        1,
        r#"{"id": "0b9f2e1d-7c6b-4a59-8e8d-1c2b3a4f5e6d", "content": "   "}"#.to_owned(),
    );
    lines.push(r#"{"content": "x", "importance": 11}"#.to_owned());
    lines.push(
        r#"{"content": "no id, kept", "namespace": "session:atlas:s9", "memory_type": "Insight"}"#
            .to_owned(),
    );
    write_lines(&file, &lines);
    let report = sandbox.json(&["import", "--from-original", file.to_str().unwrap()]);
    assert_eq!(report["records"], 6);
    assert_eq!(report["inserted"], 4);
    assert_eq!(report["skipped"], 2);
    assert_eq!(
        report["skipped_records"],
        serde_json::json!([
            {"record": 2, "line": 2, "reason": "invalid input: content is empty"},
            {"record": 5, "line": 5, "reason": "invalid input: importance must be between 1 and 10, got 11"},
        ])
    );
    assert_eq!(report["ids_created"], 1);
    assert_eq!(sandbox.count(), 4);
    let listed = sandbox.json(&["list", "-n", "session:atlas/s9"]);
    assert_eq!(listed["memories"][0]["content"], "no id, kept");
    assert_eq!(
        listed["memories"][0]["tags"],
        serde_json::json!(["insight"])
    );

    // Malformed JSON or an oversized record: one line, nothing written.
    let before = sandbox.dump();
    for (text, expected) in [
        (
            format!("{}\n{{\"content\": \n", lines[0]),
            "error: record 2 (line 3): malformed JSON: EOF while parsing",
        ),
        (
            "[{\"content\": \"a\"}, oops]".to_owned(),
            "error: record 2 (line 1): malformed JSON: expected value",
        ),
        (
            "<html>".to_owned(),
            "error: line 1: not an export of the original system",
        ),
        (
            format!("[{{\"content\": \"{}\"}}]", "x".repeat(8 * 1024 * 1024)),
            "error: record 1 (line 1): longer than",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let line = sandbox.fail(&["import", "--from-original", file.to_str().unwrap()]);
        assert!(
            line.starts_with(expected),
            "want {expected:?}, got {line:?}"
        );
        assert_eq!(sandbox.dump(), before);
    }
}
