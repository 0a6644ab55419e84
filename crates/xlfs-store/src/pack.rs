//! Packing a DESTDIR into a deterministic `.tar.zst` artifact.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::elf;
use crate::error::{IoContext, StoreError};
use crate::fsutil::{parent_dir, HashWriter, Mmap, TMP_PREFIX};
use crate::manifest::{Attr, Entry, Kind, Manifest};

/// zstd level callers should use unless they have a reason not to.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Below this many bytes of file content zstd runs single-threaded: its
/// multithreaded mode only splits input into jobs of several MiB, so it
/// would merely add thread start-up cost. The choice depends only on the
/// tree, and zstd's multithreaded output does not depend on the number of
/// workers, so artifacts stay identical across machines.
const MT_MIN_INPUT: u64 = 8 << 20;
/// Upper bound on zstd worker threads.
const MT_MAX_WORKERS: usize = 8;

/// Options of [`pack`].
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// Modification time recorded for every entry (`SOURCE_DATE_EPOCH`).
    pub mtime: u64,
    /// zstd compression level ([`DEFAULT_ZSTD_LEVEL`] by default).
    pub zstd_level: i32,
    /// Ownership/mode overrides declared by the recipe.
    pub attrs: Vec<Attr>,
    /// The tree was made by a build in this user namespace: record each file's owner as seen
    /// inside it (0 for root inside), and refuse setuid/setgid files the attrs do not declare.
    /// `None`: every owner is 0 unless an attr says otherwise, and modes are taken as they are.
    pub ids: Option<xlfs_sandbox::IdMap>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            mtime: 0,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            attrs: Vec::new(),
            ids: None,
        }
    }
}

/// Result of [`pack`].
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    /// What the artifact contains.
    pub manifest: Manifest,
    /// Lowercase hex sha256 of the `.tar.zst` file.
    pub sha256: String,
    /// Size in bytes of the `.tar.zst` file.
    pub size: u64,
}

/// A file system object found while scanning the DESTDIR.
struct Item {
    rel: String,
    abs: PathBuf,
    kind: ItemKind,
    meta: fs::Metadata,
}

enum ItemKind {
    File,
    Dir,
    Symlink(String),
}

/// Packs `destdir` into `out` (a `.tar.zst`).
///
/// The result is deterministic: entries are sorted bytewise by path, every
/// mtime is `opts.mtime`, uid/gid are 0 with empty user/group names unless an
/// [`Attr`] says otherwise, modes come from the file system masked with
/// `0o7777` and then from the attrs, hard links (same dev+ino) are stored as
/// tar hard links to the first path, and only GNU headers are written (long
/// names through GNU long-name records), with no atime/ctime or PAX records.
/// The same tree thus gives a byte-identical artifact whoever runs it.
///
/// A hard link's recorded uid/gid/mode are those of its first path (they
/// share an inode, so they could not differ once extracted).
///
/// Block/char devices, fifos and sockets are refused with
/// [`StoreError::SpecialFile`] naming the path, before anything is written.
/// File names and symlink targets must be UTF-8.
///
/// File content is streamed; ELF files are memory-mapped so that their
/// `DT_NEEDED` can be read without a second pass. The artifact is written to
/// a temporary file next to `out` and renamed over `out` once complete, so
/// `out` is never seen half-written. It is not fsynced: durability is the
/// business of [`ArtifactStore::put`](crate::ArtifactStore::put), which
/// copies, verifies and fsyncs it.
pub fn pack(destdir: &Path, out: &Path, opts: &PackOptions) -> Result<Packed, StoreError> {
    let items = scan(destdir)?;
    let total: u64 = items
        .iter()
        .filter(|i| matches!(i.kind, ItemKind::File))
        .map(|i| i.meta.len())
        .sum();

    let dir = parent_dir(out);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TMP_PREFIX}pack-"))
        .tempfile_in(&dir)
        .at(&dir)?;
    let tmp_path = tmp.path().to_path_buf();
    let file = tmp.as_file().try_clone().at(&tmp_path)?;

    let mut encoder = zstd::Encoder::new(HashWriter::new(file), opts.zstd_level).at(&tmp_path)?;
    encoder.include_checksum(true).at(&tmp_path)?;
    if total >= MT_MIN_INPUT {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MT_MAX_WORKERS);
        encoder.multithread(workers as u32).at(&tmp_path)?;
    }
    let mut builder = tar::Builder::new(BufWriter::with_capacity(256 * 1024, encoder));

    let manifest = write_entries(&mut builder, items, opts, &tmp_path)?;

    let encoder = builder
        .into_inner()
        .at(&tmp_path)?
        .into_inner()
        .map_err(|e| StoreError::io(&tmp_path, e.into_error()))?;
    let (file, sha256, size) = encoder.finish().at(&tmp_path)?.finish();
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .at(&tmp_path)?;
    drop(file);
    tmp.persist(out).map_err(|e| StoreError::io(out, e.error))?;

    Ok(Packed {
        manifest,
        sha256,
        size,
    })
}

