//! A full disk under a running `mnemosyne serve http`: the database lives on
//! a small tmpfs the test mounts (as root, or through `sudo -n`), and a
//! filler file takes every free byte. Each kind of write (remember, import,
//! a document write, a work transition) then fails with one line that says
//! `disk full` and names the database; everything acknowledged before stays;
//! reads keep working; the embedding worker waits and retries; and once the
//! filler is deleted, writes work again and the file passes
//! `PRAGMA integrity_check` (through `mnemosyne doctor`).
//!
//! Where no tmpfs can be mounted the test says so and passes, unless `CI`
//! is set: there it must run.

mod common;

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{Sandbox, memory_line, unreachable_http_embedder, write_lines};
use serde_json::{Value, json};

/// Socket read timeout and longest wait for a condition: a server that stops
/// answering fails the test instead of hanging it. Not a timed assertion.
const WAIT_S: u64 = 60;

/// Size of the tmpfs holding the database: room for what the test writes
/// once the filler is gone (libsql's vector index takes a few KiB a vector).
const DISK_SIZE: &str = "16m";

/// Writes of one kind tried on the full disk before the test gives up
/// waiting for one to fail (each takes room in the WAL, so one must).
const ATTEMPTS_MAX: usize = 400;

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs {
    dir: PathBuf,
    sudo: bool,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on `dir`: directly, else through
    /// `sudo -n`; `Err` says why neither worked.
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).expect("mount point");
        let options = format!("size={size},mode=0777");
        let mut why = Vec::new();
        for sudo in [false, true] {
            let mut command = privileged(sudo, "mount");
            command
                .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
                .arg(dir);
            match command.output() {
                Ok(output) if output.status.success() => {
                    return Ok(Self {
                        dir: dir.to_owned(),
                        sudo,
                    });
                }
                Ok(output) => why.push(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
                Err(e) => why.push(e.to_string()),
            }
        }
        Err(why.join("; "))
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Fills every free byte with the filler file, then gives `headroom`
    /// bytes back; returns the filler's size.
    fn fill_leaving(&self, headroom: u64) -> u64 {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("open the filler");
        let chunk = vec![0xa5_u8; 64 * 1024];
        let mut size = file.metadata().expect("filler size").len();
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(written) => size += written as u64,
                Err(e) if e.kind() == ErrorKind::StorageFull => break,
                Err(e) => panic!("cannot fill the disk: {e}"),
            }
        }
        let size = size.saturating_sub(headroom);
        file.set_len(size).expect("give headroom back");
        size
    }

    fn fill(&self) -> u64 {
        self.fill_leaving(0)
    }

    /// Deletes the filler: the space is back.
    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("delete the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child still holding a file (after a failed assertion) must
        // not leave the mount behind.
        let _ = privileged(self.sudo, "umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

fn privileged(sudo: bool, program: &str) -> Command {
    if sudo {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    } else {
        Command::new(program)
    }
}

/// A sandbox whose database is on a fresh tmpfs, or `None` (after saying
/// why) when no tmpfs can be mounted and `CI` is not set.
fn sandbox_on_tmpfs() -> Option<(Sandbox, Tmpfs)> {
    let mut sandbox = Sandbox::new();
    match Tmpfs::mount(&sandbox.path("disk"), DISK_SIZE) {
        Ok(disk) => {
            sandbox.db = disk.dir.join("test.db");
            Some((sandbox, disk))
        }
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but no tmpfs can be mounted for the full-disk test: {why}")
        }
        Err(why) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "full_disk: skipped, cannot mount a tmpfs (needs root or sudo -n): {why}"
                );
            }
            None
        }
    }
}

