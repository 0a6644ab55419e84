//! The `host` profile against the real book: it loads, its plan resolves (every package it
//! needs, to build and to run, is a recipe), and what it asks for at run time is the final LFS
//! system: no temporary tool, no bootstrap twin, no compiler, no Python.

use std::path::Path;
use xlfs_book::profile::{Budget, Init, Profile};
use xlfs_book::Book;
use xlfs_plan::{plan_tuned, EnvIds};

fn book() -> Book {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    Book::load(&root).unwrap_or_else(|e| panic!("the book has problems:\n{e}"))
}

fn host() -> (Book, Profile) {
    let book = book();
    let p = Profile::load(&book, "host").unwrap_or_else(|e| panic!("profiles/host.toml:\n{e}"));
    (book, p)
}

#[test]
fn the_host_profile_loads_and_its_plan_resolves() {
    let (book, p) = host();
    assert_eq!(p.host.init, Init::Sysv);
    assert!(p.host.disk_image, "a SysV host boots from its disk");
    assert_eq!(p.host.budget, Some(Budget::default()), "the issue's budget");
    assert!(p.boot.check_credentials);
    assert!(!p.host.machine.ssh_keys.is_empty() || p.boot.check_credentials);
    let envs = EnvIds {
        host: "h".into(),
        chroot: "c".into(),
    };
    let plan = plan_tuned(
        &book,
        &p.targets(),
        true,
        &envs,
        p.host.machine.march.as_deref(),
        &|_| None,
        &|_| false,
    )
    .unwrap_or_else(|e| panic!("the host profile's plan: {e}"));
    for want in [
        "xen-lfs",
        "xen-tools-lfs",
        "linux-lfs",
        "grub",
        "grub-efi",
        "openssh",
        "glibc",
        "gcc",
    ] {
        assert!(plan.get(want).is_some(), "the plan builds {want}");
    }
}

#[test]
fn the_host_runtime_closure_is_the_final_system_without_build_tools() {
    let (book, p) = host();
    let closure = xlfs_plan::runtime_closure(&book, &p.host.packages);
    for name in &closure {
        let r = book.get(name).unwrap_or_else(|| panic!("{name} is not a recipe"));
        assert!(r.twin_of.is_none(), "{name} is a bootstrap twin");
        assert!(
            !(name.ends_with("-temp") || name.ends_with("-pass1") || name.ends_with("-pass2")),
            "{name} is a temporary tool"
        );
    }
    for banned in [
        "gcc", "binutils", "make", "autoconf", "automake", "libtool", "python", "perl", "meson", "ninja",
        "bison", "flex", "m4", "acpica",
    ] {
        assert!(
            !closure.contains(banned),
            "the host's runtime closure holds `{banned}` (run dependency of {:?})",
            closure
                .iter()
                .filter(|n| book
                    .get(n)
                    .is_some_and(|r| r.run_deps.iter().any(|d| d == banned)))
                .collect::<Vec<_>>()
        );
    }
    for need in [
        "sysvinit",
        "lfs-bootscripts",
        "openssh",
        "xen-tools-lfs",
        "shadow",
        "util-linux",
    ] {
        assert!(closure.contains(need), "{need}");
    }
}
