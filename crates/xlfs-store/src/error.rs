//! Error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while packing, unpacking or storing artifacts.
///
/// Every variant names the path (or store key) it is about, so that a message
/// printed to the user says *where* things went wrong, not only *what*.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the failing operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tree to pack contains a block/char device, fifo or socket.
    #[error("{path}: refusing to pack a special file (device, fifo or socket)")]
    SpecialFile {
        /// Full path of the offending file.
        path: PathBuf,
    },
    /// A build installed a setuid/setgid file that its recipe does not declare.
    #[error(
        "{path}: the build installed it setuid/setgid (mode {mode:o}) but the recipe does not declare it; \
         if the bit is wanted, declare it in the recipe: [[file]] path = \"{rel}\" mode = \"{mode:04o}\"; \
         otherwise remove it in the install step (chmod ug-s)"
    )]
    UndeclaredSetid {
        /// Full path of the file.
        path: PathBuf,
        /// Its path in the artifact.
        rel: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A file owned by an id outside the build's user namespace.
    #[error("{path}: owned by {what} {id} outside the build's user namespace (files a build installs belong to ids 0-65535 inside it)")]
    UnmappedOwner {
        /// Full path of the file.
        path: PathBuf,
        /// `uid` or `gid`.
        what: &'static str,
        /// The outside id.
        id: u32,
    },
    /// A path (or symlink target) that cannot be represented in an artifact,
    /// e.g. a file name that is not valid UTF-8.
    #[error("{path}: unsupported path: {reason}")]
    InvalidPath {
        /// Full path of the offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file's content does not match what was expected (checksum or size
    /// mismatch, unparsable manifest, file changed while being packed, ...).
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file that is corrupt.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store has no (complete) artifact under this key.
    #[error("artifact {key} not found in store")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },
    /// A shared cache did not answer in time, could not be reached or refused the credentials.
    #[error("cache {cache}: {reason}")]
    Unavailable {
        /// The cache's name.
        cache: String,
        /// What went wrong (never credentials).
        reason: String,
    },
    /// An artifact of a shared cache was refused: its signature is missing or from an untrusted
    /// key, or its bytes or manifest are not what was signed.
    #[error("cache {cache}: artifact {key} refused: {reason}")]
    Refused {
        /// The cache's name.
        cache: String,
        /// The package key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The key cannot be used as a store key (it would escape the store's
    /// directories or clash with temporary files).
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`StoreError::Corrupt`].
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Attaches a path to an [`io::Result`], turning it into a [`StoreError::Io`].
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(path, source))
    }
}
