//! `mnemosyne serve http` as a child process, spoken to over real loopback
//! sockets with a minimal HTTP/1.1 client (so that a test controls every
//! byte: a subscriber that never reads, a body over the limit, a foreign
//! Host).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::Sandbox;
/// Socket read timeout: a server that stops answering fails the test
/// instead of hanging CI. Not a timed assertion: nothing checks how fast.
pub const READ_TIMEOUT_S: u64 = 60;

/// A running `serve http` and the address it listens on.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    _stderr: std::thread::JoinHandle<()>,
}

impl Served {
    pub fn start(sandbox: &Sandbox, bind: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(sandbox, &["--bind", bind], env)
    }

    /// `serve http` with these arguments (`--bind` among them).
    pub fn start_with(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = sandbox.command();
        command.args(["serve", "http"]).args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Self::spawn(command)
    }

    /// Runs `command` (a `serve http`) and waits for the line saying where
    /// it listens.
    pub fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn serve http");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = mpsc::channel();
        // Reads stderr to its end, so the server never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("mnemosyne: http api listening on http://") {
                    let _ = sender.send(url.to_owned());
                }
            }
        });
        let bound: SocketAddr = receiver
            .recv_timeout(Duration::from_secs(READ_TIMEOUT_S))
            .expect("the server says where it listens")
            .parse()
            .expect("an address");
        // A wildcard bind is reached through loopback.
        let addr = SocketAddr::from(([127, 0, 0, 1], bound.port()));
        Self {
            child,
            addr,
            _stderr: reader,
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::new(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        self.connect().send(method, path, &[], body)
    }

    /// A number field of `/proc/<pid>/status` (`Threads`, `VmRSS` in KiB).
    pub fn status_field(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    }

    /// The value of a metric of `/metrics`, if it is there.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let metrics = self.request("GET", "/metrics", None);
        assert_eq!(metrics.status, 200);
        let text = String::from_utf8(metrics.body).expect("utf-8");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|value| value.parse().expect("a whole number"))
    }

    /// Polls `/metrics` until `name` reads `value`, at most [`READ_TIMEOUT_S`].
    pub fn wait_for_metric(&self, name: &str, value: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(READ_TIMEOUT_S);
        while self.metric(name) != Some(value) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never read {value} (now {:?})",
                self.metric(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and the process reaped.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    pub fn threads(&self) -> u64 {
        self.status_field("Threads")
    }

    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS")
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("wait").code()
    }
}

/// A response: status, headers (lower-case names), body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the stable error shape and returns the code.
    pub fn error_code(&self) -> String {
        let json = self.json();
        assert!(json["error"]["message"].is_string(), "{json}");
        json["error"]["code"].as_str().expect("code").to_owned()
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub addr: SocketAddr,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(READ_TIMEOUT_S)))
            .expect("timeout");
        Self {
            reader: BufReader::new(stream),
            addr,
        }
    }

    /// Writes a request in one write (head and body), so that neither
    /// side's Nagle and delayed-ACK logic holds it.
    pub fn write_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        // The server may answer (413) and close before reading a big body.
        let _ = self.reader.get_mut().write_all(&request);
    }

    /// Writes these bytes as they are (a request head of the test's own).
    pub fn write_bytes(&mut self, raw: &[u8]) {
        let _ = self.reader.get_mut().write_all(raw);
    }

    /// Writes these bytes and reads the response.
    pub fn send_bytes(&mut self, raw: &[u8]) -> Response {
        self.write_bytes(raw);
        self.read_response()
    }

    /// Reads until the server closes the connection (end of stream, or a
    /// reset); what it sent before. Fails after [`READ_TIMEOUT_S`].
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let mut received = Vec::new();
        match self.reader.read_to_end(&mut received) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("the server never closed the connection: {error}"),
        }
        received
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        let body = body.map(Value::to_string);
        self.send_raw(method, path, headers, body.as_deref().map(str::as_bytes))
    }

    pub fn send_raw(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.write_request(method, path, headers, body);
        self.read_response()
    }

    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        (status, headers)
    }

    pub fn read_response(&mut self) -> Response {
        let (status, headers) = self.read_head();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().expect("length"))
            .or((status == 204).then_some(0))
            .expect("a content-length");
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("body");
        Response {
            status,
            headers,
            body,
        }
    }

    /// Opens `/v1/events`; returns after the response head.
    pub fn subscribe(&mut self, headers: &[(&str, &str)]) -> u16 {
        self.write_request("GET", "/v1/events", headers, None);
        let (status, headers) = self.read_head();
        if status == 200 {
            assert!(
                headers
                    .iter()
                    .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")),
                "{headers:?}"
            );
        }
        status
    }

    /// The next SSE event of name `name` (chunked framing and comments
    /// skipped): its data.
    pub fn next_event(&mut self, name: &str) -> Value {
        let mut current = None;
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("read event stream");
            assert!(read > 0, "the event stream ended");
            let line = line.trim_end();
            if let Some(event) = line.strip_prefix("event: ") {
                current = Some(event.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ")
                && current.as_deref() == Some(name)
            {
                return serde_json::from_str(data).expect("event data is JSON");
            }
        }
    }
}
