//! Shared artifact caches on S3-compatible object stores, with signed artifacts.
//!
//! A home's local store stays the first level; caches configured in `HOME/cache.toml`
//! ([`config`]) come second. Artifacts uploaded to a cache carry a detached ed25519 signature
//! over their key, sha256, size and manifest hash ([`sign`]); a downloaded artifact is installed
//! only when a trusted key signed it and its bytes and manifest are what was signed ([`s3`]).
//! Credentials come from the environment or the AWS files ([`creds`]) and are never printed.

pub mod config;
pub mod creds;
pub mod s3;
pub mod seaweed;
pub mod sign;

pub use config::{CacheConfig, Config};
pub use s3::{Downloaded, Fetched, S3Cache};
pub use sign::{Info, PublicKey, SecretKey};

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` through a synced temporary file with mode `mode`, renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    // The mode is set before anything is written: a secret is never readable by others.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Generates a signing key named `name` from the operating system's random source and writes
/// it to `path` (mode 0600). Refuses to replace an existing key unless `force`.
pub fn generate_key(path: &Path, name: &str, force: bool) -> Result<SecretKey, String> {
    if path.exists() && !force {
        return Err(format!(
            "{} already holds a signing key; pass --force to replace it (artifacts it signed stay \
             valid only where its public key stays trusted)",
            path.display()
        ));
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no random bytes from the system: {e}"))?;
    let key = SecretKey::from_seed(name, seed).map_err(|e| e.to_string())?;
    write_atomic(path, format!("{}\n", key.to_secret_string()).as_bytes(), 0o600)?;
    Ok(key)
}

/// The signing key in `path`, if there is one. A key file readable by others is refused.
pub fn load_key(path: &Path) -> Result<Option<SecretKey>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{}: the signing key is readable by others (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    SecretKey::parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.secret");
        let k = generate_key(&path, "host-a", false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_key(&path).unwrap().unwrap().public(), k.public());
        assert!(generate_key(&path, "host-a", false)
            .unwrap_err()
            .contains("--force"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_key(&path).unwrap_err().contains("chmod 600"));
        assert!(load_key(&dir.path().join("none")).unwrap().is_none());
    }
}
