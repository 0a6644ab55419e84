//! One package, one TOML file: parsing and per-file validation.

use crate::diag::{Diagnostic, Sink};
use crate::reader::{At, Reader};
use crate::template::{parse_var_value, Template, STEP_NAMES};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A recipe's test suite (`[build.tests]`), judged when `xlfs build --check` runs its `check`
/// step: every `FAIL:`, `XPASS:`, `ERROR:` or `UNRESOLVED:` line of the result files (DejaGNU
/// `.sum` files, glibc's `tests.sum`, automake's `test-suite.log` all use that form) must name a
/// test of the allowlist, or the build fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestSuite {
    /// Result files, as globs relative to the build directory (e.g. `build/gcc/testsuite/*/*.sum`).
    pub results: Vec<String>,
    /// Known failures: test names as the result lines give them; `*` matches any text.
    pub allow: Vec<String>,
    /// The suite in parts (run one after another after the `check` step, which is then their
    /// common set-up). Each part is recorded when it ends, so a suite that was interrupted goes
    /// on from the part it was in instead of from its start.
    pub parts: Vec<Part>,
}

/// One part of a test suite: `parts = ["make -k check-a", ...]`, or `[[build.tests.parts]]`
/// tables with a name and the result file the part keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Part {
    /// A short name (`c1`), shown in the build's log and given to the file it keeps.
    pub name: Option<String>,
    /// The shell commands, run in the directory the build step ended in.
    pub run: String,
    /// A result file the part writes and a later part would write again (DejaGNU's `gcc.sum`),
    /// relative to the build directory like `results`: when the part ends it is renamed
    /// [`Part::kept`], which must then report at least one test.
    pub keep: Option<String>,
}

impl Part {
    /// A part that is only a command.
    pub fn command(run: impl Into<String>) -> Part {
        Part {
            run: run.into(),
            ..Part::default()
        }
    }

    /// Where `keep` is renamed: `dir/gcc.sum` of part `c1` becomes `dir/gcc-c1.sum`.
    pub fn kept(&self) -> Option<String> {
        let (keep, name) = (self.keep.as_deref()?, self.name.as_deref()?);
        let (dir, file) = keep.rsplit_once('/').map_or(("", keep), |(d, f)| (d, f));
        let (stem, ext) = match file.rfind('.') {
            Some(i) if i > 0 => file.split_at(i),
            _ => (file, ""),
        };
        let sep = if dir.is_empty() { "" } else { "/" };
        Some(format!("{dir}{sep}{stem}-{name}{ext}"))
    }
}

/// Where a package builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildEnv {
    /// On the build machine with its tools (its compiler is the toolchain); declared
    /// dependencies are mounted at `/sysroot`.
    Host,
    /// Inside a root made only of the declared dependencies (the LFS chroot stage).
    Chroot,
}

/// A Debian-archive copy of a source: `pool/main/<prefix>/<package>/<file>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebianSource {
    pub package: String,
    pub file: String,
    /// The Debian file's own sha256 (equal to the upstream one when the bytes are identical).
    pub sha256: String,
}

/// Which copy of a source is built (`use = "upstream"` or `"debian"`): fixed by the recipe, so
/// that one key always means the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SourceChoice {
    #[default]
    Upstream,
    Debian,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: String,
    pub sha256: String,
    pub urls: Vec<String>,
    pub debian: Option<DebianSource>,
    /// Unpack into the source tree (archives) or just copy next to it.
    pub unpack: bool,
    /// The copy that is built. Required in the recipe when the Debian copy's bytes differ.
    pub choice: SourceChoice,
}

impl Source {
    /// The file name and sha256 of the bytes that are built: the chosen copy's.
    pub fn used(&self) -> (&str, &str) {
        match (&self.debian, self.choice) {
            (Some(d), SourceChoice::Debian) => (&d.file, &d.sha256),
            _ => (&self.file, &self.sha256),
        }
    }

