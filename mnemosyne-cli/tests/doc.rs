//! `mnemosyne doc ...` through the real binary: write, show, edit with
//! $EDITOR (including an epoch change while the editor is open), history,
//! compact, undo and redo, list, delete, JSON shapes.

mod common;

use std::process::Output;

use common::{Sandbox, fail, ok, parse_json};

fn write(sandbox: &Sandbox, name: &str, actor: &str, text: &str) -> serde_json::Value {
    let out = sandbox.run_stdin(
        &["doc", "write", name, "--actor", actor, "--json"],
        text.as_bytes(),
    );
    parse_json(&ok(out, &["doc", "write", name]))
}

fn show(sandbox: &Sandbox, name: &str) -> String {
    sandbox.ok(&["doc", "show", name])
}

/// Runs `doc edit` with `editor` as $EDITOR (a shell command given the file).
fn edit_with(sandbox: &Sandbox, args: &[&str], editor: &str) -> Output {
    sandbox
        .command()
        .args(["doc", "edit"])
        .args(args)
        .env_remove("VISUAL")
        .env("EDITOR", editor)
        .output()
        .expect("run mnemosyne")
}

#[test]
fn write_show_history_undo_redo_and_compact() {
    let sandbox = Sandbox::new();
    let created = write(&sandbox, "plan", "alice", "step one\nstep two\n");
    assert_eq!(created["status"], "created");
    assert_eq!(created["name"], "plan");
    assert_eq!(created["epoch"], 0);
    assert_eq!(show(&sandbox, "plan"), "step one\nstep two\n");

    let changed = write(&sandbox, "plan", "bob", "step one\nstep two\nstep three\n");
    assert_eq!(changed["status"], "changed");
    assert_eq!(changed["inserted_chars"], 11);
    assert_eq!(changed["deleted_chars"], 0);
    assert_eq!(changed["undo_depth"], 1);
    let same = write(&sandbox, "plan", "bob", "step one\nstep two\nstep three\n");
    assert_eq!(same["status"], "unchanged");

    let view = sandbox.json(&["doc", "show", "plan"]);
    assert_eq!(view["text"], "step one\nstep two\nstep three\n");
    assert_eq!(view["namespace"], "global");
    assert!(view["heads"].as_array().is_some_and(|h| !h.is_empty()));

    // Undo is per actor: alice has nothing to undo, bob has his line.
    let err = sandbox.fail(&["doc", "undo", "plan", "--actor", "alice"]);
    assert!(err.contains("nothing to undo"), "{err}");
    sandbox.ok(&["doc", "undo", "plan", "--actor", "bob"]);
    assert_eq!(show(&sandbox, "plan"), "step one\nstep two\n");
    let redone = sandbox.json(&["doc", "redo", "plan", "--actor", "bob"]);
    assert_eq!(redone["redo_depth"], 0);
    assert_eq!(show(&sandbox, "plan"), "step one\nstep two\nstep three\n");

    let compacted = sandbox.json(&["doc", "compact", "plan", "--actor", "janitor"]);
    assert_eq!(compacted["status"], "compacted");
    assert_eq!(compacted["epoch"], 1);
    assert_eq!(compacted["ops_since_compaction"], 0);

    let history = sandbox.json(&["doc", "history", "plan"]);
    let actions: Vec<&str> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["compact", "redo", "undo", "edit", "create"]);
    assert_eq!(history["records"][3]["actor"], "bob");
    assert_eq!(history["undo"][0]["actor"], "bob");
    let text = sandbox.ok(&["doc", "history", "plan"]);
    assert!(text.starts_with("plan  epoch 1"), "{text}");

    // A write naming the old epoch is refused; the text is unchanged.
    let out = sandbox.run_stdin(&["doc", "write", "plan", "--epoch", "0"], b"late");
    let err = fail(out, &["doc", "write", "--epoch 0"]);
    assert!(err.contains("re-read it"), "{err}");
    assert_eq!(show(&sandbox, "plan"), "step one\nstep two\nstep three\n");
}

#[test]
fn edit_applies_the_editors_change_as_a_diff() {
    let sandbox = Sandbox::new();
    write(&sandbox, "notes", "alice", "alpha\nbeta\n");
    let out = edit_with(
        &sandbox,
        &["notes", "--actor", "carol", "--json"],
        "sed -i s/beta/BETA/",
    );
    let report = parse_json(&ok(out, &["doc", "edit"]));
    assert_eq!(report["status"], "changed");
    assert_eq!(
        report["inserted_chars"].as_u64(),
        report["deleted_chars"].as_u64()
    );
    assert_eq!(show(&sandbox, "notes"), "alpha\nBETA\n");
    // An editor that changes nothing writes nothing.
    let out = edit_with(&sandbox, &["notes", "--json"], "true");
    assert_eq!(
        parse_json(&ok(out, &["doc", "edit"]))["status"],
        "unchanged"
    );
    // An editor that fails changes nothing.
    let out = edit_with(&sandbox, &["notes"], "sed -i s/alpha/gone/ \"$1\"; false");
    let err = fail(out, &["doc", "edit"]);
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(show(&sandbox, "notes"), "alpha\nBETA\n");
    // A missing document is created from the edited text.
    let out = edit_with(&sandbox, &["fresh", "--json"], "printf 'new text' >");
    assert_eq!(parse_json(&ok(out, &["doc", "edit"]))["status"], "created");
    assert_eq!(show(&sandbox, "fresh"), "new text");
}

