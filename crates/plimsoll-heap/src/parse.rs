//! The streaming parser: one pass over the bytes with a hand-written scanner, straight into
//! the columns of [`Snapshot`]. Field positions come from `snapshot.meta`, never assumed.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::error::Error;
use crate::snapshot::{Kinds, Location, Snapshot};

/// Bytes read from the file at a time.
const CHUNK: usize = 1 << 20;

/// Reads and checks the snapshot at `path`.
pub fn parse_file(path: &Path) -> Result<Snapshot, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    parse_with_hint(file, Some(size)).map_err(|error| match error {
        Error::Io { source, .. } => io(source),
        other => other,
    })
}

/// Reads and checks a snapshot from any reader (buffering is done here).
pub fn parse(reader: impl Read) -> Result<Snapshot, Error> {
    parse_with_hint(reader, None)
}

fn parse_with_hint(reader: impl Read, size: Option<u64>) -> Result<Snapshot, Error> {
    let mut scanner = Scanner::new(reader);
    let mut builder = Builder {
        size_hint: size,
        ..Builder::default()
    };
    scanner.section = "the top level".to_owned();
    match scanner.skip_ws()? {
        None => return Err(Error::Empty),
        Some(b'{') => scanner.pos += 1,
        Some(other) => {
            return Err(scanner.syntax("'{' (a heap snapshot is one JSON object)", Some(other)))
        }
    }
    let mut key = Vec::new();
    let mut first = true;
    loop {
        scanner.section = "the top level".to_owned();
        match scanner.skip_ws()? {
            Some(b'}') if first => break,
            Some(b'"') => {}
            other => return Err(scanner.syntax("a section name in quotes", other)),
        }
        first = false;
        key.clear();
        scanner.string(&mut key)?;
        scanner.expect(b':', "':'")?;
        let name = String::from_utf8_lossy(&key).into_owned();
        scanner.section = name.clone();
        match name.as_str() {
            "snapshot" => {
                let mut raw = Vec::new();
                scanner.skip_value(Some(&mut raw))?;
                builder.header(&raw)?;
            }
            "nodes" => builder.nodes(&mut scanner)?,
            "edges" => builder.edges(&mut scanner)?,
            "locations" => builder.locations(&mut scanner)?,
            "strings" => builder.strings(&mut scanner)?,
            _ => scanner.skip_value(None)?,
        }
        scanner.section = format!("the top level, after '{name}'");
        match scanner.skip_ws()? {
            Some(b',') => scanner.pos += 1,
            Some(b'}') => break,
            other => return Err(scanner.syntax("',' or '}'", other)),
        }
    }
    builder.finish()
}

/// A buffered byte scanner that knows its file offset and the section it is in.
struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// File offset of `buf[0]`.
    base: u64,
    at_eof: bool,
    section: String,
}

fn describe(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("byte 0x{byte:02x}")
    }
}

