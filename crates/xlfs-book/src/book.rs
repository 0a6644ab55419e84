//! The book: a directory of recipes (one package a file), build templates and `book.toml`.
//! Loading reads only files inside the book; everything else here is pure.

use crate::diag::{suggest, BookErrors, Diagnostic, Sink};
use crate::reader::Reader;
use crate::recipe::{parse_recipe, Recipe};
use crate::template::{parse_template, Template};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Settings of the whole book (`book.toml`).
#[derive(Debug, Clone)]
pub struct BookConfig {
    pub name: String,
    /// The package whose build time is 1 SBU (Standard Build Unit), as the LFS book defines it.
    pub sbu_reference: Option<String>,
    /// SOURCE_DATE_EPOCH for every build and artifact.
    pub source_date_epoch: u64,
    /// Packages the build machine's toolchain stands in for when building in the `host`
    /// environment (e.g. the C library): they go into images, but are left out of `/sysroot`,
    /// so that host-built programs compile against the toolchain's own headers and libraries.
    pub host_provides: Vec<String>,
    /// The pinned toolchain root of the `host` environment (`[toolchain.host]`).
    pub host_toolchain: HostToolchain,
    /// The build tools root (`[toolchain.tools]`): ccache and icecream for `xlfs build --ccache`
    /// and `--icecc`, mounted read-only at a fixed path. Not part of any key.
    pub build_tools: HostToolchain,
    /// Named build environments (`[env.NAME]`), which recipes name in `build.env`.
    pub envs: BTreeMap<String, NamedEnv>,
}

/// A named build environment (`[env.NAME]` in book.toml): a base environment and packages that
/// every recipe building in it gets in its build root, as if listed first in `depends.build`.
/// One setting moves a whole group of recipes to another toolchain, e.g. the guests' services
/// from the pinned host root to the LFS system:
///
/// ```toml
/// [env.guest]
/// base = "host"          # later: base = "chroot", build = ["lfs-build-essential"]
/// build = []
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamedEnv {
    pub base: crate::BuildEnv,
    pub build: Vec<String>,
    /// Line and column of each `build` entry in book.toml, for diagnostics.
    #[serde(skip)]
    pub build_spans: Vec<(usize, usize)>,
}

/// The toolchain root of the `host` environment: a Debian root made by `mmdebstrap`
/// (`--variant=buildd`: build-essential) of `suite`, plus `packages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostToolchain {
    pub suite: String,
    /// Extra Debian packages, sorted and without duplicates.
    pub packages: Vec<String>,
}

impl Default for HostToolchain {
    fn default() -> Self {
        HostToolchain {
            suite: "bookworm".into(),
            packages: Vec::new(),
        }
    }
}

/// A Debian package or suite name: lowercase letters, digits, `+`, `-`, `.`; at least two
/// characters, starting with a letter or digit.
pub fn is_debian_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

