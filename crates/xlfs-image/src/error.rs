//! Error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while assembling a root file system or
/// writing/reading an image.
///
/// Every variant names what it is about (a path inside the root file system,
/// a file on the host, or an external tool), so that a message printed to the
/// user says *where* things went wrong and not only *what*.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O operation on a host file failed.
    #[error("{path}: {source}")]
    Io {
        /// The host file or directory the failing operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A path inside the root file system is not acceptable (absolute after
    /// normalisation, contains `..`, `.`, empty components, NUL or newline,
    /// or a component longer than 255 bytes).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node would have to be created below something that is not a
    /// directory, or a directory would be replaced by a non-directory.
    #[error("{path}: {reason}")]
    NotADirectory {
        /// The path inside the root file system.
        path: String,
        /// Details (which parent is not a directory, ...).
        reason: String,
    },
    /// Two artifacts provide the same path with different content, type or
    /// attributes.
    #[error("{path}: provided by both {first} and {second} with different {what}")]
    Conflict {
        /// The path inside the root file system.
        path: String,
        /// Owner (package) that provided the path first.
        first: String,
        /// Owner (package) that tried to provide it again.
        second: String,
        /// What differs ("content", "type", "mode/owner", ...).
        what: String,
    },
    /// An artifact tree on disk does not match its manifest.
    #[error("artifact {owner}: {path}: {reason}")]
    Artifact {
        /// The package the artifact belongs to.
        owner: String,
        /// The manifest path (relative) that is wrong.
        path: String,
        /// What is wrong (missing on disk, wrong type, size mismatch, ...).
        reason: String,
    },
    /// An external tool could not be started.
    #[error("cannot run {tool}: {source}")]
    ToolMissing {
        /// Name of the tool (`mke2fs`, `debugfs`, ...).
        tool: String,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// An external tool failed (non-zero exit status or error messages).
    #[error("{tool} failed on {image}: {status}\n{stderr}")]
    Tool {
        /// Name of the tool (`mke2fs`, `debugfs`, `e2fsck`).
        tool: String,
        /// The image the tool worked on.
        image: PathBuf,
        /// Exit status, or a short description of why the run is considered
        /// failed.
        status: String,
        /// What the tool printed on stderr (and stdout for e2fsck).
        stderr: String,
    },
    /// An archive or tool output could not be parsed.
    #[error("{path}: malformed {format}: {reason}")]
    Malformed {
        /// The file that was being read.
        path: PathBuf,
        /// What was being parsed (`cpio archive`, `debugfs output`, ...).
        format: String,
        /// What is wrong.
        reason: String,
    },
    /// Something cannot be represented in the requested image format
    /// (file too large for cpio, mtime beyond 2106, bad UUID, ...).
    #[error("{what}: {reason}")]
    Unsupported {
        /// The object (path, option) concerned.
        what: String,
        /// Why it cannot be written.
        reason: String,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        ImageError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl AsRef<Path>, format: &str, reason: impl Into<String>) -> Self {
        ImageError::Malformed {
            path: path.as_ref().to_path_buf(),
            format: format.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::Unsupported {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Attaches a host path to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Converts the error into [`ImageError::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(path, e))
    }
}
