//! Extracting artifacts made by [`pack`](crate::pack).

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{IoContext, StoreError};
use crate::fsutil::{fsync_dir, parent_dir, TempDirGuard};
use xlfs_util::rename_noreplace;

/// Extracts an artifact made by [`pack`](crate::pack) into `dest`, which
/// must not exist yet.
///
/// The artifact is extracted into a temporary directory next to `dest`
/// which is renamed to `dest` only once complete, so `dest` either does not
/// exist or is complete. Modes (setuid bits included) and mtimes are kept,
/// and uid/gid too when running as root. The root directory gets mode 0755.
/// The zstd checksum of the whole artifact is verified.
pub fn unpack_artifact(artifact: &Path, dest: &Path) -> Result<(), StoreError> {
    unpack_atomic(artifact, dest, false).and_then(|won| {
        if won {
            Ok(())
        } else {
            Err(StoreError::io(
                dest,
                io::Error::new(io::ErrorKind::AlreadyExists, "destination already exists"),
            ))
        }
    })
}

/// Extracts `artifact` into a fresh temporary directory `.tmp-<stem>-…` in `parent` (mode 0755),
/// removed on drop unless the caller renames it away and disarms the guard. With `durable`, the
/// file system is synced, so that a crash after the caller's rename cannot leave an incomplete
/// tree behind the published name.
pub(crate) fn unpack_to_temp(
    artifact: &Path,
    parent: &Path,
    stem: &str,
    durable: bool,
) -> Result<TempDirGuard, StoreError> {
    let tmp = TempDirGuard::new_in(parent, stem).at(parent)?;
    unpack_into(artifact, tmp.path())?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).at(tmp.path())?;
    if durable {
        syncfs(tmp.path())?;
    }
    Ok(tmp)
}

/// Extracts into a temp dir next to `dest` and renames it to `dest`.
/// Returns `Ok(false)` if `dest` appeared meanwhile (another extractor won;
/// our copy is discarded). With `durable`, the file system is synced before
/// the rename so that a crash cannot leave a published but incomplete tree.
pub(crate) fn unpack_atomic(artifact: &Path, dest: &Path, durable: bool) -> Result<bool, StoreError> {
    if dest.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let parent = parent_dir(dest);
    let tmp = unpack_to_temp(artifact, &parent, &stem_of(dest), durable)?;
    match rename_noreplace(tmp.path(), dest) {
        Ok(()) => {
            tmp.disarm();
            if durable {
                fsync_dir(&parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::io(dest, e)),
    }
}

/// The file name of `dest`, for naming temporary siblings.
pub(crate) fn stem_of(dest: &Path) -> String {
    dest.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unpack".into())
}

/// Extracts `artifact` into the existing directory `dir`.
fn unpack_into(artifact: &Path, dir: &Path) -> Result<(), StoreError> {
    let file = File::open(artifact).at(artifact)?;
    let decoder = zstd::Decoder::new(file).at(artifact)?;
    let mut archive = tar::Archive::new(decoder);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    // SAFETY: geteuid has no preconditions.
    archive.set_preserve_ownerships(unsafe { libc::geteuid() } == 0);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    archive.set_mask(0);

    // Like tar::Archive::unpack, directories are applied last and deepest
    // first, so that read-only directories do not prevent the extraction of
    // their content; then their mtimes are set (tar does not).
    let mut dirs = Vec::new();
    let mut dir_times = Vec::new();
    for entry in archive.entries().at(artifact)? {
        let mut entry = entry.map_err(|e| StoreError::io(artifact, e))?;
        if entry.header().entry_type() == tar::EntryType::Directory {
            let path = entry.path().at(artifact)?.into_owned();
            let mtime = entry.header().mtime().at(artifact)?;
            dir_times.push((path.clone(), mtime));
            dirs.push((path, entry));
        } else {
            entry.unpack_in(dir).map_err(|e| StoreError::io(artifact, e))?;
        }
    }
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, mut entry) in dirs {
        entry.unpack_in(dir).map_err(|e| StoreError::io(artifact, e))?;
    }
    for (path, mtime) in dir_times {
        let full = dir.join(&path);
        set_mtime(&full, mtime).at(&full)?;
    }

    // Read to the end so that zstd verifies the frame checksum.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink())
        .map_err(|e| StoreError::corrupt(artifact, format!("trailing data: {e}")))?;
    Ok(())
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Sets atime and mtime of `path` (not following symlinks).
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let c = cpath(path)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flushes the whole file system containing `path` to stable storage.
pub(crate) fn syncfs(path: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).at(path)?;
    // SAFETY: `dir` is an open file descriptor.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(StoreError::io(path, io::Error::last_os_error()));
    }
    Ok(())
}