    /// Whether the Debian copy holds other bytes than upstream's.
    pub fn copies_differ(&self) -> bool {
        self.debian
            .as_ref()
            .is_some_and(|d| !d.sha256.eq_ignore_ascii_case(&self.sha256))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Patch {
    /// Path relative to the recipe's directory.
    pub file: String,
    pub sha256: String,
    pub strip: u32,
}

/// Ownership or mode for paths in the installed tree (`[[file]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileAttr {
    /// Relative path in DESTDIR, or `dir/**` for everything below `dir`.
    pub path: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// A parsed recipe, with its template already applied.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    pub name: String,
    pub version: String,
    pub license: String,
    pub summary: String,
    pub homepage: Option<String>,
    #[serde(skip)]
    pub sources: Vec<Source>,
    #[serde(skip)]
    pub patches: Vec<Patch>,
    pub build_deps: Vec<String>,
    pub run_deps: Vec<String>,
    pub env: BuildEnv,
    /// A named environment of book.toml (`[env.NAME]`) this recipe builds in: `env` is its base,
    /// and its `build` packages are appended to `build_deps` when the book is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_name: Option<String>,
    pub template: Option<String>,
    /// `[bootstrap] env = "NAME"`: the book also holds `NAME-boot`, this recipe built in that
    /// environment with the `-boot` twins of its dependencies (see `Book::from_files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// For a generated `-boot` twin: the recipe it was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twin_of: Option<String>,
    /// Extra environment variables for the build.
    pub environment: BTreeMap<String, String>,
    /// Directory inside the unpacked sources to build in (default: the single top-level directory).
    pub subdir: Option<String>,
    /// Book files the build reads (config fragments...), relative to the recipe's directory, with their sha256.
    pub inputs: BTreeMap<String, String>,
    /// Resolved steps: name → shell.
    pub steps: BTreeMap<String, String>,
    /// Contamination checks turned off for this recipe (`[build.qa-skip]`), each with its reason.
    /// Left out of the key when empty: the checks decide whether a build passes, not its bytes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub qa_skip: BTreeMap<String, String>,
    /// `[build.tests]`: where the test suite writes its results and which failures are known.
    /// Not in the key: the test suite decides whether a build passes, not its bytes.
    #[serde(skip)]
    pub tests: Option<TestSuite>,
    pub files: Vec<FileAttr>,
    /// `[build] cost`: the expected build time in SBU, a scheduling hint for a home that has no
    /// recorded time of this package yet. Not part of the key (it changes no artifact).
    #[serde(skip)]
    pub cost: Option<u32>,
    /// The recipe file (relative to the book root when loaded from a book).
    #[serde(skip)]
    pub path: PathBuf,
    /// Positions of fields, for cross-recipe diagnostics.
    #[serde(skip)]
    pub spans: Spans,
}

#[derive(Debug, Clone, Default)]
pub struct Spans {
    pub name: Option<(usize, usize)>,
    pub build_deps: Vec<(usize, usize)>,
    pub run_deps: Vec<(usize, usize)>,
    pub patches: Vec<(usize, usize)>,
    /// Positions of `build.inputs`, in the order of [`Recipe::inputs`] (by name).
    pub inputs: Vec<(usize, usize)>,
}

impl Recipe {
    /// Directory holding the recipe (patches and inputs are relative to it).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// Whether `--check` has a test suite to run: a `check` step, or `[build.tests] parts`
    /// (which need no check step of their own).
    pub fn has_suite(&self) -> bool {
        self.steps.contains_key("check") || self.tests.as_ref().is_some_and(|t| !t.parts.is_empty())
    }
}

const PACKAGE_KEYS: [&str; 5] = ["name", "version", "license", "summary", "homepage"];
const SOURCE_KEYS: [&str; 6] = ["file", "sha256", "urls", "debian", "unpack", "use"];
const DEBIAN_KEYS: [&str; 3] = ["package", "file", "sha256"];
const PATCH_KEYS: [&str; 3] = ["file", "sha256", "strip"];
const DEPENDS_KEYS: [&str; 2] = ["build", "run"];
const BUILD_KEYS: [&str; 9] = [
    "tests",
    "env",
    "template",
    "subdir",
    "environment",
    "inputs",
    "steps",
    "qa-skip",
    "cost",
];

/// The contamination checks run after every build (see xlfs-build's `qa`), by name.
pub const QA_CHECKS: [&str; 6] = ["needed", "rpaths", "buildpaths", "shadows", "strays", "layout"];
/// Bounds of `[build] cost` in SBU.
pub const COST_RANGE: std::ops::RangeInclusive<i64> = 1..=100_000;
const FILE_KEYS: [&str; 4] = ["path", "uid", "gid", "mode"];
const TOP_KEYS: [&str; 7] = [
    "package",
    "source",
    "patch",
    "depends",
    "build",
    "file",
    "bootstrap",
];

pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-._".contains(c))
}

