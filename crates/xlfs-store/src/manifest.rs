//! The manifest describing the content of an artifact, and recipe-declared
//! ownership/mode overrides.

use serde::{Deserialize, Serialize};

/// Type of a manifest entry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link; [`Entry::target`] holds the link's content.
    Symlink,
    /// Additional name of a regular file stored earlier in the artifact;
    /// [`Entry::target`] holds the path of that first name.
    Hardlink,
}

/// One file system object of an artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Entry {
    /// Relative path with `/` separators and no leading `/`, e.g.
    /// `usr/lib/libz.so.1.3.1`. Never empty (the root is not an entry).
    pub path: String,
    /// What kind of object this is.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    /// Owner in the artifact (0 unless a recipe [`Attr`] says otherwise).
    pub uid: u32,
    /// Group in the artifact (0 unless a recipe [`Attr`] says otherwise).
    pub gid: u32,
    /// Size in bytes of regular files; 0 for everything else (hard links
    /// included, so that [`Manifest::installed_size`] counts data once).
    pub size: u64,
    /// Lowercase hex sha256 of the content of regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target, or for hard links the path of the first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `DT_NEEDED` entries of ELF files, in file order; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needed: Vec<String>,
    /// Short description of ELF files, e.g. `ELF64 x86-64 shared object`,
    /// `ELF64 x86-64 pie executable`, `ELF64 x86-64 executable`,
    /// `ELF64 x86-64 relocatable`; `None` for non-ELF files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elf: Option<String>,
}

/// Content listing of an artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Manifest {
    /// All entries, sorted bytewise by [`Entry::path`] (parents before children).
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Sum of the sizes of all regular files (hard links counted once).
    pub fn installed_size(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum()
    }

    /// Looks up an entry by path. Leading and trailing `/` are ignored, so
    /// `/usr/bin/` finds `usr/bin`. Relies on the entries being sorted, as
    /// produced by [`pack`](crate::pack).
    pub fn find(&self, path: &str) -> Option<&Entry> {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        self.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Iterates over the ELF files (regular files only) of the artifact.
    pub fn elf_files(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::File && e.elf.is_some())
    }
}

/// Ownership/mode override declared by a recipe.
///
/// `path` is either an exact relative path (`usr/bin/sudo`) or a prefix
/// ending in `/**` (`var/lib/foo/**`) meaning every path strictly below that
/// directory (not the directory itself; add an exact `Attr` for it). `**`
/// alone matches everything. A leading `/` is ignored.
///
/// When several attrs match a path they are applied from least to most
/// specific: `/**` prefixes by increasing prefix length, then exact paths;
/// among equally specific attrs, later ones win. Each attr only overrides the
/// fields it sets. `mode` is masked with `0o7777` and not applied to symlinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Exact path or `prefix/**`.
    pub path: String,
    /// Owner to record.
    pub uid: Option<u32>,
    /// Group to record.
    pub gid: Option<u32>,
    /// Permission bits to record (masked with `0o7777`).
    pub mode: Option<u32>,
}

impl Attr {
    /// Whether this attr applies to the relative `path` (no leading `/`).
    pub fn matches(&self, path: &str) -> bool {
        match self.pattern() {
            Pattern::All => !path.is_empty(),
            Pattern::Below(prefix) => {
                path.len() > prefix.len() + 1
                    && path.starts_with(prefix)
                    && path.as_bytes()[prefix.len()] == b'/'
            }
            Pattern::Exact(p) => path == p,
        }
    }

    /// Sort key: larger is more specific.
    pub(crate) fn specificity(&self) -> (u8, usize) {
        match self.pattern() {
            Pattern::All => (0, 0),
            Pattern::Below(prefix) => (0, prefix.len() + 1),
            Pattern::Exact(p) => (1, p.len()),
        }
    }

    fn pattern(&self) -> Pattern<'_> {
        let p = self.path.trim_start_matches('/');
        if p == "**" {
            Pattern::All
        } else if let Some(prefix) = p.strip_suffix("/**") {
            Pattern::Below(prefix.trim_end_matches('/'))
        } else {
            Pattern::Exact(p.trim_end_matches('/'))
        }
    }
}

enum Pattern<'a> {
    All,
    Below(&'a str),
    Exact(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(path: &str) -> Attr {
        Attr {
            path: path.into(),
            uid: None,
            gid: None,
            mode: None,
        }
    }

    #[test]
    fn attr_matching() {
        assert!(attr("usr/bin/sudo").matches("usr/bin/sudo"));
        assert!(attr("/usr/bin/sudo").matches("usr/bin/sudo"));
        assert!(!attr("usr/bin/sudo").matches("usr/bin/sudoedit"));
        let below = attr("var/lib/x/**");
        assert!(below.matches("var/lib/x/a"));
        assert!(below.matches("var/lib/x/a/b"));
        assert!(!below.matches("var/lib/x"));
        assert!(!below.matches("var/lib/xy/a"));
        assert!(attr("**").matches("anything/at/all"));
        assert!(attr("var/**").specificity() < attr("var/lib/**").specificity());
        assert!(attr("var/lib/**").specificity() < attr("var").specificity());
    }

    #[test]
    fn find_normalizes() {
        let e = |p: &str| Entry {
            path: p.into(),
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            target: None,
            needed: vec![],
            elf: None,
        };
        let m = Manifest {
            entries: vec![e("usr"), e("usr.x"), e("usr/bin")],
        };
        assert_eq!(m.find("/usr/bin/").unwrap().path, "usr/bin");
        assert_eq!(m.find("usr.x").unwrap().path, "usr.x");
        assert!(m.find("usr/lib").is_none());
    }
}
