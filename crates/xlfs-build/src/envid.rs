//! The identity of the build environments, part of every package key: a change of the build
//! machine's compiler rebuilds what it compiled.

use sha2::{Digest, Sha256};
use std::process::Command;
use xlfs_plan::EnvIds;

/// Bump when the sandbox layout or build environment variables change.
pub const ENGINE_ENV_VERSION: &str = "xlfs-env-1";

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{cmd}: missing"))
}

const TOOLS: [&str; 4] = ["cc", "ld", "make", "bash"];

/// Where each tool resolves on PATH, with the size and mtime of the file: if none of these
/// changed, neither did the toolchain, and the cached identity is reused.
fn fingerprint() -> String {
    use std::os::unix::fs::MetadataExt;
    let path = std::env::var("PATH").unwrap_or_default();
    let mut out = String::from(ENGINE_ENV_VERSION);
    for tool in TOOLS {
        let found = path
            .split(':')
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .and_then(|p| std::fs::canonicalize(&p).ok());
        match found.and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m))) {
            Some((p, m)) => out.push_str(&format!("|{}:{}:{}", p.display(), m.size(), m.mtime())),
            None => out.push_str(&format!("|{tool}:missing")),
        }
    }
    out
}

/// The environment identities, cached in `cache` (a file in the xlfs home) while the
/// toolchain's binaries are unchanged, so that planning does not spawn four processes.
pub fn probe_cached(cache: &std::path::Path) -> EnvIds {
    let fp = fingerprint();
    if let Ok(text) = std::fs::read_to_string(cache) {
        let mut lines = text.lines();
        if let (Some(f), Some(h), Some(c)) = (lines.next(), lines.next(), lines.next()) {
            if f == fp {
                return EnvIds {
                    host: h.to_string(),
                    chroot: c.to_string(),
                };
            }
        }
    }
    let ids = probe();
    let tmp = cache.with_extension("tmp");
    if std::fs::write(&tmp, format!("{fp}\n{}\n{}\n", ids.host, ids.chroot)).is_ok() {
        let _ = std::fs::rename(&tmp, cache);
    }
    ids
}

/// Probe the build machine's toolchain (cc, ld, make, bash).
pub fn probe() -> EnvIds {
    let mut h = Sha256::new();
    h.update(ENGINE_ENV_VERSION);
    for cmd in TOOLS {
        h.update(first_line(cmd, &["--version"]));
        h.update("\n");
    }
    EnvIds {
        host: format!("host-{}", &hex::encode(h.finalize())[..16]),
        chroot: format!("chroot-{ENGINE_ENV_VERSION}"),
    }
}
