//! The pinned toolchain root of the `host` environment, as sbuild makes its build chroots: a
//! Debian root made by `mmdebstrap --variant=buildd` (build-essential) plus the packages the book
//! lists in `[toolchain.host]`, from the Debian mirror apt is configured with (or
//! `--debian-mirror`). It is made once, in a temporary directory renamed into place, and kept in
//! `TOOLCHAINS/<suite>-<spec>/`:
//!
//! | file          | what                                                              |
//! |---------------|-------------------------------------------------------------------|
//! | `root/`       | the root; builds see its `/usr`, `/etc`, ... read-only            |
//! | `identity`    | the environment identity in the keys ([`crate::envid::toolchain_identity`]) |
//! | `packages`    | its installed packages, `name version architecture` a line        |
//! | `triple`      | its gcc's target triple                                           |
//!
//! Ownership: made by root, `mmdebstrap --mode=unshare` keeps the ids of the Debian packages
//! (files owned by uid 0, a few by Debian's system groups such as `shadow`); made by another user,
//! the files belong to the first subordinate uid/gid of that user (`/etc/subuid`), which is root
//! inside the namespace.
//!
//! The root's `/etc/ld.so.conf.d/00-xlfs-sysroot.conf` lists `/sysroot`'s library directories:
//! GNU ld reads `ld.so.conf` to resolve the `DT_NEEDED` entries of the shared libraries it links
//! against, so a library from a declared dependency that needs another one (libxenlight needs
//! libyajl) links without `-rpath-link` in each recipe.

use crate::envid::toolchain_identity;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use xlfs_book::HostToolchain;

/// The library directories of `/sysroot` for the linker's `DT_NEEDED` resolution.
pub const SYSROOT_LD_CONF: &str = "/sysroot/usr/lib\n/sysroot/usr/lib64\n/sysroot/lib\n";
const LD_CONF_NAME: &str = "etc/ld.so.conf.d/00-xlfs-sysroot.conf";

/// A created toolchain root.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub root: PathBuf,
    pub id: String,
    pub triple: String,
    pub packages: Vec<String>,
}

/// A short hash of what the book asks for (suite and packages): the name of its directory.
pub fn spec_id(t: &HostToolchain) -> String {
    spec_hash("xlfs-toolchain-1", "buildd", t)
}

/// A short hash of a pinned root's kind, mmdebstrap variant, suite and packages (the
/// toolchain root's and the tools root's directory names).
pub(crate) fn spec_hash(kind: &str, variant: &str, t: &HostToolchain) -> String {
    let mut h = Sha256::new();
    h.update(format!("{kind}\nsuite {}\nvariant {variant}\n", t.suite));
    for p in &t.packages {
        h.update(format!("package {p}\n"));
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// The directory of the toolchain `t` under `toolchains`.
pub fn dir(toolchains: &Path, t: &HostToolchain) -> PathBuf {
    toolchains.join(format!("{}-{}", t.suite, spec_id(t)))
}

/// The toolchain `t`, if it has been created.
pub fn load(toolchains: &Path, t: &HostToolchain) -> Option<Toolchain> {
    let d = dir(toolchains, t);
    let read = |f: &str| std::fs::read_to_string(d.join(f)).ok();
    let id = read("identity")?.trim().to_string();
    let triple = read("triple")?.trim().to_string();
    let packages = read("packages")?.lines().map(str::to_string).collect();
    let root = d.join("root");
    root.join("usr/bin").is_dir().then_some(Toolchain {
        root,
        id,
        triple,
        packages,
    })
}

/// The target triple of the root's gcc, as `gcc -dumpmachine` prints it: Debian's gcc keeps its
/// files in `usr/lib/gcc/TRIPLE/VERSION`.
pub fn target_triple(root: &Path) -> Result<String, String> {
    let gcc = root.join("usr/lib/gcc");
    let mut triples: Vec<String> = std::fs::read_dir(&gcc)
        .map_err(|e| {
            format!(
                "cannot read {}: {e}; is build-essential in the root?",
                gcc.display()
            )
        })?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    triples.sort();
    match triples.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "expected one target triple in {}, found {triples:?}",
            gcc.display()
        )),
    }
}

/// The toolchain `t`, created first if missing (this takes half a minute and downloads some
/// 200 MB from `mirror`). Concurrent callers wait for one creation. `say` reports progress.
pub fn ensure(
    toolchains: &Path,
    t: &HostToolchain,
    mirror: &str,
    say: &dyn Fn(&str),
) -> Result<Toolchain, String> {
    let final_dir = dir(toolchains, t);
    create_once(
        toolchains,
        &final_dir,
        "toolchain root",
        say,
        &|| load(toolchains, t),
        |tmp| fill_toolchain_root(tmp, &final_dir, t, mirror, say),
    )
}

/// Makes a pinned root once: locked against concurrent creators, filled by `fill` in a
/// temporary directory under `toolchains` that becomes `final_dir` only when complete and is
/// removed on any failure. `load` finds a finished root (before and after waiting).
pub(crate) fn create_once<T>(
    toolchains: &Path,
    final_dir: &Path,
    what: &str,
    say: &dyn Fn(&str),
    load: &dyn Fn() -> Option<T>,
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<T, String> {
    if let Some(done) = load() {
        return Ok(done);
    }
    std::fs::create_dir_all(toolchains)
        .map_err(|e| format!("cannot create {}: {e}", toolchains.display()))?;
    let name = final_dir.file_name().unwrap().to_string_lossy().to_string();
    let _lock = crate::lock::lock(&toolchains.join(format!("{name}.lock")), what, true, &|holder| {
        say(&format!("waiting for {holder} to create the {what}"))
    })
    .map_err(|e| e.to_string())?;
    if let Some(done) = load() {
        return Ok(done);
    }
    let tmp = toolchains.join(format!(".new-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(final_dir);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let guard = xlfs_util::TempDirGuard::adopt(tmp.clone());
    fill(&tmp)?;
    std::fs::rename(&tmp, final_dir)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), final_dir.display()))?;
    guard.disarm();
    load().ok_or_else(|| format!("the {what} {} is incomplete", final_dir.display()))
}

