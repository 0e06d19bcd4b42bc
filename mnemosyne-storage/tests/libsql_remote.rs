//! The conformance suite against a real libsql server (sqld), without and
//! with JWT authentication. Each fixture file gets a server of its own,
//! started on a free port of 127.0.0.1 with a data directory beside the
//! file, and stopped by its pid when its test has ended.
//!
//! The server binary is named by `MNEMOSYNE_TEST_SQLD` (`.ci/run` sets it
//! when it has one). Without it the suite says so and passes, unless `CI` is
//! set: then it is required.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod conformance;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mnemosyne_core::{Error, Limits, StorageAdmin};
use mnemosyne_storage::{LibsqlStorage, Location};

/// Env var naming the sqld binary.
const SQLD_ENV: &str = "MNEMOSYNE_TEST_SQLD";
/// Env var that makes this binary run the suite with JWT authentication.
const JWT_ENV: &str = "MNEMOSYNE_TEST_SQLD_JWT";
/// How long a starting server may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running sqld serving one fixture file.
struct Server {
    child: Child,
    port: u16,
    /// The fixture file it stands for: the server stops once the test's
    /// directory is gone.
    fixture: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Servers by fixture file.
static SERVERS: LazyLock<Mutex<HashMap<PathBuf, Server>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The signing key of this run and its public half (when JWT is on).
struct Jwt {
    key: ring::signature::Ed25519KeyPair,
    public_key_file: PathBuf,
    _dir: tempfile::TempDir,
}

static JWT: LazyLock<Option<Jwt>> = LazyLock::new(|| {
    std::env::var_os(JWT_ENV)?;
    let seed: [u8; 32] = rand::random();
    let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("an Ed25519 key");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let public_key_file = dir.path().join("jwt.pub");
    use ring::signature::KeyPair;
    std::fs::write(
        &public_key_file,
        URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
    )
    .expect("the public key file");
    Some(Jwt {
        key,
        public_key_file,
        _dir: dir,
    })
});

/// A read-write token signed with `key`: `{"a":"rw"}`, EdDSA.
fn token(key: &ring::signature::Ed25519KeyPair) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"a":"rw"}"#);
    let signed = format!("{header}.{claims}");
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()).as_ref());
    format!("{signed}.{signature}")
}

