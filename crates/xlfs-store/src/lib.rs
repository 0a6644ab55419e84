//! Deterministic artifacts and a content-addressed artifact store for xlfs.
//!
//! Every package xlfs builds is installed into a DESTDIR, which [`pack`]
//! turns into a byte-reproducible `.tar.zst` artifact plus a [`Manifest`]
//! (paths, kinds, modes, owners, sizes, sha256s, ELF `DT_NEEDED`). Artifacts
//! are published under the package's key in an [`ArtifactStore`]; the
//! [`LocalStore`] keeps them in a directory and can hand out extracted trees
//! ([`LocalStore::tree`]) to be used as sysroot layers.
//!
//! ```no_run
//! use std::path::Path;
//! use xlfs_store::{pack, ArtifactStore, LocalStore, PackOptions};
//!
//! # fn main() -> Result<(), xlfs_store::StoreError> {
//! let store = LocalStore::open("/var/cache/xlfs/store".into())?;
//! let key = "0".repeat(64); // computed by the caller
//! let opts = PackOptions { mtime: 1_700_000_000, ..PackOptions::default() };
//! let packed = pack(Path::new("/tmp/destdir"), Path::new("/tmp/zlib.tar.zst"), &opts)?;
//! store.put(&key, Path::new("/tmp/zlib.tar.zst"), &packed)?;
//! let sysroot_layer = store.tree(&key)?;
//! # let _ = sysroot_layer;
//! # Ok(())
//! # }
//! ```

mod elf;
pub use elf::{inspect as inspect_elf, ElfInfo};
mod error;
mod fsutil;
mod manifest;
mod pack;
mod stamps;
mod store;
mod unpack;

pub use error::StoreError;
pub use manifest::{Attr, Entry, Kind, Manifest};
pub use pack::{pack, PackOptions, Packed, DEFAULT_ZSTD_LEVEL};
pub use store::{check_contents, validate_key, ArtifactStore, LocalStore};
pub use unpack::unpack_artifact;
