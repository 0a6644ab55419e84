//! The real book: it loads without a problem, and the LFS part keeps its promises, checked on the
//! build roots the plan computes (no build needed).

use std::collections::BTreeSet;
use std::path::Path;
use xlfs_book::{Book, BuildEnv};

fn book() -> Book {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    Book::load(&root).unwrap_or_else(|e| panic!("the book has problems:\n{e}"))
}

/// A temporary tool: the stages of chapters 5-7 and the chroot made of them.
fn temporary(name: &str) -> bool {
    name.ends_with("-temp") || name.ends_with("-pass1") || name.ends_with("-pass2") || name == "lfs-chroot"
}

fn env_name(r: &xlfs_book::Recipe) -> &str {
    r.env_name.as_deref().unwrap_or(match r.env {
        BuildEnv::Host => "host",
        BuildEnv::Chroot => "chroot",
    })
}

#[test]
fn no_final_package_has_a_temporary_tool_in_its_build_root() {
    let book = book();
    let mut finals = 0;
    for r in book.recipes.values() {
        let env = env_name(r);
        if env != "lfs" && env != "lfs-boot" {
            continue;
        }
        finals += 1;
        let root = xlfs_plan::build_root(&book, r);
        let temps: Vec<&String> = root.iter().filter(|n| temporary(n)).collect();
        assert!(
            temps.is_empty(),
            "{} ({env}) has temporary tools in its build root: {temps:?}",
            r.name
        );
        // Nor a bootstrap twin, unless it is in the toolchain set built from the twins.
        if env == "lfs" {
            let twins: Vec<&String> = root.iter().filter(|n| n.ends_with("-boot")).collect();
            assert!(
                twins.is_empty(),
                "{}: bootstrap twins in its build root: {twins:?}",
                r.name
            );
        }
    }
    assert!(finals > 60, "the final system has {finals} packages");
}

#[test]
fn the_host_environment_is_used_for_chapters_5_and_6_only() {
    let book = book();
    for r in book.recipes.values() {
        let dir = r
            .path
            .parent()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        if !dir.starts_with("lfs") || r.twin_of.is_some() {
            continue;
        }
        let host = r.env == BuildEnv::Host;
        // lfs-dirs only writes files (directories, /etc/passwd...); it is made once, on the host.
        let allowed = dir == "lfs/ch4"
            || dir == "lfs/ch5"
            || dir == "lfs/ch6"
            || r.name == "lfs-dirs"
            || r.name == "lfs-chroot";
        assert!(
            !host || allowed,
            "{} ({dir}) builds in the host environment",
            r.name
        );
        if dir == "lfs/ch7" && r.name != "lfs-dirs" && r.name != "lfs-chroot" {
            assert_eq!(env_name(r), "lfs-ch7", "{}", r.name);
        }
    }
}

#[test]
fn every_toolchain_package_is_built_twice_and_its_twin_from_temporary_tools() {
    let book = book();
    let lfs_boot = &book.config.envs["lfs-boot"];
    let lfs = &book.config.envs["lfs"];
    let finals: BTreeSet<&str> = lfs.build.iter().map(|s| s.as_str()).collect();
    for twin in &lfs_boot.build {
        let Some(t) = book.get(twin) else {
            panic!("{twin} is not in the book")
        };
        if let Some(of) = &t.twin_of {
            assert_eq!(env_name(t), "lfs-temp", "{twin}");
            assert!(
                finals.contains(of.as_str()),
                "{of} is built twice but not in env.lfs"
            );
            assert_eq!(env_name(&book.recipes[of]), "lfs-boot", "{of}");
        }
    }
    // And the chroot of the twins holds no cross tool of /tools.
    let r = &book.recipes["zlib-boot"];
    let root = xlfs_plan::build_root(&book, r);
    assert!(root.contains("gcc-pass2") && root.contains("python-temp"));
    assert!(
        !root.contains("gcc-pass1") && !root.contains("binutils-pass1"),
        "{root:?}"
    );
}