impl Default for BookConfig {
    fn default() -> Self {
        BookConfig {
            name: "book".into(),
            sbu_reference: None,
            source_date_epoch: 1_700_000_000,
            host_provides: Vec::new(),
            host_toolchain: HostToolchain::default(),
            build_tools: HostToolchain::default(),
            envs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Book {
    pub root: PathBuf,
    pub config: BookConfig,
    pub templates: BTreeMap<String, Template>,
    pub recipes: BTreeMap<String, Recipe>,
    /// Guest templates (`guests/NAME.toml`).
    pub guests: BTreeMap<String, crate::guest::GuestTemplate>,
}

/// A file of the book: path relative to the book root, and its text.
pub struct BookFile {
    pub path: PathBuf,
    pub text: String,
}

/// Directories of a book that hold no recipes.
pub const NON_RECIPE_DIRS: [&str; 4] = ["templates", "profiles", "files", "guests"];

impl Book {
    /// Read every `.toml` file of the book at `root` and validate the whole book.
    pub fn load(root: &Path) -> Result<Book, BookErrors> {
        let mut files = Vec::new();
        let mut diags = Vec::new();
        if !root.is_dir() {
            return Err(BookErrors(vec![Diagnostic {
                file: root.to_path_buf(),
                line: 0,
                col: 0,
                field: String::new(),
                message: "the book directory does not exist".into(),
                help: Some("pass the book with --book DIR or run from the xlfs repository".into()),
            }]));
        }
        collect_toml(root, root, &mut files, &mut diags);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let reader = |rel: &Path| read_inside(root, rel);
        let mut book = Book::from_files(root, files, &reader).map_err(|mut e| {
            e.0.extend(diags.clone());
            e
        })?;
        diags.extend(check_links(root, &book.recipes));
        if !diags.is_empty() {
            return Err(BookErrors(diags));
        }
        book.root = root.to_path_buf();
        Ok(book)
    }

    /// Build a book from its files. `read` gives the bytes of other book files (patches, inputs).
    pub fn from_files(
        root: &Path,
        files: Vec<BookFile>,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<Book, BookErrors> {
        let mut diags = Vec::new();
        let mut config = BookConfig::default();
        let mut templates = BTreeMap::new();
        let mut recipe_files = Vec::new();
        let mut guests = BTreeMap::new();
        for f in &files {
            let first = f
                .path
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().to_string());
            if f.path == Path::new("book.toml") {
                let (c, d) = parse_config(&f.path, &f.text);
                config = c;
                diags.extend(d);
            } else if first.as_deref() == Some("templates") {
                let name = stem(&f.path);
                let (t, d) = parse_template(&f.path, &name, &f.text);
                diags.extend(d);
                if let Some(t) = t {
                    templates.insert(name, t);
                }
            } else if first.as_deref() == Some(crate::guest::GUESTS_DIR) && f.path.components().count() == 2 {
                let name = stem(&f.path);
                let (t, d) = crate::guest::parse_guest_template(&f.path, &name, &f.text);
                diags.extend(d);
                if let Some(t) = t {
                    guests.insert(name, t);
                }
            } else if first.as_deref().is_some_and(|d| NON_RECIPE_DIRS.contains(&d)) {
                continue;
            } else {
                recipe_files.push(f);
            }
        }

        let mut recipes: BTreeMap<String, Recipe> = BTreeMap::new();
        for f in recipe_files {
            let (r, d) = parse_recipe(&f.path, &f.text, &templates, &config.envs);
            diags.extend(d);
            let Some(mut r) = r else { continue };
            check_book_files(&mut r, read, &mut diags);
            if let Some(prev) = recipes.get(&r.name) {
                let (line, col) = r.spans.name.unwrap_or((0, 0));
                diags.push(Diagnostic {
                    file: r.path.clone(),
                    line,
                    col,
                    field: "package.name".into(),
                    message: format!(
                        "duplicate package `{}`, also defined in {}",
                        r.name,
                        prev.path.display()
                    ),
                    help: Some("each package must be defined once; remove or rename one".into()),
                });
                continue;
            }
            recipes.insert(r.name.clone(), r);
        }
        add_bootstrap_twins(&mut recipes, &config, &mut diags);
        for r in recipes.values_mut() {
            add_env_deps(r, &config);
        }
        for (name, env) in &config.envs {
            for (i, dep) in env.build.iter().enumerate() {
                if !recipes.contains_key(dep) {
                    let (line, col) = env.build_spans.get(i).copied().unwrap_or((0, 0));
                    diags.push(Diagnostic {
                        file: PathBuf::from("book.toml"),
                        line,
                        col,
                        field: format!("env.{name}.build"),
                        message: format!("unknown package `{dep}`"),
                        help: suggest(dep, recipes.keys().map(|s| s.as_str()))
                            .map(|s| format!("did you mean `{s}`?"))
                            .or_else(|| Some("no recipe in the book has this name".into())),
                    });
                }
            }
        }
        check_dependencies(&recipes, &config.host_provides, &mut diags);
        for t in guests.values() {
            let t: &crate::guest::GuestTemplate = t;
            for (field, p) in t
                .packages
                .iter()
                .map(|p| ("template.packages", p))
                .chain(std::iter::once(("template.kernel", &t.kernel)))
            {
                if !recipes.contains_key(p) {
                    diags.push(Diagnostic {
                        file: t.path.clone(),
                        line: 0,
                        col: 0,
                        field: field.into(),
                        message: format!("unknown package `{p}`"),
                        help: suggest(p, recipes.keys().map(|s| s.as_str()))
                            .map(|s| format!("did you mean `{s}`?")),
                    });
                }
            }
        }
        for p in &config.host_provides {
            if !recipes.contains_key(p) {
                diags.push(Diagnostic {
                    file: PathBuf::from("book.toml"),
                    line: 0,
                    col: 0,
                    field: "toolchain.host.provides".into(),
                    message: format!("unknown package `{p}`"),
                    help: suggest(p, recipes.keys().map(|s| s.as_str()))
                        .map(|s| format!("did you mean `{s}`?")),
                });
            }
        }
        if let Some(sbu) = &config.sbu_reference {
            if !recipes.contains_key(sbu) {
                diags.push(Diagnostic {
                    file: PathBuf::from("book.toml"),
                    line: 0,
                    col: 0,
                    field: "book.sbu-reference".into(),
                    message: format!("unknown package `{sbu}`"),
                    help: suggest(sbu, recipes.keys().map(|s| s.as_str()))
                        .map(|s| format!("did you mean `{s}`?")),
                });
            }
        }
        if diags.is_empty() {
            Ok(Book {
                root: root.to_path_buf(),
                config,
                templates,
                recipes,
                guests,
            })
        } else {
            diags.sort();
            diags.dedup();
            Err(BookErrors(diags))
        }
    }

    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.recipes.get(name)
    }

    /// Unknown package names among `names`, each with a suggestion.
    pub fn unknown(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|n| !self.recipes.contains_key(*n))
            .map(|n| match suggest(n, self.recipes.keys().map(|s| s.as_str())) {
                Some(s) => format!("unknown package `{n}` (did you mean `{s}`?)"),
                None => format!("unknown package `{n}`"),
            })
            .collect()
    }
}

fn collect_toml(root: &Path, dir: &Path, out: &mut Vec<BookFile>, diags: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(io_diag(dir.strip_prefix(root).unwrap_or(dir), &e));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                collect_toml(root, &path, out, diags);
            }
        } else if path.extension().is_some_and(|e| e == "toml") {
            match std::fs::read_to_string(&path) {
                Ok(text) => out.push(BookFile { path: rel, text }),
                Err(e) => diags.push(io_diag(&rel, &e)),
            }
        }
    }
}