/// A config file (outside the tmpfs) with the fast `hash` embedder and
/// `extra` lines under `[limits]`.
fn hash_config(sandbox: &Sandbox, limits: &str) -> String {
    let path = sandbox.path("hash.toml");
    std::fs::write(
        &path,
        format!("[embedder]\nkind = \"hash\"\n[limits]\n{limits}\n"),
    )
    .expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

/// A running `serve http`; killed when dropped (before the tmpfs unmounts).
struct Served {
    child: Child,
    addr: SocketAddr,
    /// The server's log so far (for failure messages).
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn start(sandbox: &Sandbox, config: &str) -> Self {
        let mut child = sandbox
            .command()
            .args(["--config", config, "serve", "http", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve http");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        // Reads stderr to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("mnemosyne: http api listening on http://") {
                    let _ = sender.send(url.to_owned());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(WAIT_S))
            .expect("the server says where it listens")
            .parse()
            .expect("an address");
        Self { child, addr, log }
    }

    /// One request on its own connection.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(WAIT_S)))
            .expect("timeout");
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes()).expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the answer");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(&raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head}"));
        Response {
            status,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let answer = self.request(method, path, body);
        assert!(
            (200..300).contains(&answer.status),
            "{method} {path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }

    /// A gauge of `/metrics`, if it is there.
    fn metric(&self, name: &str) -> Option<u64> {
        let answer = self.request("GET", "/metrics", None);
        assert_eq!(answer.status, 200);
        String::from_utf8(answer.body)
            .expect("utf-8")
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|value| value.parse().expect("a whole number"))
    }

    /// Polls until `done` holds, at most [`WAIT_S`].
    fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(WAIT_S);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "never happened: {what}; server log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines the server logged.
    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(20)..].join("\n")
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("wait").code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Asserts the answer of a write refused for a full disk: 507, code
/// `disk_full`, one line naming the database.
fn assert_disk_full(answer: &Response, db: &Path, what: &str) {
    let json = answer.json();
    assert_eq!(
        (answer.status, json["error"]["code"].as_str()),
        (507, Some("disk_full")),
        "{what}: {json}"
    );
    let message = json["error"]["message"].as_str().expect("a message");
    let expected = format!("disk full: cannot write {} (", db.display());
    assert!(message.starts_with(&expected), "{what}: {message}");
    assert!(!message.contains('\n'), "{what}: {message:?}");
}

/// `mnemosyne doctor` finds `PRAGMA integrity_check` ok (other checks, such
/// as free space on a small disk, may warn).
fn assert_integrity_ok(sandbox: &Sandbox, config: &str) {
    let output = sandbox.run(&["--config", config, "doctor", "--json"]);
    let report = common::parse_json(&String::from_utf8_lossy(&output.stdout));
    let integrity = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == "integrity")
        .unwrap_or_else(|| panic!("no integrity check: {report}"));
    assert_eq!(integrity["status"], "ok", "{integrity}");
}

/// Runs `write` (attempt number in) until it is refused; returns what the
/// writes before it acknowledged, and the refusal.
fn until_refused<T>(
    what: &str,
    mut write: impl FnMut(usize) -> (Response, Option<T>),
) -> (Vec<T>, Response) {
    let mut acknowledged = Vec::new();
    for attempt in 0..ATTEMPTS_MAX {
        let (answer, value) = write(attempt);
        match value {
            Some(value) if (200..300).contains(&answer.status) => acknowledged.push(value),
            _ => return (acknowledged, answer),
        }
    }
    panic!("{what}: {ATTEMPTS_MAX} writes on a full disk and none was refused");
}

/// About `bytes` of text that compresses badly (the same text each time
/// for the same `seed`): enough to need new pages on every write.
fn text(seed: usize, bytes: usize) -> String {
    let mut state = (seed as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut words = Vec::new();
    let mut len = 0;
    while len < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = format!("w{:x}", state % 0xff_ffff);
        len += word.len() + 1;
        words.push(word);
    }
    words.join(" ")
}

