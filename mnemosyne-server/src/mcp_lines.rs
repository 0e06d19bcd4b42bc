//! The stdio framing in front of rmcp: every JSON-RPC line the client sends
//! gets an answer, and no line is ever held whole past
//! `mcp_message_bytes_max`.
//!
//! rmcp's own line transport drops an oversized line, and text that is not
//! JSON, without answering: the client then waits for its own timeout. So the
//! client's bytes go through [`gate_lines`] first: a line of at most
//! `mcp_message_bytes_max` bytes (its `\n` not counted) that parses as JSON
//! goes on to rmcp; a longer line is read and thrown away chunk by chunk (its
//! first bytes kept to find its `id`) and answered with Invalid Request
//! (-32600); a line that is not UTF-8 JSON is answered with Parse error
//! (-32700, id null). [`write_lines`] is the only writer of the client's
//! stream: rmcp's messages and these answers go out whole, one line at a
//! time, never interleaved.

use std::io;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// JSON-RPC's Invalid Request code: the answer to an oversized line.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's Parse error code: the answer to a line that is not JSON.
pub const PARSE_ERROR: i64 = -32700;

/// Bytes of an oversized line kept to look for its `id`.
const ID_PREFIX_BYTES: usize = 4096;
/// Longest string `id` echoed back from an oversized line.
const ID_STRING_BYTES_MAX: usize = 256;
/// Bytes read from the client per system call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Answers of the gate waiting for the writer; the gate waits when it is full.
pub(crate) const ANSWERS_QUEUED_MAX: usize = 16;

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// A whole line within the limit, with its `\n` (absent only at the end
    /// of the stream).
    Whole(&'a [u8]),
    /// A line over the limit, skipped: its length without the `\n`, and its
    /// `id` when its first bytes name one.
    Oversized { bytes: u64, id: Value },
}

/// Reads `\n`-terminated lines of at most `max_bytes` bytes (the `\n` not
/// counted); a longer line is consumed without being held whole.
struct LineReader<R> {
    read: BufReader<R>,
    line: Vec<u8>,
    max_bytes: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(read: R, max_bytes: usize) -> Self {
        Self {
            read: BufReader::with_capacity(READ_CHUNK_BYTES, read),
            line: Vec::new(),
            max_bytes,
        }
    }

    /// The next line; `None` at the end of the stream.
    async fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.line.clear();
        // Once over the limit: the bytes of the line so far, and its start.
        let mut skipped: Option<(u64, Vec<u8>)> = None;
        loop {
            let chunk = self.read.fill_buf().await?;
            if chunk.is_empty() {
                // An unterminated last line: rmcp would not read it either,
                // but a short one is still worth passing on.
                return Ok(match skipped {
                    Some(_) => None,
                    None if self.line.is_empty() => None,
                    None => Some(Line::Whole(&self.line)),
                });
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let take = newline.map_or(chunk.len(), |at| at + 1);
            let content = newline.unwrap_or(chunk.len());
            match &mut skipped {
                Some((bytes, _)) => *bytes += content as u64,
                None if self.line.len() + content > self.max_bytes => {
                    let bytes = (self.line.len() + content) as u64;
                    let mut prefix = self.line[..self.line.len().min(ID_PREFIX_BYTES)].to_vec();
                    let room = ID_PREFIX_BYTES - prefix.len();
                    prefix.extend_from_slice(&chunk[..content.min(room)]);
                    self.line.clear();
                    skipped = Some((bytes, prefix));
                }
                None => self.line.extend_from_slice(&chunk[..take]),
            }
            self.read.consume(take);
            if newline.is_some() {
                return Ok(Some(match skipped {
                    Some((bytes, prefix)) => Line::Oversized {
                        bytes,
                        id: scan_id(&prefix),
                    },
                    None => Line::Whole(&self.line),
                }));
            }
        }
    }
}

/// What to do with a whole line.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// JSON: rmcp reads it (and answers what is not a JSON-RPC message).
    Forward,
    /// Only whitespace: nothing to answer.
    Blank,
    /// Not UTF-8 JSON: answered with Parse error and this message.
    Refuse(String),
}

fn judge(line: &[u8]) -> Verdict {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // RFC 8259 lets a parser ignore a byte order mark; rmcp does.
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(error) => {
            return Verdict::Refuse(format!(
                "parse error: the message is not UTF-8 (invalid byte at offset {})",
                error.valid_up_to()
            ));
        }
    };
    if text.trim().is_empty() {
        return Verdict::Blank;
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Verdict::Forward,
        Err(error) => Verdict::Refuse(format!("parse error: {error}")),
    }
}

