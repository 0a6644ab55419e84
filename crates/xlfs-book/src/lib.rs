//! The book of xlfs: package recipes (one package, one TOML file), build templates, and the
//! validation that reports every problem at once with file, line, field and a fix.
//!
//! This crate is pure: it reads the book's own files and nothing else.

mod book;
mod diag;
pub mod guest;
pub mod lint;
mod machine;
pub mod profile;
mod reader;
mod recipe;
mod template;

pub use book::{
    is_debian_name, sha256_hex, Book, BookConfig, BookFile, HostToolchain, NamedEnv, NON_RECIPE_DIRS,
};
pub use diag::{line_col, suggest, BookErrors, Diagnostic};
pub use recipe::{
    escapes_through_link, is_book_relative, is_sha256, is_valid_name, parse_recipe, BuildEnv, DebianSource,
    FileAttr, Part, Patch, Recipe, Source, SourceChoice, Spans, TestSuite, QA_CHECKS,
};
pub use template::{parse_template, Template, VarDef, VarValue, STEP_NAMES};