#[test]
fn every_write_on_a_full_disk_fails_in_one_line_and_loses_nothing() {
    let Some((sandbox, disk)) = sandbox_on_tmpfs() else {
        return;
    };
    let config = hash_config(&sandbox, "");
    let mut served = Served::start(&sandbox, &config);

    // Acknowledged while there is room.
    let mut memories: Vec<(String, String)> = Vec::new();
    for n in 0..5 {
        let content = format!("before the disk filled up, note {n}: {}", text(n, 200));
        let stored = served.json(
            "POST",
            "/v1/memories",
            Some(&json!({"content": content, "namespace": "project:disk"})),
        );
        memories.push((stored["id"].as_str().unwrap().to_owned(), content));
    }
    let mut documents = vec![("conventions".to_owned(), "indent with tabs".to_owned())];
    served.json(
        "PUT",
        "/v1/docs/conventions",
        Some(&json!({"text": "indent with tabs", "actor": "ada"})),
    );
    let mut work_items: Vec<String> = Vec::new();
    for n in 0..2 {
        let item = served.json(
            "POST",
            "/v1/work/items",
            Some(&json!({"description": format!("task {n}")})),
        );
        work_items.push(item["id"].as_str().unwrap().to_owned());
    }
    let claimed = served.json("POST", "/v1/work/claim", Some(&json!({"agent": "ada"})));
    let claimed_id = claimed["item"]["id"].as_str().unwrap().to_owned();

    disk.fill();

    // remember: the writes that still fit in the WAL are acknowledged, then one is refused.
    let (more, refused) = until_refused("remember", |n| {
        let content = format!("written on a full disk {n}: {}", text(100 + n, 8 * 1024));
        let answer = served.request(
            "POST",
            "/v1/memories",
            Some(&json!({"content": content, "namespace": "project:disk"})),
        );
        let id = (answer.status == 201)
            .then(|| (answer.json()["id"].as_str().unwrap().to_owned(), content));
        (answer, id)
    });
    assert_disk_full(&refused, &sandbox.db, "remember");
    memories.extend(more);

    // A document write.
    let (more, refused) = until_refused("document write", |n| {
        let (name, text) = (format!("notes-{n}"), text(1_000 + n, 8 * 1024));
        let answer = served.request(
            "PUT",
            &format!("/v1/docs/{name}"),
            Some(&json!({"text": text, "actor": "ada"})),
        );
        let written = (answer.status == 200).then_some((name, text));
        (answer, written)
    });
    assert_disk_full(&refused, &sandbox.db, "document write");
    documents.extend(more);

    // A work transition: submitting an item.
    let (more, refused) = until_refused("work submit", |n| {
        let answer = served.request(
            "POST",
            "/v1/work/items",
            Some(&json!({"description": format!("{n} {}", text(2_000 + n, 2 * 1024))})),
        );
        let id = (answer.status == 201).then(|| answer.json()["id"].as_str().unwrap().to_owned());
        (answer, id)
    });
    assert_disk_full(&refused, &sandbox.db, "work submit");
    work_items.extend(more);

    // import, in its own process next to the server: one line, naming the database.
    let import_file = sandbox.path("import.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|n| {
            memory_line(
                n,
                &format!("imported {n}: {}", text(3_000 + n as usize, 2 * 1024)),
            )
        })
        .collect();
    write_lines(&import_file, &lines);
    let import_args = ["--config", &config, "import", import_file.to_str().unwrap()];
    let line = common::fail(sandbox.run(&import_args), &import_args);
    assert!(
        line.contains("disk full: cannot write") && line.contains(sandbox.db.to_str().unwrap()),
        "{line}"
    );

    // Reads go on, and everything acknowledged is there.
    assert!(served.is_running(), "the server exited on a full disk");
    assert_eq!(served.request("GET", "/health", None).status, 200);
    for (id, content) in &memories {
        let memory = served.json("GET", &format!("/v1/memories/{id}"), None);
        assert_eq!(memory["content"].as_str(), Some(content.as_str()), "{id}");
    }
    let listed = served.json("GET", "/v1/memories?limit=100", None);
    assert_eq!(listed["memories"].as_array().unwrap().len(), memories.len());
    let recalled = served.json(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "before the disk filled up note", "limit": 5})),
    );
    assert!(
        !recalled["hits"].as_array().unwrap().is_empty(),
        "{recalled}"
    );
    for (name, text) in &documents {
        let read = served.json("GET", &format!("/v1/docs/{name}"), None);
        assert_eq!(read["text"].as_str(), Some(text.as_str()), "{name}");
    }
    let listed = served.json("GET", "/v1/work/items?limit=1000", None);
    let listed: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    for id in &work_items {
        assert!(listed.contains(&id.as_str()), "work item {id} lost");
    }
    let item = served.json("GET", &format!("/v1/work/items/{claimed_id}"), None);
    assert_eq!(item["state"], "claimed");
    for n in 0..40 {
        let absent = served.request("GET", &format!("/v1/memories/{}", common::id(n)), None);
        assert_eq!(absent.status, 404, "a refused import left memory {n}");
    }

    // Space back: every kind of write works again, at the first try.
    disk.free();
    let stored = served.json(
        "POST",
        "/v1/memories",
        Some(&json!({"content": "space is back", "namespace": "project:disk"})),
    );
    memories.push((
        stored["id"].as_str().unwrap().to_owned(),
        "space is back".into(),
    ));
    served.json(
        "PUT",
        "/v1/docs/after",
        Some(&json!({"text": "written after", "actor": "ada"})),
    );
    documents.push(("after".into(), "written after".into()));
    let done = served.json(
        "POST",
        &format!("/v1/work/items/{claimed_id}/complete"),
        Some(&json!({"agent": "ada"})),
    );
    assert_ne!(done["state"], "claimed", "{done}");
    common::ok(sandbox.run(&import_args), &import_args);
    for n in 0..40 {
        served.json("GET", &format!("/v1/memories/{}", common::id(n)), None);
    }
    for (id, content) in &memories {
        let memory = served.json("GET", &format!("/v1/memories/{id}"), None);
        assert_eq!(memory["content"].as_str(), Some(content.as_str()), "{id}");
    }
    for (name, text) in &documents {
        let read = served.json("GET", &format!("/v1/docs/{name}"), None);
        assert_eq!(read["text"].as_str(), Some(text.as_str()), "{name}");
    }
    assert_eq!(served.terminate(), Some(0));

    assert_integrity_ok(&sandbox, &config);
    assert_eq!(sandbox.count(), memories.len() as u64 + 40);
    drop(disk);
}