/// Lists `destdir` (without its root), sorted bytewise by relative path.
fn scan(destdir: &Path) -> Result<Vec<Item>, StoreError> {
    let meta = fs::metadata(destdir).at(destdir)?;
    if !meta.is_dir() {
        return Err(StoreError::io(
            destdir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut items = Vec::new();
    for entry in walkdir::WalkDir::new(destdir).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(destdir).to_path_buf();
            let source = e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("file system loop"));
            StoreError::io(path, source)
        })?;
        let abs = entry.path().to_path_buf();
        let rel = abs
            .strip_prefix(destdir)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| StoreError::InvalidPath {
                path: abs.clone(),
                reason: "file name is not valid UTF-8".into(),
            })?
            .to_string();
        let meta = entry.metadata().map_err(|e| {
            StoreError::io(
                &abs,
                e.into_io_error().unwrap_or_else(|| io::Error::other("metadata")),
            )
        })?;
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            let target = fs::read_link(&abs).at(&abs)?;
            let target = target
                .to_str()
                .ok_or_else(|| StoreError::InvalidPath {
                    path: abs.clone(),
                    reason: "symlink target is not valid UTF-8".into(),
                })?
                .to_string();
            ItemKind::Symlink(target)
        } else if ft.is_dir() {
            ItemKind::Dir
        } else if ft.is_file() {
            ItemKind::File
        } else {
            debug_assert!(ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device());
            return Err(StoreError::SpecialFile { path: abs });
        };
        items.push(Item { rel, abs, kind, meta });
    }
    items.sort_unstable_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(items)
}

/// Effective (uid, gid, mode) of a path after applying the attrs, which
/// must already be sorted by increasing specificity.
fn effective_attrs(
    rel: &str,
    (uid, gid): (u32, u32),
    fs_mode: u32,
    symlink: bool,
    attrs: &[&Attr],
) -> (u32, u32, u32) {
    let (mut uid, mut gid, mut mode) = (uid, gid, fs_mode & 0o7777);
    for a in attrs.iter().filter(|a| a.matches(rel)) {
        uid = a.uid.unwrap_or(uid);
        gid = a.gid.unwrap_or(gid);
        if !symlink {
            mode = a.mode.map(|m| m & 0o7777).unwrap_or(mode);
        }
    }
    (uid, gid, mode)
}