#[test]
fn edits_made_while_the_editor_is_open_merge() {
    let sandbox = Sandbox::new();
    write(&sandbox, "spec", "alice", "one\ntwo\n");
    // While carol's editor is open, bob appends a line (same epoch).
    let bin = env!("CARGO_BIN_EXE_mnemosyne");
    let db = sandbox.db.display().to_string();
    let editor = format!(
        "printf 'one\\ntwo\\nthree by bob\\n' | '{bin}' --db '{db}' doc write spec --actor bob >/dev/null && sed -i s/one/ONE/"
    );
    let out = edit_with(&sandbox, &["spec", "--actor", "carol"], &editor);
    ok(out, &["doc", "edit"]);
    assert_eq!(show(&sandbox, "spec"), "ONE\ntwo\nthree by bob\n");
}

#[test]
fn edit_refuses_cleanly_when_the_epoch_changed_and_keeps_the_text() {
    let sandbox = Sandbox::new();
    write(&sandbox, "spec", "alice", "original\n");
    // While the editor is open, someone compacts the document.
    let bin = env!("CARGO_BIN_EXE_mnemosyne");
    let db = sandbox.db.display().to_string();
    let editor =
        format!("'{bin}' --db '{db}' doc compact spec >/dev/null && printf 'my careful edit\\n' >");
    let out = edit_with(&sandbox, &["spec", "--actor", "carol"], &editor);
    let err = fail(out, &["doc", "edit"]);
    assert!(err.contains("compacted since it was read"), "{err}");
    assert!(err.contains("re-read it"), "{err}");
    // The document is unchanged and the user's text is kept in the named file.
    assert_eq!(show(&sandbox, "spec"), "original\n");
    let kept = err
        .split("your text is kept in ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("the error names the kept file");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "my careful edit\n");
    std::fs::remove_file(kept).unwrap();
}

#[test]
fn list_delete_and_errors() {
    let sandbox = Sandbox::new();
    for (name, ns) in [
        ("b-doc", "project:atlas"),
        ("a-doc", "global"),
        ("c-doc", "project:atlas"),
    ] {
        let out = sandbox.run_stdin(
            &["doc", "write", name, "--namespace", ns, "--title", "T"],
            b"x",
        );
        ok(out, &["doc", "write", name]);
    }
    let list = sandbox.json(&["doc", "list"]);
    let names: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-doc", "b-doc", "c-doc"]);
    let atlas = sandbox.json(&[
        "doc",
        "list",
        "--namespace",
        "project:atlas",
        "--limit",
        "1",
        "--offset",
        "1",
    ]);
    assert_eq!(atlas["documents"][0]["name"], "c-doc");
    assert_eq!(atlas["documents"][0]["title"], "T");
    let text = sandbox.ok(&["doc", "list"]);
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.starts_with("a-doc  global  epoch 0  1 bytes"),
        "{text}"
    );

    let deleted = sandbox.json(&["doc", "delete", "b-doc"]);
    assert_eq!(deleted["status"], "deleted");
    let err = sandbox.fail(&["doc", "delete", "b-doc"]);
    assert_eq!(err, "error: document not found: b-doc");
    let err = sandbox.fail(&["doc", "show", "b-doc"]);
    assert_eq!(err, "error: document not found: b-doc");
    let err = sandbox.fail(&["doc", "list", "--limit", "100000"]);
    assert!(err.contains("list_page_rows_max"), "{err}");
    let out = sandbox.run_stdin(&["doc", "write", "bad\tname"], b"x");
    let err = fail(out, &["doc", "write", "bad name"]);
    assert!(err.contains("control character"), "{err}");
    let out = sandbox.run_stdin(&["doc", "write", "big"], &vec![b'x'; 1024 * 1024 + 1]);
    let err = fail(out, &["doc", "write", "big"]);
    assert!(err.contains("doc_text_bytes_max"), "{err}");
    let err = sandbox.fail(&["doc", "undo", "a-doc", "--actor", ""]);
    assert!(err.contains("actor name"), "{err}");
}