/// Read a regular file of the book; a path that leads out of the book (through a symbolic link)
/// or to something other than a regular file is refused without being opened.
fn read_inside(root: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
    let full = root.join(rel);
    let real = full.canonicalize()?;
    let book = root.canonicalize()?;
    if !real.starts_with(&book) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("it leads to {}, outside the book", real.display()),
        ));
    }
    if !real.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    std::fs::read(real)
}

/// Patches and inputs that a symbolic link takes out of their recipe's directory.
fn check_links(root: &Path, recipes: &BTreeMap<String, Recipe>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for r in recipes.values() {
        let dir = root.join(r.dir());
        let files = r
            .patches
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("patch[{i}].file"), &p.file, r.spans.patches.get(i)))
            .chain(
                r.inputs
                    .keys()
                    .enumerate()
                    .map(|(i, n)| ("build.inputs".to_string(), n, r.spans.inputs.get(i))),
            );
        for (field, name, span) in files {
            if let Some(real) = crate::recipe::escapes_through_link(&dir, name) {
                let (line, col) = span.copied().unwrap_or((0, 0));
                diags.push(Diagnostic {
                    file: r.path.clone(),
                    line,
                    col,
                    field,
                    message: format!(
                        "`{name}` leads through a symbolic link to {}, outside the recipe's directory",
                        real.display()
                    ),
                    help: Some("copy the file next to the recipe instead of linking to it".into()),
                });
            }
        }
    }
    diags
}

fn io_diag(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
        help: None,
    }
}

