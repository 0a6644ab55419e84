//! Small file system helpers shared by packing, unpacking and the store.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, StoreError};

pub(crate) use xlfs_util::{
    force_remove_dir_all, tmp_name, HashReader, HashWriter, TempDirGuard, TMP_PREFIX,
};

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
