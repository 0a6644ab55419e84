//! `xlfs rebuild --compare PKG…`: build packages again, in a scratch home that holds the same
//! cached dependencies (hard links to the same stored artifacts) and a copy of the state
//! database, and compare the new artifacts with the stored ones bit for bit. Same key, same
//! bytes: a difference is a reproducibility bug, and the report says which files differ. With
//! `--check`, the rebuild also runs the test suites, judged as `xlfs build --check` judges them.

use crate::app::App;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI32, Ordering};
use xlfs_store::LocalStore;

/// What a comparison found for one package.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Identical,
    /// The artifacts differ: these paths (first the changed, then missing or extra).
    Differs(Vec<String>),
}

/// The paths whose entries differ between two manifests (content, mode, owner, kind, target).
pub fn diff_manifests(a: &xlfs_store::Manifest, b: &xlfs_store::Manifest) -> Vec<String> {
    let index = |m: &xlfs_store::Manifest| -> BTreeMap<String, String> {
        m.entries
            .iter()
            .map(|e| (e.path.clone(), serde_json::to_string(e).unwrap_or_default()))
            .collect()
    };
    let (a, b) = (index(a), index(b));
    let mut out = Vec::new();
    for (path, ea) in &a {
        match b.get(path) {
            Some(eb) if eb == ea => {}
            Some(_) => out.push(format!("changed {path}")),
            None => out.push(format!("only in the stored artifact: {path}")),
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("only in the rebuild: {path}"));
    }
    out
}

