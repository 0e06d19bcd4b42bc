//! `mnemosyne work ...` through the real binary: the README flow, JSON
//! shapes, refusals that change nothing, and the one-owner lock.

mod common;

use common::Sandbox;
use serde_json::Value;

fn state_of(sandbox: &Sandbox, id: &str) -> (String, String) {
    let item = sandbox.json(&["work", "show", id]);
    (
        item["state"].as_str().unwrap().to_owned(),
        item["phase"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_readme_flow_runs_a_spec_item_through_review() {
    let sandbox = Sandbox::new();
    let design = sandbox.ok(&[
        "work",
        "submit",
        "design the cache",
        "--phase",
        "spec",
        "--review",
        "--requirement",
        "bounded by bytes",
    ]);
    let design = design.trim().to_owned();
    assert_eq!(design.len(), 36, "prints the id: {design}");
    let tests = sandbox.json(&[
        "work",
        "submit",
        "test the cache",
        "--depends-on",
        &design,
        "--priority",
        "-1",
    ]);
    let tests_id = tests["id"].as_str().unwrap().to_owned();
    assert_eq!(tests["state"], "pending");
    assert_eq!(tests["dependencies"][0], design.as_str());

    // spec → plan → implement → review, each claimed and completed.
    for next in ["plan", "implement", "review"] {
        let claimed = sandbox.json(&["work", "claim", "--agent", "alice"]);
        assert_eq!(
            claimed["item"]["id"],
            design.as_str(),
            "the dependent waits"
        );
        assert_eq!(claimed["item"]["claimant"], "alice");
        let text = sandbox.ok(&["work", "complete", &design, "--agent", "alice"]);
        assert_eq!(
            text.trim(),
            format!("completed {design}: now pending in phase {next}")
        );
    }
    let memory = sandbox.remember(&["the cache is bounded by moka's weigher"]);
    let claimed = sandbox.json(&["work", "claim", "--agent", "rita"]);
    assert_eq!(claimed["item"]["phase"], "review");
    let text = sandbox.ok(&[
        "work",
        "review",
        &design,
        "--reject",
        "--feedback",
        "show the byte cap in a test",
    ]);
    assert!(
        text.contains("rejected") && text.contains("phase implement"),
        "{text}"
    );
    sandbox.ok(&["work", "claim", "--agent", "alice"]);
    sandbox.ok(&[
        "work",
        "complete",
        &design,
        "--evidence",
        &memory,
        "--met",
        "0",
    ]);
    sandbox.ok(&["work", "claim", "--agent", "rita"]);
    let approved = sandbox.json(&["work", "review", &design, "--approve"]);
    assert_eq!(
        (&approved["state"], &approved["phase"]),
        (&Value::from("done"), &Value::from("done"))
    );
    assert_eq!(approved["evidence"][0], memory.as_str());
    assert_eq!(approved["requirements"][0]["met"], true);
    assert_eq!(
        approved["review_feedback"][0],
        "show the byte cap in a test"
    );

    // Now the dependent is ready.
    let claimed = sandbox.json(&["work", "claim", "--agent", "bob"]);
    assert_eq!(claimed["item"]["id"], tests_id.as_str());
    let renewed = sandbox.ok(&["work", "heartbeat", &tests_id, "--agent", "bob"]);
    assert!(
        renewed.starts_with(&format!("renewed {tests_id} until ")),
        "{renewed}"
    );
    let failed = sandbox.ok(&["work", "fail", &tests_id, "--reason", "flaky runner"]);
    assert_eq!(failed.trim(), format!("failed {tests_id}: now failed"));
    let none = sandbox.json(&["work", "claim", "--agent", "bob"]);
    assert_eq!(none, serde_json::json!({"item": null}));
    assert_eq!(
        sandbox.ok(&["work", "claim", "--agent", "bob"]).trim(),
        "no work item is ready"
    );

    let stats = sandbox.json(&["work", "stats"]);
    assert_eq!(stats["queue"]["active"], 0);
    assert_eq!(stats["stored"]["done"], 1);
    assert_eq!(stats["stored"]["failed"], 1);
    let list = sandbox.json(&["work", "list", "--state", "failed"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let text = sandbox.ok(&["work", "list"]);
    assert!(
        text.contains("done") && text.contains("design the cache"),
        "{text}"
    );
    assert!(text.ends_with("2 items shown\n"), "{text}");
}

#[test]
fn refusals_are_one_line_and_change_nothing() {
    let sandbox = Sandbox::new();
    let id = sandbox
        .ok(&["work", "submit", "only item"])
        .trim()
        .to_owned();
    let before = sandbox.ok(&["work", "list", "--json"]);
    let unknown = "01a209e3-0000-7000-8000-000000000000";
    for (args, expected) in [
        (
            vec!["work", "submit", "x", "--depends-on", unknown],
            "unknown dependency",
        ),
        (vec!["work", "submit", "   "], "description is empty"),
        (
            vec!["work", "submit", "x", "--phase", "done"],
            "cannot be submitted in phase done",
        ),
        (vec!["work", "complete", &id], "not claimed"),
        (vec!["work", "heartbeat", unknown], "work item not found"),
        (vec!["work", "review", &id, "--approve"], "not review"),
        (vec!["work", "show", "nope"], "not a work item id"),
        (vec!["work", "claim", "--agent", ""], "agent name is empty"),
    ] {
        let error = sandbox.fail(&args);
        assert!(error.contains(expected), "{args:?}: {error}");
        assert_eq!(error.trim().lines().count(), 1, "{error}");
    }
    assert_eq!(sandbox.ok(&["work", "list", "--json"]), before);
    let cancelled = sandbox.json(&["work", "cancel", &id]);
    assert_eq!(cancelled["state"], "cancelled");
    let error = sandbox.fail(&["work", "cancel", &id]);
    assert!(error.contains("is cancelled"), "{error}");
}

#[test]
fn a_full_queue_refuses_the_next_item() {
    let sandbox = Sandbox::new();
    let env = [("MNEMOSYNE_WORK_ITEMS_MAX", "2")];
    for n in 0..2 {
        let out = sandbox.run_with(&["work", "submit", &format!("item {n}")], &env);
        assert!(out.status.success());
    }
    let out = sandbox.run_with(&["work", "submit", "one too many"], &env);
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.contains("work queue is full: 2 active items"),
        "{error}"
    );
    let stats = sandbox.json(&["work", "stats"]);
    assert_eq!(stats["stored"]["pending"], 2);
}

/// Locks the queue's lock file as another owner would, until the file is dropped.
fn hold_the_queue_lock(sandbox: &Sandbox) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("{}.work-lock", sandbox.db.display()))
        .unwrap();
    file.lock().unwrap();
    file
}

#[test]
fn a_second_process_cannot_own_the_queue_meanwhile() {
    let sandbox = Sandbox::new();
    sandbox.ok(&["work", "submit", "held"]);
    let file = hold_the_queue_lock(&sandbox);
    let out = sandbox.run_with(
        &["work", "claim", "--agent", "a"],
        &[("MNEMOSYNE_WORK_OWNER_WAIT_TIMEOUT_MS", "200")],
    );
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.contains("held by another mnemosyne process"),
        "{error}"
    );
    file.unlock().unwrap();
    let claimed = sandbox.json(&["work", "claim", "--agent", "a"]);
    assert_eq!(claimed["item"]["description"], "held");
    let (state, _) = state_of(&sandbox, claimed["item"]["id"].as_str().unwrap());
    assert_eq!(state, "claimed");
}

/// `work` waits for the owner with its own limit, `work_owner_wait_timeout_ms`:
/// an owner that lets go after a second is waited for, however short
/// `pool_wait_timeout_ms` is.
#[test]
fn a_work_command_waits_work_owner_wait_timeout_ms_for_the_owner() {
    let sandbox = Sandbox::new();
    sandbox.ok(&["work", "submit", "waited for"]);
    let file = hold_the_queue_lock(&sandbox);
    let owner = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        drop(file);
    });
    let out = sandbox.run_with(
        &["work", "claim", "--agent", "a", "--json"],
        &[
            ("MNEMOSYNE_WORK_OWNER_WAIT_TIMEOUT_MS", "60000"),
            ("MNEMOSYNE_POOL_WAIT_TIMEOUT_MS", "200"),
        ],
    );
    owner.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claimed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claimed["item"]["description"], "waited for");
}
