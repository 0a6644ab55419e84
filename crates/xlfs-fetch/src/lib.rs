//! Put pinned source files into a download cache, verified by sha256.
//!
//! A [`SourceRef`] names a file, its sha256 and the places it can come from:
//! upstream URLs, optionally the Debian archive (whose copy may be a repack
//! with another name and hash, see [`DebianRef`]) and local mirror directories
//! (see [`Mirrors`]). A [`Fetcher`] makes such a file available in its cache
//! directory, trying the places in order and never leaving anything
//! unverified under a file's final name.
//!
//! Layout of the cache directory, for a file `FILE`:
//!
//! | path            | meaning                                                   |
//! |-----------------|-----------------------------------------------------------|
//! | `FILE`          | the verified file (only ever created by an atomic rename) |
//! | `FILE.verified` | sidecar: sha256, size and mtime of `FILE` when last hashed |
//! | `FILE.part`     | a download in progress, resumed with an HTTP range request |
//! | `FILE.lock`     | lock file serialising fetches of `FILE` across processes  |
//!
//! ```no_run
//! use xlfs_fetch::{Fetcher, Mirrors, SourceRef};
//!
//! let fetcher = Fetcher::new("/var/cache/xlfs/sources".into(), Mirrors::system(), false);
//! let zlib = SourceRef {
//!     file: "zlib-1.3.1.tar.xz".into(),
//!     sha256: "38ef96b8dfe510d42707d9c781877914792541133e1870841463bfa73f883e32".into(),
//!     urls: vec!["https://zlib.net/zlib-1.3.1.tar.xz".into()],
//!     debian: None,
//! };
//! let got = fetcher.fetch(&zlib, &|done, total| eprintln!("{done}/{total:?}"))?;
//! println!("{} from {}", got.path.display(), got.from);
//! # Ok::<(), xlfs_fetch::FetchError>(())
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod apt;
mod cache;
mod fetcher;
mod http;

pub use apt::{debian_base_from_apt, debian_pool_path};
pub use fetcher::{Fetcher, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT};
pub use http::Retries;

/// A source file's counterpart in the Debian archive.
///
/// Debian often repacks upstream tarballs (`zlib_1.3.dfsg+really1.3.1.orig.tar.gz`),
/// so the file name and the bytes may differ from upstream's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DebianRef {
    /// Debian source package name, e.g. `zlib`.
    pub package: String,
    /// File name in the package's pool directory.
    pub file: String,
    /// Lowercase hex sha256 of the Debian file.
    pub sha256: String,
}

/// A pinned source file and where it may be found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    /// File name in the cache (a plain name, no `/`).
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Upstream URLs, tried in order.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The Debian archive's copy, tried after the upstream URLs.
    #[serde(default)]
    pub debian: Option<DebianRef>,
}

/// Places to try besides a source's own URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirrors {
    /// Base URI of a Debian archive mirror, e.g. `http://HOST/debian`
    /// (see [`debian_base_from_apt`]).
    #[serde(default)]
    pub debian_base: Option<String>,
    /// Directories holding source files by name, tried last.
    #[serde(default)]
    pub local_dirs: Vec<PathBuf>,
}

impl Mirrors {
    /// The Debian mirror configured for apt under `apt_etc`, and no local dirs.
    pub fn from_apt(apt_etc: &Path) -> Self {
        Mirrors {
            debian_base: debian_base_from_apt(apt_etc),
            local_dirs: Vec::new(),
        }
    }

    /// The Debian mirror configured in this machine's `/etc/apt`, and no local dirs.
    pub fn system() -> Self {
        Self::from_apt(Path::new("/etc/apt"))
    }
}

/// A place a file can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A file on the local file system.
    Local(PathBuf),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Url(url) => f.write_str(url),
            Place::Local(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A failed try at one place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// The place tried (a URL or a path, see [`Place`]'s `Display`).
    pub place: String,
    /// Why it failed, e.g. `HTTP 404 Not Found` or `sha256 mismatch: expected X, got Y`.
    pub error: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.error)
    }
}

/// A file made available in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fetched {
    /// Path of the verified file in the cache.
    pub path: PathBuf,
    /// Its file name: the source's, or the Debian file's when that variant was used.
    pub file: String,
    /// Its sha256 (lowercase hex).
    pub sha256: String,
    /// Where it came from: `cache`, a URL or a local path.
    pub from: String,
    /// Bytes received over the network by this call (0 for cache hits and
    /// local copies; less than the size when a partial download was resumed).
    pub bytes_downloaded: u64,
}