/// Writes all items to the archive, returning the manifest.
fn write_entries<W: Write>(
    builder: &mut tar::Builder<W>,
    items: Vec<Item>,
    opts: &PackOptions,
    out: &Path,
) -> Result<Manifest, StoreError> {
    let mut attrs: Vec<&Attr> = opts.attrs.iter().collect();
    attrs.sort_by_key(|a| a.specificity()); // stable: later attrs win ties

    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let symlink = matches!(item.kind, ItemKind::Symlink(_));
        let owner = match &opts.ids {
            None => (0, 0),
            Some(ids) => {
                let unmapped = |what, id| StoreError::UnmappedOwner {
                    path: item.abs.clone(),
                    what,
                    id,
                };
                (
                    ids.inside_uid(item.meta.uid())
                        .ok_or_else(|| unmapped("uid", item.meta.uid()))?,
                    ids.inside_gid(item.meta.gid())
                        .ok_or_else(|| unmapped("gid", item.meta.gid()))?,
                )
            }
        };
        let (uid, gid, mode) = effective_attrs(&item.rel, owner, item.meta.mode(), symlink, &attrs);
        let setid = item.meta.mode() & 0o6000;
        if opts.ids.is_some() && matches!(item.kind, ItemKind::File) && setid != 0 {
            let declared = attrs
                .iter()
                .any(|a| a.matches(&item.rel) && a.mode.is_some_and(|m| m & setid == setid));
            if !declared {
                return Err(StoreError::UndeclaredSetid {
                    path: item.abs.clone(),
                    rel: item.rel.clone(),
                    mode: item.meta.mode() & 0o7777,
                });
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_mtime(opts.mtime);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mode(mode);
        header.set_size(0);
        let mut entry = Entry {
            path: item.rel,
            kind: Kind::Dir,
            mode,
            uid,
            gid,
            size: 0,
            sha256: None,
            target: None,
            needed: Vec::new(),
            elf: None,
        };
        match item.kind {
            ItemKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                builder
                    .append_data(&mut header, &entry.path, io::empty())
                    .at(out)?;
            }
            ItemKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, &entry.path, &target).at(out)?;
                entry.kind = Kind::Symlink;
                entry.target = Some(target);
            }
            ItemKind::File => {
                let inode = (item.meta.dev(), item.meta.ino());
                let first = if item.meta.nlink() > 1 {
                    first_link.get(&inode).copied()
                } else {
                    None
                };
                if let Some(idx) = first {
                    let first: &Entry = &entries[idx];
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_uid(first.uid.into());
                    header.set_gid(first.gid.into());
                    header.set_mode(first.mode);
                    builder
                        .append_link(&mut header, &entry.path, &first.path)
                        .at(out)?;
                    entry.kind = Kind::Hardlink;
                    entry.uid = first.uid;
                    entry.gid = first.gid;
                    entry.mode = first.mode;
                    entry.target = Some(first.path.clone());
                } else {
                    if item.meta.nlink() > 1 {
                        first_link.insert(inode, entries.len());
                    }
                    entry.kind = Kind::File;
                    append_file(builder, &mut header, &item.abs, &mut entry, out)?;
                }
            }
        }
        entries.push(entry);
    }
    Ok(Manifest { entries })
}

/// Appends one regular file, filling in size, sha256 and ELF data of `entry`.
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    abs: &Path,
    entry: &mut Entry,
    out: &Path,
) -> Result<(), StoreError> {
    let file = File::open(abs).at(abs)?;
    let size = file.metadata().at(abs)?.len();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    entry.size = size;

    let mut magic = [0u8; 4];
    let is_elf =
        size >= magic.len() as u64 && file.read_exact_at(&mut magic, 0).is_ok() && &magic == elf::MAGIC;
    if is_elf {
        let map = Mmap::map(&file, size).at(abs)?;
        let bytes = map.as_slice();
        if let Some(info) = elf::inspect(bytes) {
            entry.elf = Some(info.desc);
            entry.needed = info.needed;
        }
        entry.sha256 = Some(xlfs_util::sha256_hex(bytes));
        builder.append_data(header, &entry.path, bytes).at(out)?;
    } else {
        let mut reader = TrackedReader::new((&file).take(size));
        if let Err(e) = builder.append_data(header, &entry.path, &mut reader) {
            return Err(StoreError::io(if reader.failed { abs } else { out }, e));
        }
        let (sha, n) = reader.finish();
        if n != size {
            return Err(StoreError::corrupt(
                abs,
                format!("file shrank from {size} to {n} bytes while being packed"),
            ));
        }
        entry.sha256 = Some(sha);
    }
    Ok(())
}

/// Hashing reader that remembers whether reading (rather than writing the
/// archive) failed, to blame the right path.
struct TrackedReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    failed: bool,
}

impl<R: Read> TrackedReader<R> {
    fn new(inner: R) -> Self {
        TrackedReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            failed: false,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8], workers: u32) -> Vec<u8> {
        let mut enc = zstd::Encoder::new(Vec::new(), DEFAULT_ZSTD_LEVEL).unwrap();
        enc.include_checksum(true).unwrap();
        if workers > 0 {
            enc.multithread(workers).unwrap();
        }
        // Feed in odd-sized chunks, like the tar writer does.
        for chunk in data.chunks(70_001) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap()
    }

    /// The artifact must not depend on the machine's core count.
    #[test]
    fn zstd_multithreaded_output_independent_of_worker_count() {
        // ~24 MiB of compressible but not trivial data.
        let mut data = Vec::with_capacity(24 << 20);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while data.len() < 24 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let word = format!("token{} ", x % 5000);
            data.extend_from_slice(word.as_bytes());
        }
        let one = compress(&data, 1);
        for workers in [2, 3, 8] {
            assert!(one == compress(&data, workers), "{workers} workers differ");
        }
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }
}
