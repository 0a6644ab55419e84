//! Small file system helpers shared by packing, unpacking and the store.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::error::{IoContext, StoreError};

/// Prefix of every temporary file or directory this crate creates; such
/// names never count as published objects.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// A fresh name `.tmp-<stem>-<pid>-<nanos>-<counter>` for a temporary object
/// next to its final location.
pub(crate) fn tmp_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{TMP_PREFIX}{stem}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The directory containing `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so that renames/creations inside it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Removes a directory tree, first granting the owner write+exec permission
/// on directories that lack it (trees extracted from artifacts may contain
/// read-only directories, which would stop a non-root caller).
pub(crate) fn force_remove_dir_all(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            for entry in walkdir::WalkDir::new(path).follow_links(false) {
                let Ok(entry) = entry else { continue };
                if entry.file_type().is_dir() {
                    if let Ok(meta) = entry.metadata() {
                        let mode = meta.permissions().mode();
                        if mode & 0o700 != 0o700 {
                            let _ =
                                fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode | 0o700));
                        }
                    }
                }
            }
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        }
    }
}

/// A temporary directory removed (forcefully) on drop unless disarmed.
pub(crate) struct TempDirGuard {
    path: Option<PathBuf>,
}

impl TempDirGuard {
    /// Creates a fresh temporary directory `.tmp-<stem>-...` inside `parent`.
    pub(crate) fn new_in(parent: &Path, stem: &str) -> Result<Self, StoreError> {
        loop {
            let path = parent.join(tmp_name(stem));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDirGuard { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io(parent, e)),
            }
        }
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().expect("guard is armed")
    }

    /// Stops the guard from removing the directory (it was renamed away).
    pub(crate) fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = force_remove_dir_all(&p);
        }
    }
}

/// A writer that hashes and counts everything passing through it.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Returns the inner writer, the hex sha256 and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Returns the hex sha256 and the byte count of what was read.
    pub(crate) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hex sha256 and size of a file, streaming.
pub fn sha256_file(path: &Path) -> Result<(String, u64), StoreError> {
    let file = File::open(path).at(path)?;
    let mut reader = HashReader::new(file);
    io::copy(&mut reader, &mut io::sink()).at(path)?;
    Ok(reader.finish())
}

/// A read-only private memory map of a whole (non-empty) file.
///
/// Used for ELF files so that goblin can parse them and the same pages can be
/// hashed and written into the archive, without reading the file into a heap
/// buffer. The file must not be truncated while mapped (a DESTDIR is not
/// modified while it is packed).
pub(crate) struct Mmap {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mmap {
    pub(crate) fn map(file: &File, len: u64) -> io::Result<Mmap> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad mapping length"))?;
        // SAFETY: a fresh read-only private mapping of a valid fd; the result
        // is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Purely advisory; failure is harmless.
        // SAFETY: `ptr`/`len` describe the mapping created above.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(Mmap { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as
        // `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `map`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
