//! The runtime closure of a host image, computed from the artifacts' manifests (issue 7 §5).
//!
//! A package is in the image whole (minus the excluded classes of files, see
//! [`crate::exclude`]) when the profile lists it or another whole package declares it a `run`
//! dependency. Then every ELF file of the image has its interpreter (`PT_INTERP`) and its
//! `DT_NEEDED` libraries looked up: a file already in the image satisfies them; otherwise the
//! package that provides it is found **in the needing package's build root** (what the linker
//! really linked against; a bootstrap twin `NAME-boot` stands for its final `NAME`), and only
//! the providing file (with its chain of symbolic links) comes in, not the whole package. So a
//! program linking libgcc_s brings libgcc_s, never the compiler. What no package provides is
//! reported with the file, the library and the fix.
//!
//! Pure: the manifests come in, and the ELF facts the manifests do not keep (interpreter,
//! `RPATH`/`RUNPATH`) through a callback.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use xlfs_store::{Kind, Manifest};

/// What the closure needs to know of one package.
#[derive(Debug, Clone)]
pub struct PackageInfo<'a> {
    pub run_deps: Vec<String>,
    /// The packages of its build root (`xlfs_plan::build_root`): where its libraries came from.
    pub build_root: Vec<String>,
    /// For a bootstrap twin, the package it was made from.
    pub twin_of: Option<String>,
    pub manifest: &'a Manifest,
}

/// The ELF facts of one file that its manifest entry does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfExtra {
    pub interp: Option<String>,
    /// `RPATH` and `RUNPATH` lists, as written.
    pub rpaths: Vec<String>,
}

/// Which files of a package the image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every file that is not excluded.
    All,
    /// Only these (libraries and interpreters other files need, with their links).
    Files(BTreeSet<String>),
}

impl Selection {
    pub fn contains(&self, path: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Files(f) => f.contains(path),
        }
    }
}

/// The computed closure.
#[derive(Debug, Clone, Default)]
pub struct Closure {
    pub packages: BTreeMap<String, Selection>,
    /// Why each package is in: `listed in host.packages`, `run dependency of X`,
    /// `provides libz.so.1 to usr/bin/curl (curl)`.
    pub why: BTreeMap<String, String>,
    /// `PACKAGE: FILE needs LIB: ...` with the fix, for every need nothing provides.
    pub unresolved: Vec<String>,
}

/// The library directories the dynamic loader always searches.
pub const TRUSTED_DIRS: [&str; 4] = ["usr/lib", "usr/lib64", "lib", "lib64"];

/// Top-level symbolic links of directories (`lib -> usr/lib`), from every package: paths are
/// compared after following them, as the merged root would.
fn aliases(pkgs: &BTreeMap<String, PackageInfo>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    for p in pkgs.values() {
        for e in &p.manifest.entries {
            if e.kind == Kind::Symlink && !e.path.contains('/') {
                if let Some(t) = &e.target {
                    a.insert(
                        e.path.clone(),
                        t.trim_start_matches('/').trim_end_matches('/').to_string(),
                    );
                }
            }
        }
    }
    a
}

/// `path` (with or without a leading `/`) with `.`/`..` folded and a first component that is
/// a directory alias replaced.
fn canonical(aliases: &BTreeMap<String, String>, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut s = parts.join("/");
    for _ in 0..4 {
        let (first, rest) = s.split_once('/').unwrap_or((s.as_str(), ""));
        match aliases.get(first) {
            Some(t) if !t.is_empty() && t != first => {
                s = if rest.is_empty() {
                    t.clone()
                } else {
                    format!("{t}/{rest}")
                };
            }
            _ => break,
        }
    }
    s
}

struct Index<'a, 'b> {
    pkgs: &'b BTreeMap<String, PackageInfo<'a>>,
    aliases: BTreeMap<String, String>,
    /// Canonical path → (package, path as in its manifest), per package.
    paths: BTreeMap<String, Vec<(String, String)>>,
}

impl<'a, 'b> Index<'a, 'b> {
    fn new(pkgs: &'b BTreeMap<String, PackageInfo<'a>>) -> Self {
        let aliases = aliases(pkgs);
        let mut paths: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (name, p) in pkgs {
            for e in &p.manifest.entries {
                if e.kind != Kind::Dir {
                    paths
                        .entry(canonical(&aliases, &e.path))
                        .or_default()
                        .push((name.clone(), e.path.clone()));
                }
            }
        }
        Index { pkgs, aliases, paths }
    }

    /// The entry of `pkg` at canonical path `c`, if any.
    fn entry_of(&self, pkg: &str, c: &str) -> Option<&'a xlfs_store::Entry> {
        let (_, real) = self.paths.get(c)?.iter().find(|(p, _)| p == pkg)?;
        self.pkgs.get(pkg)?.manifest.find(real)
    }

    /// The files of `pkg` that make `c` usable: the entry and the chain of symbolic links (and
    /// hard link first names) it leads through inside the package.
    fn chain(&self, pkg: &str, c: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = c.to_string();
        for _ in 0..16 {
            let Some(e) = self.entry_of(pkg, &cur) else { break };
            out.push(e.path.clone());
            let next = match (e.kind, &e.target) {
                (Kind::Symlink, Some(t)) if t.starts_with('/') => canonical(&self.aliases, t),
                (Kind::Symlink, Some(t)) => {
                    let dir = cur.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    canonical(&self.aliases, &format!("{dir}/{t}"))
                }
                (Kind::Hardlink, Some(t)) => canonical(&self.aliases, t),
                _ => break,
            };
            if out.contains(&next) {
                break;
            }
            cur = next;
        }
        out
    }
}

