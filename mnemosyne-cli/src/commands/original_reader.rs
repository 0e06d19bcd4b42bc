//! Reads the records of an export of the original system one at a time,
//! whatever its shape, never holding more than one record:
//!
//! - a JSON array of records (its `export` to a `.json` file or stdout);
//! - JSON objects one after another (its `.jsonl` export: one per line);
//! - an object with a `memories` array (its `/memory-export` command).
//!
//! The first byte that is not whitespace (after a BOM) tells `[` from `{`.
//! Each record is parsed as it streams by (serde_json over a buffered
//! reader), and a record longer than `record_bytes_max` stops the read
//! with an error naming it before it is held whole. Malformed JSON stops
//! the read too, naming the line and column: the file is not an export.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The shape of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `[record, ...]`.
    Array,
    /// `{record}` objects one after another (JSON lines), or one object
    /// holding the records in `memories`.
    Objects,
}

/// One record as read.
#[derive(Debug)]
pub struct RawRecord {
    /// 1-based position in the file.
    pub number: u64,
    /// The line its last byte is on.
    pub line: u64,
    /// The record.
    pub value: Value,
}

/// What the callback of [`read_records`] returns to stop the read.
#[derive(Debug)]
pub struct Stopped(pub anyhow::Error);

/// Calls `each` with every record of the file at `path`, in order; stops
/// at the first error of the file or of `each`.
pub fn read_records(
    path: &Path,
    record_bytes_max: u64,
    each: &mut dyn FnMut(RawRecord) -> Result<(), Stopped>,
) -> Result<Shape> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let lines = Rc::new(Cell::new(0u64));
    let first = skip_whitespace(&mut reader, &lines, true)?;
    let shape = match first {
        Some(b'[') => Shape::Array,
        Some(b'{') => Shape::Objects,
        Some(other) => {
            return Err(anyhow!(
                "line {}: not an export of the original system: expected a JSON array or JSON objects, found {:?}",
                lines.get() + 1,
                char::from(other)
            ));
        }
        None => return Err(anyhow!("{} is empty", path.display())),
    };
    let context = RefCell::new(ReadState {
        each,
        number: 0,
        stopped: None,
    });
    let since_mark = Rc::new(Cell::new(0u64));
    loop {
        let mut counted = Counted {
            inner: &mut reader,
            since_mark: Rc::clone(&since_mark),
            bytes_max: record_bytes_max,
            lines: Rc::clone(&lines),
        };
        let walk = Walk {
            context: &context,
            since_mark: &since_mark,
            lines: &lines,
        };
        since_mark.set(0);
        let mut de = serde_json::Deserializer::from_reader(&mut counted);
        let result = match shape {
            Shape::Array => Records(walk).deserialize(&mut de),
            Shape::Objects => TopObject(walk).deserialize(&mut de),
        };
        if let Err(error) = result {
            let mut context = context.borrow_mut();
            if let Some(Stopped(stopped)) = context.stopped.take() {
                return Err(stopped);
            }
            let record = context.number + 1;
            if since_mark.get() > record_bytes_max {
                return Err(anyhow!(
                    "record {record} (line {}): longer than {record_bytes_max} bytes, the most a record within the limits can take",
                    lines.get() + 1
                ));
            }
            let message = error.to_string();
            let position = format!(" at line {} column {}", error.line(), error.column());
            let message = message.strip_suffix(&position).unwrap_or(&message);
            return Err(anyhow!(
                "record {record} (line {}): malformed JSON: {message}",
                lines.get() + 1
            ));
        }
        drop(de);
        if shape == Shape::Array {
            if let Some(extra) = skip_whitespace(&mut reader, &lines, false)? {
                return Err(anyhow!(
                    "line {}: unexpected {:?} after the array",
                    lines.get() + 1,
                    char::from(extra)
                ));
            }
            return Ok(shape);
        }
        match skip_whitespace(&mut reader, &lines, false)? {
            None => return Ok(shape),
            Some(b'{') => continue,
            Some(other) => {
                return Err(anyhow!(
                    "line {}: expected a JSON object, found {:?}",
                    lines.get() + 1,
                    char::from(other)
                ));
            }
        }
    }
}

/// Skips whitespace (and a BOM at the start), counting lines; the next
/// byte, not consumed, or `None` at the end.
fn skip_whitespace(
    reader: &mut BufReader<File>,
    lines: &Cell<u64>,
    at_start: bool,
) -> Result<Option<u8>> {
    let mut first = at_start;
    loop {
        let buf = reader.fill_buf().context("cannot read the file")?;
        if buf.is_empty() {
            return Ok(None);
        }
        if first {
            first = false;
            if buf.starts_with("\u{feff}".as_bytes()) {
                reader.consume(3);
                continue;
            }
        }
        let mut used = 0;
        for &byte in buf {
            match byte {
                b'\n' => lines.set(lines.get() + 1),
                b' ' | b'\t' | b'\r' => {}
                other => {
                    reader.consume(used);
                    return Ok(Some(other));
                }
            }
            used += 1;
        }
        reader.consume(used);
    }
}

/// A reader that counts lines and refuses to read more than `bytes_max`
/// bytes since the last mark (the start of the current record).
struct Counted<'a> {
    inner: &'a mut BufReader<File>,
    since_mark: Rc<Cell<u64>>,
    bytes_max: u64,
    lines: Rc<Cell<u64>>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.since_mark.get() > self.bytes_max {
            return Err(io::Error::other("record too long"));
        }
        let n = self.inner.read(buf)?;
        self.since_mark.set(self.since_mark.get() + n as u64);
        let newlines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        self.lines.set(self.lines.get() + newlines);
        Ok(n)
    }
}