fn parse_config(path: &Path, text: &str) -> (BookConfig, Vec<Diagnostic>) {
    let mut sink = Sink::new(path, text);
    let mut config = BookConfig::default();
    let Some(doc) = crate::reader::parse_document(&mut sink, text) else {
        return (config, sink.diags);
    };
    let mut top = Reader::new(doc.as_table(), Some(0..0), "");
    if let Some(mut b) = top.table(&mut sink, "book") {
        if let Some(n) = b.string(&mut sink, "name") {
            config.name = n.value;
        }
        config.sbu_reference = b.string(&mut sink, "sbu-reference").map(|s| s.value);
        if let Some(e) = b.integer(&mut sink, "source-date-epoch") {
            match u64::try_from(e.value) {
                Ok(v) => config.source_date_epoch = v,
                Err(_) => sink.error(
                    e.span,
                    "book.source-date-epoch",
                    "must be a positive number of seconds",
                    None,
                ),
            }
        }
        b.finish(&mut sink, &["name", "sbu-reference", "source-date-epoch"]);
    }
    if let Some(mut t) = top.table(&mut sink, "toolchain") {
        if let Some(mut h) = t.table(&mut sink, "host") {
            config.host_provides = h
                .string_list(&mut sink, "provides")
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.value)
                .collect();
            config.host_toolchain = debian_root(&mut h, &mut sink, "toolchain.host");
            h.finish(&mut sink, &["provides", "suite", "packages"]);
        }
        if let Some(mut h) = t.table(&mut sink, "tools") {
            config.build_tools = debian_root(&mut h, &mut sink, "toolchain.tools");
            h.finish(&mut sink, &["suite", "packages"]);
        }
        t.finish(&mut sink, &["host", "tools"]);
    }
    if let Some(mut envs) = top.table(&mut sink, "env") {
        for name in envs.keys() {
            let Some(mut e) = envs.table(&mut sink, &name) else {
                continue;
            };
            if matches!(name.as_str(), "host" | "chroot") || !is_debian_name(&name) {
                sink.error(
                    e.span(),
                    format!("env.{name}"),
                    format!("`{name}` cannot name an environment"),
                    Some("use lowercase letters, digits and `-`, other than `host` and `chroot`".into()),
                );
            }
            let base = match e.required_string(&mut sink, "base", "\"host\"") {
                Some(b) if b.value == "host" => Some(crate::BuildEnv::Host),
                Some(b) if b.value == "chroot" => Some(crate::BuildEnv::Chroot),
                Some(b) => {
                    sink.error(
                        b.span,
                        format!("env.{name}.base"),
                        format!("unknown base environment `{}`", b.value),
                        Some("use \"host\" or \"chroot\"".into()),
                    );
                    None
                }
                None => None,
            };
            let mut build = Vec::new();
            let mut build_spans = Vec::new();
            for p in e.string_list(&mut sink, "build").unwrap_or_default() {
                if build.contains(&p.value) {
                    sink.error(
                        p.span,
                        format!("env.{name}.build"),
                        format!("`{}` is listed twice", p.value),
                        Some("remove one of them".into()),
                    );
                    continue;
                }
                build_spans.push(p.span.as_ref().map(|r| sink.line_col(r.start)).unwrap_or((0, 0)));
                build.push(p.value);
            }
            e.finish(&mut sink, &["base", "build"]);
            if let Some(base) = base {
                config.envs.insert(
                    name,
                    NamedEnv {
                        base,
                        build,
                        build_spans,
                    },
                );
            }
        }
    }
    top.finish(&mut sink, &["book", "toolchain", "env"]);
    (config, sink.diags)
}

/// A Debian root's `suite` and `packages` from the table `h` (`what`: its name in messages).
fn debian_root(h: &mut Reader, sink: &mut Sink, what: &str) -> HostToolchain {
    let mut root = HostToolchain::default();
    if let Some(suite) = h.string(sink, "suite") {
        if is_debian_name(&suite.value) {
            root.suite = suite.value;
        } else {
            sink.error(
                suite.span,
                format!("{what}.suite"),
                format!("`{}` is not a Debian suite name", suite.value),
                Some("write a suite such as `suite = \"bookworm\"`".into()),
            );
        }
    }
    let mut packages = Vec::new();
    for p in h.string_list(sink, "packages").unwrap_or_default() {
        if !is_debian_name(&p.value) {
            sink.error(
                p.span,
                format!("{what}.packages"),
                format!("`{}` is not a Debian package name", p.value),
                Some("package names are lowercase letters, digits, `+`, `-` and `.`".into()),
            );
        } else if packages.contains(&p.value) {
            sink.error(
                p.span,
                format!("{what}.packages"),
                format!("`{}` is listed twice", p.value),
                Some("remove one of them".into()),
            );
        } else {
            packages.push(p.value);
        }
    }
    packages.sort();
    root.packages = packages;
    root
}

pub use xlfs_util::sha256_hex;

