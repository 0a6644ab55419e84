//! Diagnostics: every problem names the file, the line, the field and, where we can, the fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in the book.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line, 0 when the problem has no position (e.g. a missing file).
    pub line: usize,
    pub col: usize,
    /// Dotted field path, e.g. `depends.build` or `source[1].sha256`.
    pub field: String,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.field, self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All the problems of a book, reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct BookErrors(pub Vec<Diagnostic>);

impl fmt::Display for BookErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{} problem{} found",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )
    }
}

/// Collects diagnostics for one file, turning byte offsets into line:column.
pub(crate) struct Sink<'a> {
    pub file: &'a Path,
    text: &'a str,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Sink {
            file,
            text,
            diags: Vec::new(),
        }
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }

    pub fn error(
        &mut self,
        at: Option<std::ops::Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, col) = at.map(|r| self.line_col(r.start)).unwrap_or((0, 0));
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
            help,
        });
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}
