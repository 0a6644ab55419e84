//! A small typed reader over a `toml_edit` table that remembers which keys were read,
//! so that every unknown key, wrong type or missing field becomes a diagnostic with a position.

use crate::diag::{suggest, Sink};
use std::collections::BTreeMap;
use std::ops::Range;
use toml_edit::{Item, TableLike, Value};

pub(crate) struct Reader<'t> {
    table: &'t dyn TableLike,
    /// Span of the table header (or of the inline table), for "missing field" errors.
    span: Option<Range<usize>>,
    /// Dotted path of this table, e.g. `build` or `source[2]`.
    path: String,
    used: Vec<String>,
}

/// A value read from TOML together with its span.
pub(crate) struct At<T> {
    pub value: T,
    pub span: Option<Range<usize>>,
}

impl<'t> Reader<'t> {
    pub fn new(table: &'t dyn TableLike, span: Option<Range<usize>>, path: impl Into<String>) -> Self {
        Reader {
            table,
            span,
            path: path.into(),
            used: Vec::new(),
        }
    }

    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }

    fn get(&mut self, key: &str) -> Option<&'t Item> {
        self.used.push(key.to_string());
        self.table.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Whether `key` holds tables (`[[key]]`, or a list whose first item is an inline table)
    /// rather than strings.
    pub fn holds_tables(&self, key: &str) -> bool {
        match self.table.get(key) {
            Some(Item::ArrayOfTables(_)) => true,
            Some(Item::Value(Value::Array(a))) => a.get(0).is_some_and(|v| v.is_inline_table()),
            _ => false,
        }
    }

    fn type_error(&self, sink: &mut Sink, key: &str, item: &Item, expected: &str) {
        sink.error(
            item.span(),
            self.field(key),
            format!("expected {expected}, found {}", type_name(item)),
            None,
        );
    }

    pub fn missing(&self, sink: &mut Sink, key: &str, what: &str) {
        sink.error(
            self.span(),
            self.field(key),
            format!("missing required field `{key}`"),
            Some(format!("add `{key} = {what}`")),
        );
    }

    pub fn string(&mut self, sink: &mut Sink, key: &str) -> Option<At<String>> {
        let item = self.get(key)?;
        match item.as_str() {
            Some(s) => Some(At {
                value: s.to_string(),
                span: item.span(),
            }),
            None => {
                self.type_error(sink, key, item, "a string");
                None
            }
        }
    }

    pub fn required_string(&mut self, sink: &mut Sink, key: &str, example: &str) -> Option<At<String>> {
        if !self.has(key) {
            self.missing(sink, key, example);
            return None;
        }
        self.string(sink, key)
    }

    pub fn integer(&mut self, sink: &mut Sink, key: &str) -> Option<At<i64>> {
        let item = self.get(key)?;
        match item.as_integer() {
            Some(i) => Some(At {
                value: i,
                span: item.span(),
            }),
            None => {
                self.type_error(sink, key, item, "an integer");
                None
            }
        }
    }

    pub fn boolean(&mut self, sink: &mut Sink, key: &str) -> Option<bool> {
        self.boolean_at(sink, key).map(|b| b.value)
    }

    /// A boolean with its place in the file.
    pub fn boolean_at(&mut self, sink: &mut Sink, key: &str) -> Option<At<bool>> {
        let item = self.get(key)?;
        match item.as_bool() {
            Some(b) => Some(At {
                value: b,
                span: item.span(),
            }),
            None => {
                self.type_error(sink, key, item, "true or false");
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a one-element list.
    pub fn string_list(&mut self, sink: &mut Sink, key: &str) -> Option<Vec<At<String>>> {
        let item = self.get(key)?;
        if let Some(s) = item.as_str() {
            return Some(vec![At {
                value: s.to_string(),
                span: item.span(),
            }]);
        }
        let Some(array) = item.as_array() else {
            self.type_error(sink, key, item, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(At {
                    value: s.to_string(),
                    span: v.span(),
                }),
                None => sink.error(
                    v.span(),
                    format!("{}[{i}]", self.field(key)),
                    format!("expected a string, found {}", value_type_name(v)),
                    None,
                ),
            }
        }
        Some(out)
    }

    /// A sub-table (`[a.b]` or `b = { ... }`).
    pub fn table(&mut self, sink: &mut Sink, key: &str) -> Option<Reader<'t>> {
        let item = self.get(key)?;
        match item.as_table_like() {
            Some(t) => Some(Reader::new(t, item.span(), self.field(key))),
            None => {
                self.type_error(sink, key, item, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[key]]` or `key = [{...}, ...]`).
    pub fn tables(&mut self, sink: &mut Sink, key: &str) -> Vec<Reader<'t>> {
        let Some(item) = self.get(key) else {
            return Vec::new();
        };
        let field = self.field(key);
        match item {
            Item::ArrayOfTables(a) => a
                .iter()
                .enumerate()
                .map(|(i, t)| Reader::new(t, t.span(), format!("{field}[{i}]")))
                .collect(),
            Item::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v.as_inline_table() {
                        Some(t) => out.push(Reader::new(t, t.span(), format!("{field}[{i}]"))),
                        None => sink.error(
                            v.span(),
                            format!("{field}[{i}]"),
                            format!("expected a table, found {}", value_type_name(v)),
                            None,
                        ),
                    }
                }
                out
            }
            other => {
                self.type_error(sink, key, other, "an array of tables");
                Vec::new()
            }
        }
    }

    /// Every key/value of this table as strings (for free-form maps such as environment variables).
    pub fn string_map(&mut self, sink: &mut Sink) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, item) in self.table.iter() {
            self.used.push(k.to_string());
            match item.as_str() {
                Some(s) => {
                    out.insert(k.to_string(), s.to_string());
                }
                None => self.type_error(sink, k, item, "a string"),
            }
        }
        out
    }

    /// Keys present in the table but never read.
    pub fn unread(&self) -> Vec<(String, Option<Range<usize>>)> {
        self.table
            .iter()
            .filter(|(k, _)| !self.used.iter().any(|u| u == k))
            .map(|(k, _)| {
                let span = self
                    .table
                    .get_key_value(k)
                    .and_then(|(key, item)| key.span().or_else(|| item.span()));
                (k.to_string(), span)
            })
            .collect()
    }

    /// Report every key that was not read as unknown, suggesting the closest known key.
    pub fn finish(self, sink: &mut Sink, known: &[&str]) {
        for (key, span) in self.unread() {
            let help = match suggest(&key, known.iter().copied()) {
                Some(s) => Some(format!("did you mean `{s}`?")),
                None => Some(format!("known keys here: {}", known.join(", "))),
            };
            sink.error(span, self.field(&key), format!("unknown key `{key}`"), help);
        }
    }
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_type_name(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

impl Reader<'_> {
    /// Whether `key` holds an array (without marking it read).
    pub fn list_probe(&self, key: &str) -> bool {
        self.table.get(key).is_some_and(|i| i.is_array())
    }
}

impl Reader<'_> {
    /// Whether `key` holds a string (without marking it read).
    pub fn string_probe(&self, key: &str) -> bool {
        self.table.get(key).is_some_and(|i| i.is_str())
    }
}

/// Parse a TOML document; a syntax error becomes a diagnostic with its position.
pub(crate) fn parse_document<'a>(sink: &mut Sink, text: &'a str) -> Option<toml_edit::ImDocument<&'a str>> {
    match toml_edit::ImDocument::parse(text) {
        Ok(d) => Some(d),
        Err(e) => {
            sink.error(
                e.span(),
                "",
                format!("invalid TOML: {}", e.message().trim().replace('\n', "; ")),
                None,
            );
            None
        }
    }
}

impl<'t> Reader<'t> {
    /// The raw item of `key` (marking it read), with its span.
    pub fn item(&mut self, key: &str) -> Option<&'t Item> {
        self.get(key)
    }

    /// The keys of this table, in file order (not marked read).
    pub fn keys(&self) -> Vec<String> {
        self.table.iter().map(|(k, _)| k.to_string()).collect()
    }
}
