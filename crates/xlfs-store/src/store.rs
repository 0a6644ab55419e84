//! Content-addressed artifact stores.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::error::{IoContext, StoreError};
use crate::fsutil::{force_remove_dir_all, fsync_dir, tmp_name, HashReader, TMP_PREFIX};
use crate::manifest::{Entry, Manifest};
use crate::pack::Packed;
use crate::stamps::stamp_tree;
use crate::unpack::{stem_of, unpack_atomic, unpack_to_temp};

/// Where artifacts live, keyed by a package key (normally a 64-hex sha256
/// computed by the caller).
///
/// Deliberately small so that a shared S3-compatible store can implement it.
pub trait ArtifactStore: Send + Sync {
    /// Whether a complete artifact is stored under `key`.
    fn contains(&self, key: &str) -> Result<bool, StoreError>;

    /// Atomically publishes the artifact file `artifact` (as returned by
    /// [`pack`](crate::pack), described by `packed`) and its manifest under
    /// `key`. After a crash either both are there or neither counts. If
    /// `key` is already present the store is left alone (first writer wins).
    ///
    /// Returns the checksum, size and manifest of the artifact that is stored
    /// under `key` once `put` returns: `packed` when this call published it,
    /// the earlier artifact's when the key was there already (builds are
    /// meant to be reproducible but need not be bit-identical). That is what
    /// the caller must record.
    fn put(&self, key: &str, artifact: &Path, packed: &Packed) -> Result<Packed, StoreError>;

    /// The manifest stored under `key`.
    fn manifest(&self, key: &str) -> Result<Manifest, StoreError>;

    /// Local path of the artifact file (remote stores download it into a
    /// local cache first).
    fn artifact_path(&self, key: &str) -> Result<PathBuf, StoreError>;

    /// Removes the artifact stored under `key` (and anything derived from
    /// it). [`StoreError::NotFound`] if there was no artifact.
    fn remove(&self, key: &str) -> Result<(), StoreError>;

    /// All keys with a complete artifact, sorted.
    fn keys(&self) -> Result<Vec<String>, StoreError>;
}

const ARTIFACT_SUFFIX: &str = ".tar.zst";
const MANIFEST_SUFFIX: &str = ".manifest.json";
const STAMPS_SUFFIX: &str = ".stamps";

/// Checks that `key` is usable as a file name: 2 to 128 characters from
/// `[0-9A-Za-z._-]`, not starting with `.`. Real keys are 64-hex sha256.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.len() < 2 || key.len() > 128 {
        return bad("length must be between 2 and 128");
    }
    if key.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return bad("only [0-9A-Za-z._-] allowed");
    }
    Ok(())
}

/// On-disk form of `<key>.manifest.json`: the manifest plus the artifact's
/// checksum and size. Deserializes as a plain [`Manifest`] too.
#[derive(Serialize)]
struct StoredManifestRef<'a> {
    sha256: &'a str,
    size: u64,
    entries: &'a [Entry],
}

/// Owned counterpart of [`StoredManifestRef`].
#[derive(Deserialize)]
struct StoredManifest {
    sha256: String,
    size: u64,
    entries: Vec<Entry>,
}

/// Artifact store in a local directory.
///
/// Layout under `ROOT`:
/// - `objects/<key[0..2]>/<key>.manifest.json` and `<key>.tar.zst`: both
///   are written to fsynced temporary files, then the manifest is renamed
///   into place first and the artifact last, and the directory is fsynced.
///   An artifact is present when its `.tar.zst` exists (`contains` also
///   requires the manifest, so that even a file system reordering the two
///   renames across a crash cannot expose an artifact without manifest);
/// - `trees/<key>/`: extracted artifacts, and `trees/<key>.stamps` the stat
///   stamps of every entry taken at extraction, re-checked before each use
///   (see [`LocalStore::tree`]); the stamps file is also the per-tree lock;
/// - `objects/.put.lock`: serialises the publishing step of `put`, so that
///   two writers of one key cannot interleave their renames;
/// - temporary files and directories are named `.tmp-*` next to their final
///   place and never count as stored.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    durable: bool,
}

