//! The in-memory description of a root file system being assembled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use xlfs_store::{Kind, Manifest};

use crate::error::{ImageError, IoContext};

/// What a [`Node`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file whose content comes from `source`.
    File {
        /// Where the content comes from.
        source: FileSource,
    },
    /// A symbolic link.
    Symlink {
        /// The link's content (not resolved, may dangle).
        target: String,
    },
    /// A character device.
    CharDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// Content of a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// Read the content from this host file when writing the image. The
    /// host file's owner and mode are irrelevant (only its bytes are used);
    /// it must stay unchanged until the image is written.
    Path(PathBuf),
    /// The content itself (generated configuration files and the like).
    Bytes(Vec<u8>),
}

/// One node of a root file system being assembled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`); the
    /// file type bits come from [`Node::kind`]. Always `0o777` for symlinks.
    pub mode: u32,
    /// Owner inside the image.
    pub uid: u32,
    /// Group inside the image.
    pub gid: u32,
}

impl Node {
    /// A directory node.
    pub fn dir(mode: u32, uid: u32, gid: u32) -> Node {
        Node {
            kind: NodeKind::Dir,
            mode: mode & 0o7777,
            uid,
            gid,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }

    /// The full `st_mode` (file type bits | permission bits).
    pub fn st_mode(&self) -> u32 {
        let ty = match self.kind {
            NodeKind::Dir => libc::S_IFDIR,
            NodeKind::File { .. } => libc::S_IFREG,
            NodeKind::Symlink { .. } => libc::S_IFLNK,
            NodeKind::CharDev { .. } => libc::S_IFCHR,
            NodeKind::BlockDev { .. } => libc::S_IFBLK,
            NodeKind::Fifo => libc::S_IFIFO,
        };
        ty | (self.mode & 0o7777)
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Dir => "directory",
            NodeKind::File { .. } => "regular file",
            NodeKind::Symlink { .. } => "symlink",
            NodeKind::CharDev { .. } => "character device",
            NodeKind::BlockDev { .. } => "block device",
            NodeKind::Fifo => "fifo",
        }
    }
}

/// Who put a node into the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A parent directory created automatically (0755 root:root).
    Implicit,
    /// An explicit `add_*`/`insert` call: wins over artifacts.
    Explicit,
    /// An artifact of this package.
    Artifact(String),
}

/// A node plus the bookkeeping the writers and conflict checks need.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) node: Node,
    pub(crate) origin: Origin,
    /// Content size of regular files, 0 otherwise.
    pub(crate) size: u64,
    /// Hex sha256 of regular files when known (manifest or computed).
    sha256: Option<String>,
    /// Hard-link group inside one artifact: nodes of the same group were
    /// hard links of each other in the artifact.
    pub(crate) link_group: Option<u64>,
}

/// A root file system being assembled: a sorted map from relative paths to
/// [`Node`]s plus the root directory itself.
///
/// Invariants: every node's parent directories exist as [`NodeKind::Dir`]
/// nodes (missing ones are created as `0755 root:root`), paths are
/// normalised (no leading or trailing `/`, no empty, `.` or `..`
/// components, no NUL or newline, components at most 255 bytes).
///
/// Precedence: explicit calls ([`RootFs::add_file`], [`RootFs::add_dir`],
/// [`RootFs::insert`], ...) replace what is there (except that a directory
/// is never silently replaced by a non-directory); artifacts added with
/// [`RootFs::add_artifact`] never override an explicitly added node, and two
/// artifacts providing the same path must agree exactly, otherwise it is an
/// [`ImageError::Conflict`] naming both packages.
#[derive(Clone, Debug)]
pub struct RootFs {
    root: Node,
    entries: BTreeMap<String, Slot>,
    next_link_group: u64,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs::new()
    }
}

/// What [`RootFs::add_artifact`] decided to do with one manifest entry.
enum Action {
    Insert,
    Skip,
}