/// A relative path that stays inside the directory it is relative to: not absolute, normalised
/// (no empty, `.` or `..` component) and without NUL bytes. Used for every path of the book and
/// the profiles that is joined to a directory (`patch.file`, `build.inputs`, `build.subdir`,
/// `overlay`).
pub fn is_book_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Why `p` is not [`is_book_relative`], for diagnostics.
pub(crate) fn path_problem(p: &str) -> &'static str {
    if p.is_empty() {
        "is empty"
    } else if p.starts_with('/') {
        "is absolute"
    } else if p.contains('\0') {
        "holds a NUL byte"
    } else if p.split('/').any(|c| c == "..") {
        "climbs out with `..`"
    } else {
        "is not normalised (empty or `.` components)"
    }
}

/// Where `base/rel` really is, when a symbolic link on the way takes it out of `base`; `None`
/// when it stays inside (or does not exist: that is reported where the file is read).
pub fn escapes_through_link(base: &Path, rel: &str) -> Option<PathBuf> {
    let full = base.join(rel);
    full.symlink_metadata().ok()?;
    let base = base.canonicalize().ok()?;
    match full.canonicalize() {
        Ok(real) if real.starts_with(&base) => None,
        Ok(real) => Some(real),
        // A dangling link: its target is not known to be inside.
        Err(_) => Some(std::fs::read_link(&full).unwrap_or(full)),
    }
}

/// Whether a part's commands are there; reports an empty one at `field`.
fn part_has_command(sink: &mut Sink, field: &str, run: &At<String>) -> bool {
    if !run.value.trim().is_empty() {
        return true;
    }
    sink.error(
        run.span.clone(),
        field.to_string(),
        "a part of the test suite is an empty command",
        Some("give each part the command that runs it, e.g. \"make -k check-gcc-c\"".into()),
    );
    false
}

/// `[[build.tests.parts]]`: each part a table with `name`, `run` and, optionally, `keep`.
fn read_part_tables(sink: &mut Sink, t: &mut Reader, results: &[String]) -> Vec<Part> {
    let mut globs = globset::GlobSetBuilder::new();
    for r in results {
        if let Ok(g) = globset::Glob::new(r) {
            globs.add(g);
        }
    }
    let globs = globs.build().ok();
    let mut names = BTreeSet::new();
    let mut parts = Vec::new();
    for mut p in t.tables(sink, "parts") {
        let name = p.required_string(sink, "name", "\"c1\" (a short name for the build's log)");
        let run = p.required_string(sink, "run", "\"make -k check-gcc-c\" (the commands of this part)");
        let keep = p.string(sink, "keep");
        let (name_field, run_field, keep_field) = (p.field("name"), p.field("run"), p.field("keep"));
        p.finish(sink, &["name", "run", "keep"]);
        let name = name.and_then(|n| {
            let ok = !n.value.is_empty()
                && n.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'));
            if !ok {
                sink.error(
                    n.span.clone(),
                    name_field.clone(),
                    format!("`{}` is not a part name", n.value.escape_debug()),
                    Some("use letters, digits, `-`, `_`, `+` or `.`, e.g. \"c1\"".into()),
                );
                None
            } else if !names.insert(n.value.clone()) {
                sink.error(
                    n.span.clone(),
                    name_field.clone(),
                    format!("two parts are named `{}`", n.value),
                    Some("give each part a name of its own: the file it keeps is named after it".into()),
                );
                None
            } else {
                Some(n.value)
            }
        });
        let run = run
            .filter(|r| part_has_command(sink, &run_field, r))
            .map(|r| r.value);
        let keep = keep.filter(|k| {
            check_relative(
                sink,
                keep_field.clone(),
                k,
                "the build directory",
                "name the result file as `results` does, relative to the build directory, e.g. \"gcc-15.2.0/build/gcc/testsuite/gcc/gcc.sum\"",
            )
        });
        let (Some(name), Some(run)) = (name, run) else {
            continue;
        };
        let part = Part {
            name: Some(name),
            run,
            keep: keep.as_ref().map(|k| k.value.clone()),
        };
        if let (Some(k), Some(kept), Some(globs)) = (&keep, part.kept(), &globs) {
            if !globs.is_match(&kept) {
                sink.error(
                    k.span.clone(),
                    keep_field.clone(),
                    format!("the part keeps its results as `{kept}`, which no `results` glob names: they would not be judged"),
                    Some("make `results` match it too, e.g. \"DIR/**/*.sum\"".into()),
                );
            }
        }
        parts.push(part);
    }
    parts
}