impl LocalStore {
    /// Opens (creating the directories if needed) the store at `root`.
    pub fn open(root: PathBuf) -> Result<Self, StoreError> {
        for sub in ["objects", "trees"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).at(&dir)?;
        }
        Ok(LocalStore { root, durable: true })
    }

    /// Turns fsync (and the file system sync before publishing a tree) on or
    /// off; on by default. Only for throw-away stores (tests, scratch
    /// builds): without it a crash may lose recent puts or leave
    /// empty/truncated files behind published names.
    pub fn with_fsync(mut self, on: bool) -> Self {
        self.durable = on;
        self
    }

    fn fsync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if self.durable {
            fsync_dir(dir)
        } else {
            Ok(())
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_dir(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(&key[..2])
    }

    fn artifact_file(&self, key: &str) -> PathBuf {
        self.object_dir(key).join(format!("{key}{ARTIFACT_SUFFIX}"))
    }

    fn manifest_file(&self, key: &str) -> PathBuf {
        self.object_dir(key).join(format!("{key}{MANIFEST_SUFFIX}"))
    }

    fn tree_dir(&self, key: &str) -> PathBuf {
        self.root.join("trees").join(key)
    }

    fn stamps_file(&self, key: &str) -> PathBuf {
        self.root.join("trees").join(format!("{key}{STAMPS_SUFFIX}"))
    }

    /// Atomically moves the extracted tree of `key` (if any) out of the way,
    /// then deletes it.
    fn remove_tree(&self, key: &str) -> Result<(), StoreError> {
        let tree = self.tree_dir(key);
        if tree.symlink_metadata().is_err() {
            remove_if_exists(&self.stamps_file(key))?;
            return Ok(());
        }
        let doomed = self.root.join("trees").join(tmp_name(&format!("rm-{key}")));
        match fs::rename(&tree, &doomed) {
            Ok(()) => force_remove_dir_all(&doomed).at(&doomed)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&tree, e)),
        }
        // Without its tree, stamps are meaningless (and a stale stamps file
        // would only cause a re-extraction).
        remove_if_exists(&self.stamps_file(key))?;
        Ok(())
    }

    /// A read-only extracted tree of the artifact stored under `key`, for use
    /// as a build sysroot layer: `ROOT/trees/<key>`.
    ///
    /// Extracted on first use into a temporary directory that is synced to
    /// disk and then renamed into place, so crashes never expose a partial
    /// tree. At extraction the stat stamps of every entry (path, inode, size,
    /// mtime, ctime, mode, owner) are recorded in `trees/<key>.stamps`; each
    /// later call re-walks the tree (stat only, no reads) and compares. A
    /// tree that was modified, had an entry added or removed, or was never
    /// stamped is extracted afresh and swapped in atomically. Concurrent
    /// callers (threads or processes) serialise on the stamps file's lock.
    pub fn tree(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        let artifact = self.artifact_path(key)?;
        let path = self.tree_dir(key);
        let stamps_path = self.stamps_file(key);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&stamps_path)
            .at(&stamps_path)?;
        lock.lock().at(&stamps_path)?;
        if path.symlink_metadata().is_ok() {
            let mut recorded = Vec::new();
            lock.read_to_end(&mut recorded).at(&stamps_path)?;
            if !recorded.is_empty() && stamp_tree(&path)? == recorded {
                return Ok(path);
            }
            // Changed (or never stamped): a fresh copy replaces it in one
            // step, and the old one is deleted.
            let trees = self.root.join("trees");
            let fresh = unpack_to_temp(&artifact, &trees, &stem_of(&path), self.durable)?;
            xlfs_util::replace_dir(fresh.path(), &path).at(&path)?;
            drop(fresh);
            self.fsync_dir(&trees)?;
        } else {
            unpack_atomic(&artifact, &path, self.durable)?;
        }
        let stamps = stamp_tree(&path)?;
        lock.set_len(0).at(&stamps_path)?;
        lock.rewind().at(&stamps_path)?;
        lock.write_all(&stamps).at(&stamps_path)?;
        if self.durable {
            lock.sync_all().at(&stamps_path)?;
        }
        Ok(path)
    }

    /// Puts the artifact stored under `key` into the store `to` as hard links (copies across
    /// file systems), manifest first; objects are immutable, so both stores may share them.
    /// An artifact `to` already holds is left as it is.
    pub fn link_to(&self, to: &LocalStore, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        if to.contains(key)? {
            return Ok(());
        }
        fs::create_dir_all(to.object_dir(key)).at(&to.object_dir(key))?;
        for (from, dest) in [
            (self.manifest_file(key), to.manifest_file(key)),
            (self.artifact_file(key), to.artifact_file(key)),
        ] {
            if fs::hard_link(&from, &dest).is_err() {
                fs::copy(&from, &dest).at(&dest)?;
            }
        }
        if !to.contains(key)? {
            return Err(StoreError::NotFound { key: key.into() });
        }
        Ok(())
    }

    /// The checksum and size recorded for the artifact under `key`, together
    /// with its manifest (e.g. to upload it to another store).
    pub fn packed(&self, key: &str) -> Result<Packed, StoreError> {
        if !self.contains(key)? {
            return Err(StoreError::NotFound { key: key.into() });
        }
        let path = self.manifest_file(key);
        let bytes = fs::read(&path).at(&path)?;
        let stored: StoredManifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        Ok(Packed {
            manifest: Manifest {
                entries: stored.entries,
            },
            sha256: stored.sha256,
            size: stored.size,
        })
    }

    /// Re-hashes the stored artifact and compares it with the checksum and
    /// size recorded at [`put`](ArtifactStore::put) time.
    pub fn verify(&self, key: &str) -> Result<(), StoreError> {
        let packed = self.packed(key)?;
        let path = self.artifact_file(key);
        let (sha, size) = xlfs_util::sha256_file(&path).at(&path)?;
        if sha != packed.sha256 || size != packed.size {
            return Err(StoreError::corrupt(
                &path,
                format!(
                    "expected sha256 {} ({} bytes), found {sha} ({size} bytes)",
                    packed.sha256, packed.size
                ),
            ));
        }
        Ok(())
    }

    /// Like [`verify`](Self::verify), then also reads the whole artifact and
    /// compares every member with its manifest entry (kind, mode, owner,
    /// size, sha256 of regular files, link targets) and the set of paths.
    /// Decompresses everything: for `xlfs verify`, not for every use.
    pub fn verify_contents(&self, key: &str) -> Result<(), StoreError> {
        self.verify(key)?;
        let manifest = self.manifest(key)?;
        check_contents(&self.artifact_file(key), &manifest)
    }

    /// Removes temporary files and directories (`.tmp-*`) older than
    /// `max_age` left behind by crashed processes. Returns how many were
    /// removed. Use a generous age so as not to disturb running writers.
    pub fn clean_temps(&self, max_age: Duration) -> Result<usize, StoreError> {
        let mut dirs = vec![self.root.join("trees")];
        let objects = self.root.join("objects");
        for e in fs::read_dir(&objects).at(&objects)? {
            let e = e.at(&objects)?;
            if e.file_type().at(&e.path())?.is_dir() {
                dirs.push(e.path());
            }
        }
        dirs.push(objects);
        let now = SystemTime::now();
        let mut removed = 0;
        for dir in dirs {
            for e in fs::read_dir(&dir).at(&dir)? {
                let e = e.at(&dir)?;
                if !e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    continue;
                }
                let path = e.path();
                let meta = match path.symlink_metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(StoreError::io(&path, err)),
                };
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age < max_age {
                    continue;
                }
                if meta.is_dir() {
                    force_remove_dir_all(&path).at(&path)?;
                } else {
                    match fs::remove_file(&path) {
                        Err(err) if err.kind() != io::ErrorKind::NotFound => {
                            return Err(StoreError::io(&path, err))
                        }
                        _ => {}
                    }
                }
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes `data` to a new (fsynced, 0644) temporary file in `dir`.
    fn write_tmp(&self, dir: &Path, data: &[u8]) -> Result<NamedTempFile, StoreError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(dir)
            .at(dir)?;
        let tmp_path = tmp.path().to_path_buf();
        tmp.write_all(data).at(&tmp_path)?;
        self.seal(tmp)
    }

    /// Copies `artifact` into a new (fsynced, 0644) temporary file in `dir`,
    /// checking its checksum and size against `packed` on the way.
    fn copy_tmp(&self, dir: &Path, artifact: &Path, packed: &Packed) -> Result<NamedTempFile, StoreError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(dir)
            .at(dir)?;
        let src = File::open(artifact).at(artifact)?;
        let mut reader = HashReader::new(src);
        io::copy(&mut reader, tmp.as_file_mut()).at(artifact)?;
        let (sha, size) = reader.finish();
        if sha != packed.sha256 || size != packed.size {
            return Err(StoreError::corrupt(
                artifact,
                format!(
                    "expected sha256 {} ({} bytes), found {sha} ({size} bytes)",
                    packed.sha256, packed.size
                ),
            ));
        }
        self.seal(tmp)
    }

    /// Sets mode 0644 and fsyncs a temporary file.
    fn seal(&self, tmp: NamedTempFile) -> Result<NamedTempFile, StoreError> {
        let path = tmp.path().to_path_buf();
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .at(&path)?;
        if self.durable {
            tmp.as_file().sync_all().at(&path)?;
        }
        Ok(tmp)
    }
}