impl RootFs {
    /// An empty root file system: only the root directory (0755 root:root).
    pub fn new() -> Self {
        RootFs {
            root: Node::dir(0o755, 0, 0),
            entries: BTreeMap::new(),
            next_link_group: 0,
        }
    }

    /// Adds an unpacked artifact of package `owner`: `dir` is the artifact
    /// unpacked on disk, `manifest` its manifest.
    ///
    /// Only the manifest's entries are added (anything else under `dir` is
    /// ignored) and every entry must exist under `dir` with the right type
    /// (and size for files). Type, mode, uid, gid and symlink targets come
    /// from the manifest, never from the disk, whose ownership cannot be
    /// trusted; the disk provides file contents only (read when the image is
    /// written).
    ///
    /// Hard links become regular files with the same source as the file
    /// they link to. [`write_cpio`](crate::write_cpio) stores them as
    /// independent files; [`write_ext4`](crate::write_ext4) stores them as
    /// hard links again when their mode and owner are identical.
    ///
    /// Paths provided earlier by another artifact must be identical (same
    /// type, content, symlink target, mode, uid, gid), otherwise this is an
    /// [`ImageError::Conflict`] naming both packages. Nodes added explicitly
    /// win silently over artifacts; implicitly created parent directories
    /// take the artifact's attributes. On error nothing is added.
    pub fn add_artifact(&mut self, owner: &str, dir: &Path, manifest: &Manifest) -> Result<(), ImageError> {
        let art_err = |path: &str, reason: String| ImageError::Artifact {
            owner: owner.to_string(),
            path: path.to_string(),
            reason,
        };

        // Hard-link groups: one per file that is the target of a hard link.
        let mut groups: HashMap<String, u64> = HashMap::new();
        for e in &manifest.entries {
            if e.kind == Kind::Hardlink {
                let target = e
                    .target
                    .as_deref()
                    .ok_or_else(|| art_err(&e.path, "hard link without target".into()))?;
                let target = norm(target)?;
                if !groups.contains_key(&target) {
                    groups.insert(target, self.next_link_group + groups.len() as u64);
                }
            }
        }

        // Regular files by normalised path, to resolve hard links.
        let mut files: HashMap<String, &xlfs_store::Entry> = HashMap::new();
        for e in manifest.entries.iter().filter(|e| e.kind == Kind::File) {
            files.insert(norm(&e.path)?, e);
        }

        // Phase 1: turn the manifest into slots, validating against the disk.
        let mut items: Vec<(String, Slot)> = Vec::with_capacity(manifest.entries.len());
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for e in &manifest.entries {
            let path = norm(&e.path)?;
            if path.is_empty() {
                return Err(art_err(
                    &e.path,
                    "the root directory cannot be a manifest entry".into(),
                ));
            }
            if !seen.insert(path.clone()) {
                return Err(art_err(&path, "listed twice in the manifest".into()));
            }
            let disk = dir.join(&path);
            let meta = fs::symlink_metadata(&disk).map_err(|err| {
                art_err(
                    &path,
                    format!(
                        "listed in the manifest but not found at {}: {err}",
                        disk.display()
                    ),
                )
            })?;
            let ft = meta.file_type();
            let mode = e.mode & 0o7777;
            let slot = match e.kind {
                Kind::Dir => {
                    if !ft.is_dir() {
                        return Err(art_err(&path, "manifest says directory, disk disagrees".into()));
                    }
                    Slot::new(Node::dir(mode, e.uid, e.gid), Origin::Artifact(owner.into()))
                }
                Kind::File => {
                    if !ft.is_file() {
                        return Err(art_err(
                            &path,
                            "manifest says regular file, disk disagrees".into(),
                        ));
                    }
                    if meta.len() != e.size {
                        return Err(art_err(
                            &path,
                            format!(
                                "size on disk {} differs from the manifest's {}",
                                meta.len(),
                                e.size
                            ),
                        ));
                    }
                    Slot {
                        node: Node {
                            kind: NodeKind::File {
                                source: FileSource::Path(disk),
                            },
                            mode,
                            uid: e.uid,
                            gid: e.gid,
                        },
                        origin: Origin::Artifact(owner.into()),
                        size: e.size,
                        sha256: e.sha256.clone(),
                        link_group: groups.get(&path).copied(),
                    }
                }
                Kind::Symlink => {
                    if !ft.is_symlink() {
                        return Err(art_err(&path, "manifest says symlink, disk disagrees".into()));
                    }
                    let target = match &e.target {
                        Some(t) => t.clone(),
                        None => fs::read_link(&disk)
                            .at(&disk)?
                            .to_str()
                            .ok_or_else(|| art_err(&path, "symlink target is not UTF-8".into()))?
                            .to_string(),
                    };
                    check_target(&path, &target)?;
                    Slot::new(
                        Node {
                            kind: NodeKind::Symlink { target },
                            mode: 0o777,
                            uid: e.uid,
                            gid: e.gid,
                        },
                        Origin::Artifact(owner.into()),
                    )
                }
                Kind::Hardlink => {
                    let target = norm(e.target.as_deref().unwrap_or_default())?;
                    let te = files.get(target.as_str()).ok_or_else(|| {
                        art_err(
                            &path,
                            format!("hard link to {target}, which is not a regular file"),
                        )
                    })?;
                    if !ft.is_file() {
                        return Err(art_err(&path, "manifest says hard link, disk disagrees".into()));
                    }
                    Slot {
                        node: Node {
                            kind: NodeKind::File {
                                source: FileSource::Path(dir.join(&target)),
                            },
                            mode,
                            uid: e.uid,
                            gid: e.gid,
                        },
                        origin: Origin::Artifact(owner.into()),
                        size: te.size,
                        sha256: te.sha256.clone(),
                        link_group: groups.get(&target).copied(),
                    }
                }
            };
            items.push((path, slot));
        }

        // Phase 2: decide, without modifying anything, what to do with each.
        let pending: HashMap<&str, &Slot> = items.iter().map(|(p, s)| (p.as_str(), s)).collect();
        let mut actions = Vec::with_capacity(items.len());
        for (path, slot) in &items {
            for anc in ancestors(path) {
                let blocker = match self.entries.get(anc) {
                    Some(ex) => match (&ex.origin, pending.get(anc)) {
                        // An artifact entry may only turn an implicit dir into a real one.
                        (Origin::Implicit, Some(new)) => (!new.node.is_dir()).then_some((*new, owner)),
                        (Origin::Artifact(o), _) => (!ex.node.is_dir()).then_some((ex, o.as_str())),
                        _ => (!ex.node.is_dir()).then_some((ex, "an explicit addition")),
                    },
                    None => pending.get(anc).filter(|s| !s.node.is_dir()).map(|s| (*s, owner)),
                };
                if let Some((slot, by)) = blocker {
                    return Err(ImageError::NotADirectory {
                        path: path.clone(),
                        reason: format!(
                            "artifact {owner} needs parent {anc} to be a directory, but it is a {} from {by}",
                            slot.node.type_name()
                        ),
                    });
                }
            }
            let action = match self.entries.get(path) {
                None => Action::Insert,
                Some(ex) => match &ex.origin {
                    Origin::Implicit => {
                        if !slot.node.is_dir() {
                            return Err(ImageError::NotADirectory {
                                path: path.clone(),
                                reason: format!(
                                    "artifact {owner} provides a {} where other nodes need a directory",
                                    slot.node.type_name()
                                ),
                            });
                        }
                        Action::Insert
                    }
                    Origin::Explicit => Action::Skip,
                    Origin::Artifact(first) => {
                        if let Some(what) = difference(ex, slot)? {
                            return Err(ImageError::Conflict {
                                path: path.clone(),
                                first: first.clone(),
                                second: owner.to_string(),
                                what,
                            });
                        }
                        Action::Skip
                    }
                },
            };
            actions.push(action);
        }

        // Phase 3: apply (cannot fail any more).
        self.next_link_group += groups.len() as u64;
        for ((path, slot), action) in items.into_iter().zip(actions) {
            if let Action::Insert = action {
                self.make_parents(&path);
                self.entries.insert(path, slot);
            }
        }
        Ok(())
    }

