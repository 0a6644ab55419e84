//! Small helpers shared by every xlfs crate, kept in one place so that there is one of each:
//! - [`sha256_hex`], [`sha256_reader`] and [`sha256_file`]: lowercase hex sha256;
//! - [`HashReader`] and [`HashWriter`]: hash (and count) what passes through;
//! - [`TempDirGuard`]: a temporary directory removed on drop unless disarmed;
//! - [`rename_noreplace`], [`rename_exchange`] and [`replace_dir`]: atomic directory publishing,
//!   never "remove, then rename";
//! - [`unix_now`]: the time as seconds since the epoch, as the state database stores it;
//! - [`end_with_this_thread`]: a child process that gets a signal when its starter thread ends;
//! - `testing` (feature `testing`, for test suites): a system user with subordinate ids.

mod fs;
mod hash;
mod process;
#[cfg(feature = "testing")]
pub mod testing;

pub use fs::{
    force_remove_dir_all, rename_exchange, rename_noreplace, replace_dir, tmp_name, write_atomic,
    TempDirGuard, TMP_PREFIX,
};
pub use hash::{sha256_file, sha256_hex, sha256_reader, HashReader, HashWriter};
pub use process::end_with_this_thread;

/// Now, in whole seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
