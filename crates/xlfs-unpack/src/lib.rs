//! Safe extraction of upstream source archives, and applying patches.
//!
//! [`unpack`] extracts a tar archive (plain, or compressed with gzip, xz,
//! bzip2 or zstd — detected from magic bytes, never from the file name) into
//! a fresh directory. It is written for archives downloaded from the
//! internet, so every member is validated before anything is written:
//!
//! * member paths must be relative, contain no `..` component, and not be
//!   empty after normalisation;
//! * no member may be written *through* a symlink created by an earlier
//!   member (every parent component is checked with `symlink_metadata`);
//! * symlink targets must be relative and must resolve inside the
//!   extraction root, relative to the link's own directory. A `..` that
//!   follows a normal component of the target is only accepted when that
//!   prefix is, at that moment, a real directory of the tree (otherwise the
//!   kernel would resolve the `..` physically, through whatever the prefix
//!   turns out to be);
//! * hard links must name a regular file member already extracted (never a
//!   symlink, whose relative target would change meaning in another place);
//! * character/block devices, fifos and any other odd entry type are
//!   refused; only regular files (including contiguous and GNU sparse
//!   files), directories, symlinks and hard links are extracted. PAX
//!   headers and GNU long-name headers are consumed by the `tar` crate;
//!   stray PAX global headers (as written by `git archive`) are skipped.
//!
//! A refused member is an error ([`UnpackError::Refused`]), never silently
//! skipped. Extraction happens in a temporary sibling directory of the
//! destination which is renamed into place only on full success; on any
//! error the temporary directory is removed and the destination does not
//! exist.
//!
//! Metadata policy:
//!
//! * permission bits are taken from the archive, masked with
//!   `0o7777 & !0o6000` (no setuid/setgid from sources). Directories are
//!   created `0o755` and receive their archived mode only once every member
//!   has been written, so read-only directories do not break extraction;
//!   directories that are only implied by member paths stay `0o755`, and so
//!   does the extraction root itself;
//! * ownership is *not* preserved: everything belongs to the running user;
//! * modification times of regular files and directories are preserved from
//!   the archive (important for autotools-based packages, whose makefiles
//!   compare generated files' timestamps); symlinks get the extraction time.
//!
//! [`apply_patch`] runs the real `patch` tool on a source tree.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// Size of the buffers placed before and after the decompressor.
const IO_BUF: usize = 1 << 20;

/// Mask applied to every archived permission: keep the permission and
/// sticky bits, drop setuid and setgid.
const MODE_MASK: u32 = 0o7777 & !0o6000;

/// Mode of every directory while extraction is running.
const DIR_MODE: u32 = 0o755;

/// What [`unpack`] extracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Number of non-directory members extracted: regular files, symlinks
    /// and hard links.
    pub files: u64,
    /// Total size in bytes of the regular files' contents written.
    pub bytes: u64,
    /// Sorted, de-duplicated names of the top-level entries of the tree
    /// (the first component of every member path).
    pub top_level: Vec<String>,
}