/// The callback and where the read is.
struct ReadState<'a> {
    each: &'a mut dyn FnMut(RawRecord) -> Result<(), Stopped>,
    number: u64,
    stopped: Option<Stopped>,
}

#[derive(Clone, Copy)]
struct Walk<'c, 'a> {
    context: &'c RefCell<ReadState<'a>>,
    since_mark: &'c Cell<u64>,
    lines: &'c Cell<u64>,
}

impl Walk<'_, '_> {
    fn emit<E: de::Error>(&self, value: Value) -> Result<(), E> {
        let mut context = self.context.borrow_mut();
        context.number += 1;
        let record = RawRecord {
            number: context.number,
            line: self.lines.get() + 1,
            value,
        };
        if let Err(stopped) = (context.each)(record) {
            context.stopped = Some(stopped);
            return Err(E::custom("stopped"));
        }
        Ok(())
    }
}

/// A sequence of records, each emitted as soon as it is parsed.
struct Records<'c, 'a>(Walk<'c, 'a>);

impl<'de> DeserializeSeed<'de> for Records<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of memories")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.0.since_mark.set(0);
            match seq.next_element::<Value>()? {
                Some(value) => self.0.emit(value)?,
                None => return Ok(()),
            }
        }
    }
}

/// A top-level object: one record, or (with a `memories` array) the
/// records inside it.
struct TopObject<'c, 'a>(Walk<'c, 'a>);

impl<'de> DeserializeSeed<'de> for TopObject<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopObject<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a memory, or an object with a memories array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fields = serde_json::Map::new();
        let mut holds_records = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "memories" && !fields.contains_key("content") {
                map.next_value_seed(Records(self.0))?;
                holds_records = true;
            } else {
                let value: Value = map.next_value()?;
                fields.insert(key, value);
            }
        }
        if !holds_records {
            self.0.emit(Value::Object(fields))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record's number, line and value.
    type Seen = Vec<(u64, u64, Value)>;

    fn read(text: &str, bytes_max: u64) -> Result<(Shape, Seen)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.json");
        std::fs::write(&path, text).unwrap();
        let mut seen = Vec::new();
        let shape = read_records(&path, bytes_max, &mut |r| {
            seen.push((r.number, r.line, r.value));
            Ok(())
        })?;
        Ok((shape, seen))
    }

    #[test]
    fn reads_the_three_shapes() {
        let (shape, records) = read(
            "\u{feff}[\n  {\"content\": \"a\"},\n  {\"content\": \"b\"}\n]\n",
            1024,
        )
        .unwrap();
        assert_eq!(shape, Shape::Array);
        assert_eq!(records.len(), 2);
        assert_eq!((records[1].0, records[1].1), (2, 3));
        assert_eq!(records[1].2["content"], "b");

        let (shape, records) =
            read("{\"content\": \"a\"}\n\n{\"content\": \"b\"}\n", 1024).unwrap();
        assert_eq!(shape, Shape::Objects);
        assert_eq!(
            records.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            [(1, 1), (2, 3)]
        );

        let wrapped = "{\"export_date\": \"2025-01-01\", \"total_memories\": 2,\n \"memories\": [\n {\"content\": \"a\"},\n {\"content\": \"b\"}]}";
        let (shape, records) = read(wrapped, 1024).unwrap();
        assert_eq!(shape, Shape::Objects);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].2, serde_json::json!({"content": "a"}));
        let (_, empty) = read("[]", 1024).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn a_long_record_stops_the_read_before_it_is_held() {
        let long = format!("[{{\"content\": \"{}\"}}]", "x".repeat(200));
        let error = read(&long, 100).unwrap_err().to_string();
        assert!(
            error.starts_with("record 1 (line 1): longer than 100 bytes"),
            "{error}"
        );
        // Each record has the whole bound: two short records fit in a small one.
        let two = "[{\"content\": \"aaaaaaaaaa\"}, {\"content\": \"bbbbbbbbbb\"}]";
        assert_eq!(read(two, 40).unwrap().1.len(), 2);
    }

    #[test]
    fn malformed_files_are_one_line_naming_where() {
        for (text, expected) in [
            ("", "is empty"),
            ("   \n", "is empty"),
            ("nope", "line 1: not an export of the original system"),
            (
                "[{\"content\": \"a\"},\n {\"content\": }]",
                "record 2 (line 2): malformed JSON: expected value",
            ),
            (
                "{\"content\": \"a\"}\n{\"content\": \"b\"\n",
                "record 2 (line 3): malformed JSON: EOF while parsing",
            ),
            (
                "{\"content\": \"a\"}\n[1]",
                "line 2: expected a JSON object, found '['",
            ),
            (
                "[{\"content\": \"a\"}] x",
                "line 1: unexpected 'x' after the array",
            ),
            (
                "[1, 2",
                "record 3 (line 1): malformed JSON: EOF while parsing a list",
            ),
        ] {
            let error = read(text, 1024).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_callback_stops_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.json");
        std::fs::write(&path, "[{\"content\": \"a\"}, {\"content\": \"b\"}]").unwrap();
        let mut calls = 0;
        let error = read_records(&path, 1024, &mut |_| {
            calls += 1;
            Err(Stopped(anyhow!("enough")))
        })
        .unwrap_err();
        assert_eq!((calls, error.to_string()), (1, "enough".to_owned()));
    }
}