impl<R: Read> Scanner<R> {
    fn new(reader: R) -> Self {
        Scanner {
            reader,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            base: 0,
            at_eof: false,
            section: String::new(),
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads the next chunk once the buffer is used up; false at the end of the input.
    fn refill(&mut self) -> Result<bool, Error> {
        if self.at_eof {
            return Ok(false);
        }
        self.base += self.len as u64;
        self.pos = 0;
        self.len = 0;
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.at_eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: Default::default(),
                        source,
                    })
                }
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Error> {
        if self.pos == self.len && !self.refill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    fn next_byte(&mut self) -> Result<u8, Error> {
        match self.peek()? {
            Some(b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated()),
        }
    }

    fn truncated(&self) -> Error {
        Error::Truncated {
            offset: self.offset(),
            inside: self.section.clone(),
        }
    }

    /// A syntax error at the current position; `found: None` means the input ended.
    fn syntax(&self, expected: &'static str, found: Option<u8>) -> Error {
        match found {
            None => self.truncated(),
            Some(byte) => Error::Syntax {
                offset: self.offset(),
                inside: self.section.clone(),
                expected,
                found: describe(byte),
            },
        }
    }

    /// Skips whitespace and returns the next byte without consuming it.
    fn skip_ws(&mut self) -> Result<Option<u8>, Error> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.pos += 1,
                other => return Ok(other),
            }
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), Error> {
        match self.skip_ws()? {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            other => Err(self.syntax(expected, other)),
        }
    }

    /// Reads a JSON string (the scanner is at its opening quote) and appends its UTF-8 bytes
    /// to `out`. Lone surrogates, which V8 writes, become U+FFFD.
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.pos += 1;
        loop {
            if self.pos == self.len && !self.refill()? {
                return Err(self.truncated());
            }
            let chunk = &self.buf[self.pos..self.len];
            let stop = chunk.iter().position(|&b| b == b'"' || b == b'\\');
            match stop {
                None => {
                    out.extend_from_slice(chunk);
                    self.pos = self.len;
                }
                Some(i) => {
                    out.extend_from_slice(&chunk[..i]);
                    let quote = chunk[i] == b'"';
                    self.pos += i + 1;
                    if quote {
                        return Ok(());
                    }
                    self.escape(out)?;
                }
            }
        }
    }

    /// Decodes one escape sequence after its backslash.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let byte = self.next_byte()?;
        let simple = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(out),
            other => {
                self.pos -= 1;
                return Err(self.syntax("an escape sequence", Some(other)));
            }
        };
        out.push(simple);
        Ok(())
    }

    /// Decodes a `\uXXXX` escape (after the `u`), joining surrogate pairs; a lone
    /// surrogate becomes U+FFFD.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
        let mut unit = self.hex4()?;
        loop {
            if !(0xD800..0xDC00).contains(&unit) {
                let c = char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                return Ok(());
            }
            if self.peek()? != Some(b'\\') {
                out.extend_from_slice(REPLACEMENT);
                return Ok(());
            }
            self.pos += 1;
            if self.peek()? != Some(b'u') {
                out.extend_from_slice(REPLACEMENT);
                return self.escape(out);
            }
            self.pos += 1;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                let c = char::from_u32(c).unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                return Ok(());
            }
            out.extend_from_slice(REPLACEMENT);
            unit = low;
        }
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        let mut value = 0u16;
        for _ in 0..4 {
            let b = self.next_byte()?;
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                other => {
                    self.pos -= 1;
                    return Err(self.syntax("a hex digit", Some(other)));
                }
            };
            value = value * 16 + u16::from(digit);
        }
        Ok(value)
    }

    /// Skips one JSON value of any kind, copying its bytes to `capture` when given.
    fn skip_value(&mut self, mut capture: Option<&mut Vec<u8>>) -> Result<(), Error> {
        let first = self.skip_ws()?;
        match first {
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    let b = self.next_byte()?;
                    if let Some(c) = capture.as_deref_mut() {
                        c.push(b);
                    }
                    match b {
                        b'"' => self.skip_string_body(capture.as_deref_mut())?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                }
            }
            Some(b'"') => {
                self.pos += 1;
                if let Some(c) = capture.as_deref_mut() {
                    c.push(b'"');
                }
                self.skip_string_body(capture)
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                while let Some(b) = self.peek()? {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        return Ok(());
                    }
                    if let Some(c) = capture.as_deref_mut() {
                        c.push(b);
                    }
                    self.pos += 1;
                }
                Err(self.truncated())
            }
            other => Err(self.syntax("a JSON value", other)),
        }
    }

    /// Skips the rest of a string after its opening quote, escapes included.
    fn skip_string_body(&mut self, mut capture: Option<&mut Vec<u8>>) -> Result<(), Error> {
        loop {
            let b = self.next_byte()?;
            if let Some(c) = capture.as_deref_mut() {
                c.push(b);
            }
            match b {
                b'"' => return Ok(()),
                b'\\' => {
                    let escaped = self.next_byte()?;
                    if let Some(c) = capture.as_deref_mut() {
                        c.push(escaped);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads an array of non-negative integers, handing each to `sink` with its position in
    /// the array. Returns how many there were. This is the hot loop of the parser.
    fn int_array(
        &mut self,
        mut sink: impl FnMut(u64, u64) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            /// After '[': a number or ']'.
            Open,
            /// After ',': a number.
            Value,
            /// Inside a number.
            Number,
            /// After a number: ',' or ']'.
            After,
        }
        self.expect(b'[', "'['")?;
        let mut state = State::Open;
        let mut value = 0u64;
        let mut count = 0u64;
        loop {
            if self.pos == self.len && !self.refill()? {
                return Err(self.truncated());
            }
            let buf = &self.buf[..self.len];
            let mut i = self.pos;
            while i < buf.len() {
                let b = buf[i];
                match state {
                    State::Number => {
                        if b.is_ascii_digit() {
                            value = match value
                                .checked_mul(10)
                                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                            {
                                Some(v) => v,
                                None => {
                                    return Err(Error::Syntax {
                                        offset: self.base + i as u64,
                                        inside: self.section.clone(),
                                        expected: "a number below 2^64",
                                        found: format!("a longer number ({value}…)"),
                                    })
                                }
                            };
                            i += 1;
                            continue;
                        }
                        sink(value, count)?;
                        count += 1;
                        state = State::After;
                    }
                    State::After => match b {
                        b',' => {
                            state = State::Value;
                            i += 1;
                        }
                        b']' => {
                            self.pos = i + 1;
                            return Ok(count);
                        }
                        b' ' | b'\n' | b'\r' | b'\t' => i += 1,
                        other => {
                            return Err(Error::Syntax {
                                offset: self.base + i as u64,
                                inside: self.section.clone(),
                                expected: "',' or ']'",
                                found: describe(other),
                            })
                        }
                    },
                    State::Open | State::Value => match b {
                        b'0'..=b'9' => {
                            value = u64::from(b - b'0');
                            state = State::Number;
                            i += 1;
                        }
                        b']' if state == State::Open => {
                            self.pos = i + 1;
                            return Ok(0);
                        }
                        b' ' | b'\n' | b'\r' | b'\t' => i += 1,
                        other => {
                            return Err(Error::Syntax {
                                offset: self.base + i as u64,
                                inside: self.section.clone(),
                                expected: "a non-negative integer",
                                found: describe(other),
                            })
                        }
                    },
                }
            }
            self.pos = i;
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawHeader {
    meta: RawMeta,
    node_count: Option<u64>,
    edge_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RawMeta {
    node_fields: Vec<String>,
    node_types: Vec<serde_json::Value>,
    edge_fields: Vec<String>,
    edge_types: Vec<serde_json::Value>,
    #[serde(default)]
    location_fields: Vec<String>,
}

/// What a number at a given position of a node, edge or location record means.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Type,
    Name,
    Id,
    SelfSize,
    EdgeCount,
    ToNode,
    ScriptId,
    Line,
    Column,
    Other,
}

#[derive(Debug)]
struct Layout {
    node_roles: Vec<Role>,
    edge_roles: Vec<Role>,
    location_roles: Vec<Role>,
    node_count: Option<u64>,
    edge_count: Option<u64>,
}

/// Maps field names to roles, requiring each of `required` exactly once.
fn roles(
    list: &str,
    fields: &[String],
    required: &[(&'static str, Role)],
) -> Result<Vec<Role>, Error> {
    let mut out = vec![Role::Other; fields.len()];
    for (name, role) in required {
        let mut positions = fields.iter().enumerate().filter(|(_, f)| f == name);
        match (positions.next(), positions.next()) {
            (Some((i, _)), None) => out[i] = *role,
            (None, _) => {
                return Err(Error::header(format!(
                    "{list} lacks '{name}' (it has {fields:?})"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(Error::header(format!(
                    "{list} lists '{name}' more than once ({fields:?})"
                )))
            }
        }
    }
    Ok(out)
}

/// The list of type names for the field named `type` (`node_types[i]` where
/// `node_fields[i] == "type"`).
fn type_names(
    list: &str,
    types: &[serde_json::Value],
    fields: &[String],
) -> Result<Vec<String>, Error> {
    let position = fields.iter().position(|f| f == "type").unwrap_or(0);
    let names = types
        .get(position)
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            Error::header(format!(
                "{list}[{position}] (for the 'type' field) is not a list of type names"
            ))
        })?;
    let names: Vec<String> = names
        .iter()
        .map(|n| n.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::header(format!(
                "{list}[{position}] has a type name that is not a string"
            ))
        })?;
    if names.len() > 256 {
        return Err(Error::header(format!(
            "{list}[{position}] has {} type names (at most 256 are supported)",
            names.len()
        )));
    }
    Ok(names)
}

/// Collects the sections into a [`Snapshot`].
#[derive(Debug, Default)]
struct Builder {
    size_hint: Option<u64>,
    layout: Option<Layout>,
    snap: Snapshot,
    seen_nodes: bool,
    seen_edges: bool,
    seen_strings: bool,
    raw_locations: Vec<(u64, u32, u32, u32)>,
}

fn to_u32(value: u64, what: impl FnOnce() -> String) -> Result<u32, Error> {
    u32::try_from(value)
        .map_err(|_| Error::inconsistent(format!("{} is {value}, above 2^32", what())))
}

impl Builder {
    fn header(&mut self, raw: &[u8]) -> Result<(), Error> {
        let header: RawHeader = serde_json::from_slice(raw)
            .map_err(|e| Error::header(format!("'snapshot' does not parse: {e}")))?;
        let meta = header.meta;
        let node_roles = roles(
            "node_fields",
            &meta.node_fields,
            &[
                ("type", Role::Type),
                ("name", Role::Name),
                ("id", Role::Id),
                ("self_size", Role::SelfSize),
                ("edge_count", Role::EdgeCount),
            ],
        )?;
        let edge_roles = roles(
            "edge_fields",
            &meta.edge_fields,
            &[
                ("type", Role::Type),
                ("name_or_index", Role::Name),
                ("to_node", Role::ToNode),
            ],
        )?;
        let location_roles = if meta.location_fields.is_empty() {
            Vec::new()
        } else {
            roles(
                "location_fields",
                &meta.location_fields,
                &[
                    ("object_index", Role::ToNode),
                    ("script_id", Role::ScriptId),
                    ("line", Role::Line),
                    ("column", Role::Column),
                ],
            )?
        };
        self.snap.node_type_names = type_names("node_types", &meta.node_types, &meta.node_fields)?;
        self.snap.edge_type_names = type_names("edge_types", &meta.edge_types, &meta.edge_fields)?;
        let find =
            |names: &[String], name: &str| names.iter().position(|n| n == name).map(|i| i as u8);
        let (n, e) = (&self.snap.node_type_names, &self.snap.edge_type_names);
        self.snap.kinds = Kinds {
            edge_weak: find(e, "weak"),
            edge_shortcut: find(e, "shortcut"),
            edge_element: find(e, "element"),
            edge_hidden: find(e, "hidden"),
            node_object: find(n, "object"),
            node_native: find(n, "native"),
            node_hidden: find(n, "hidden"),
            node_code: find(n, "code"),
            node_closure: find(n, "closure"),
            node_synthetic: find(n, "synthetic"),
            node_string: find(n, "string"),
            node_sliced_string: find(n, "sliced string"),
        };
        self.layout = Some(Layout {
            node_roles,
            edge_roles,
            location_roles,
            node_count: header.node_count,
            edge_count: header.edge_count,
        });
        Ok(())
    }

    fn layout(&self, section: &'static str) -> Result<&Layout, Error> {
        self.layout.as_ref().ok_or_else(|| {
            Error::header(format!(
                "'{section}' comes before the 'snapshot' header, so its field layout is unknown"
            ))
        })
    }

    /// How many records to reserve room for: the header's count, bounded by what the file
    /// could hold (each number takes at least two bytes).
    fn reserve(&self, count: Option<u64>, fields: usize) -> usize {
        let count = count.unwrap_or(0);
        let bound = self
            .size_hint
            .map_or(1 << 20, |size| size / (2 * fields.max(1) as u64));
        count.min(bound) as usize
    }

    fn nodes(&mut self, scanner: &mut Scanner<impl Read>) -> Result<(), Error> {
        let layout = self.layout("nodes")?;
        let roles = layout.node_roles.clone();
        let reserve = self.reserve(layout.node_count, roles.len());
        let type_count = self.snap.node_type_names.len() as u64;
        let fields = roles.len();
        let snap = &mut self.snap;
        snap.node_type.reserve(reserve);
        snap.node_name.reserve(reserve);
        snap.node_id.reserve(reserve);
        snap.node_self_size.reserve(reserve);
        snap.first_edge.reserve(reserve + 1);
        snap.first_edge.push(0);
        let mut field = 0usize;
        let mut edges_so_far = 0u64;
        let count = scanner.int_array(|value, index| {
            match roles[field] {
                Role::Type => {
                    if value >= type_count {
                        return Err(Error::inconsistent(format!(
                            "nodes[{index}]: node type {value} is out of range (the header lists {type_count} types)"
                        )));
                    }
                    snap.node_type.push(value as u8);
                }
                Role::Name => snap.node_name.push(to_u32(value, || format!("nodes[{index}] (name)"))?),
                Role::Id => snap.node_id.push(to_u32(value, || format!("nodes[{index}] (id)"))?),
                Role::SelfSize => snap.node_self_size.push(value),
                Role::EdgeCount => {
                    edges_so_far += value;
                    snap.first_edge
                        .push(to_u32(edges_so_far, || format!("the edge count up to nodes[{index}]"))?);
                }
                _ => {}
            }
            field += 1;
            if field == fields {
                field = 0;
            }
            Ok(())
        })?;
        if field != 0 {
            return Err(Error::inconsistent(format!(
                "'nodes' has {count} numbers, not a multiple of the {fields} node fields"
            )));
        }
        self.seen_nodes = true;
        Ok(())
    }

    fn edges(&mut self, scanner: &mut Scanner<impl Read>) -> Result<(), Error> {
        let layout = self.layout("edges")?;
        let roles = layout.edge_roles.clone();
        let node_fields = layout.node_roles.len() as u64;
        let reserve = self.reserve(layout.edge_count, roles.len());
        let type_count = self.snap.edge_type_names.len() as u64;
        let fields = roles.len();
        let snap = &mut self.snap;
        snap.edge_type.reserve(reserve);
        snap.edge_name.reserve(reserve);
        snap.edge_to.reserve(reserve);
        let mut field = 0usize;
        let count = scanner.int_array(|value, index| {
            match roles[field] {
                Role::Type => {
                    if value >= type_count {
                        return Err(Error::inconsistent(format!(
                            "edges[{index}]: edge type {value} is out of range (the header lists {type_count} types)"
                        )));
                    }
                    snap.edge_type.push(value as u8);
                }
                Role::Name => snap.edge_name.push(to_u32(value, || format!("edges[{index}] (name_or_index)"))?),
                Role::ToNode => {
                    if value % node_fields != 0 {
                        return Err(Error::inconsistent(format!(
                            "edges[{index}]: to_node {value} is not a multiple of the {node_fields} node fields"
                        )));
                    }
                    snap.edge_to.push(to_u32(value / node_fields, || format!("edges[{index}] (to_node)"))?);
                }
                _ => {}
            }
            field += 1;
            if field == fields {
                field = 0;
            }
            Ok(())
        })?;
        if field != 0 {
            return Err(Error::inconsistent(format!(
                "'edges' has {count} numbers, not a multiple of the {fields} edge fields"
            )));
        }
        self.seen_edges = true;
        Ok(())
    }

    fn locations(&mut self, scanner: &mut Scanner<impl Read>) -> Result<(), Error> {
        let layout = self.layout("locations")?;
        if layout.location_roles.is_empty() {
            return scanner.skip_value(None);
        }
        let roles = layout.location_roles.clone();
        let node_fields = layout.node_roles.len() as u64;
        let fields = roles.len();
        let mut field = 0usize;
        let mut record = (0u64, 0u32, 0u32, 0u32);
        let out = &mut self.raw_locations;
        let count = scanner.int_array(|value, index| {
            let small = || to_u32(value, || format!("locations[{index}]"));
            match roles[field] {
                Role::ToNode => {
                    if value % node_fields != 0 {
                        return Err(Error::inconsistent(format!(
                            "locations[{index}]: object_index {value} is not a multiple of the {node_fields} node fields"
                        )));
                    }
                    record.0 = value / node_fields;
                }
                Role::ScriptId => record.1 = small()?,
                Role::Line => record.2 = small()?,
                Role::Column => record.3 = small()?,
                _ => {}
            }
            field += 1;
            if field == fields {
                field = 0;
                out.push(record);
            }
            Ok(())
        })?;
        if field != 0 {
            return Err(Error::inconsistent(format!(
                "'locations' has {count} numbers, not a multiple of the {fields} location fields"
            )));
        }
        Ok(())
    }

    fn strings(&mut self, scanner: &mut Scanner<impl Read>) -> Result<(), Error> {
        let strings = &mut self.snap.strings;
        strings.starts.push(0);
        scanner.expect(b'[', "'['")?;
        let mut first = true;
        loop {
            match scanner.skip_ws()? {
                Some(b']') if first => {
                    scanner.pos += 1;
                    break;
                }
                Some(b'"') => {}
                other => return Err(scanner.syntax("a string in quotes", other)),
            }
            first = false;
            scanner.string(&mut strings.bytes)?;
            strings.starts.push(strings.bytes.len() as u64);
            match scanner.skip_ws()? {
                Some(b',') => scanner.pos += 1,
                Some(b']') => {
                    scanner.pos += 1;
                    break;
                }
                other => return Err(scanner.syntax("',' or ']'", other)),
            }
        }
        self.seen_strings = true;
        Ok(())
    }

    /// Checks that the sections agree with each other and with the header.
    fn finish(mut self) -> Result<Snapshot, Error> {
        let layout = self
            .layout
            .take()
            .ok_or(Error::MissingSection { name: "snapshot" })?;
        for (seen, name) in [
            (self.seen_nodes, "nodes"),
            (self.seen_edges, "edges"),
            (self.seen_strings, "strings"),
        ] {
            if !seen {
                return Err(Error::MissingSection { name });
            }
        }
        let snap = &mut self.snap;
        let nodes = snap.node_type.len();
        if nodes == 0 {
            return Err(Error::inconsistent(
                "'nodes' is empty: there is no root node",
            ));
        }
        if let Some(expected) = layout.node_count {
            if expected != nodes as u64 {
                return Err(Error::inconsistent(format!(
                    "the header says node_count {expected} but 'nodes' has {nodes} nodes"
                )));
            }
        }
        let edges = snap.edge_to.len();
        if let Some(expected) = layout.edge_count {
            if expected != edges as u64 {
                return Err(Error::inconsistent(format!(
                    "the header says edge_count {expected} but 'edges' has {edges} edges"
                )));
            }
        }
        let declared = snap.first_edge.last().copied().unwrap_or(0) as usize;
        if declared != edges {
            return Err(Error::inconsistent(format!(
                "the nodes' edge_count fields add up to {declared} but 'edges' has {edges} edges"
            )));
        }
        if let Some((i, to)) = snap
            .edge_to
            .iter()
            .enumerate()
            .find(|(_, &to)| to as usize >= nodes)
        {
            return Err(Error::inconsistent(format!(
                "edge {i} points to node {to}, past the last of {nodes} nodes"
            )));
        }
        let strings = snap.strings.len();
        if strings as u64 + 256 > u64::from(u32::MAX) {
            return Err(Error::inconsistent(format!(
                "{strings} strings are more than supported"
            )));
        }
        if let Some((i, name)) = snap
            .node_name
            .iter()
            .enumerate()
            .find(|(_, &n)| n as usize >= strings)
        {
            return Err(Error::inconsistent(format!(
                "node {i} has name {name}, past the last of {strings} strings"
            )));
        }
        let kinds = snap.kinds;
        let bad_edge = (0..edges).find(|&e| {
            let kind = Some(snap.edge_type[e]);
            kind != kinds.edge_element
                && kind != kinds.edge_hidden
                && snap.edge_name[e] as usize >= strings
        });
        if let Some(e) = bad_edge {
            return Err(Error::inconsistent(format!(
                "edge {e} has name {}, past the last of {strings} strings",
                snap.edge_name[e]
            )));
        }
        let mut locations = Vec::with_capacity(self.raw_locations.len());
        for (node, script_id, line, column) in self.raw_locations {
            if node >= nodes as u64 {
                return Err(Error::inconsistent(format!(
                    "a location belongs to node {node}, past the last of {nodes} nodes"
                )));
            }
            locations.push(Location {
                node: node as u32,
                script_id,
                line,
                column,
            });
        }
        locations.sort_by_key(|l| l.node);
        snap.locations = locations;
        Ok(self.snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{snapshot_json, TestNode, V8_ORDER};
    use proptest::prelude::*;

    fn small() -> Vec<TestNode<'static>> {
        vec![
            ("synthetic", "", 1, 0, vec![("element", "1", 1)]),
            (
                "synthetic",
                "(GC roots)",
                3,
                0,
                vec![("property", "leaky", 2)],
            ),
            (
                "object",
                "Set",
                5,
                32,
                vec![("internal", "table", 3), ("weak", "w", 4)],
            ),
            ("array", "", 7, 100, vec![]),
            ("string", "héllo \"x\"", 9, 20, vec![]),
        ]
    }

    fn parse_str(text: &str) -> Result<Snapshot, Error> {
        parse(text.as_bytes())
    }

    #[test]
    fn reads_columns_and_strings() {
        let snap = parse_str(&snapshot_json(&small(), V8_ORDER)).expect("parse");
        assert_eq!(snap.node_count(), 5);
        assert_eq!(snap.edge_count(), 4);
        assert_eq!(snap.id(2), 5);
        assert_eq!(snap.self_size(3), 100);
        assert_eq!(snap.name(2), "Set");
        assert_eq!(snap.name(4), "héllo \"x\"");
        assert_eq!(snap.edges(2), 2..4);
        assert_eq!(snap.edge_target(2), 3);
        assert_eq!(snap.edge_label(0), "[1]");
        assert_eq!(snap.edge_label(1), "leaky");
        assert!(snap.is_weak(3));
    }

    #[test]
    fn shuffled_node_fields_read_the_same() {
        let plain = parse_str(&snapshot_json(&small(), V8_ORDER)).expect("parse");
        let shuffled =
            parse_str(&snapshot_json(&small(), [4, 2, 5, 0, 3, 1])).expect("shuffled parse");
        assert_eq!(plain.node_id, shuffled.node_id);
        assert_eq!(plain.node_self_size, shuffled.node_self_size);
        assert_eq!(plain.node_type, shuffled.node_type);
        assert_eq!(plain.first_edge, shuffled.first_edge);
        assert_eq!(plain.edge_to, shuffled.edge_to);
    }

    #[test]
    fn escapes_and_lone_surrogates_decode() {
        let text = snapshot_json(&small(), V8_ORDER)
            .replace("\"leaky\"", r#""a\n\u00e9\ud83d\ude00\ud800z\\""#);
        let snap = parse_str(&text).expect("parse");
        assert_eq!(snap.edge_label(1), "a\né😀\u{FFFD}z\\");
    }

    #[test]
    fn every_truncation_is_an_error_naming_where() {
        let text = snapshot_json(&small(), V8_ORDER);
        for len in 0..text.len() - 1 {
            match parse(&text.as_bytes()[..len]) {
                Err(Error::Empty) => assert_eq!(len, 0),
                Err(Error::Truncated { offset, .. }) => assert_eq!(offset, len as u64),
                Err(other) => panic!("prefix {len}: unexpected error {other}"),
                Ok(_) => panic!("prefix of {len} bytes parsed"),
            }
        }
    }

    #[test]
    fn truncation_inside_edges_names_the_section() {
        let text = snapshot_json(&small(), V8_ORDER);
        let cut = text.find("\"edges\"").expect("edges") + 12;
        let error = parse_str(&text[..cut]).expect_err("truncated");
        assert_eq!(
            error.to_string(),
            format!("the snapshot is truncated: the file ends at byte {cut} inside 'edges'")
        );
    }

    #[test]
    fn a_missing_node_field_is_named() {
        let text = snapshot_json(&small(), V8_ORDER).replace("\"self_size\"", "\"size\"");
        let error = parse_str(&text).expect_err("missing field");
        assert!(
            error.to_string().contains("node_fields lacks 'self_size'"),
            "{error}"
        );
    }

    #[test]
    fn syntax_errors_quote_the_byte_and_offset() {
        let text = snapshot_json(&small(), V8_ORDER).replacen("[6,", "[6,x", 1);
        let error = parse_str(&text).expect_err("bad number");
        let message = error.to_string();
        assert!(message.contains("found 'x'"), "{message}");
        assert!(message.contains("inside 'nodes'"), "{message}");
    }

    #[test]
    fn inconsistent_counts_are_errors() {
        let text =
            snapshot_json(&small(), V8_ORDER).replace("\"edge_count\":4", "\"edge_count\":5");
        let error = parse_str(&text).expect_err("bad count");
        assert!(error.to_string().contains("edge_count 5"), "{error}");
        let text = snapshot_json(&small(), V8_ORDER).replace("6,5,24", "6,5,25");
        let error = parse_str(&text).expect_err("bad to_node");
        assert!(error.to_string().contains("to_node 25"), "{error}");
    }

    #[test]
    fn sections_before_the_header_are_refused_clearly() {
        let error = parse_str("{\"nodes\":[1,2]}").expect_err("no header");
        assert!(error
            .to_string()
            .contains("'nodes' comes before the 'snapshot' header"));
        let error = parse_str("{}").expect_err("nothing");
        assert!(matches!(error, Error::MissingSection { name: "snapshot" }));
        assert!(matches!(parse_str("   "), Err(Error::Empty)));
    }

    proptest! {
        /// Any corruption of a valid file gives a value or an error, never a panic.
        #[test]
        fn corrupted_files_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = snapshot_json(&small(), V8_ORDER).into_bytes();
            for (at, byte) in edits {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = parse(bytes.as_slice());
        }

        /// Arbitrary bytes never panic either.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(bytes.as_slice());
        }
    }
}