/// Reads the whole artifact `path` and compares every member with its entry in `manifest` (kind,
/// mode, owner, size, sha256 of regular files, link targets) and the set of paths. For artifacts
/// before they are trusted (downloaded from a shared cache) and `xlfs verify`.
pub fn check_contents(path: &Path, manifest: &Manifest) -> Result<(), StoreError> {
    let path = path.to_path_buf();
    let mut want: std::collections::BTreeMap<&str, &Entry> =
        manifest.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let bad = |what: String| StoreError::corrupt(&path, what);
    let file = File::open(&path).at(&path)?;
    let mut archive = tar::Archive::new(zstd::Decoder::new(file).at(&path)?);
    for member in archive.entries().at(&path)? {
        let mut member = member.at(&path)?;
        let name = member
            .path()
            .at(&path)?
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let Some(e) = want.remove(name.as_str()) else {
            return Err(bad(format!(
                "`{name}` is in the artifact but not in the manifest"
            )));
        };
        let h = member.header();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => crate::Kind::File,
            tar::EntryType::Directory => crate::Kind::Dir,
            tar::EntryType::Symlink => crate::Kind::Symlink,
            tar::EntryType::Link => crate::Kind::Hardlink,
            other => return Err(bad(format!("`{name}` has the unexpected type {other:?}"))),
        };
        let mode = h.mode().at(&path)? & 0o7777;
        let (uid, gid) = (h.uid().at(&path)? as u32, h.gid().at(&path)? as u32);
        let target = member
            .link_name()
            .at(&path)?
            .map(|t| t.to_string_lossy().into_owned());
        let (sha, size) = if kind == crate::Kind::File {
            let (sha, size) = xlfs_util::sha256_reader(&mut member).at(&path)?;
            (Some(sha), size)
        } else {
            (None, 0)
        };
        let found = (kind, mode, uid, gid, size, sha.as_deref(), target.as_deref());
        let expected = (
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.size,
            e.sha256.as_deref(),
            e.target.as_deref(),
        );
        if found != expected {
            return Err(bad(format!(
                "`{name}` differs from its manifest entry: expected {expected:?}, found {found:?}"
            )));
        }
    }
    if let Some(missing) = want.keys().next() {
        return Err(bad(format!(
            "`{missing}` is in the manifest but not in the artifact"
        )));
    }
    Ok(())
}

