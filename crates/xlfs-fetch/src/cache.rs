//! Hashing, and the `FILE.verified` sidecars that make repeated cache checks cheap.
//!
//! A sidecar records the sha256 of `FILE` together with the identity `FILE` had
//! when it was hashed: device and inode, size, modification time and status
//! change time (ctime). While all of these are unchanged, the recorded sha256
//! is trusted and the file is not read again. Writing to the file changes its
//! ctime, and ctime cannot be set back from user space (`touch -d` and
//! `utimensat` restore mtime, and change ctime themselves), so a changed byte
//! is caught even when its mtime is restored.
//!
//! Timestamps tick at the kernel's coarse clock, so a change within the same
//! tick as the hashing could keep ctime equal. As git does for its index
//! ("racy git"), a sidecar is only trusted when the file's ctime is strictly
//! older than the sidecar itself; otherwise the file is hashed again.

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

/// The identity of a file that a sidecar binds its sha256 to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    /// `DEV:INODE`.
    inode: String,
    size: u64,
    mtime: String,
    ctime: String,
}

/// `None` when the platform gives no usable times (then nothing is trusted).
fn stamp(meta: &Metadata) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(Stamp {
        inode: format!("{}:{}", meta.dev(), meta.ino()),
        size: meta.len(),
        mtime: format!("{}.{:09}", mtime.as_secs(), mtime.subsec_nanos()),
        ctime: format!("{}.{:09}", meta.ctime(), meta.ctime_nsec()),
    })
}

/// What a sidecar says, if it is well-formed and complete.
struct Sidecar {
    sha256: String,
    stamp: Stamp,
}

fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let text = fs::read_to_string(sidecar_path(path)).ok()?;
    let (mut sha256, mut inode, mut size, mut mtime, mut ctime) = (None, None, None, None, None);
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("sha256", v)) => sha256 = Some(v.trim().to_string()),
            Some(("inode", v)) => inode = Some(v.trim().to_string()),
            Some(("size", v)) => size = v.trim().parse().ok(),
            Some(("mtime", v)) => mtime = Some(v.trim().to_string()),
            Some(("ctime", v)) => ctime = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Some(Sidecar {
        sha256: sha256?,
        stamp: Stamp {
            inode: inode?,
            size: size?,
            mtime: mtime?,
            ctime: ctime?,
        },
    })
}

/// Whether the file's ctime is strictly older than the sidecar's mtime, so that any later
/// change of the file shows as a different ctime (see the module documentation).
fn settled(meta: &Metadata, sidecar: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(side) = fs::metadata(sidecar) else {
        return false;
    };
    (meta.ctime(), meta.ctime_nsec()) < (side.mtime(), side.mtime_nsec())
}

/// Record that `path` (as it is now) has sha256 `sha256`.
///
/// Written to a unique temporary name and renamed, so concurrent writers
/// (other threads or processes checking the same file) never leave a torn sidecar.
pub(crate) fn write_sidecar(path: &Path, sha256: &str) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(st) = stamp(&fs::metadata(path)?) else {
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
        write!(
            f,
            "sha256 {sha256}\ninode {}\nsize {}\nmtime {}\nctime {}\n",
            st.inode, st.size, st.mtime, st.ctime
        )?;
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
/// Trusts a sidecar whose identity (inode, size, mtime, ctime) matches the
/// file's and that is newer than the file's last change; otherwise hashes the
/// file and, when it did not change while being read, writes a sidecar so the
/// next check is cheap. When the sidecar is current but records a different
/// hash, the answer is "no" without reading the file.
pub(crate) fn is_verified(path: &Path, expected: &str) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let before = stamp(&meta);
    if let (Some(st), Some(side)) = (&before, read_sidecar(path)) {
        if side.stamp == *st && settled(&meta, &sidecar_path(path)) {
            return side.sha256 == expected;
        }
    }
    match sha256_file(path) {
        Ok(actual) => {
            let after = fs::metadata(path).ok().and_then(|m| stamp(&m));
            if before.is_some() && after == before {
                if let Err(e) = write_sidecar(path, &actual) {
                    tracing::debug!("cannot write sidecar for {}: {e}", path.display());
                }
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
        assert!(text.starts_with(&format!("sha256 {EMPTY_SHA}\ninode ")), "{text}");
        assert!(
            text.contains("\nsize 0\nmtime ") && text.contains("\nctime "),
            "{text}"
        );
        assert!(is_verified(&f, EMPTY_SHA));
        assert!(!is_verified(&f, &"0".repeat(64)));
        assert!(!is_verified(&dir.path().join("missing"), EMPTY_SHA));
        assert!(!is_verified(dir.path(), EMPTY_SHA));
        // Only the sidecar itself is left besides the file: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// A byte changed in place (same inode, same size) with its mtime put back, as `touch -d`
    /// would: the ctime differs, so the file is hashed again and rejected.
    #[test]
    fn a_changed_byte_is_caught_even_with_the_mtime_restored() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.tar");
        fs::write(&f, b"hello world").unwrap();
        let good = sha256_file(&f).unwrap();
        let meta = fs::metadata(&f).unwrap();
        let (ino, mtime) = (
            std::os::unix::fs::MetadataExt::ino(&meta),
            meta.modified().unwrap(),
        );
        // The first check hashes and writes the sidecar; wait a tick so that it is trusted.
        assert!(is_verified(&f, &good));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(is_verified(&f, &good));
        assert!(read_sidecar(&f).is_some());

        let file = fs::OpenOptions::new().write(true).open(&f).unwrap();
        file.write_all_at(b"j", 0).unwrap();
        // futimens(2), i.e. utimensat on the open file: mtime back to what it was.
        file.set_modified(mtime).unwrap();
        drop(file);
        let now = fs::metadata(&f).unwrap();
        assert_eq!(now.modified().unwrap(), mtime);
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&now), ino);
        assert_eq!(now.len(), 11);

        assert!(!is_verified(&f, &good));
        assert_eq!(read_sidecar(&f).unwrap().sha256, sha256_file(&f).unwrap());
    }

    /// A file changed in the same clock tick as its sidecar is not trusted on the stamp alone.
    #[test]
    fn a_sidecar_as_new_as_the_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.tar");
        fs::write(&f, b"a").unwrap();
        // A forged sidecar claiming another hash, written right after the file: if it were
        // trusted, the answer would be "yes" for the wrong hash.
        let st = stamp(&fs::metadata(&f).unwrap()).unwrap();
        fs::write(
            sidecar_path(&f),
            format!(
                "sha256 {EMPTY_SHA}\ninode {}\nsize {}\nmtime {}\nctime {}\n",
                st.inode, st.size, st.mtime, st.ctime
            ),
        )
        .unwrap();
        let side = fs::metadata(sidecar_path(&f)).unwrap();
        let file = fs::metadata(&f).unwrap();
        // Make the sidecar as old as the file's ctime, as within one tick.
        let ctime = UNIX_EPOCH
            + std::time::Duration::new(
                std::os::unix::fs::MetadataExt::ctime(&file) as u64,
                std::os::unix::fs::MetadataExt::ctime_nsec(&file) as u32,
            );
        File::options()
            .write(true)
            .open(sidecar_path(&f))
            .unwrap()
            .set_modified(ctime)
            .unwrap();
        assert!(side.len() > 0);
        assert!(!is_verified(&f, EMPTY_SHA));
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