/// `check`: the scratch build also runs the targets' test suites (`xlfs build --check`), so a
/// cached package's suite can be run without rebuilding it in the home.
pub fn rebuild_compare(app: &App, targets: &[String], jobs: usize, keep: bool, check: bool) -> Result<i32> {
    if targets.is_empty() {
        bail!("name the packages to rebuild, e.g. `xlfs rebuild --compare zlib bash`");
    }
    let book = app.book()?;
    let db = app.db()?;
    let store = app.store()?;
    let plan = app.plan_with(&book, targets, false, &db, &store)?;
    for t in targets {
        let step = plan
            .get(t)
            .with_context(|| format!("no package `{t}` in the book"))?;
        if !step.is_cached() {
            bail!(
                "`{t}` is not built (or its recipe changed since): run `xlfs build {t}` first, then compare"
            );
        }
    }
    // Every other package of the plan, not only the targets' build roots: a build root can hold
    // a group (the LFS chroot) whose own dependencies the scratch plan must also find cached, or
    // it would rebuild them, down to the cross toolchain.
    let deps: BTreeSet<String> = plan
        .steps
        .iter()
        .filter(|s| s.is_cached() && !targets.contains(&s.name))
        .map(|s| s.key.clone())
        .collect();

    // The scratch home: the dependencies' artifacts as hard links, a copy of the database. One
    // per set of targets, so that a rebuild that was interrupted (killed, or Ctrl-C with
    // --keep) or failed goes on in it: its build trees resume where they stopped (a long test
    // suite after its last finished part). One that rebuilt every package is made anew.
    let parent = app.home.root.join("rebuild");
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = scratch_name(targets, check);
    let locks = parent.join(".locks");
    std::fs::create_dir_all(&locks).with_context(|| format!("cannot create {}", locks.display()))?;
    let _lock = xlfs_build::lock::lock(
        &locks.join(format!("{name}.lock")),
        "rebuild --compare",
        true,
        &|holder| eprintln!("waiting for another `xlfs rebuild --compare` of the same packages ({holder})"),
    )?;
    let scratch = parent.join(&name);
    let resuming = scratch.join("state.db").is_file() && !scratch.join(FINISHED).exists();
    if scratch.exists() && !resuming {
        xlfs_util::force_remove_dir_all(&scratch)
            .with_context(|| format!("cannot remove the old scratch home {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create a scratch home in {}", parent.display()))?;
    let guard = xlfs_util::TempDirGuard::adopt(scratch.clone());
    let scratch_store = LocalStore::open(scratch.join("store")).context("cannot create the scratch store")?;
    for key in &deps {
        store
            .link_to(&scratch_store, key)
            .with_context(|| format!("cannot link {key} into the scratch store"))?;
    }
    if resuming {
        eprintln!(
            "resuming the unfinished rebuild in {} (remove it to start over)",
            scratch.display()
        );
    } else {
        db.copy_to(&scratch.join("state.db"))
            .context("cannot copy the state database into the scratch home")?;
    }

    eprintln!(
        "rebuilding {} in {} against {} cached dependencies",
        targets.join(", "),
        scratch.display(),
        deps.len()
    );
    let exe = std::env::current_exe().context("cannot find the xlfs binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--book")
        .arg(app.book_dir())
        .arg("--home")
        .arg(&scratch)
        .arg("--sources")
        .arg(&app.home.sources)
        .arg("--toolchains")
        .arg(&app.home.toolchains)
        .arg("--offline");
    if app.global.quiet {
        cmd.arg("--quiet");
    }
    cmd.args(["build", "--no-runtime", "-k", "-j", &jobs.to_string()]);
    if check {
        cmd.arg("--check");
    }
    cmd.args(targets);
    // Ctrl-C reaches the scratch build too (one process group), where a first one would let its
    // running builds end: a SIGINT, SIGTERM or SIGHUP here is passed on to it as SIGTERM, which
    // stops them now (so does `kill PID` of this process alone, as a service manager sends it).
    // It exits 130; this process outlives the signal, waits for it, then removes the scratch
    // home (nothing of this home changed).
    static SCRATCH_BUILD: AtomicI32 = AtomicI32::new(0);
    let _signals = crate::signals::scope(|_| {
        let pid = SCRATCH_BUILD.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) on the scratch build's pid, which this process waits for.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    })?;
    let mut child = cmd.spawn().context("cannot run the scratch build")?;
    SCRATCH_BUILD.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait().context("cannot run the scratch build");
    SCRATCH_BUILD.store(0, Ordering::SeqCst);
    let status = status?;
    if status.code() == Some(130) {
        if keep {
            println!(
                "interrupted: scratch home kept: {} (the same rebuild goes on in it)",
                guard.disarm().display()
            );
        } else {
            drop(guard);
            if scratch.exists() {
                println!(
                    "interrupted: remove the scratch home {} by hand",
                    scratch.display()
                );
            } else {
                println!("interrupted: scratch home removed; this home is unchanged");
            }
        }
        return Ok(130);
    }

    // Every package rebuilt: a later rebuild of the same packages starts anew. One that failed
    // (a suite with failures its allowlist does not name, say) goes on in this home next time:
    // its trees after their build step, a suite that had ended judged again.
    if status.success() {
        std::fs::write(scratch.join(FINISHED), b"")
            .with_context(|| format!("cannot write {}", scratch.join(FINISHED).display()))?;
    }
    let mut differ = 0;
    for t in targets {
        let key = &plan.get(t).expect("checked").key;
        let old = store
            .packed(key)
            .with_context(|| format!("the stored artifact of {t}"))?;
        let new = match scratch_store.packed(key) {
            Ok(p) => p,
            Err(_) => {
                println!("{t}: FAILED to rebuild (see the scratch home's log)");
                differ += 1;
                continue;
            }
        };
        match compare(&old, &new) {
            Verdict::Identical => println!(
                "{t}: identical ({}, sha256 {})",
                xlfs_build::run::human_bytes(old.size),
                &old.sha256[..12]
            ),
            Verdict::Differs(paths) => {
                differ += 1;
                println!(
                    "{t}: DIFFERS (stored sha256 {}, rebuilt {}); {} path(s):",
                    &old.sha256[..12],
                    &new.sha256[..12],
                    paths.len()
                );
                for p in paths.iter().take(20) {
                    println!("  {p}");
                }
                if paths.len() > 20 {
                    println!("  ...");
                }
            }
        }
    }
    if differ > 0 || !status.success() || keep {
        println!("scratch home kept for inspection: {}", guard.disarm().display());
    }
    Ok(if differ == 0 && status.success() { 0 } else { 1 })
}

/// In a scratch home: the rebuild ran to its end and rebuilt every package (it is not resumed).
const FINISHED: &str = "finished";

/// The scratch home's name for a set of targets: readable when short, else cut and hashed.
fn scratch_name(targets: &[String], check: bool) -> String {
    let mut sorted: Vec<&str> = targets.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut joined = sorted.join(",");
    if joined.len() > 64 {
        let h = xlfs_util::sha256_hex(joined.as_bytes());
        joined = format!("{}-{}", joined.chars().take(40).collect::<String>(), &h[..12]);
    }
    format!("compare-{joined}{}", if check { "-check" } else { "" })
}

fn compare(old: &xlfs_store::Packed, new: &xlfs_store::Packed) -> Verdict {
    if old.sha256 == new.sha256 {
        return Verdict::Identical;
    }
    let paths = diff_manifests(&old.manifest, &new.manifest);
    if paths.is_empty() {
        // Same files, different archive bytes: the packing itself differs.
        return Verdict::Differs(vec!["(the archive bytes: same files, different packing)".into()]);
    }
    Verdict::Differs(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xlfs_store::{Entry, Kind, Manifest};

    fn file(path: &str, sha: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 1,
            sha256: Some(sha.into()),
            target: None,
            needed: vec![],
            elf: None,
        }
    }

    #[test]
    fn manifests_differ_by_path_content_and_presence() {
        let a = Manifest {
            entries: vec![
                file("usr/bin/a", "1"),
                file("usr/bin/b", "2"),
                file("usr/bin/c", "3"),
            ],
        };
        let b = Manifest {
            entries: vec![
                file("usr/bin/a", "1"),
                file("usr/bin/b", "9"),
                file("usr/bin/d", "4"),
            ],
        };
        assert_eq!(
            diff_manifests(&a, &b),
            [
                "changed usr/bin/b",
                "only in the stored artifact: usr/bin/c",
                "only in the rebuild: usr/bin/d"
            ]
        );
        assert!(diff_manifests(&a, &a).is_empty());
    }
}