    /// Adds (or updates the attributes of) a directory, creating missing
    /// parents as `0755 root:root`. Fails if `path` or a parent exists and
    /// is not a directory. `""` sets the root directory's attributes.
    pub fn add_dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<(), ImageError> {
        self.insert(path, Node::dir(mode, uid, gid))
    }

    /// Adds a regular file with the given content, replacing any existing
    /// non-directory at `path` (overlays and generated configuration win
    /// over artifacts). Missing parents are created as `0755 root:root`.
    pub fn add_file(
        &mut self,
        path: &str,
        bytes: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), ImageError> {
        self.insert(
            path,
            Node {
                kind: NodeKind::File {
                    source: FileSource::Bytes(bytes),
                },
                mode,
                uid,
                gid,
            },
        )
    }

    /// Like [`RootFs::add_file`] but the content is read from the host file
    /// `source` when the image is written (it must be a regular file).
    pub fn add_file_from(
        &mut self,
        path: &str,
        source: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), ImageError> {
        self.insert(
            path,
            Node {
                kind: NodeKind::File {
                    source: FileSource::Path(source.to_path_buf()),
                },
                mode,
                uid,
                gid,
            },
        )
    }

    /// Adds a symlink owned by root, replacing any existing non-directory.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), ImageError> {
        self.insert(
            path,
            Node {
                kind: NodeKind::Symlink {
                    target: target.to_string(),
                },
                mode: 0o777,
                uid: 0,
                gid: 0,
            },
        )
    }

    /// Adds a device node owned by root: `kind` is `'c'` (character) or
    /// `'b'` (block). Replaces any existing non-directory.
    pub fn add_device(
        &mut self,
        path: &str,
        kind: char,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> Result<(), ImageError> {
        let kind = match kind {
            'c' => NodeKind::CharDev { major, minor },
            'b' => NodeKind::BlockDev { major, minor },
            other => {
                return Err(ImageError::unsupported(
                    path,
                    format!("device kind {other:?} (expected 'c' or 'b')"),
                ))
            }
        };
        self.insert(
            path,
            Node {
                kind,
                mode,
                uid: 0,
                gid: 0,
            },
        )
    }

    /// Inserts an arbitrary node explicitly (it wins over artifacts).
    ///
    /// A directory updates the attributes of an existing directory (its
    /// children stay); anything else replaces an existing non-directory.
    /// Replacing a directory by a non-directory is an error (use
    /// [`RootFs::remove`] first). Missing parents are created as
    /// `0755 root:root`. `mode` is masked with `0o7777` (`0o777` for
    /// symlinks).
    pub fn insert(&mut self, path: &str, mut node: Node) -> Result<(), ImageError> {
        let path = norm(path)?;
        node.mode &= 0o7777;
        let mut size = 0;
        let mut sha256 = None;
        match &node.kind {
            NodeKind::Symlink { target } => {
                check_target(&path, target)?;
                node.mode = 0o777;
            }
            NodeKind::File { source } => match source {
                FileSource::Bytes(b) => {
                    size = b.len() as u64;
                    sha256 = Some(xlfs_util::sha256_hex(b));
                }
                FileSource::Path(p) => {
                    let meta = fs::metadata(p).at(p)?;
                    if !meta.is_file() {
                        return Err(ImageError::unsupported(
                            p.display().to_string(),
                            format!("source of {path} is not a regular file"),
                        ));
                    }
                    size = meta.len();
                }
            },
            _ => {}
        }
        if path.is_empty() {
            if !node.is_dir() {
                return Err(ImageError::NotADirectory {
                    path: "/".into(),
                    reason: "the root must be a directory".into(),
                });
            }
            self.root = node;
            return Ok(());
        }
        for anc in ancestors(&path) {
            if let Some(s) = self.entries.get(anc) {
                if !s.node.is_dir() {
                    return Err(ImageError::NotADirectory {
                        path: path.clone(),
                        reason: format!("parent {anc} is a {}", s.node.type_name()),
                    });
                }
            }
        }
        if let Some(ex) = self.entries.get(&path) {
            if ex.node.is_dir() && !node.is_dir() {
                return Err(ImageError::NotADirectory {
                    path: path.clone(),
                    reason: format!("cannot replace a directory by a {}", node.type_name()),
                });
            }
        }
        self.make_parents(&path);
        let mut slot = Slot::new(node, Origin::Explicit);
        slot.size = size;
        slot.sha256 = sha256;
        self.entries.insert(path, slot);
        Ok(())
    }

    /// Removes `path` and everything below it. Returns whether anything was
    /// removed. The root cannot be removed.
    pub fn remove(&mut self, path: &str) -> bool {
        let Ok(path) = norm(path) else { return false };
        if path.is_empty() {
            return false;
        }
        let removed = self.entries.remove(&path).is_some();
        if removed {
            let below: Vec<String> = self
                .entries
                .range(format!("{path}/")..format!("{path}0"))
                .map(|(k, _)| k.clone())
                .collect();
            for k in below {
                self.entries.remove(&k);
            }
        }
        removed
    }

    /// The node at `path` (`""` or `"/"` is the root directory).
    pub fn get(&self, path: &str) -> Option<&Node> {
        let path = norm(path).ok()?;
        if path.is_empty() {
            return Some(&self.root);
        }
        self.entries.get(&path).map(|s| &s.node)
    }

    /// The package that provided `path`, if it came from an artifact.
    pub fn owner(&self, path: &str) -> Option<&str> {
        let path = norm(path).ok()?;
        match &self.entries.get(&path)?.origin {
            Origin::Artifact(o) => Some(o),
            _ => None,
        }
    }

    /// The root directory node.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// All paths except the root, sorted bytewise (parents before children).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// All nodes except the root with their paths, sorted like [`RootFs::paths`].
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(p, s)| (p.as_str(), &s.node))
    }

    /// Number of nodes, the root excluded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing but the root directory.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total size in bytes of the regular files' contents (files with the
    /// same source counted each time).
    pub fn total_size(&self) -> u64 {
        self.entries.values().map(|s| s.size).sum()
    }

    /// Slots in path order, for the writers.
    pub(crate) fn slots(&self) -> impl Iterator<Item = (&str, &Slot)> {
        self.entries.iter().map(|(p, s)| (p.as_str(), s))
    }

    fn make_parents(&mut self, path: &str) {
        for anc in ancestors(path) {
            if !self.entries.contains_key(anc) {
                self.entries.insert(
                    anc.to_string(),
                    Slot::new(Node::dir(0o755, 0, 0), Origin::Implicit),
                );
            }
        }
    }
}

