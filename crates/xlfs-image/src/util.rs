//! Small helpers shared by the writers.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{ImageError, IoContext};

/// A temporary file next to the final output, renamed over it only once
/// complete, so that a failure never leaves a complete-looking image. The
/// temporary file is deleted if dropped without [`TempOutput::finish`].
pub(crate) struct TempOutput {
    tmp: NamedTempFile,
    out: PathBuf,
}

impl TempOutput {
    /// Creates `.NAME.XXXXXX.tmp` in the directory of `out`.
    pub(crate) fn new(out: &Path) -> Result<TempOutput, ImageError> {
        let dir = parent_dir(out);
        let name = out
            .file_name()
            .ok_or_else(|| ImageError::unsupported(out.display().to_string(), "output has no file name"))?
            .to_string_lossy()
            .into_owned();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .at(&dir)?;
        Ok(TempOutput {
            tmp,
            out: out.to_path_buf(),
        })
    }

    /// Path of the temporary file.
    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The open temporary file.
    pub(crate) fn file(&self) -> &fs::File {
        self.tmp.as_file()
    }

    /// Makes the file world-readable (0644), syncs it and renames it to the
    /// final output path.
    pub(crate) fn finish(self) -> Result<(), ImageError> {
        let path = self.tmp.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).at(&path)?;
        self.tmp.as_file().sync_all().at(&path)?;
        self.tmp
            .persist(&self.out)
            .map_err(|e| ImageError::io(&self.out, e.error))?;
        Ok(())
    }
}

/// The directory containing `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