/// Run `mmdebstrap --mode=unshare --format=directory ARGS SUITE ROOT MIRROR`, its output in
/// `log`; on failure, the error holds the log's last lines.
pub(crate) fn mmdebstrap(
    args: &[String],
    suite: &str,
    root: &Path,
    mirror: &str,
    log: &Path,
) -> Result<(), String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let status = std::process::Command::new("mmdebstrap")
        .arg("--mode=unshare")
        .arg("--format=directory")
        .args(args)
        .arg(suite)
        .arg(root)
        .arg(mirror)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .status()
        .map_err(|e| {
            format!(
                "cannot run mmdebstrap: {e}; install it (`apt-get install mmdebstrap`, or `xlfs doctor --fix`)"
            )
        })?;
    if !status.success() {
        let tail = crate::package::tail(log, 15).join("\n");
        return Err(format!("mmdebstrap failed ({status}); its log:\n{tail}"));
    }
    Ok(())
}

/// Fills `tmp` with the toolchain root `t` (mmdebstrap) and its identity files.
fn fill_toolchain_root(
    tmp: &Path,
    final_dir: &Path,
    t: &HostToolchain,
    mirror: &str,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let root = tmp.join("root");
    say(&format!(
        "creating the toolchain root {} ({} + {} packages) from {mirror}",
        final_dir.display(),
        t.suite,
        t.packages.len()
    ));
    let started = Instant::now();
    let mut args = vec!["--variant=buildd".to_string()];
    if !t.packages.is_empty() {
        args.push(format!("--include={}", t.packages.join(",")));
    }
    // Written by a hook, which runs in mmdebstrap's user namespace: run by an ordinary user,
    // the root's files belong to its subordinate ids and the user could not write there itself.
    args.push(format!(
        "--customize-hook=printf '{}' > \"$1/{LD_CONF_NAME}\"",
        SYSROOT_LD_CONF.replace('\n', "\\n")
    ));
    mmdebstrap(&args, &t.suite, &root, mirror, &tmp.join("mmdebstrap.log"))?;
    let conf = root.join(LD_CONF_NAME);
    if std::fs::read_to_string(&conf).ok().as_deref() != Some(SYSROOT_LD_CONF) {
        return Err(format!("mmdebstrap's hook did not write {}", conf.display()));
    }
    let status_file = root.join("var/lib/dpkg/status");
    let dpkg = std::fs::read_to_string(&status_file)
        .map_err(|e| format!("cannot read {}: {e}", status_file.display()))?;
    let triple = target_triple(&root)?;
    let (id, packages) = toolchain_identity(&dpkg, &triple);
    let write = |f: &str, text: String| {
        std::fs::write(tmp.join(f), text).map_err(|e| format!("cannot write {}: {e}", tmp.join(f).display()))
    };
    write("identity", format!("{id}\n"))?;
    write("triple", format!("{triple}\n"))?;
    write("packages", packages.iter().map(|p| format!("{p}\n")).collect())?;
    say(&format!(
        "toolchain root ready in {:.1}s: {} packages, {triple}, {id}",
        started.elapsed().as_secs_f64(),
        packages.len()
    ));
    Ok(())
}

/// What changed between two toolchains' package lists: `+new`, `-gone`, `name old -> new`.
pub fn diff(old: &[String], new: &[String]) -> Vec<String> {
    use std::collections::BTreeMap;
    let split = |l: &[String]| -> BTreeMap<String, String> {
        l.iter()
            .filter_map(|s| s.split_once(' ').map(|(n, r)| (n.to_string(), r.to_string())))
            .collect()
    };
    let (a, b) = (split(old), split(new));
    let mut out = Vec::new();
    for (n, v) in &b {
        match a.get(n) {
            None => out.push(format!("+{n} {v}")),
            Some(o) if o != v => out.push(format!("{n} {o} -> {v}")),
            _ => {}
        }
    }
    for (n, v) in &a {
        if !b.contains_key(n) {
            out.push(format!("-{n} {v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_id_follows_suite_and_packages() {
        let a = HostToolchain {
            suite: "bookworm".into(),
            packages: vec!["bc".into()],
        };
        let mut b = a.clone();
        b.packages.push("flex".into());
        let mut c = a.clone();
        c.suite = "trixie".into();
        assert_ne!(spec_id(&a), spec_id(&b));
        assert_ne!(spec_id(&a), spec_id(&c));
        assert_eq!(spec_id(&a), spec_id(&a.clone()));
    }

    #[test]
    fn diff_names_changes() {
        let old = vec![
            "bc 1 amd64".to_string(),
            "gcc 12.1 amd64".into(),
            "old 1 amd64".into(),
        ];
        let new = vec![
            "bc 1 amd64".to_string(),
            "gcc 12.2 amd64".into(),
            "new 2 amd64".into(),
        ];
        assert_eq!(
            diff(&old, &new),
            ["gcc 12.1 amd64 -> 12.2 amd64", "+new 2 amd64", "-old 1 amd64"]
        );
    }
}
