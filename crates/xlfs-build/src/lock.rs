//! One `xlfs build` (or `gc`) at a time per home: an exclusive lock on `HOME/lock`.
//! A second run waits for the first (saying who holds the lock) or, with `--no-wait`, refuses.

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
    match file.try_lock() {
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
            file.lock().map_err(io)?;
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "xlfs {what}, pid {}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(HomeLock { _file: file })
}