fn check_book_path(sink: &mut Sink, field: String, v: &At<String>) -> bool {
    check_relative(
        sink,
        field,
        v,
        "the recipe's directory",
        "name a file next to the recipe (or below its directory), e.g. \"fix.patch\" or \"patches/fix.patch\", without `/` at the start, `..` or `.`",
    )
}

/// Report `v` unless it is a relative path that stays inside `inside`.
pub(crate) fn check_relative(
    sink: &mut Sink,
    field: String,
    v: &At<String>,
    inside: &str,
    help: &str,
) -> bool {
    if is_book_relative(&v.value) {
        return true;
    }
    sink.error(
        v.span.clone(),
        field,
        format!(
            "`{}` is not a path inside {inside}: it {}",
            v.value.escape_debug(),
            path_problem(&v.value)
        ),
        Some(help.into()),
    );
    false
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn pos(sink: &Sink, span: &Option<Range<usize>>) -> (usize, usize) {
    span.as_ref().map(|r| sink.line_col(r.start)).unwrap_or((0, 0))
}

fn check_sha(sink: &mut Sink, r: &Reader, key: &str, v: &At<String>) -> bool {
    if is_sha256(&v.value) {
        return true;
    }
    let help = if v.value.len() == 32 {
        "this looks like an MD5 sum; xlfs pins files by sha256: run `sha256sum FILE`".to_string()
    } else {
        format!(
            "a sha256 is 64 lowercase hex digits (this has {} characters); run `sha256sum FILE`",
            v.value.len()
        )
    };
    sink.error(
        v.span.clone(),
        r.field(key),
        format!("malformed sha256 `{}`", v.value),
        Some(help),
    );
    false
}

fn check_file_name(sink: &mut Sink, r: &Reader, key: &str, v: &At<String>) {
    if v.value.is_empty() || v.value.contains('/') || v.value == "." || v.value == ".." {
        sink.error(
            v.span.clone(),
            r.field(key),
            format!("`{}` is not a plain file name", v.value),
            Some("give the file's name only, without directories".into()),
        );
    }
}

fn parse_mode(sink: &mut Sink, r: &mut Reader, key: &str) -> Option<u32> {
    if r.list_probe(key) {
        r.string(sink, key);
        return None;
    }
    if let Some(s) = {
        let is_str = r.has(key) && r.string_probe(key);
        if is_str {
            r.string(sink, key)
        } else {
            None
        }
    } {
        return match u32::from_str_radix(&s.value, 8) {
            Ok(m) if m <= 0o7777 => Some(m),
            _ => {
                sink.error(
                    s.span,
                    r.field(key),
                    format!("`{}` is not an octal file mode", s.value),
                    Some("write the mode as an octal string, e.g. \"0755\" or \"4755\"".into()),
                );
                None
            }
        };
    }
    let i = r.integer(sink, key)?;
    sink.error(
        i.span,
        r.field(key),
        format!("mode `{}` given as a number", i.value),
        Some("write the mode as an octal string, e.g. \"0755\"".into()),
    );
    None
}

fn parse_id(sink: &mut Sink, r: &mut Reader, key: &str) -> Option<u32> {
    let i = r.integer(sink, key)?;
    match u32::try_from(i.value) {
        Ok(v) => Some(v),
        Err(_) => {
            sink.error(
                i.span,
                r.field(key),
                format!("{} is not a valid id", i.value),
                None,
            );
            None
        }
    }
}

/// Parse one recipe. `path` is used in diagnostics; `templates` resolves `build.template`,
/// `envs` the named environments of book.toml that `build.env` may name besides host and chroot.
pub fn parse_recipe(
    path: &Path,
    text: &str,
    templates: &BTreeMap<String, Template>,
    envs: &BTreeMap<String, crate::book::NamedEnv>,
) -> (Option<Recipe>, Vec<Diagnostic>) {
    let mut sink = Sink::new(path, text);
    let Some(doc) = crate::reader::parse_document(&mut sink, text) else {
        return (None, sink.diags);
    };
    let mut top = Reader::new(doc.as_table(), Some(0..0), "");
    let mut spans = Spans::default();

    // [package]
    let (mut name, mut version, mut license, mut summary, mut homepage) =
        (String::new(), String::new(), String::new(), String::new(), None);
    match top.table(&mut sink, "package") {
        Some(mut p) => {
            if let Some(n) = p.required_string(&mut sink, "name", "\"zlib\"") {
                if !is_valid_name(&n.value) {
                    sink.error(
                        n.span.clone(),
                        "package.name",
                        format!("`{}` is not a valid package name", n.value),
                        Some(
                            "use lowercase letters, digits and + - . _ (starting with a letter or digit)"
                                .into(),
                        ),
                    );
                }
                spans.name = Some(pos(&sink, &n.span));
                name = n.value;
            }
            if let Some(v) = p.required_string(&mut sink, "version", "\"1.0\"") {
                if v.value.is_empty() || v.value.contains(char::is_whitespace) {
                    sink.error(
                        v.span,
                        "package.version",
                        "the version must be non-empty and without spaces",
                        None,
                    );
                }
                version = v.value;
            }
            if let Some(l) = p.required_string(&mut sink, "license", "\"GPL-2.0-or-later\"") {
                license = l.value;
            }
            summary = p
                .string(&mut sink, "summary")
                .map(|s| s.value)
                .unwrap_or_default();
            homepage = p.string(&mut sink, "homepage").map(|s| s.value);
            p.finish(&mut sink, &PACKAGE_KEYS);
        }
        None => {
            if !top.has("package") {
                sink.error(
                    Some(0..0),
                    "package",
                    "missing [package] table",
                    Some("start the recipe with [package] name = ..., version = ..., license = ...".into()),
                );
            }
        }
    }

    // [[source]]
    let mut sources = Vec::new();
    for mut s in top.tables(&mut sink, "source") {
        let file = s.required_string(&mut sink, "file", "\"NAME-VERSION.tar.xz\"");
        if let Some(f) = &file {
            check_file_name(&mut sink, &s, "file", f);
        }
        let sha = s.required_string(&mut sink, "sha256", "\"<64 hex digits>\"");
        let sha_ok = sha
            .as_ref()
            .is_some_and(|v| check_sha(&mut sink, &s, "sha256", v));
        let mut urls = Vec::new();
        for u in s.string_list(&mut sink, "urls").unwrap_or_default() {
            if !["http://", "https://", "ftp://"]
                .iter()
                .any(|p| u.value.starts_with(p))
            {
                sink.error(
                    u.span,
                    s.field("urls"),
                    format!("`{}` is not an http, https or ftp URL", u.value),
                    None,
                );
            } else {
                urls.push(u.value);
            }
        }
        let mut debian = None;
        if let Some(mut d) = s.table(&mut sink, "debian") {
            let package = d.required_string(&mut sink, "package", "\"zlib\"");
            let dfile = d.required_string(&mut sink, "file", "\"zlib_1.3.1.orig.tar.gz\"");
            if let Some(f) = &dfile {
                check_file_name(&mut sink, &d, "file", f);
            }
            let dsha = match d.string(&mut sink, "sha256") {
                Some(v) => check_sha(&mut sink, &d, "sha256", &v).then_some(v.value),
                // Same bytes as upstream.
                None => sha.as_ref().map(|v| v.value.clone()),
            };
            d.finish(&mut sink, &DEBIAN_KEYS);
            if let (Some(p), Some(f), Some(h)) = (package, dfile, dsha) {
                debian = Some(DebianSource {
                    package: p.value,
                    file: f.value,
                    sha256: h,
                });
            }
        }
        let unpack = s.boolean(&mut sink, "unpack").unwrap_or(true);
        let choice = s.string(&mut sink, "use");
        let differ = match (&debian, &sha) {
            (Some(d), Some(h)) => !d.sha256.eq_ignore_ascii_case(&h.value),
            _ => false,
        };
        let choice = match choice {
            Some(c) if c.value == "upstream" => SourceChoice::Upstream,
            Some(c) if c.value == "debian" && debian.is_some() => SourceChoice::Debian,
            Some(c) if c.value == "debian" => {
                sink.error(
                    c.span,
                    s.field("use"),
                    "`use = \"debian\"` but the source has no `debian` copy",
                    Some("add `debian = { package, file, sha256 }`, or remove `use`".into()),
                );
                SourceChoice::Upstream
            }
            Some(c) => {
                sink.error(
                    c.span,
                    s.field("use"),
                    format!("unknown choice `{}`", c.value),
                    Some("write `use = \"upstream\"` or `use = \"debian\"`".into()),
                );
                SourceChoice::Upstream
            }
            None if differ => {
                sink.error(
                    s.span(),
                    s.field("use"),
                    "the Debian copy's sha256 differs from upstream's: the recipe must say which bytes are built",
                    Some("add `use = \"debian\"` or `use = \"upstream\"` (both stay pinned)".into()),
                );
                SourceChoice::Upstream
            }
            None => SourceChoice::Upstream,
        };
        s.finish(&mut sink, &SOURCE_KEYS);
        if let (Some(f), Some(h), true) = (file, sha, sha_ok) {
            sources.push(Source {
                file: f.value,
                sha256: h.value,
                urls,
                debian,
                unpack,
                choice,
            });
        }
    }

    // [[patch]]
    let mut patches = Vec::new();
    for mut p in top.tables(&mut sink, "patch") {
        let file = p.required_string(&mut sink, "file", "\"fix-build.patch\"");
        let sha = p.required_string(&mut sink, "sha256", "\"<64 hex digits>\"");
        let sha_ok = sha
            .as_ref()
            .is_some_and(|v| check_sha(&mut sink, &p, "sha256", v));
        let strip = match p.integer(&mut sink, "strip") {
            Some(i) if (0..=16).contains(&i.value) => i.value as u32,
            Some(i) => {
                sink.error(i.span, p.field("strip"), "strip must be between 0 and 16", None);
                1
            }
            None => 1,
        };
        let path_ok = file
            .as_ref()
            .is_some_and(|f| check_book_path(&mut sink, p.field("file"), f));
        p.finish(&mut sink, &PATCH_KEYS);
        if let (Some(f), Some(h), true, true) = (file, sha, sha_ok, path_ok) {
            spans.patches.push(pos(&sink, &f.span));
            patches.push(Patch {
                file: f.value,
                sha256: h.value,
                strip,
            });
        }
    }

    // [depends]
    let (mut build_deps, mut run_deps) = (Vec::new(), Vec::new());
    if let Some(mut d) = top.table(&mut sink, "depends") {
        for dep in d.string_list(&mut sink, "build").unwrap_or_default() {
            spans.build_deps.push(pos(&sink, &dep.span));
            build_deps.push(dep.value);
        }
        for dep in d.string_list(&mut sink, "run").unwrap_or_default() {
            spans.run_deps.push(pos(&sink, &dep.span));
            run_deps.push(dep.value);
        }
        d.finish(&mut sink, &DEPENDS_KEYS);
    }

    // [build]
    let mut env = BuildEnv::Host;
    let mut env_name = None;
    let mut template_name = None;
    let mut template_given = false;
    let mut environment = BTreeMap::new();
    let mut subdir = None;
    let mut cost = None;
    let mut inputs = BTreeMap::new();
    let mut steps = BTreeMap::new();
    let mut qa_skip = BTreeMap::new();
    let mut tests = None;
    match top.table(&mut sink, "build") {
        Some(mut b) => {
            if let Some(e) = b.string(&mut sink, "env") {
                match e.value.as_str() {
                    "host" => env = BuildEnv::Host,
                    "chroot" => env = BuildEnv::Chroot,
                    other => match envs.get(other) {
                        Some(named) => {
                            env = named.base;
                            env_name = Some(other.to_string());
                        }
                        None => {
                            let mut known = vec!["host".to_string(), "chroot".to_string()];
                            known.extend(envs.keys().cloned());
                            let help = crate::diag::suggest(other, known.iter().map(|s| s.as_str()))
                                .map(|s| format!("did you mean `{s}`?"))
                                .unwrap_or_else(|| {
                                    format!(
                                        "use \"host\" (the pinned toolchain root), \"chroot\" (a root made of the dependencies) or an environment of book.toml's [env.NAME] tables ({})",
                                        known.join(", ")
                                    )
                                });
                            sink.error(
                                e.span,
                                "build.env",
                                format!("unknown build environment `{other}`"),
                                Some(help),
                            )
                        }
                    },
                }
            }
            template_given = b.has("template");
            let template = match b.string(&mut sink, "template") {
                Some(t) => match templates.get(&t.value) {
                    Some(tpl) => Some(tpl),
                    None => {
                        let help = crate::diag::suggest(&t.value, templates.keys().map(|s| s.as_str()))
                            .map(|s| format!("did you mean `{s}`?"))
                            .unwrap_or_else(|| {
                                format!(
                                    "templates in this book: {}",
                                    templates.keys().cloned().collect::<Vec<_>>().join(", ")
                                )
                            });
                        sink.error(
                            t.span,
                            "build.template",
                            format!("unknown template `{}`", t.value),
                            Some(help),
                        );
                        None
                    }
                },
                None => None,
            };
            template_name = template.map(|t| t.name.clone());
            subdir = b.string(&mut sink, "subdir").and_then(|s| {
                check_relative(
                    &mut sink,
                    "build.subdir".into(),
                    &s,
                    "the unpacked sources",
                    "name a directory below the unpacked sources, e.g. \"gcc-14.2.0\" or \"foo-1.0/src\", without `/` at the start, `..` or `.`",
                )
                .then_some(s.value)
            });
            if let Some(c) = b.integer(&mut sink, "cost") {
                if COST_RANGE.contains(&c.value) {
                    cost = Some(c.value as u32);
                } else {
                    sink.error(
                        c.span,
                        "build.cost",
                        format!(
                            "cost {} is out of range: the expected build time in SBU, from {} to {}",
                            c.value,
                            COST_RANGE.start(),
                            COST_RANGE.end()
                        ),
                        Some("give a whole number of SBU, e.g. `cost = 30`".into()),
                    );
                }
            }
            if let Some(mut e) = b.table(&mut sink, "environment") {
                environment = e.string_map(&mut sink);
            }
            let mut at = BTreeMap::new();
            for i in b.string_list(&mut sink, "inputs").unwrap_or_default() {
                if !check_book_path(&mut sink, "build.inputs".into(), &i) {
                    continue;
                }
                at.entry(i.value.clone()).or_insert(pos(&sink, &i.span));
                // The hash is filled in by the book loader, which reads the file.
                inputs.insert(i.value, String::new());
            }
            // In the order of `inputs` (by name), like the map itself.
            spans.inputs = at.into_values().collect();
            if let Some(mut q) = b.table(&mut sink, "qa-skip") {
                for check in QA_CHECKS {
                    if let Some(reason) = q.string(&mut sink, check) {
                        if reason.value.trim().is_empty() {
                            sink.error(
                                reason.span,
                                q.field(check),
                                "a skipped check needs a reason",
                                Some(format!("say why `{check}` fails for this package and is harmless, e.g. {check} = \"upstream embeds ...\"")),
                            );
                        } else {
                            qa_skip.insert(check.to_string(), reason.value);
                        }
                    }
                }
                q.finish(&mut sink, &QA_CHECKS);
            }
            if let Some(mut t) = b.table(&mut sink, "tests") {
                let results: Vec<String> = t
                    .string_list(&mut sink, "results")
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| check_book_path(&mut sink, t.field("results"), r))
                    .map(|r| r.value)
                    .collect();
                if results.is_empty() {
                    t.missing(
                        &mut sink,
                        "results",
                        "[\"build/tests.sum\"] (the result files, relative to the build directory)",
                    );
                }
                let allow = t
                    .string_list(&mut sink, "allow")
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.value)
                    .collect();
                let parts = if t.holds_tables("parts") {
                    read_part_tables(&mut sink, &mut t, &results)
                } else {
                    t.string_list(&mut sink, "parts")
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| part_has_command(&mut sink, &t.field("parts"), p))
                        .map(|p| Part::command(p.value))
                        .collect()
                };
                t.finish(&mut sink, &["results", "allow", "parts"]);
                tests = Some(TestSuite {
                    results,
                    allow,
                    parts,
                });
            }
            let mut explicit = BTreeMap::new();
            if let Some(mut s) = b.table(&mut sink, "steps") {
                for step in STEP_NAMES {
                    if let Some(text) = s.string(&mut sink, step) {
                        explicit.insert(step.to_string(), text.value);
                    }
                }
                s.finish(&mut sink, &STEP_NAMES);
            }
            // Every other key of [build] is a template variable.
            let mut vars = BTreeMap::new();
            let var_keys: Vec<String> = b
                .unread()
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| !BUILD_KEYS.contains(&k.as_str()))
                .collect();
            let mut known: Vec<&str> = BUILD_KEYS.to_vec();
            if let Some(tpl) = template {
                known.extend(tpl.vars.keys().map(|s| s.as_str()));
                for k in &var_keys {
                    if tpl.vars.contains_key(k) {
                        if let Some(v) = parse_var_value(&mut b, &mut sink, k) {
                            vars.insert(k.clone(), v);
                        }
                    }
                }
                match tpl.render(&vars, &name, &version) {
                    Ok(rendered) => steps = rendered,
                    Err((step, e)) => sink.error(
                        b.span(),
                        "build.template",
                        format!("template `{}` failed to render step `{step}`: {e}", tpl.name),
                        None,
                    ),
                }
            }
            steps.extend(explicit);
            b.finish(&mut sink, &known);
        }
        None => {
            // A group (no sources: only dependencies) needs no [build] table.
            if !top.has("build") && !sources.is_empty() {
                sink.error(
                    Some(0..0),
                    "build",
                    "missing [build] table",
                    Some("add [build] with `template = \"autotools\"` or [build.steps] (only a group, a recipe without sources, may have none)".into()),
                );
            }
        }
    }
    if top.has("build") && !template_given && !steps.contains_key("install") {
        sink.error(
            Some(0..0),
            "build.steps.install",
            "the recipe has no install step",
            Some("use a template (build.template) or write [build.steps] install = 'make DESTDIR=\"$DESTDIR\" install'".into()),
        );
    }

    // [[file]]
    let mut files = Vec::new();
    for mut f in top.tables(&mut sink, "file") {
        let path = f.required_string(&mut sink, "path", "\"usr/bin/passwd\"");
        let uid = parse_id(&mut sink, &mut f, "uid");
        let gid = parse_id(&mut sink, &mut f, "gid");
        let mode = parse_mode(&mut sink, &mut f, "mode");
        let field = f.field("path");
        f.finish(&mut sink, &FILE_KEYS);
        if let Some(p) = path {
            let clean = p.value.trim_start_matches('/').to_string();
            if clean.is_empty() || clean.split('/').any(|c| c == "..") {
                sink.error(
                    p.span,
                    field,
                    format!("`{}` is not a path inside the package", p.value),
                    None,
                );
                continue;
            }
            files.push(FileAttr {
                path: clean,
                uid,
                gid,
                mode,
            });
        }
    }

    // [bootstrap]
    let mut bootstrap = None;
    if let Some(mut b) = top.table(&mut sink, "bootstrap") {
        if let Some(e) = b.required_string(&mut sink, "env", "\"lfs-temp\"") {
            if envs.contains_key(&e.value) || e.value == "host" || e.value == "chroot" {
                bootstrap = Some(e.value);
            } else {
                sink.error(
                    e.span,
                    "bootstrap.env",
                    format!("unknown build environment `{}`", e.value),
                    Some("name an environment of book.toml's [env.NAME] tables, or host or chroot".into()),
                );
            }
        }
        b.finish(&mut sink, &["env"]);
    }

    top.finish(&mut sink, &TOP_KEYS);

    let recipe = Recipe {
        name,
        version,
        license,
        summary,
        homepage,
        sources,
        patches,
        build_deps,
        run_deps,
        env,
        env_name,
        template: template_name,
        bootstrap,
        twin_of: None,
        environment,
        subdir,
        inputs,
        steps,
        qa_skip,
        tests,
        files,
        cost,
        path: path.to_path_buf(),
        spans,
    };
    // A recipe with problems is still returned when it has a name, so that the book can check
    // the other recipes against it; the diagnostics make the book as a whole fail.
    let named = !recipe.name.is_empty();
    (named.then_some(recipe), sink.diags)
}
