//! Stat stamps of an extracted tree: one line per entry (path, inode, size, mtime, ctime, mode,
//! owner), taken at extraction and compared before each use. A stat walk reads no file contents,
//! so the check is cheap; any write, chmod, chown, rename, addition or removal changes the ctime
//! of some entry (ctime cannot be set from user space) or the list itself.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::StoreError;

/// The stamps of every entry under (and including) `root`, in file-name order.
pub(crate) fn stamp_tree(root: &Path) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"xlfs-tree-stamps 1\n");
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            StoreError::io(&path, e.into())
        })?;
        let meta = entry
            .metadata()
            .map_err(|e| StoreError::io(entry.path(), e.into()))?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        out.extend_from_slice(rel.as_os_str().as_bytes());
        // NUL cannot occur in a path: the record is unambiguous.
        let _ = writeln!(
            out,
            "\0{} {} {}.{} {}.{} {:o} {} {}",
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.mode(),
            meta.uid(),
            meta.gid()
        );
    }
    Ok(out)
}
