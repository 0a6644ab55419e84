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

/// Probe the build machine's toolchain (cc, ld, make, bash).
pub fn probe() -> EnvIds {
    let mut h = Sha256::new();
    h.update(ENGINE_ENV_VERSION);
    for (cmd, args) in [
        ("cc", &["--version"][..]),
        ("ld", &["--version"][..]),
        ("make", &["--version"][..]),
        ("bash", &["--version"][..]),
    ] {
        h.update(first_line(cmd, args));
        h.update("\n");
    }
    EnvIds {
        host: format!("host-{}", &hex::encode(h.finalize())[..16]),
        chroot: format!("chroot-{ENGINE_ENV_VERSION}"),
    }
}