/// Why unpacking or patching failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A member of the archive was refused for security reasons.
    #[error("refusing member `{member}` of archive {}: {reason}", archive.display())]
    Refused {
        /// The archive being unpacked.
        archive: PathBuf,
        /// The member's path as written in the archive.
        member: String,
        /// Why it was refused.
        reason: String,
    },
    /// The file is neither a tar archive nor a compressed one in a
    /// supported format (gzip, xz, bzip2, zstd).
    #[error("unknown archive format: {} (expected tar, optionally gzip/xz/bzip2/zstd-compressed)", archive.display())]
    UnknownFormat {
        /// The archive being unpacked.
        archive: PathBuf,
    },
    /// Decompression failed or the tar stream is malformed or truncated.
    #[error("corrupt archive {}: {detail}", archive.display())]
    Corrupt {
        /// The archive being unpacked.
        archive: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path being operated on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The directory to patch is not inside the tree it must stay in (an absolute or `..` path,
    /// or a symbolic link in the unpacked sources pointing out).
    #[error("refusing to patch {}: it resolves to {}, outside {}; set build.subdir to a directory of the unpacked sources", dir.display(), real.display(), tree.display())]
    Outside {
        /// The tree the directory must lie in.
        tree: PathBuf,
        /// The directory as asked for.
        dir: PathBuf,
        /// Where it really is.
        real: PathBuf,
    },
    /// `patch` failed; `output` holds its stdout followed by its stderr.
    #[error("patch {} failed in {}:\n{output}", patch.display(), dir.display())]
    Patch {
        /// The patch file.
        patch: PathBuf,
        /// The directory it was applied in.
        dir: PathBuf,
        /// What `patch` printed (stdout, then stderr).
        output: String,
    },
}

/// Compression of an archive, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain, uncompressed tar.
    None,
    /// gzip (`.tar.gz`, `.tgz`).
    Gzip,
    /// xz (`.tar.xz`).
    Xz,
    /// bzip2 (`.tar.bz2`).
    Bzip2,
    /// Zstandard (`.tar.zst`).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a file (at least
    /// 512 bytes are needed to recognise a plain tar archive). Returns
    /// `None` when the bytes are neither a known compressed stream nor a
    /// tar header.
    pub fn detect(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Compression::Xz)
        } else if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
            Some(Compression::Bzip2)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if looks_like_tar(head) {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// Whether `head` starts with a tar header: either the ustar/GNU magic at
/// offset 257, or (for old v7 archives) a valid header checksum.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let field = &head[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let Ok(stored) = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("x"), 8) else {
        return false;
    };
    let sum: u32 = head[..148]
        .iter()
        .chain(&head[156..512])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    sum == stored
}

/// Extract `archive` into `dest` (which must not exist yet). Compression
/// detected from magic bytes: gzip, xz, bzip2, zstd, or plain tar.
///
/// Extraction goes into a temporary sibling directory of `dest` and is
/// renamed to `dest` only on full success; on any error nothing is left
/// behind (the temp dir is removed) and `dest` does not exist. The parent
/// directory of `dest` is created if missing.
///
/// See the crate documentation for the security rules and the metadata
/// policy (modes masked with `0o7777 & !0o6000`, ownership not preserved,
/// mtimes of files and directories preserved from the archive).
pub fn unpack(archive: &Path, dest: &Path) -> Result<UnpackSummary, UnpackError> {
    match fs::symlink_metadata(dest) {
        Ok(_) => {
            return Err(UnpackError::Io {
                path: dest.to_path_buf(),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "unpack destination already exists"),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dest, e)),
    }
    let name = dest.file_name().ok_or_else(|| UnpackError::Io {
        path: dest.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "unpack destination has no file name"),
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let file = File::open(archive).map_err(|e| io_err(archive, e))?;
    let mut reader = BufReader::with_capacity(IO_BUF, file);
    let head = peek(&mut reader, 512).map_err(|e| io_err(archive, e))?;
    let compression = Compression::detect(&head).ok_or_else(|| UnpackError::UnknownFormat {
        archive: archive.to_path_buf(),
    })?;

    fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".xlfs-unpack-");
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .map_err(|e| io_err(&parent, e))?;
    let guard = xlfs_util::TempDirGuard::adopt(tmp.keep());
    let root = guard.path().to_path_buf();

    let summary = {
        let mut ex = Extractor::new(archive, &root);
        let decoder = decoder(compression, reader).map_err(|e| ex.corrupt(e))?;
        if compression == Compression::None {
            ex.run(BufReader::with_capacity(IO_BUF, decoder))?;
        } else {
            // Decompress on another thread, overlapping with the
            // filesystem work of extraction.
            ex.run(BufReader::with_capacity(IO_BUF, PipeReader::spawn(decoder)))?;
        }
        ex.finish()?
    };

    fs::set_permissions(&root, fs::Permissions::from_mode(DIR_MODE)).map_err(|e| io_err(&root, e))?;
    // Never replaces what appeared at `dest` meanwhile.
    xlfs_util::rename_noreplace(&root, dest).map_err(|e| io_err(dest, e))?;
    guard.disarm();
    Ok(summary)
}