impl Slot {
    fn new(node: Node, origin: Origin) -> Slot {
        Slot {
            node,
            origin,
            size: 0,
            sha256: None,
            link_group: None,
        }
    }

    /// The hex sha256 of a regular file's content (computed if unknown).
    fn content_sha256(&self) -> Result<Option<String>, ImageError> {
        if let Some(h) = &self.sha256 {
            return Ok(Some(h.clone()));
        }
        match &self.node.kind {
            NodeKind::File { source } => Ok(Some(match source {
                FileSource::Bytes(b) => xlfs_util::sha256_hex(b),
                FileSource::Path(p) => sha256_file(p)?,
            })),
            _ => Ok(None),
        }
    }
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    Ok(xlfs_util::sha256_file(path).at(path)?.0)
}

/// Describes how `new` differs from `old`, or `None` if they are the same.
fn difference(old: &Slot, new: &Slot) -> Result<Option<String>, ImageError> {
    let (a, b) = (&old.node, &new.node);
    let same_kind = std::mem::discriminant(&a.kind) == std::mem::discriminant(&b.kind);
    if !same_kind {
        return Ok(Some(format!("type ({} vs {})", a.type_name(), b.type_name())));
    }
    let content_differs = match (&a.kind, &b.kind) {
        (NodeKind::Symlink { target: t1 }, NodeKind::Symlink { target: t2 }) if t1 != t2 => {
            return Ok(Some(format!("symlink target ({t1} vs {t2})")));
        }
        (NodeKind::File { .. }, NodeKind::File { .. }) => {
            old.size != new.size || old.content_sha256()? != new.content_sha256()?
        }
        (
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor },
            NodeKind::CharDev { major: m2, minor: n2 } | NodeKind::BlockDev { major: m2, minor: n2 },
        ) if (major, minor) != (m2, n2) => return Ok(Some("device numbers".into())),
        _ => false,
    };
    if content_differs {
        return Ok(Some("content".into()));
    }
    if (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid) {
        return Ok(Some(format!(
            "mode/owner ({:04o} {}:{} vs {:04o} {}:{})",
            a.mode, a.uid, a.gid, b.mode, b.uid, b.gid
        )));
    }
    Ok(None)
}

