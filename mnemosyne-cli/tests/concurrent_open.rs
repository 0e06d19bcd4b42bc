//! Many `mnemosyne` processes opening one database at once, as when an MCP
//! client starts the server while a session hook runs `count`, or several
//! sessions start together: on a file that does not exist yet and on every
//! older schema version, each of them opens it and the schema ends current.

mod common;

use std::process::{Child, Command, Output, Stdio};

use common::{Sandbox, parse_json};
use mnemosyne_storage::SCHEMA_VERSION;

/// Processes started together on one file.
const OPENERS: usize = 8;

/// Starts `OPENERS` processes, each made by `command`, before waiting for
/// any of them; every one must succeed.
fn run_together(command: impl Fn() -> Command) -> Vec<Output> {
    let children: Vec<Child> = (0..OPENERS)
        .map(|_| {
            command()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn mnemosyne")
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().expect("wait"))
        .collect()
}

fn assert_all_succeeded(outputs: &[Output], what: &str) {
    let failed: Vec<String> = outputs
        .iter()
        .filter(|output| !output.status.success())
        .map(|output| {
            format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {OPENERS} failed: {failed:#?}",
        failed.len()
    );
}

/// The schema version in the database file's header (`user_version`, 4
/// bytes big-endian at offset 60), read once every process has exited and
/// the last one has checkpointed its write-ahead log into the file.
fn schema_version_on_disk(sandbox: &Sandbox) -> u32 {
    let wal = sandbox.path("test.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(
        wal_bytes,
        0,
        "the last process checkpointed {}",
        wal.display()
    );
    let bytes = std::fs::read(&sandbox.db).expect("read the database file");
    u32::from_be_bytes(bytes[60..64].try_into().expect("a header"))
}

#[test]
fn servers_started_together_on_a_new_database_all_open_it() {
    for round in 0..3 {
        let sandbox = Sandbox::new();
        assert!(!sandbox.db.exists());
        // stdin is empty: each server opens the database, starts its
        // session, reads the end of stdin and exits 0.
        let outputs = run_together(|| {
            let mut command = sandbox.command();
            command.args(["serve", "mcp"]).stdin(Stdio::null());
            command
        });
        assert_all_succeeded(&outputs, &format!("serve mcp, round {round}"));
        assert_eq!(schema_version_on_disk(&sandbox), SCHEMA_VERSION);
        assert_eq!(sandbox.count(), 0);
        sandbox.remember(&["written after the race"]);
        assert_eq!(sandbox.count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_started_together_migrate_every_older_schema_once() {
    for version in 0..=SCHEMA_VERSION {
        let sandbox = Sandbox::new();
        if version > 0 {
            mnemosyne_storage::create_at_schema_version(&sandbox.db, version)
                .await
                .unwrap_or_else(|e| panic!("a database at version {version}: {e}"));
        } else {
            std::fs::write(&sandbox.db, b"").expect("an empty file");
        }
        let outputs = run_together(|| {
            let mut command = sandbox.command();
            command.args(["count", "--json"]);
            command
        });
        assert_all_succeeded(&outputs, &format!("count from version {version}"));
        for output in &outputs {
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(parse_json(&stdout)["count"], 0, "{stdout}");
        }
        assert_eq!(
            schema_version_on_disk(&sandbox),
            SCHEMA_VERSION,
            "from version {version}"
        );
        assert_eq!(sandbox.count(), 0);
    }
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let sandbox = Sandbox::new();
    let error = mnemosyne_storage::create_at_schema_version(&sandbox.db, SCHEMA_VERSION + 1)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
}
