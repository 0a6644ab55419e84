//! The identity of the build environments, part of every package key.
//!
//! - `host`: the pinned toolchain root (see [`crate::toolchain`]): the sha256 over its installed
//!   Debian packages (name, version, architecture), its target triple and this engine's
//!   environment version. Nothing of the build machine itself is probed.
//! - `chroot`: the root is made only of the declared dependencies, whose keys are in the key
//!   already; the identity is the engine's environment version alone.

use sha2::{Digest, Sha256};
use xlfs_plan::EnvIds;

/// Bump when the sandbox layout or build environment variables change.
pub const ENGINE_ENV_VERSION: &str = "xlfs-env-3";

/// The identity of a toolchain root from the text of its dpkg status file and its target triple:
/// `(id, packages)`, where `packages` are the installed packages as sorted
/// `name version architecture` lines.
pub fn toolchain_identity(dpkg_status: &str, triple: &str) -> (String, Vec<String>) {
    let packages = installed_packages(dpkg_status);
    let mut h = Sha256::new();
    h.update(format!("{ENGINE_ENV_VERSION}\ntarget {triple}\n"));
    for p in &packages {
        h.update(p);
        h.update("\n");
    }
    (format!("host-{}", hex::encode(h.finalize())), packages)
}

/// The installed packages of a dpkg status file, as sorted `name version architecture` lines.
pub fn installed_packages(dpkg_status: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in dpkg_status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
        };
        if field("Status") != Some("install ok installed") {
            continue;
        }
        if let (Some(p), Some(v), Some(a)) = (field("Package"), field("Version"), field("Architecture")) {
            out.push(format!("{p} {v} {a}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The identities: `host` is the toolchain root's identity (`None`: not created yet, and the
/// keys of host-built packages are provisional, named after the toolchain's spec).
pub fn env_ids(host: Option<&str>, spec_id: &str) -> EnvIds {
    EnvIds {
        host: match host {
            Some(id) => id.to_string(),
            None => format!("host-toolchain-{spec_id}-not-created"),
        },
        chroot: format!("chroot-{ENGINE_ENV_VERSION}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: gcc-12\nStatus: install ok installed\nArchitecture: amd64\n\
Version: 12.2.0-14\nDescription: x\n continued\n\nPackage: zlib1g-dev\nStatus: deinstall ok config-files\n\
Architecture: amd64\nVersion: 1:1.2.13\n\nPackage: bash\nStatus: install ok installed\n\
Architecture: amd64\nVersion: 5.2.15-2+b8\n";

    #[test]
    fn installed_packages_only_and_sorted() {
        assert_eq!(
            installed_packages(STATUS),
            ["bash 5.2.15-2+b8 amd64", "gcc-12 12.2.0-14 amd64"]
        );
    }

    #[test]
    fn identity_covers_versions_architectures_and_target() {
        let (id, _) = toolchain_identity(STATUS, "x86_64-linux-gnu");
        let newer = STATUS.replace("12.2.0-14", "12.2.0-15");
        let arm = STATUS.replace("amd64", "arm64");
        assert_ne!(
            id,
            toolchain_identity(&newer, "x86_64-linux-gnu").0,
            "a new gcc version"
        );
        assert_ne!(
            id,
            toolchain_identity(&arm, "x86_64-linux-gnu").0,
            "another architecture"
        );
        assert_ne!(
            id,
            toolchain_identity(STATUS, "aarch64-linux-gnu").0,
            "another target"
        );
        let extra = format!("{STATUS}\nPackage: libbz2-dev\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0.8-5+b1\n");
        assert_ne!(
            id,
            toolchain_identity(&extra, "x86_64-linux-gnu").0,
            "one more package"
        );
        // Order of the stanzas and other fields do not count.
        let reordered: Vec<&str> = STATUS.split("\n\n").collect();
        let reordered = [reordered[2], reordered[1], reordered[0]].join("\n\n");
        assert_eq!(id, toolchain_identity(&reordered, "x86_64-linux-gnu").0);
    }

    #[test]
    fn chroot_identity_probes_nothing() {
        let a = env_ids(Some("host-abc"), "spec");
        assert_eq!(a.chroot, format!("chroot-{ENGINE_ENV_VERSION}"));
        assert_eq!(a.host, "host-abc");
        assert_ne!(env_ids(None, "spec").host, a.host);
    }
}