/// Renames a sealed temporary file to `dest`.
fn publish(tmp: NamedTempFile, dest: &Path) -> Result<(), StoreError> {
    tmp.persist(dest).map_err(|e| StoreError::io(dest, e.error))?;
    Ok(())
}

fn is_file(path: &Path) -> Result<bool, StoreError> {
    match path.symlink_metadata() {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

impl ArtifactStore for LocalStore {
    fn contains(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        Ok(is_file(&self.artifact_file(key))? && is_file(&self.manifest_file(key))?)
    }

    fn put(&self, key: &str, artifact: &Path, packed: &Packed) -> Result<Packed, StoreError> {
        if self.contains(key)? {
            return self.packed(key);
        }
        let dir = self.object_dir(key);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).at(&dir)?;
            self.fsync_dir(&self.root.join("objects"))?;
        }
        let json = serde_json::to_vec(&StoredManifestRef {
            sha256: &packed.sha256,
            size: packed.size,
            entries: &packed.manifest.entries,
        })
        .map_err(|e| StoreError::corrupt(self.manifest_file(key), e.to_string()))?;

        // Write both temporary files, fsyncing them concurrently (the file
        // system can then commit both in one journal transaction).
        let (manifest_tmp, artifact_tmp) = std::thread::scope(|s| {
            let m = s.spawn(|| self.write_tmp(&dir, &json));
            let a = self.copy_tmp(&dir, artifact, packed);
            let m = m.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            (m, a)
        });
        let (manifest_tmp, artifact_tmp) = (manifest_tmp?, artifact_tmp?);
        // Publishing is serialised: a writer that lost the race for this key
        // keeps the winner's artifact and reports it.
        let lock_path = self.root.join("objects").join(".put.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .at(&lock_path)?;
        lock.lock().at(&lock_path)?;
        if self.contains(key)? {
            return self.packed(key);
        }
        // A tree left over from an earlier artifact under this key (crash
        // during `remove`) must not be served for the new one.
        self.remove_tree(key)?;
        // Manifest first, artifact last: `contains` flips on the last rename.
        publish(manifest_tmp, &self.manifest_file(key))?;
        publish(artifact_tmp, &self.artifact_file(key))?;
        self.fsync_dir(&dir)?;
        Ok(packed.clone())
    }

    fn manifest(&self, key: &str) -> Result<Manifest, StoreError> {
        if !self.contains(key)? {
            return Err(StoreError::NotFound { key: key.into() });
        }
        let path = self.manifest_file(key);
        let bytes = fs::read(&path).at(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(&path, e.to_string()))
    }

    fn artifact_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if !self.contains(key)? {
            return Err(StoreError::NotFound { key: key.into() });
        }
        Ok(self.artifact_file(key))
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        // The tree first (re-extracted on demand should we crash before the
        // artifact is gone), then the artifact: from then on the key no
        // longer counts as stored; then the manifest.
        self.remove_tree(key)?;
        let dir = self.object_dir(key);
        let existed = remove_if_exists(&self.artifact_file(key))?;
        remove_if_exists(&self.manifest_file(key))?;
        if !existed {
            return Err(StoreError::NotFound { key: key.into() });
        }
        self.fsync_dir(&dir)
    }

    fn keys(&self) -> Result<Vec<String>, StoreError> {
        let objects = self.root.join("objects");
        let mut keys = Vec::new();
        for sub in fs::read_dir(&objects).at(&objects)? {
            let sub = sub.at(&objects)?;
            let sub_path = sub.path();
            if sub.file_name().to_string_lossy().starts_with('.') || !sub.file_type().at(&sub_path)?.is_dir()
            {
                continue;
            }
            for e in fs::read_dir(&sub_path).at(&sub_path)? {
                let e = e.at(&sub_path)?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                if let Some(key) = name.strip_suffix(ARTIFACT_SUFFIX) {
                    if validate_key(key).is_ok() && is_file(&self.manifest_file(key))? {
                        keys.push(key.to_string());
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}