/// Why a file could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Every place was tried and failed.
    #[error("{}", unavailable_message(.file, .sha256, .attempts))]
    Unavailable {
        /// The source's file name.
        file: String,
        /// The source's sha256.
        sha256: String,
        /// Each place tried, in order, with why it failed.
        attempts: Vec<Attempt>,
    },
    /// The file is not in the cache (nor in a local dir) and downloads are forbidden.
    #[error("{}", offline_message(.file, .cache, .attempts))]
    Offline {
        /// The source's file name.
        file: String,
        /// The cache directory.
        cache: PathBuf,
        /// Local dirs tried, if any.
        attempts: Vec<Attempt>,
    },
    /// Reading or writing the cache failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The [`SourceRef`] itself is unusable (bad file name or sha256).
    #[error("invalid source {file:?}: {reason}")]
    Invalid {
        /// The file name given.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

impl FetchError {
    /// The file the error is about.
    pub fn file(&self) -> String {
        match self {
            FetchError::Unavailable { file, .. }
            | FetchError::Offline { file, .. }
            | FetchError::Invalid { file, .. } => file.clone(),
            FetchError::Io { path, .. } => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        FetchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn short_sha(sha256: &str) -> String {
    match sha256.get(..8) {
        Some(short) if sha256.len() > 8 => format!("{short}…"),
        _ => sha256.to_string(),
    }
}

fn unavailable_message(file: &str, sha256: &str, attempts: &[Attempt]) -> String {
    let mut msg = format!("cannot get {file} (sha256 {}):", short_sha(sha256));
    if attempts.is_empty() {
        msg.push_str(" no place to get it from (no URLs, no Debian mirror, no local dirs)");
    }
    for a in attempts {
        msg.push_str(&format!("\n  - {a}"));
    }
    msg
}

fn offline_message(file: &str, cache: &Path, attempts: &[Attempt]) -> String {
    let mut msg = format!(
        "{file} is not in the download cache {} and offline mode forbids downloading it",
        cache.display()
    );
    if !attempts.is_empty() {
        msg.push_str("; local dirs tried:");
        for a in attempts {
            msg.push_str(&format!("\n  - {a}"));
        }
    }
    msg
}

/// Failures of [`Fetcher::fetch_all`]: one entry per file that could not be fetched.
#[derive(Debug, thiserror::Error)]
#[error("{}", fetch_all_message(.failures))]
pub struct FetchAllError {
    /// Each failed file's error, in the order the files were given.
    pub failures: Vec<FetchError>,
}

fn fetch_all_message(failures: &[FetchError]) -> String {
    let n = failures.len();
    let mut msg = format!("failed to fetch {n} file{}:", if n == 1 { "" } else { "s" });
    for failure in failures {
        let text = failure.to_string();
        let mut lines = text.lines();
        if let Some(first) = lines.next() {
            msg.push_str(&format!("\n- {first}"));
        }
        for line in lines {
            msg.push_str(&format!("\n  {line}"));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_lists_every_attempt() {
        let err = FetchError::Unavailable {
            file: "zlib-1.3.1.tar.xz".into(),
            sha256: "38ef96b8dfe510d42707d9c781877914792541133e1870841463bfa73f883e32".into(),
            attempts: vec![
                Attempt {
                    place: "https://zlib.net/zlib-1.3.1.tar.xz".into(),
                    error: "dns failed".into(),
                },
                Attempt {
                    place: "/srv/mirror/zlib-1.3.1.tar.xz".into(),
                    error: "not found".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "cannot get zlib-1.3.1.tar.xz (sha256 38ef96b8…):\n  \
             - https://zlib.net/zlib-1.3.1.tar.xz: dns failed\n  \
             - /srv/mirror/zlib-1.3.1.tar.xz: not found"
        );
        let all = FetchAllError {
            failures: vec![
                err,
                FetchError::Invalid {
                    file: "a/b".into(),
                    reason: "not a plain file name".into(),
                },
            ],
        };
        assert_eq!(
            all.to_string(),
            "failed to fetch 2 files:\n\
             - cannot get zlib-1.3.1.tar.xz (sha256 38ef96b8…):\n    \
             - https://zlib.net/zlib-1.3.1.tar.xz: dns failed\n    \
             - /srv/mirror/zlib-1.3.1.tar.xz: not found\n\
             - invalid source \"a/b\": not a plain file name"
        );
    }

    #[test]
    fn place_display() {
        assert_eq!(Place::Url("http://h/x".into()).to_string(), "http://h/x");
        assert_eq!(Place::Local("/srv/x".into()).to_string(), "/srv/x");
    }
}