#[test]
fn the_embedding_worker_waits_out_a_full_disk_and_catches_up() {
    let Some((sandbox, disk)) = sandbox_on_tmpfs() else {
        return;
    };
    // Memories without vectors: imported with an embedder that cannot be reached.
    const IMPORTED: u32 = 200;
    let import_file = sandbox.path("import.jsonl");
    let lines: Vec<String> = (0..IMPORTED)
        .map(|n| memory_line(n, &format!("memory {n} waiting for its vector")))
        .collect();
    write_lines(&import_file, &lines);
    let (unreachable, _port) = unreachable_http_embedder(&sandbox);
    let import_args = [
        "--config",
        &unreachable,
        "import",
        import_file.to_str().unwrap(),
    ];
    let line = common::fail(sandbox.run(&import_args), &import_args);
    assert!(line.contains("embed"), "{line}");
    assert_eq!(sandbox.count(), u64::from(IMPORTED));

    // Room to open the database, not for the vectors (~1.5 KiB each at 384 dimensions).
    disk.fill_leaving(128 * 1024);
    let config = hash_config(
        &sandbox,
        "embedder_backoff_ms = 50\nembedder_timeout_ms = 1000",
    );
    let mut served = Served::start(&sandbox, &config);
    served.wait_until("the worker fails to store vectors", |s| {
        s.metric("mnemosyne_embedding_errors_total")
            .is_some_and(|n| n >= 2)
    });
    let failed_at_first = served.metric("mnemosyne_embedding_errors_total").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let failed = served.metric("mnemosyne_embedding_errors_total").unwrap();
    // Backing off from 50 ms, doubling up to 1 s: a few retries in 2 s,
    // not thousands (a worker that spins).
    assert!(
        failed - failed_at_first <= 20,
        "{failed_at_first} -> {failed}"
    );
    assert!(served.is_running(), "the server exited on a full disk");
    assert!(
        served.metric("mnemosyne_embeddings_missing").unwrap_or(0) > 0,
        "the vectors cannot all be stored on a full disk"
    );
    let listed = served.json("GET", "/v1/memories?limit=10", None);
    assert_eq!(listed["memories"].as_array().unwrap().len(), 10);

    disk.free();
    served.wait_until("every vector stored once space is back", |s| {
        s.metric("mnemosyne_embeddings_missing") == Some(0)
    });
    let recalled = served.json(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "memory 17 waiting", "mode": "vector", "limit": 3})),
    );
    assert!(
        !recalled["hits"].as_array().unwrap().is_empty(),
        "{recalled}"
    );
    assert_eq!(served.terminate(), Some(0));
    assert_integrity_ok(&sandbox, &config);
    drop(disk);
}