/// The `id` of the object whose first bytes are `prefix`, when it is an
/// integer or a short string that ends within them; else null. Only a key
/// of the outermost object counts, not an `"id"` nested in the params.
fn scan_id(prefix: &[u8]) -> Value {
    let mut depth = 0usize;
    let mut at = 0;
    while at < prefix.len() {
        match prefix[at] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let Some(end) = string_end(prefix, at) else {
                    return Value::Null;
                };
                let is_id = depth == 1 && &prefix[at + 1..end] == b"id";
                at = skip_whitespace(prefix, end + 1);
                if is_id && prefix.get(at) == Some(&b':') {
                    return id_value(prefix, skip_whitespace(prefix, at + 1));
                }
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    Value::Null
}

/// The index of the quote closing the string opened at `open`.
fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut at = open + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return Some(at),
            _ => at += 1,
        }
    }
    None
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// The id value starting at `at`: an integer, or a string without escapes
/// of at most [`ID_STRING_BYTES_MAX`] bytes, whole within `bytes`.
fn id_value(bytes: &[u8], at: usize) -> Value {
    match bytes.get(at) {
        Some(b'"') => string_end(bytes, at)
            .map(|end| &bytes[at + 1..end])
            .filter(|text| text.len() <= ID_STRING_BYTES_MAX && !text.contains(&b'\\'))
            .and_then(|text| std::str::from_utf8(text).ok())
            .map_or(Value::Null, |text| Value::String(text.to_owned())),
        Some(b'-' | b'0'..=b'9') => {
            let digits = bytes[at + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let end = at + 1 + digits;
            // A number cut by the end of the prefix, or not an integer, is not echoed.
            let ended = bytes
                .get(end)
                .is_some_and(|b| matches!(b, b',' | b'}') || b.is_ascii_whitespace());
            std::str::from_utf8(&bytes[at..end])
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .filter(|_| ended)
                .map_or(Value::Null, Value::from)
        }
        _ => Value::Null,
    }
}

/// A JSON-RPC error response, as one line.
fn error_line(id: Value, code: i64, message: &str) -> Vec<u8> {
    let mut line = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// Reads the client's lines from `read` until it ends: JSON lines within
/// `max_bytes` go to `to_rmcp`, the others are answered through `answers`.
/// Returns when `read` ends, or when rmcp or the writer is gone.
pub(crate) async fn gate_lines<R, W>(
    read: R,
    mut to_rmcp: W,
    answers: mpsc::Sender<Vec<u8>>,
    max_bytes: usize,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = LineReader::new(read, max_bytes);
    while let Some(line) = lines.next_line().await? {
        let answer = match line {
            Line::Whole(bytes) => match judge(bytes) {
                Verdict::Forward => {
                    to_rmcp.write_all(bytes).await?;
                    if !bytes.ends_with(b"\n") {
                        to_rmcp.write_all(b"\n").await?;
                    }
                    to_rmcp.flush().await?;
                    continue;
                }
                Verdict::Blank => continue,
                Verdict::Refuse(message) => {
                    tracing::debug!(%message, "mcp line refused");
                    error_line(Value::Null, PARSE_ERROR, &message)
                }
            },
            Line::Oversized { bytes, id } => {
                tracing::warn!(bytes, %id, max_bytes, "mcp message over mcp_message_bytes_max skipped");
                let message = format!(
                    "message of {bytes} bytes exceeds mcp_message_bytes_max ({max_bytes} bytes)"
                );
                error_line(id, INVALID_REQUEST, &message)
            }
        };
        if answers.send(answer).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// The one writer of the client's stream: copies rmcp's output and writes
/// the gate's answers between two of rmcp's lines, never inside one. Returns
/// once rmcp's output has ended and the gate has dropped its sender.
pub(crate) async fn write_lines<R, W>(
    mut from_rmcp: R,
    mut answers: mpsc::Receiver<Vec<u8>>,
    mut out: W,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let (mut rmcp_open, mut answers_open, mut mid_line) = (true, true, false);
    while rmcp_open || answers_open {
        tokio::select! {
            read = from_rmcp.read(&mut chunk), if rmcp_open => {
                let read = read?;
                if read == 0 {
                    rmcp_open = false;
                    if mid_line {
                        out.write_all(b"\n").await?;
                        mid_line = false;
                    }
                    out.flush().await?;
                    continue;
                }
                out.write_all(&chunk[..read]).await?;
                mid_line = chunk[read - 1] != b'\n';
                if !mid_line {
                    out.flush().await?;
                }
            }
            answer = answers.recv(), if answers_open && !mid_line => match answer {
                Some(line) => {
                    out.write_all(&line).await?;
                    out.flush().await?;
                }
                None => answers_open = false,
            },
            else => break,
        }
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max_bytes: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, max_bytes);
        let mut seen = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            seen.push(match line {
                Line::Whole(bytes) => format!("whole {}", String::from_utf8_lossy(bytes)),
                Line::Oversized { bytes, id } => format!("over {bytes} {id}"),
            });
        }
        seen
    }

    #[tokio::test]
    async fn lines_up_to_the_limit_pass_and_longer_ones_are_measured_and_skipped() {
        let exact = format!("{{\"id\":7,\"p\":\"{}\"}}", "a".repeat(10));
        let max = exact.len();
        let over = format!("{{\"id\":8,\"p\":\"{}\"}}", "a".repeat(11));
        let input = format!("{exact}\n{over}\n{exact}\nlast");
        assert_eq!(
            lines_of(input.as_bytes(), max).await,
            [
                format!("whole {exact}\n"),
                format!("over {} 8", max + 1),
                format!("whole {exact}\n"),
                "whole last".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_longer_than_the_read_buffer_is_counted_whole() {
        let long = format!("{{\"id\":\"abc\",\"p\":\"{}\"}}", "z".repeat(300_000));
        let input = format!("{long}\n{{}}\n");
        assert_eq!(
            lines_of(input.as_bytes(), 1000).await,
            [
                format!("over {} \"abc\"", long.len()),
                "whole {}\n".to_owned()
            ]
        );
        // An unterminated oversized end of stream is dropped.
        assert!(lines_of(long.as_bytes(), 1000).await.is_empty());
    }

    #[test]
    fn the_id_is_read_only_from_the_outer_object_and_only_when_whole() {
        assert_eq!(
            scan_id(br#"{"jsonrpc":"2.0","id":42,"method":"x""#),
            json!(42)
        );
        assert_eq!(scan_id(br#"{ "id" : -3 }"#), json!(-3));
        assert_eq!(scan_id(br#"{"id":"req-1","params":{"#), json!("req-1"));
        assert_eq!(scan_id(br#"{"params":{"id":5},"id":6,"#), json!(6));
        assert_eq!(scan_id(br#"{"params":{"id":5,"pad":"xxxx"#), Value::Null);
        assert_eq!(scan_id(br#"{"method":"id","x":1"#), Value::Null);
        assert_eq!(scan_id(br#"{"id":12"#), Value::Null, "cut");
        assert_eq!(scan_id(br#"{"id":1.5,"#), Value::Null);
        assert_eq!(scan_id(br#"{"id":"a\"b","#), Value::Null);
        assert_eq!(scan_id(br#"{"id":null,"#), Value::Null);
        let long = format!("{{\"id\":\"{}\",", "s".repeat(300));
        assert_eq!(scan_id(long.as_bytes()), Value::Null);
        assert_eq!(scan_id(br#"{"note":"say \"id\": 9","id":10,"#), json!(10));
    }

    #[test]
    fn lines_that_are_not_utf8_json_are_refused_blank_ones_skipped() {
        assert_eq!(judge(b"{\"a\":1}\r\n"), Verdict::Forward);
        assert_eq!(judge(b"\xEF\xBB\xBF{}\n"), Verdict::Forward);
        assert_eq!(judge(b"[1,2]\n"), Verdict::Forward);
        assert_eq!(judge(b"  \r\n"), Verdict::Blank);
        assert!(
            matches!(judge(b"{not json\n"), Verdict::Refuse(m) if m.starts_with("parse error: "))
        );
        assert!(
            matches!(judge(b"{\"a\":\"\xFF\"}\n"), Verdict::Refuse(m) if m.contains("not UTF-8 (invalid byte at offset 6)"))
        );
    }

    #[tokio::test]
    async fn answers_never_land_inside_a_line_of_rmcp() {
        let (mut rmcp, from_rmcp) = tokio::io::duplex(64);
        let (answers, queued) = mpsc::channel(ANSWERS_QUEUED_MAX);
        let mut out = Vec::new();
        let writer = write_lines(from_rmcp, queued, &mut out);
        let feed = async move {
            rmcp.write_all(b"{\"first\":").await.unwrap();
            tokio::task::yield_now().await;
            answers.send(b"{\"answer\":1}\n".to_vec()).await.unwrap();
            tokio::task::yield_now().await;
            rmcp.write_all(b"true}\n{\"second\":true}\n").await.unwrap();
            drop(rmcp);
            drop(answers);
        };
        let (written, ()) = tokio::join!(writer, feed);
        written.unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            ["{\"answer\":1}", "{\"first\":true}", "{\"second\":true}"]
        );
    }
}