/// Apply `patch` in `tree/rel` after proving that this directory, with every symbolic link
/// resolved, lies inside `tree` (itself resolved); `patch` then runs in the resolved directory.
/// This keeps a recipe's `subdir` or a link in the unpacked sources from aiming `patch` at the
/// build machine's files.
pub fn apply_patch_inside(tree: &Path, rel: &str, patch: &Path, strip: u32) -> Result<(), UnpackError> {
    let tree_real = tree.canonicalize().map_err(|e| io_err(tree, e))?;
    let dir = tree.join(rel);
    let real = dir.canonicalize().map_err(|e| io_err(&dir, e))?;
    if !real.starts_with(&tree_real) {
        return Err(UnpackError::Outside {
            tree: tree_real,
            dir,
            real,
        });
    }
    apply_patch(&real, patch, strip)
}

/// Apply a patch with the real `patch` tool:
/// `patch -p{strip} --batch --forward --no-backup-if-mismatch -i PATCH`,
/// run in `dir`.
///
/// On failure the error carries everything `patch` printed (stdout, then
/// stderr). A patch that is already applied counts as a failure
/// (`--forward` makes `patch` skip it and exit non-zero).
///
/// Prefer [`apply_patch_inside`] for directories named by recipes.
pub fn apply_patch(dir: &Path, patch: &Path, strip: u32) -> Result<(), UnpackError> {
    // `patch` runs in `dir`, so a relative patch path must be made absolute.
    let patch_abs = if patch.is_absolute() {
        patch.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| io_err(patch, e))?.join(patch)
    };
    fs::metadata(&patch_abs).map_err(|e| io_err(patch, e))?;
    if !fs::metadata(dir).map_err(|e| io_err(dir, e))?.is_dir() {
        return Err(io_err(
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let out = Command::new("patch")
        .arg(format!("-p{strip}"))
        .args(["--batch", "--forward", "--no-backup-if-mismatch", "-i"])
        .arg(&patch_abs)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_err(Path::new("patch"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if output.trim().is_empty() {
        output = format!("patch exited with {}", out.status);
    }
    Err(UnpackError::Patch {
        patch: patch.to_path_buf(),
        dir: dir.to_path_buf(),
        output,
    })
}

fn io_err(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Returns a copy of (up to) the first `n` bytes of `reader` without
/// consuming them. `reader`'s capacity must be at least `n`.
fn peek<R: Read>(reader: &mut BufReader<R>, n: usize) -> io::Result<Vec<u8>> {
    use std::io::BufRead;
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// Wraps the (buffered) archive file in the right decompressor.
fn decoder<R: io::BufRead + Send + 'static>(
    compression: Compression,
    reader: R,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// A reader whose data is produced by a background thread reading from
/// another reader (here: a decompressor), in chunks passed through a
/// bounded channel. Errors of the inner reader are passed on as they are.
struct PipeReader {
    rx: Option<std::sync::mpsc::Receiver<io::Result<Vec<u8>>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PipeReader {
    /// Size of the chunks passed between the threads.
    const CHUNK: usize = 1 << 20;
    /// Number of chunks that may be in flight.
    const DEPTH: usize = 8;

    fn spawn(mut inner: Box<dyn Read + Send>) -> PipeReader {
        let (tx, rx) = std::sync::mpsc::sync_channel(Self::DEPTH);
        let thread = std::thread::spawn(move || loop {
            let mut buf = vec![0u8; Self::CHUNK];
            let mut filled = 0;
            // Fill the chunk (decoders often return little per call).
            let res = loop {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let last = filled == 0 || res.is_err();
            if filled > 0 && tx.send(Ok(buf)).is_err() {
                return; // reader gone
            }
            if let Err(e) = res {
                let _ = tx.send(Err(e));
            }
            if last {
                return; // EOF (signalled by dropping `tx`) or error
            }
        });
        PipeReader {
            rx: Some(rx),
            chunk: Vec::new(),
            pos: 0,
            done: false,
            thread: Some(thread),
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            let rx = self.rx.as_ref().expect("receiver present until drop");
            match rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    // Sender gone: end of stream.
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail, so
        // it stops; then wait for it (it owns the archive file).
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A directory member whose archived metadata is applied at the end.
struct PendingDir {
    path: PathBuf,
    mode: u32,
    mtime: Option<SystemTime>,
}

/// Kind of a member, once validated.
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// Consumed metadata header; nothing to extract.
    Skip,
}

/// State of one extraction.
struct Extractor<'a> {
    archive: &'a Path,
    root: &'a Path,
    /// Relative paths known to be real directories (not symlinks). Since
    /// directories are never removed or replaced during extraction, a
    /// directory once verified stays one.
    real_dirs: HashSet<PathBuf>,
    /// Relative paths that currently hold a regular file extracted from
    /// the archive: the only valid hard-link targets. Symlinks are not
    /// valid targets: a hard link to a relative symlink is a symlink with
    /// the same target text in another directory, which may then resolve
    /// outside the tree.
    regular_files: HashSet<PathBuf>,
    /// Directory members, in archive order.
    dirs: Vec<PendingDir>,
    top_level: BTreeSet<String>,
    files: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl<'a> Extractor<'a> {
    fn new(archive: &'a Path, root: &'a Path) -> Self {
        Extractor {
            archive,
            root,
            real_dirs: HashSet::new(),
            regular_files: HashSet::new(),
            dirs: Vec::new(),
            top_level: BTreeSet::new(),
            files: 0,
            bytes: 0,
            buf: vec![0; 256 * 1024],
        }
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> UnpackError {
        UnpackError::Corrupt {
            archive: self.archive.to_path_buf(),
            detail: e.to_string(),
        }
    }

    fn refuse(&self, member: &Path, reason: impl Into<String>) -> UnpackError {
        UnpackError::Refused {
            archive: self.archive.to_path_buf(),
            member: member.to_string_lossy().into_owned(),
            reason: reason.into(),
        }
    }

    /// Extracts every member, then drains the decompressed stream to its
    /// end so that the decompressor verifies its trailing checksums.
    fn run<R: Read>(&mut self, input: R) -> Result<(), UnpackError> {
        let mut ar = tar::Archive::new(input);
        {
            let entries = ar.entries().map_err(|e| self.corrupt(e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| self.corrupt(e))?;
                self.extract(&mut entry)?;
            }
        }
        let mut rest = ar.into_inner();
        loop {
            match rest.read(&mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.corrupt(e)),
            }
        }
        Ok(())
    }

    fn extract<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_path = entry.path().map_err(|e| self.corrupt(e))?.into_owned();
        // Old (V7) archives have no directory type: a member whose type byte is NUL and whose
        // name ends in `/` is a directory (GNU tar reads it so; sendmail's tarball is one).
        let v7_dir = entry.header().as_old().linkflag[0] == 0 && entry.path_bytes().ends_with(b"/");
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular if v7_dir => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => Kind::Skip,
            tar::EntryType::Char => return Err(self.refuse(&raw_path, "character device")),
            tar::EntryType::Block => return Err(self.refuse(&raw_path, "block device")),
            tar::EntryType::Fifo => return Err(self.refuse(&raw_path, "fifo")),
            other => {
                return Err(self.refuse(
                    &raw_path,
                    format!(
                        "unsupported entry type {:?} ('{}')",
                        other,
                        other.as_byte().escape_ascii()
                    ),
                ))
            }
        };
        if matches!(kind, Kind::Skip) {
            return Ok(());
        }

        let rel = self.normalize_member(&raw_path)?;
        if let Some(Component::Normal(first)) = rel.components().next() {
            self.top_level.insert(first.to_string_lossy().into_owned());
        }
        let full = self.root.join(&rel);
        self.prepare_parents(&raw_path, &rel)?;

        let mode = entry.header().mode().map_err(|e| self.corrupt(e))? & MODE_MASK;
        let mtime = entry
            .header()
            .mtime()
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));

        match kind {
            Kind::Dir => {
                self.make_dir(&raw_path, &rel, &full)?;
                self.regular_files.remove(&rel);
                self.dirs.push(PendingDir {
                    path: full,
                    mode,
                    mtime,
                });
            }
            Kind::File => {
                let mut file = self.create_file(&raw_path, &full)?;
                let written = self.copy_data(entry, &mut file, &full)?;
                if written != entry.size() {
                    return Err(self.corrupt(format!(
                        "member `{}` truncated: {written} of {} bytes",
                        raw_path.display(),
                        entry.size()
                    )));
                }
                if let Some(t) = mtime {
                    file.set_modified(t).map_err(|e| io_err(&full, e))?;
                }
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| io_err(&full, e))?;
                self.bytes += written;
                self.files += 1;
                self.regular_files.insert(rel);
            }
            Kind::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(e))?
                    .ok_or_else(|| self.refuse(&raw_path, "symlink with an empty target"))?
                    .into_owned();
                self.check_symlink_target(&raw_path, &rel, &target)?;
                self.replace_non_dir(&raw_path, &full, |p| std::os::unix::fs::symlink(&target, p))?;
                self.files += 1;
                self.regular_files.remove(&rel);
            }
            Kind::HardLink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(e))?
                    .ok_or_else(|| self.refuse(&raw_path, "hard link with an empty target"))?
                    .into_owned();
                let target_rel = self
                    .normalize_path(&target)
                    .map_err(|why| self.refuse(&raw_path, format!("hard link target {why}")))?;
                if target_rel == rel {
                    return Err(self.refuse(&raw_path, "hard link to itself"));
                }
                let target_full = self.root.join(&target_rel);
                let is_file = self.regular_files.contains(&target_rel)
                    && fs::symlink_metadata(&target_full)
                        .map(|m| m.file_type().is_file())
                        .unwrap_or(false);
                if !is_file {
                    return Err(self.refuse(
                        &raw_path,
                        format!(
                            "hard link target `{}` is not a regular file extracted earlier",
                            target.display()
                        ),
                    ));
                }
                self.replace_non_dir(&raw_path, &full, |p| fs::hard_link(&target_full, p))?;
                self.files += 1;
                self.regular_files.insert(rel);
            }
            Kind::Skip => {}
        }
        Ok(())
    }

    /// Normalises a member path, refusing it with the reason on failure.
    fn normalize_member(&self, raw: &Path) -> Result<PathBuf, UnpackError> {
        self.normalize_path(raw)
            .map_err(|why| self.refuse(raw, format!("path {why}")))
    }

    /// Normalises an archive path: drops `.` components and trailing
    /// slashes; fails (with a reason) for absolute paths, `..` components
    /// and paths that end up empty.
    fn normalize_path(&self, raw: &Path) -> Result<PathBuf, String> {
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Prefix(_) | Component::RootDir => return Err("is absolute".into()),
                Component::ParentDir => return Err("contains a `..` component".into()),
                Component::CurDir => {}
                Component::Normal(n) => out.push(n),
            }
        }
        if out.as_os_str().is_empty() {
            return Err("is empty after normalisation".into());
        }
        Ok(out)
    }

    /// Makes sure every parent component of `rel` is a real directory
    /// (creating missing ones with mode 0o755), refusing paths that go
    /// through a symlink or a non-directory.
    fn prepare_parents(&mut self, raw: &Path, rel: &Path) -> Result<(), UnpackError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        if parent.as_os_str().is_empty() || self.real_dirs.contains(parent) {
            return Ok(());
        }
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            if self.real_dirs.contains(&cur) {
                continue;
            }
            let full = self.root.join(&cur);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(raw, format!("path goes through symlink `{}`", cur.display())))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(raw, format!("parent `{}` is not a directory", cur.display())))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    mkdir(&full).map_err(|e| io_err(&full, e))?;
                    // Implied directory: gets 0o755 (whatever the umask)
                    // at the end, unless a directory member follows.
                    self.dirs.push(PendingDir {
                        path: full,
                        mode: DIR_MODE,
                        mtime: None,
                    });
                }
                Err(e) => return Err(io_err(&full, e)),
            }
            self.real_dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// Creates (or accepts an existing) directory member; an existing
    /// non-directory that is not a symlink is replaced.
    fn make_dir(&mut self, raw: &Path, rel: &Path, full: &Path) -> Result<(), UnpackError> {
        if self.real_dirs.contains(rel) {
            return Ok(());
        }
        match mkdir(full) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let m = fs::symlink_metadata(full).map_err(|e| io_err(full, e))?;
                if m.file_type().is_symlink() {
                    return Err(self.refuse(raw, "directory would go through an existing symlink"));
                }
                if !m.is_dir() {
                    fs::remove_file(full).map_err(|e| io_err(full, e))?;
                    mkdir(full).map_err(|e| io_err(full, e))?;
                }
            }
            Err(e) => return Err(io_err(full, e)),
        }
        self.real_dirs.insert(rel.to_path_buf());
        Ok(())
    }

    /// Creates a new regular file at `full`, replacing an existing
    /// non-directory (never following a symlink there).
    fn create_file(&self, raw: &Path, full: &Path) -> Result<File, UnpackError> {
        let open = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)
        };
        let mut file = None;
        self.replace_non_dir(raw, full, |p| {
            file = Some(open(p)?);
            Ok(())
        })?;
        Ok(file.expect("created"))
    }

    /// Runs `create` on `full`; if something is already there, it is
    /// removed first unless it is a directory (refused).
    fn replace_non_dir(
        &self,
        raw: &Path,
        full: &Path,
        mut create: impl FnMut(&Path) -> io::Result<()>,
    ) -> Result<(), UnpackError> {
        match create(full) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(full, e)),
        }
        let m = fs::symlink_metadata(full).map_err(|e| io_err(full, e))?;
        if m.is_dir() {
            return Err(self.refuse(raw, "would replace a directory"));
        }
        fs::remove_file(full).map_err(|e| io_err(full, e))?;
        create(full).map_err(|e| io_err(full, e))
    }

    /// Copies the member's data into `file`. Read errors (decompression,
    /// truncation) are `Corrupt`; write errors are `Io`.
    fn copy_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        full: &Path,
    ) -> Result<u64, UnpackError> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut total = 0u64;
        let res = loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(self.corrupt(e)),
            };
            if let Err(e) = file.write_all(&buf[..n]) {
                break Err(io_err(full, e));
            }
            total += n as u64;
        };
        self.buf = buf;
        res
    }

    /// Checks that a symlink at `rel` pointing to `target` stays inside the
    /// extraction root.
    ///
    /// The target is resolved lexically from the link's directory (whose
    /// components are real directories). A `..` that pops a component
    /// coming from the target itself is only sound if that component is a
    /// real directory (not a symlink, which the kernel would follow before
    /// applying `..`), so this is checked on disk; directories are never
    /// replaced later in the extraction, so the check stays valid.
    fn check_symlink_target(&self, raw: &Path, rel: &Path, target: &Path) -> Result<(), UnpackError> {
        if target.as_os_str().is_empty() {
            return Err(self.refuse(raw, "symlink with an empty target"));
        }
        if target.is_absolute() {
            return Err(self.refuse(raw, format!("symlink target `{}` is absolute", target.display())));
        }
        let mut stack: Vec<&std::ffi::OsStr> = rel
            .parent()
            .map(|p| {
                p.components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Number of leading components of `stack` known to be real
        // directories.
        let mut verified = stack.len();
        for c in target.components() {
            match c {
                Component::Prefix(_) | Component::RootDir => {
                    return Err(self.refuse(raw, format!("symlink target `{}` is absolute", target.display())))
                }
                Component::CurDir => {}
                Component::Normal(n) => stack.push(n),
                Component::ParentDir => {
                    if stack.is_empty() {
                        return Err(self.refuse(
                            raw,
                            format!("symlink target `{}` leaves the extraction root", target.display()),
                        ));
                    }
                    if verified < stack.len() {
                        let real = stack[verified..].iter().enumerate().all(|(i, _)| {
                            let mut q = self.root.to_path_buf();
                            q.extend(&stack[..verified + i + 1]);
                            fs::symlink_metadata(&q).map(|m| m.is_dir()).unwrap_or(false)
                        });
                        if !real {
                            return Err(self.refuse(
                                raw,
                                format!(
                                    "symlink target `{}` applies `..` to `{}`, which is not a real directory of the tree",
                                    target.display(),
                                    PathBuf::from_iter(&stack).display()
                                ),
                            ));
                        }
                    }
                    stack.pop();
                    verified = stack.len();
                }
            }
        }
        Ok(())
    }

    /// Applies the archived modes and mtimes of directory members, deepest
    /// first, and builds the summary.
    fn finish(self) -> Result<UnpackSummary, UnpackError> {
        let mut dirs = self.dirs;
        // Later duplicates win: keep the last occurrence of each directory.
        let mut seen = HashSet::new();
        dirs.reverse();
        dirs.retain(|d| seen.insert(d.path.clone()));
        // Children before parents, so that a read-only parent does not
        // prevent updating its children.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in &dirs {
            if let Some(t) = d.mtime {
                let f = File::open(&d.path).map_err(|e| io_err(&d.path, e))?;
                f.set_modified(t).map_err(|e| io_err(&d.path, e))?;
            }
            fs::set_permissions(&d.path, fs::Permissions::from_mode(d.mode))
                .map_err(|e| io_err(&d.path, e))?;
        }
        Ok(UnpackSummary {
            files: self.files,
            bytes: self.bytes,
            top_level: self.top_level.into_iter().collect(),
        })
    }
}