/// The runtime closure of `roots`. `excluded(path)` says which files a whole package leaves out
/// (their needs do not count); `elf(package, path)` gives the interpreter and run paths of an
/// ELF file of a package.
pub fn closure(
    pkgs: &BTreeMap<String, PackageInfo>,
    roots: &[String],
    excluded: &dyn Fn(&str) -> bool,
    elf: &dyn Fn(&str, &str) -> Option<ElfExtra>,
) -> Closure {
    let mut c = Closure::default();
    let idx = Index::new(pkgs);
    // Whole packages: the roots and their declared run dependencies.
    let mut stack: Vec<(String, String)> = roots
        .iter()
        .rev()
        .map(|r| (r.clone(), "listed in host.packages".to_string()))
        .collect();
    while let Some((name, why)) = stack.pop() {
        if c.packages.contains_key(&name) {
            continue;
        }
        let Some(p) = pkgs.get(&name) else {
            c.unresolved.push(format!(
                "{name}: {why}, but it is not in the plan; fix: build it (`xlfs build --profile`)"
            ));
            continue;
        };
        c.packages.insert(name.clone(), Selection::All);
        c.why.insert(name.clone(), why);
        for d in p.run_deps.iter().rev() {
            stack.push((d.clone(), format!("run dependency of {name}")));
        }
    }
    // The files whose needs are still to be looked at.
    let mut todo: VecDeque<(String, String)> = VecDeque::new();
    for (name, _) in c.packages.iter() {
        for e in &pkgs[name].manifest.entries {
            if e.kind == Kind::File && e.elf.is_some() && !excluded(&e.path) {
                todo.push_back((name.clone(), e.path.clone()));
            }
        }
    }
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    while let Some((pkg, path)) = todo.pop_front() {
        if !done.insert((pkg.clone(), path.clone())) {
            continue;
        }
        let Some(entry) = pkgs[&pkg].manifest.find(&path) else {
            continue;
        };
        if entry.kind != Kind::File || entry.elf.as_deref().is_some_and(|d| d.ends_with("relocatable")) {
            continue;
        }
        let extra = elf(&pkg, &path).unwrap_or_default();
        let origin = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut dirs: Vec<String> = Vec::new();
        for r in &extra.rpaths {
            for d in r.split(':').filter(|d| !d.is_empty()) {
                let d = d
                    .replace("${ORIGIN}", &format!("/{origin}"))
                    .replace("$ORIGIN", &format!("/{origin}"));
                dirs.push(canonical(&idx.aliases, &d));
            }
        }
        dirs.extend(TRUSTED_DIRS.iter().map(|d| canonical(&idx.aliases, d)));
        let mut wants: Vec<(String, Vec<String>)> = Vec::new();
        if let Some(i) = &extra.interp {
            wants.push((i.clone(), vec![canonical(&idx.aliases, i)]));
        }
        for lib in &entry.needed {
            let cands = if lib.contains('/') {
                vec![canonical(&idx.aliases, lib)]
            } else {
                dirs.iter().map(|d| format!("{d}/{lib}")).collect()
            };
            wants.push((lib.clone(), cands));
        }
        for (what, cands) in wants {
            match provide(pkgs, &idx, &c, &pkg, &cands) {
                Some((provider, canon)) => {
                    let files = idx.chain(&provider, &canon);
                    let newly = !c.packages.contains_key(&provider);
                    let sel = c
                        .packages
                        .entry(provider.clone())
                        .or_insert_with(|| Selection::Files(BTreeSet::new()));
                    if newly {
                        c.why.insert(
                            provider.clone(),
                            format!("provides {what} to {path} ({pkg})"),
                        );
                    }
                    if let Selection::Files(set) = sel {
                        for f in files {
                            if set.insert(f.clone()) {
                                todo.push_back((provider.clone(), f));
                            }
                        }
                    }
                }
                None => c.unresolved.push(format!(
                    "{pkg}: /{path} needs {what}, which no package of the image or of {pkg}'s build root provides; \
                     fix: add the package that installs it to host.packages, or to [depends] run of {pkg}"
                )),
            }
        }
    }
    c
}

/// The package that provides one of `cands` (canonical paths) for a file of `pkg`: one
/// already in the image, else one of `pkg`'s build root (twins replaced by their final
/// package; the smallest when several do, by installed size then name).
fn provide(
    pkgs: &BTreeMap<String, PackageInfo>,
    idx: &Index,
    c: &Closure,
    pkg: &str,
    cands: &[String],
) -> Option<(String, String)> {
    // A package of the image: one that already has the file selected first, then any other.
    for selected_only in [true, false] {
        for cand in cands {
            for (p, _) in idx.paths.get(cand).into_iter().flatten() {
                let Some(sel) = c.packages.get(p) else { continue };
                if !selected_only || sel.contains_canon(idx, p, cand) {
                    return Some((p.clone(), cand.clone()));
                }
            }
        }
    }
    let root: BTreeSet<String> = pkgs
        .get(pkg)
        .map(|i| {
            i.build_root
                .iter()
                .map(|b| match pkgs.get(b).and_then(|r| r.twin_of.clone()) {
                    Some(orig) if pkgs.contains_key(&orig) => orig,
                    _ => b.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    for cand in cands {
        let mut found: Vec<&String> = root.iter().filter(|r| idx.entry_of(r, cand).is_some()).collect();
        found.sort_by_key(|r| (pkgs[*r].manifest.installed_size(), (*r).clone()));
        if let Some(p) = found.first() {
            return Some(((*p).clone(), cand.clone()));
        }
    }
    None
}

impl Selection {
    /// Whether the selection holds the entry of `pkg` at canonical path `cand`.
    fn contains_canon(&self, idx: &Index, pkg: &str, cand: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Files(_) => idx.entry_of(pkg, cand).is_some_and(|e| self.contains(&e.path)),
        }
    }
}
