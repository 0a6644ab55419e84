//! Hashing, and the `FILE.verified` sidecars that make repeated cache checks cheap.
//!
//! A sidecar records the sha256 of `FILE` together with the size and
//! modification time `FILE` had when it was hashed. While size and mtime are
//! unchanged, the recorded sha256 is trusted and the file is not read again.

use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// Buffer size for reading and copying files.
pub(crate) const BUF_SIZE: usize = 256 * 1024;

/// The sidecar path of a cached file: `FILE.verified`.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    with_suffix(path, ".verified")
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Lowercase hex sha256 of a file (the one helper, [`xlfs_util::sha256_file`]).
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    xlfs_util::sha256_file(path).map(|(sha, _)| sha)
}

/// Size and modification time of a file, as recorded in a sidecar.
/// `None` when the platform gives no usable mtime (then nothing is trusted).
fn stamp(meta: &Metadata) -> Option<(u64, String)> {
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((
        meta.len(),
        format!("{}.{:09}", mtime.as_secs(), mtime.subsec_nanos()),
    ))
}

/// What a sidecar says, if it is well-formed.
struct Sidecar {
    sha256: String,
    size: u64,
    mtime: String,
}

fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let text = fs::read_to_string(sidecar_path(path)).ok()?;
    let (mut sha256, mut size, mut mtime) = (None, None, None);
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("sha256", v)) => sha256 = Some(v.trim().to_string()),
            Some(("size", v)) => size = v.trim().parse().ok(),
            Some(("mtime", v)) => mtime = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some(Sidecar {
        sha256: sha256?,
        size: size?,
        mtime: mtime?,
    })
}

/// Record that `path` (as it is now) has sha256 `sha256`.
///
/// Written to a unique temporary name and renamed, so concurrent writers
/// (other threads or processes checking the same file) never leave a torn sidecar.
pub(crate) fn write_sidecar(path: &Path, sha256: &str) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some((size, mtime)) = stamp(&fs::metadata(path)?) else {
        return Ok(());
    };
    let sidecar = sidecar_path(path);
    let tmp = with_suffix(
        &sidecar,
        &format!(
            ".tmp{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
    );
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write!(f, "sha256 {sha256}\nsize {size}\nmtime {mtime}\n")?;
        drop(f);
        fs::rename(&tmp, &sidecar)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Remove the sidecar of `path`, if any.
pub(crate) fn remove_sidecar(path: &Path) -> io::Result<()> {
    remove_if_exists(&sidecar_path(path))
}

/// Remove a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a regular file whose content has sha256 `expected`
/// (lowercase hex).
///
/// Trusts a matching sidecar; otherwise hashes the file and, on a match,
/// writes a sidecar so the next check is cheap. When the sidecar is current
/// but records a different hash, the answer is "no" without reading the file.
pub(crate) fn is_verified(path: &Path, expected: &str) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    if let (Some((size, mtime)), Some(side)) = (stamp(&meta), read_sidecar(path)) {
        if side.size == size && side.mtime == mtime {
            return side.sha256 == expected;
        }
    }
    match sha256_file(path) {
        Ok(actual) => {
            if let Err(e) = write_sidecar(path, &actual) {
                tracing::debug!("cannot write sidecar for {}: {e}", path.display());
            }
            actual == expected
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_and_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.tar");
        fs::write(&f, b"").unwrap();
        assert_eq!(sha256_file(&f).unwrap(), EMPTY_SHA);
        assert!(!sidecar_path(&f).exists());
        assert!(is_verified(&f, EMPTY_SHA));
        let text = fs::read_to_string(sidecar_path(&f)).unwrap();
        assert!(text.starts_with(&format!("sha256 {EMPTY_SHA}\nsize 0\nmtime ")));
        assert!(is_verified(&f, EMPTY_SHA));
        assert!(!is_verified(&f, &"0".repeat(64)));
        assert!(!is_verified(&dir.path().join("missing"), EMPTY_SHA));
        assert!(!is_verified(dir.path(), EMPTY_SHA));
        // Only the sidecar itself is left besides the file: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn suffixes() {
        assert_eq!(
            sidecar_path(Path::new("/c/zlib-1.3.1.tar.xz")),
            Path::new("/c/zlib-1.3.1.tar.xz.verified")
        );
        assert_eq!(
            with_suffix(Path::new("/c/a.b"), ".part"),
            Path::new("/c/a.b.part")
        );
    }
}
