//! `xlfs doctor`: is this machine ready to build and boot? Lists what is missing with the exact
//! command to install it, and installs it with `--fix`.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The package list shared with `scripts/host-deps.sh`.
const PACKAGES: &str = include_str!("../../../scripts/host-packages.txt");

pub struct Missing {
    pub package: String,
    pub check: String,
    pub why: String,
}

fn present(check: &str) -> bool {
    if check.starts_with('/') {
        return Path::new(check).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(check).is_file()))
        .unwrap_or(false)
}

/// Host packages that are missing, for `test` only or for everything.
pub fn missing(include_build: bool) -> Vec<Missing> {
    PACKAGES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (package, kind, check) = (f.next()?, f.next()?, f.next()?);
            let why = f.collect::<Vec<_>>().join(" ");
            (kind == "test" || include_build).then(|| Missing {
                package: package.to_string(),
                check: check.to_string(),
                why,
            })
        })
        .filter(|m| !present(&m.check))
        .collect()
}

fn install_command(missing: &[Missing]) -> String {
    let mut regular: Vec<&str> = Vec::new();
    let mut cmds = Vec::new();
    for m in missing {
        if m.package == "qemu-system-x86" {
            cmds.push(
                "apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86"
                    .to_string(),
            );
        } else {
            regular.push(&m.package);
        }
    }
    if !regular.is_empty() {
        cmds.insert(
            0,
            format!("apt-get install -y --no-install-recommends {}", regular.join(" ")),
        );
    }
    cmds.join(" && ")
}

/// Check the machine; with `fix`, install what is missing. Returns whether it is ready.
pub fn doctor(fix: bool, home: &Path, quiet: bool) -> Result<bool> {
    let mut ok = true;
    let say = |s: &str| {
        if !quiet {
            println!("{s}");
        }
    };
    // Root, or an ordinary user with subordinate ids and newuidmap/newgidmap (see README).
    match xlfs_sandbox::IdMap::for_current_user() {
        Ok(ids) if !ids.helper => {
            say("  ok      running as root (builds run as root of their own user namespace)")
        }
        Ok(ids) => {
            let helpers = ["newuidmap", "newgidmap"];
            let absent: Vec<&str> = helpers.iter().copied().filter(|h| !present(h)).collect();
            if absent.is_empty() {
                say(&format!(
                    "  ok      ordinary user with subordinate ids {}.. (newuidmap, newgidmap)",
                    ids.uids.get(1).map(|e| e.outside).unwrap_or_default()
                ));
            } else {
                println!(
                    "  MISSING {}: an ordinary user's builds map their ids with them; install the package uidmap (as root)",
                    absent.join(", ")
                );
                ok = false;
            }
        }
        Err(e) => {
            println!("  MISSING subordinate ids: {e}");
            ok = false;
        }
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if fs.contains("overlay") {
        say("  ok      overlayfs");
    } else {
        println!("  MISSING overlayfs: load it with `modprobe overlay`");
        ok = false;
    }
    let mut miss = missing(true);
    if miss.is_empty() {
        say("  ok      every host package (scripts/host-packages.txt)");
    } else {
        for m in &miss {
            println!("  MISSING {:<18} ({}: {})", m.package, m.check, m.why);
        }
        let cmd = install_command(&miss);
        if fix {
            println!("  installing: {cmd}");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/host-deps.sh");
            let status = if script.exists() {
                Command::new("bash").arg(&script).arg("build").status()
            } else {
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("apt-get update -q && {cmd}"))
                    .status()
            }
            .context("cannot run the installer")?;
            if !status.success() {
                bail!("installing the host packages failed; run by hand: {cmd}");
            }
            miss = missing(true);
            if !miss.is_empty() {
                let names: Vec<&str> = miss.iter().map(|m| m.package.as_str()).collect();
                bail!("still missing after install: {}", names.join(" "));
            }
            println!("  ok      installed");
        } else {
            println!("  install them with: {cmd}");
            println!("  (or run `xlfs doctor --fix`, which also enables the apt sources it needs)");
            ok = false;
        }
    }
    let _ = std::fs::create_dir_all(home);
    if let Ok(st) = nix::sys::statvfs::statvfs(home) {
        let free = st.blocks_available() * st.fragment_size();
        let gib = free as f64 / (1u64 << 30) as f64;
        if gib < 20.0 {
            println!(
                "  WARNING only {gib:.1} GiB free in {}; a full build needs about 20 GiB",
                home.display()
            );
        } else {
            say(&format!("  ok      {gib:.0} GiB free in {}", home.display()));
        }
    }
    Ok(ok)
}