/// Creates one directory with mode 0o755 (subject to the umask; the final
/// mode is applied by `Extractor::finish`).
fn mkdir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(DIR_MODE).create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_header(ustar: bool) -> Vec<u8> {
        let mut h = if ustar {
            tar::Header::new_ustar()
        } else {
            tar::Header::new_old()
        };
        h.set_path("file").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn detects_compression_from_magic() {
        assert_eq!(Compression::detect(b"\x1f\x8b\x08\0"), Some(Compression::Gzip));
        assert_eq!(Compression::detect(b"\xfd7zXZ\0\0\x04"), Some(Compression::Xz));
        assert_eq!(Compression::detect(b"BZh91AY&SY"), Some(Compression::Bzip2));
        assert_eq!(Compression::detect(b"BZx9"), None);
        assert_eq!(
            Compression::detect(b"\x28\xb5\x2f\xfd\x00"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::detect(&tar_header(true)), Some(Compression::None));
        // Old v7 header: no magic, recognised by its checksum.
        assert_eq!(Compression::detect(&tar_header(false)), Some(Compression::None));
        let mut bad = tar_header(false);
        bad[0] = b'x';
        assert_eq!(Compression::detect(&bad), None);
        assert_eq!(Compression::detect(&[0u8; 512]), None);
        assert_eq!(Compression::detect(b""), None);
        assert_eq!(Compression::detect(b"PK\x03\x04"), None);
    }

    #[test]
    fn error_messages_name_archive_member_and_reason() {
        let e = UnpackError::Refused {
            archive: "/src/foo-1.0.tar.xz".into(),
            member: "../evil".into(),
            reason: "path contains a `..` component".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("/src/foo-1.0.tar.xz"), "{msg}");
        assert!(msg.contains("../evil"), "{msg}");
        assert!(msg.contains("`..`"), "{msg}");
    }
}