/// Patches must exist and match their pinned sha256; inputs must exist (their hash is recorded).
fn check_book_files(
    r: &mut Recipe,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    diags: &mut Vec<Diagnostic>,
) {
    let dir = r.dir().to_path_buf();
    for (i, p) in r.patches.iter().enumerate() {
        let (line, col) = r.spans.patches.get(i).copied().unwrap_or((0, 0));
        let field = format!("patch[{i}].file");
        match read(&dir.join(&p.file)) {
            Ok(bytes) => {
                let got = sha256_hex(&bytes);
                if got != p.sha256 {
                    diags.push(Diagnostic {
                        file: r.path.clone(),
                        line,
                        col,
                        field: format!("patch[{i}].sha256"),
                        message: format!(
                            "patch `{}` has sha256 {got}, the recipe pins {}",
                            p.file, p.sha256
                        ),
                        help: Some("if you changed the patch on purpose, update its sha256".into()),
                    });
                }
            }
            Err(e) => diags.push(Diagnostic {
                file: r.path.clone(),
                line,
                col,
                field,
                message: format!(
                    "patch file `{}` {}: {e}",
                    dir.join(&p.file).display(),
                    unreadable(&e)
                ),
                help: Some("patch files live next to the recipe; check the name".into()),
            }),
        }
    }
    let names: Vec<String> = r.inputs.keys().cloned().collect();
    for (i, name) in names.iter().enumerate() {
        let (line, col) = r.spans.inputs.get(i).copied().unwrap_or((0, 0));
        match read(&dir.join(name)) {
            Ok(bytes) => {
                r.inputs.insert(name.clone(), sha256_hex(&bytes));
            }
            Err(e) => diags.push(Diagnostic {
                file: r.path.clone(),
                line,
                col,
                field: "build.inputs".into(),
                message: format!(
                    "input file `{}` {}: {e}",
                    dir.join(name).display(),
                    unreadable(&e)
                ),
                help: Some("input files live next to the recipe".into()),
            }),
        }
    }
}

fn unreadable(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        "not found"
    } else {
        "cannot be read"
    }
}

/// A file's name without its extension.
fn stem(path: &Path) -> String {
    path.file_stem().unwrap_or_default().to_string_lossy().to_string()
}

/// A named environment's packages come first in the build dependencies.
fn add_env_deps(r: &mut Recipe, config: &BookConfig) {
    let Some(named) = r.env_name.as_ref().and_then(|n| config.envs.get(n)) else {
        return;
    };
    let declared = std::mem::take(&mut r.build_deps);
    r.build_deps = named.build.clone();
    r.build_deps
        .extend(declared.into_iter().filter(|d| !named.build.contains(d)));
    let shift = named.build.len();
    let old = std::mem::take(&mut r.spans.build_deps);
    r.spans.build_deps = vec![r.spans.name.unwrap_or((0, 0)); shift];
    r.spans.build_deps.extend(old);
}

/// Bootstrap twins. A recipe with `[bootstrap] env = "E"` is also built as `NAME-boot`: the
/// same sources and steps in environment E, with the `-boot` twin of each dependency that has
/// one. This is how a system is built twice, the way the LFS book's toolchain is: the twins,
/// built by the temporary tools, make the build root of the final packages, which therefore
/// holds none of the temporary tools.
fn add_bootstrap_twins(
    recipes: &mut BTreeMap<String, Recipe>,
    config: &BookConfig,
    diags: &mut Vec<Diagnostic>,
) {
    let has_twin: std::collections::BTreeSet<String> = recipes
        .values()
        .filter(|r| r.bootstrap.is_some())
        .map(|r| r.name.clone())
        .collect();
    let twin_name = |n: &String| {
        if has_twin.contains(n) {
            format!("{n}-boot")
        } else {
            n.clone()
        }
    };
    let mut twins = Vec::new();
    for r in recipes.values() {
        let Some(env) = &r.bootstrap else { continue };
        let mut t = r.clone();
        t.name = format!("{}-boot", r.name);
        t.bootstrap = None;
        t.twin_of = Some(r.name.clone());
        match env.as_str() {
            "host" => (t.env, t.env_name) = (crate::BuildEnv::Host, None),
            "chroot" => (t.env, t.env_name) = (crate::BuildEnv::Chroot, None),
            named => {
                t.env = config.envs[named].base;
                t.env_name = Some(named.to_string());
            }
        }
        t.build_deps = r.build_deps.iter().map(twin_name).collect();
        t.run_deps = r.run_deps.iter().map(twin_name).collect();
        twins.push(t);
    }
    for t in twins {
        if let Some(prev) = recipes.get(&t.name) {
            let (line, col) = prev.spans.name.unwrap_or((0, 0));
            diags.push(Diagnostic {
                file: prev.path.clone(),
                line,
                col,
                field: "package.name".into(),
                message: format!(
                    "package `{}` is also the bootstrap twin of `{}` ({})",
                    t.name,
                    t.twin_of.as_deref().unwrap_or_default(),
                    t.path.display()
                ),
                help: Some("rename this package, or remove the other recipe's [bootstrap] table".into()),
            });
            continue;
        }
        recipes.insert(t.name.clone(), t);
    }
}

