//! Temporary directories and atomic directory renames.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every temporary file or directory xlfs creates next to its final place; such names
/// never count as published objects.
pub const TMP_PREFIX: &str = ".tmp-";

/// A fresh name `.tmp-<stem>-<pid>-<nanos>-<counter>` for a temporary object next to its final
/// location.
pub fn tmp_name(stem: &str) -> String {
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

/// Removes a directory tree, first granting the owner write+exec permission on directories that
/// lack it (trees extracted from artifacts may contain read-only directories, which would stop a
/// non-root caller). A missing `path` is not an error.
pub fn force_remove_dir_all(path: &Path) -> io::Result<()> {
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

/// A temporary directory, removed (forcefully, see [`force_remove_dir_all`]) on drop unless
/// disarmed.
#[derive(Debug)]
pub struct TempDirGuard {
    path: Option<PathBuf>,
}

impl TempDirGuard {
    /// Creates a fresh directory `.tmp-<stem>-…` inside `parent` (see [`tmp_name`]).
    pub fn new_in(parent: &Path, stem: &str) -> io::Result<Self> {
        loop {
            let path = parent.join(tmp_name(stem));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDirGuard { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes charge of an existing directory: it is removed on drop.
    pub fn adopt(path: PathBuf) -> Self {
        TempDirGuard { path: Some(path) }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("guard is armed")
    }

    /// Stops the guard from removing the directory (it was renamed away); returns its path.
    pub fn disarm(mut self) -> PathBuf {
        self.path.take().expect("guard is armed")
    }
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = force_remove_dir_all(&p);
        }
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    // SAFETY: valid NUL-terminated paths.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// rename(2) that fails with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(from, to, libc::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(err) => match err.raw_os_error() {
            // File systems without RENAME_NOREPLACE: plain rename(2) of a directory still
            // refuses to replace a non-empty directory.
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                if to.symlink_metadata().is_ok() {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
                }
                fs::rename(from, to).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
                        io::Error::new(io::ErrorKind::AlreadyExists, e)
                    }
                    _ => e,
                })
            }
            Some(libc::EEXIST) => Err(io::Error::new(io::ErrorKind::AlreadyExists, err)),
            _ => Err(err),
        },
    }
}

/// Atomically swaps `a` and `b` (both must exist): renameat2(RENAME_EXCHANGE).
pub fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

/// Publishes the complete directory `fresh` as `dest` in one step: renamed into place if `dest`
/// does not exist, else swapped with it (RENAME_EXCHANGE) and the old one deleted afterwards.
/// At every moment `dest` is either the old or the new directory, never missing or partial.
/// `fresh` must be on the same file system as `dest` (a sibling).
pub fn replace_dir(fresh: &Path, dest: &Path) -> io::Result<()> {
    loop {
        match rename_noreplace(fresh, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match rename_exchange(fresh, dest) {
            // `fresh` now holds the old directory.
            Ok(()) => return force_remove_dir_all(fresh),
            // `dest` vanished between the two calls (a concurrent replace_dir): try again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_guard_removes_read_only_trees_unless_disarmed() {
        let top = tempfile::tempdir().unwrap();
        let g = TempDirGuard::new_in(top.path(), "x").unwrap();
        assert!(g
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".tmp-x-"));
        let sub = g.path().join("ro");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("f"), "x").unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o555)).unwrap();
        let p = g.path().to_path_buf();
        drop(g);
        assert!(!p.exists());
        let g = TempDirGuard::new_in(top.path(), "y").unwrap();
        let kept = g.disarm();
        assert!(kept.is_dir());
    }

    #[test]
    fn replace_dir_swaps_without_a_gap() {
        let top = tempfile::tempdir().unwrap();
        let dest = top.path().join("out");
        for round in 0..3 {
            let fresh = TempDirGuard::new_in(top.path(), "out").unwrap();
            fs::write(fresh.path().join("n"), round.to_string()).unwrap();
            replace_dir(fresh.path(), &dest).unwrap();
            drop(fresh); // already gone (renamed or deleted): dropping is harmless
            assert_eq!(fs::read_to_string(dest.join("n")).unwrap(), round.to_string());
        }
        // Only `out` is left: the old copies were deleted.
        let names: Vec<_> = fs::read_dir(top.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
        // Noreplace refuses an existing destination.
        let other = top.path().join("other");
        fs::create_dir(&other).unwrap();
        assert_eq!(
            rename_noreplace(&other, &dest).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}

/// Write `bytes` to `path` atomically: a temporary file next to it, synced, then renamed over
/// it. A crash leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(tmp_name(&stem));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod write_atomic_tests {
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("report.html");
        super::write_atomic(&p, b"one").unwrap();
        super::write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(super::write_atomic(&d.path().join("no/such/dir"), b"x").is_err());
    }
}
