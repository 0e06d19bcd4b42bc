//! `diagnostics` and `doctor` through the real binary.

mod common;

use common::{Sandbox, unreachable_http_embedder};
use serde_json::Value;

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn doctor_passes_on_a_healthy_database() {
    let sandbox = Sandbox::new();
    sandbox.remember(&["something to check"]);
    let report = sandbox.json(&["doctor"]);
    assert_eq!(report["ok"], true, "{report}");
    for name in [
        "disk",
        "fd limit",
        "pool",
        "memory",
        "schema",
        "integrity",
        "work queue",
        "embedder",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report}");
    }
    let text = sandbox.ok(&["doctor"]);
    assert!(
        text.contains("ok    integrity    PRAGMA integrity_check: ok"),
        "{text}"
    );
}

#[test]
fn doctor_fails_on_a_damaged_file_and_says_what_to_do() {
    let sandbox = Sandbox::new();
    std::fs::write(&sandbox.db, vec![0x5a; 64 * 1024]).unwrap();
    let out = sandbox.run(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let database = check(&report, "database");
    assert_eq!(database["status"], "fail");
    assert!(
        database["fix"].as_str().unwrap().contains("path"),
        "{database}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: doctor found problems (see the checks marked FAIL)"
    );
    assert_eq!(
        std::fs::read(&sandbox.db).unwrap(),
        vec![0x5a; 64 * 1024],
        "left untouched"
    );
}

#[test]
fn doctor_reports_an_unreachable_embedder_and_a_held_queue() {
    let sandbox = Sandbox::new();
    let (config, _port) = unreachable_http_embedder(&sandbox);
    sandbox.ok(&["work", "submit", "x"]);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("{}.work-lock", sandbox.db.display()))
        .unwrap();
    lock.lock().unwrap();
    let out = sandbox.run(&["--config", &config, "doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let embedder = check(&report, "embedder");
    assert_eq!(embedder["status"], "fail", "{embedder}");
    assert!(
        embedder["fix"].as_str().unwrap().contains("base_url"),
        "{embedder}"
    );
    let queue = check(&report, "work queue");
    assert!(
        queue["detail"]
            .as_str()
            .unwrap()
            .contains("held by a running mnemosyne"),
        "{queue}"
    );
    assert_eq!(check(&report, "integrity")["status"], "ok");
}

#[test]
fn diagnostics_shows_the_process_and_the_stored_figures() {
    let sandbox = Sandbox::new();
    sandbox.remember(&["one"]);
    sandbox.ok(&["work", "submit", "pending job"]);
    let report = sandbox.json(&["diagnostics"]);
    let snapshot = &report["snapshot"];
    assert!(
        snapshot["process"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
        "{report}"
    );
    assert!(snapshot["memory_limit"]["bytes"].as_u64().unwrap() > 0);
    let gauge = |name: &str| {
        snapshot["gauges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("no gauge {name} in {report}"))
            .clone()
    };
    assert_eq!(gauge("mnemosyne_memories_stored")["value"], 1);
    assert_eq!(gauge("mnemosyne_work_items_stored_pending")["value"], 1);
    assert_eq!(gauge("mnemosyne_pool_readers_open")["max"], 4);
    assert!(
        gauge("mnemosyne_database_file_bytes")["value"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["alerts"], serde_json::json!([]));
    let text = sandbox.ok(&["diagnostics"]);
    assert!(
        text.contains("pool_readers_open                0 of 4"),
        "{text}"
    );
    assert!(text.ends_with("no alerts\n"), "{text}");
}