/// Unknown and repeated dependencies, and build cycles. A package builds after everything in its
/// build root (its build dependencies and their runtime closure, less what the `host` toolchain
/// provides), so a package must not be in its own build root, directly or through others.
/// Runtime-only cycles (bash and readline need each other at run time) are allowed: they only
/// mean that the two go into images together.
fn check_dependencies(
    recipes: &BTreeMap<String, Recipe>,
    host_provides: &[String],
    diags: &mut Vec<Diagnostic>,
) {
    use petgraph::graphmap::DiGraphMap;
    let names = || recipes.keys().map(|s| s.as_str());
    for r in recipes.values() {
        let lists = [
            ("depends.build", &r.build_deps, &r.spans.build_deps),
            ("depends.run", &r.run_deps, &r.spans.run_deps),
        ];
        for (field, deps, spans) in lists {
            for (i, dep) in deps.iter().enumerate() {
                let (line, col) = spans.get(i).copied().unwrap_or((0, 0));
                if !recipes.contains_key(dep) {
                    let help = suggest(dep, names())
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| Some("no recipe in the book has this name".into()));
                    diags.push(Diagnostic {
                        file: r.path.clone(),
                        line,
                        col,
                        field: field.into(),
                        message: format!("unknown package `{dep}`"),
                        help,
                    });
                } else if deps[..i].contains(dep) {
                    diags.push(Diagnostic {
                        file: r.path.clone(),
                        line,
                        col,
                        field: field.into(),
                        message: format!("`{dep}` is listed twice"),
                        help: None,
                    });
                }
            }
        }
    }
    // Edges P -> Q for every Q in P's build root: Q must be built before P.
    let mut graph: DiGraphMap<&str, ()> = DiGraphMap::new();
    for r in recipes.values() {
        graph.add_node(r.name.as_str());
        let mut seen = std::collections::BTreeSet::new();
        let mut stack: Vec<&str> = r.build_deps.iter().map(|s| s.as_str()).collect();
        while let Some(n) = stack.pop() {
            let Some(dep) = recipes.get(n) else { continue };
            if !seen.insert(n) {
                continue;
            }
            stack.extend(dep.run_deps.iter().map(|s| s.as_str()));
        }
        for n in seen {
            if r.env == crate::BuildEnv::Host && host_provides.iter().any(|p| p == n) {
                continue;
            }
            graph.add_edge(r.name.as_str(), n, ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let is_cycle = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !is_cycle {
            continue;
        }
        let mut members: Vec<&str> = scc.clone();
        members.sort();
        let r = &recipes[members[0]];
        let (line, col) = r.spans.name.unwrap_or((0, 0));
        diags.push(Diagnostic {
            file: r.path.clone(),
            line,
            col,
            field: "depends".into(),
            message: format!(
                "build dependency cycle: {} (each arrow: needs to build, directly or through a build dependency's runtime dependencies)",
                cycle_path(&graph, &members)
            ),
            help: Some(
                "break the cycle: a package cannot need itself to build; cycles through `depends.run` alone are allowed"
                    .into(),
            ),
        });
    }
}

/// Render a shortest cycle through the first member as `a -> b -> c -> a`, following edges
/// inside the strongly connected set (breadth first, neighbours in name order).
fn cycle_path(graph: &petgraph::graphmap::DiGraphMap<&str, ()>, members: &[&str]) -> String {
    let start = members[0];
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(cur) = queue.pop_front() {
        let mut next: Vec<&str> = graph.neighbors(cur).filter(|n| members.contains(n)).collect();
        next.sort();
        for n in next {
            if n == start {
                let mut path = vec![start, cur];
                let mut at = cur;
                while at != start {
                    at = came_from[at];
                    path.push(at);
                }
                path.reverse();
                return path.join(" -> ");
            }
            if n != start && !came_from.contains_key(n) {
                came_from.insert(n, cur);
                queue.push_back(n);
            }
        }
    }
    members.join(" -> ")
}