fn sqld() -> Option<PathBuf> {
    std::env::var_os(SQLD_ENV).map(PathBuf::from)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Starts a server for `fixture` and waits for its `/health`.
fn start(fixture: &Path) -> Server {
    let binary = sqld().expect("MNEMOSYNE_TEST_SQLD names sqld");
    let data = fixture.with_extension("sqld");
    for _attempt in 0..3 {
        let port = free_port();
        let mut command = Command::new(&binary);
        command
            .arg("--db-path")
            .arg(&data)
            .args(["--http-listen-addr", &format!("127.0.0.1:{port}")])
            .arg("--no-welcome")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(jwt) = JWT.as_ref() {
            command.arg("--auth-jwt-key-file").arg(&jwt.public_key_file);
        }
        let child = command.spawn().expect("sqld starts");
        let mut server = Server {
            child,
            port,
            fixture: fixture.to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            if health(port) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = server.child.kill();
    }
    panic!("sqld did not start for {}", fixture.display());
}

/// True when the server on `port` answers `GET /health` with 200.
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The location of the server standing for `fixture`, started on first use.
/// Servers of tests that have ended (their directory is gone) are stopped.
fn location_for(fixture: &Path) -> Location {
    let mut servers = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    servers.retain(|_, server| server.fixture.parent().is_some_and(Path::exists));
    let port = servers
        .entry(fixture.to_owned())
        .or_insert_with(|| start(fixture))
        .port;
    Location::Remote {
        url: format!("http://127.0.0.1:{port}"),
        auth_token: JWT.as_ref().map(|jwt| token(&jwt.key)),
    }
}

#[async_trait]
impl conformance::Backend for LibsqlStorage {
    type Held = mnemosyne_storage::HeldConnection;

    async fn open_at(path: &Path, limits: &Limits) -> mnemosyne_core::Result<Self> {
        let location = location_for(path);
        LibsqlStorage::open(&location, limits).await
    }

    async fn hold(&self) -> mnemosyne_core::Result<Self::Held> {
        self.hold_reader().await
    }

    async fn exec_raw(path: &Path, sql: &str) {
        let Location::Remote { url, auth_token } = location_for(path) else {
            unreachable!()
        };
        let database = libsql::Builder::new_remote(url, auth_token.unwrap_or_default())
            .build()
            .await
            .unwrap();
        database
            .connect()
            .unwrap()
            .execute_batch(sql)
            .await
            .unwrap();
    }
}

/// Without a token, or with one signed by another key, the server refuses
/// and opening says so in one line naming the server.
async fn a_server_that_wants_a_token_refuses_none_and_a_forged_one() {
    let jwt = JWT
        .as_ref()
        .expect("registered only when the servers ask for a JWT");
    let f = conformance::fixture();
    let Location::Remote { url, .. } = location_for(&f.path) else {
        unreachable!()
    };
    let forged = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
    for auth_token in [None, Some(token(&forged))] {
        let err = LibsqlStorage::open(
            &Location::Remote {
                url: url.clone(),
                auth_token,
            },
            &Limits::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::Storage(m) if m.contains(&url) && !m.contains('\n')),
            "{err:?}"
        );
    }
    let storage = LibsqlStorage::open(
        &Location::Remote {
            url,
            auth_token: Some(token(&jwt.key)),
        },
        &Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(storage.backend_name(), "libsql-remote");
    storage.close().await;
}

/// Sends `signal` to the server standing for `fixture`.
fn signal_server(fixture: &Path, signal: rustix::process::Signal) {
    let servers = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let server = servers.get(fixture).expect("a server for the fixture");
    let pid = rustix::process::Pid::from_raw(server.child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, signal).expect("the signal is sent");
}

fn server_url(fixture: &Path) -> String {
    let Location::Remote { url, .. } = location_for(fixture) else {
        unreachable!()
    };
    url
}

/// Asserts a one-line storage error naming the server and saying `what`.
fn assert_names_server(err: &Error, url: &str, what: &str) {
    assert!(
        matches!(err, Error::Storage(m) if m.contains(url) && m.contains(what) && !m.contains('\n')),
        "{err:?}"
    );
}

/// A server that stops answering fails each operation after
/// `remote_request_timeout_ms` with one line naming it, never a hang; once
/// it answers again so does the store. A server that is gone fails at once.
async fn a_server_that_stops_answering_is_a_clear_error_not_a_hang() {
    use rustix::process::Signal;
    let f = conformance::fixture();
    let limits = Limits {
        remote_request_timeout_ms: 500,
        ..Limits::default()
    };
    let store = conformance::open::<LibsqlStorage>(&f.path, limits).await;
    let kept = store
        .remember(conformance::new_memory("before the freeze", "global"))
        .await
        .unwrap();
    let url = server_url(&f.path);

    signal_server(&f.path, Signal::STOP);
    let started = Instant::now();
    let read = store.get(kept.id).await.unwrap_err();
    let write = store
        .remember(conformance::new_memory("during the freeze", "global"))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    signal_server(&f.path, Signal::CONT);
    assert_names_server(&read, &url, "remote_request_timeout_ms");
    assert_names_server(&write, &url, "remote_request_timeout_ms");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");

    assert_eq!(
        store.get(kept.id).await.unwrap().content,
        "before the freeze",
        "the store answers again once the server does"
    );
    store
        .remember(conformance::new_memory("after the freeze", "global"))
        .await
        .unwrap();

    signal_server(&f.path, Signal::KILL);
    let started = Instant::now();
    let gone = store.get(kept.id).await.unwrap_err();
    assert_names_server(&gone, &url, "libsql");
    assert!(started.elapsed() < Duration::from_secs(10));
    store.close().await;
}

/// A loopback proxy in front of a server that counts the HTTP requests it
/// passes on (each starts with a request line `POST /...`).
struct CountingProxy {
    port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingProxy {
    async fn start(server_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await
                    else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async move {
                        let mut buffer = vec![0u8; 64 * 1024];
                        while let Ok(n) = client_read.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            let seen = &buffer[..n];
                            let posts = seen.windows(6).filter(|w| w == b"POST /").count();
                            counted.fetch_add(posts, Ordering::Relaxed);
                            if server_write.write_all(seen).await.is_err() {
                                break;
                            }
                        }
                    };
                    let downstream = async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        Self { port, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How many requests a recall costs a remote server: one per statement
/// today (a keyword probe per query word, the ranking, the rows, their
/// links), inside one read transaction. Issue 20 wants at most 3; this
/// keeps today's figure from growing.
async fn round_trips_of_a_recall_stay_bounded() {
    let f = conformance::fixture();
    let url = server_url(&f.path);
    let server_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = CountingProxy::start(server_port).await;
    let location = Location::Remote {
        url: format!("http://127.0.0.1:{}", proxy.port),
        auth_token: JWT.as_ref().map(|jwt| token(&jwt.key)),
    };
    let limits = Limits::default();
    let storage = LibsqlStorage::open(&location, &limits).await.unwrap();
    let store = mnemosyne_storage::MemoryStore::new(std::sync::Arc::new(storage), limits);
    for i in 0..20 {
        store
            .remember(conformance::new_memory(
                &format!("lease renewal note {i} about the work queue"),
                "global",
            ))
            .await
            .unwrap();
    }
    let before = proxy.requests();
    let recall = store
        .recall(mnemosyne_storage::RecallQuery {
            text: "lease renewal queue".into(),
            limit: Some(5),
            ..mnemosyne_storage::RecallQuery::default()
        })
        .await
        .unwrap();
    let requests = proxy.requests() - before;
    assert_eq!(recall.hits.len(), 5);
    assert!(
        (1..=ROUND_TRIPS_OF_A_RECALL_MAX).contains(&requests),
        "a keyword recall of three words took {requests} requests"
    );
    store.close().await;
}

/// Today's requests for a keyword recall of three words: two read
/// operations (the ranked memories, their linked ones), each a BEGIN, its
/// statements (three probes, the ranking, the rows, their links; the linked
/// memories, their links) and a COMMIT. Issue 20 wants 3.
const ROUND_TRIPS_OF_A_RECALL_MAX: usize = 18;

/// The conformance checks that hold for any location: those of the local
/// file itself (its WAL, its open files, a crash of the writing process, the
/// heap limit of this process) are not here.
fn remote_trials() -> Vec<libtest_mimic::Trial> {
    let local_only = [
        "a_large_write_does_not_leave_a_large_wal",
        "open_files_stay_bounded",
        "crash_keeps_acknowledged_writes",
    ];
    let mut trials: Vec<_> = conformance_trials!(LibsqlStorage)
        .into_iter()
        .filter(|trial| !local_only.contains(&trial.name()))
        .collect();
    trials.extend(named_trials![
        a_server_that_stops_answering_is_a_clear_error_not_a_hang,
        round_trips_of_a_recall_stay_bounded
    ]);
    if JWT.is_some() {
        trials.extend(named_trials![
            a_server_that_wants_a_token_refuses_none_and_a_forged_one
        ]);
    }
    trials
}

fn main() -> std::process::ExitCode {
    if sqld().is_none() {
        if std::env::var_os("CI").is_some() {
            eprintln!("{SQLD_ENV} is not set: CI requires the remote libsql tests");
            return std::process::ExitCode::FAILURE;
        }
        println!("skipped: set {SQLD_ENV} to a sqld binary to run the remote libsql suite");
        return std::process::ExitCode::SUCCESS;
    }
    let code = conformance::run(remote_trials());
    SERVERS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    if JWT.is_some() || code != std::process::ExitCode::SUCCESS {
        return code;
    }
    // The same suite again, every server asking for a JWT: this binary
    // once more, with the same arguments (a filter applies to both).
    println!("\nthe remote suite again, with JWT authentication:");
    let with_jwt = Command::new(std::env::current_exe().expect("this binary"))
        .args(std::env::args_os().skip(1))
        .env(JWT_ENV, "1")
        .status()
        .expect("this binary runs again");
    if with_jwt.success() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