/// The proper ancestors of a normalised path, outermost first
/// (`a/b/c` → `a`, `a/b`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Normalises a path inside the root file system: leading `/` and `./` and
/// trailing `/` are dropped; `""`, `"."` and `"/"` mean the root (`""`).
pub(crate) fn norm(path: &str) -> Result<String, ImageError> {
    let bad = |reason: &str| ImageError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p.is_empty() || p == "." {
        return Ok(String::new());
    }
    for comp in p.split('/') {
        match comp {
            "" => return Err(bad("empty path component")),
            "." | ".." => return Err(bad("`.` and `..` components are not allowed")),
            _ if comp.len() > 255 => return Err(bad("component longer than 255 bytes")),
            _ if comp.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r') => {
                return Err(bad("NUL, newline and carriage return are not allowed"))
            }
            _ => {}
        }
    }
    Ok(p.to_string())
}

fn check_target(path: &str, target: &str) -> Result<(), ImageError> {
    if target.is_empty() || target.len() > 4095 || target.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r')
    {
        return Err(ImageError::InvalidPath {
            path: path.to_string(),
            reason: format!("unsupported symlink target {target:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(norm("/usr/bin/").unwrap(), "usr/bin");
        assert_eq!(norm("./etc").unwrap(), "etc");
        assert_eq!(norm("/").unwrap(), "");
        assert_eq!(norm(".").unwrap(), "");
        assert!(norm("a/../b").is_err());
        assert!(norm("a//b").is_err());
        assert!(norm("a/./b").is_err());
        assert!(norm("a\nb").is_err());
        assert!(norm(&"x".repeat(256)).is_err());
    }

    #[test]
    fn ancestors_outermost_first() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }

    #[test]
    fn parents_and_replacement() {
        let mut fs = RootFs::new();
        fs.add_file("etc/x/y", b"1".to_vec(), 0o644, 0, 0).unwrap();
        assert!(fs.get("etc").unwrap().is_dir());
        assert_eq!(fs.get("etc/x").unwrap().mode, 0o755);
        fs.add_file("etc/x/y", b"22".to_vec(), 0o600, 1, 2).unwrap();
        assert_eq!(fs.total_size(), 2);
        assert!(fs.add_file("etc/x", b"".to_vec(), 0o644, 0, 0).is_err());
        assert!(fs.add_file("etc/x/y/z", b"".to_vec(), 0o644, 0, 0).is_err());
        fs.add_dir("etc/x", 0o700, 0, 0).unwrap();
        assert_eq!(fs.get("etc/x").unwrap().mode, 0o700);
        assert!(fs.get("etc/x/y").is_some());
        fs.add_file("etc0", vec![], 0o644, 0, 0).unwrap();
        assert!(fs.remove("etc/x"));
        assert!(fs.get("etc/x/y").is_none());
        assert!(fs.get("etc0").is_some());
        assert!(!fs.remove("etc/x"));
        assert_eq!(fs.paths().collect::<Vec<_>>(), vec!["etc", "etc0"]);
    }
}
