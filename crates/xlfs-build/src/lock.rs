//! One `xlfs build` (or `gc`) at a time per home: an exclusive lock on `HOME/lock`.
//! A second run waits for the first (saying who holds the lock) or, with `--no-wait`, refuses.
//!
//! The readers of the store outside a build (`image`, `boot`) take `HOME/store.lock` shared
//! ([`lock_shared`]); the commands that delete from the store (`gc`, `verify`) take it
//! exclusively, so they wait until no image is being written or booted.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub struct HomeLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another xlfs ({holder}) is using {path}; wait for it to finish, or run without --no-wait to queue behind it")]
    Busy { path: String, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn holder(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "unknown process".into()
    } else {
        s.to_string()
    }
}

/// Take the lock. `wait`: block until it is free, calling `on_wait(holder)` once first.
pub fn lock(path: &Path, what: &str, wait: bool, on_wait: &dyn Fn(&str)) -> Result<HomeLock, LockError> {
    lock_as(path, what, wait, on_wait, false)
}

/// Take the lock shared with other shared holders (readers), waiting for an exclusive holder.
/// Shared holders do not write their name (there may be many): `on_wait` gets what the last
/// exclusive holder wrote.
pub fn lock_shared(
    path: &Path,
    what: &str,
    wait: bool,
    on_wait: &dyn Fn(&str),
) -> Result<HomeLock, LockError> {
    lock_as(path, what, wait, on_wait, true)
}

fn lock_as(
    path: &Path,
    what: &str,
    wait: bool,
    on_wait: &dyn Fn(&str),
    shared: bool,
) -> Result<HomeLock, LockError> {
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let tried = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match tried {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let h = holder(&mut file);
            if !wait {
                return Err(LockError::Busy {
                    path: path.display().to_string(),
                    holder: h,
                });
            }
            on_wait(&h);
            if shared {
                file.lock_shared().map_err(io)?;
            } else {
                file.lock().map_err(io)?;
            }
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    if shared {
        return Ok(HomeLock { _file: file });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "xlfs {what}, pid {}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(HomeLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_coexist_and_keep_the_exclusive_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("store.lock");
        let a = lock_shared(&p, "image", false, &|_| {}).unwrap();
        let b = lock_shared(&p, "boot", false, &|_| {}).unwrap();
        assert!(matches!(
            lock(&p, "gc", false, &|_| {}),
            Err(LockError::Busy { .. })
        ));
        drop(a);
        assert!(matches!(
            lock(&p, "gc", false, &|_| {}),
            Err(LockError::Busy { .. })
        ));
        drop(b);
        let gc = lock(&p, "gc", false, &|_| {}).unwrap();
        match lock_shared(&p, "image", false, &|_| {}) {
            Err(LockError::Busy { holder, .. }) => assert!(holder.contains("xlfs gc"), "{holder}"),
            other => panic!("expected busy, got {:?}", other.map(|_| ())),
        }
        drop(gc);
        lock_shared(&p, "image", false, &|_| {}).unwrap();
    }
}
