//! The runtime closure from synthetic manifests: declared run dependencies, libraries and
//! interpreters found through the build root, only the needed files of a provider, twins,
//! directory links, run paths, exclusions, and what nothing provides.

use std::collections::{BTreeMap, BTreeSet};
use xlfs_assemble::closure::{closure, Closure, ElfExtra, PackageInfo, Selection};
use xlfs_store::{Entry, Kind, Manifest};

fn entry(path: &str, kind: Kind, target: Option<&str>, needed: &[&str], elf: bool, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        size,
        sha256: None,
        target: target.map(str::to_string),
        needed: needed.iter().map(|s| s.to_string()).collect(),
        elf: elf.then(|| "ELF64 x86-64 shared object".to_string()),
    }
}
fn file(path: &str) -> Entry {
    entry(path, Kind::File, None, &[], false, 10)
}
fn elf(path: &str, needed: &[&str]) -> Entry {
    entry(path, Kind::File, None, needed, true, 100)
}
fn link(path: &str, target: &str) -> Entry {
    entry(path, Kind::Symlink, Some(target), &[], false, 0)
}
fn manifest(mut entries: Vec<Entry>) -> Manifest {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Manifest { entries }
}

struct World {
    manifests: BTreeMap<String, Manifest>,
    run: BTreeMap<String, Vec<String>>,
    root: BTreeMap<String, Vec<String>>,
    twin: BTreeMap<String, String>,
    extra: BTreeMap<(String, String), ElfExtra>,
}

impl World {
    /// A small LFS: a directory layout with `lib -> usr/lib`, glibc (the loader, libc), a
    /// compiler whose package also holds libgcc_s, zlib, openssl, and their bootstrap twins.
    fn new() -> World {
        let mut w = World {
            manifests: BTreeMap::new(),
            run: BTreeMap::new(),
            root: BTreeMap::new(),
            twin: BTreeMap::new(),
            extra: BTreeMap::new(),
        };
        w.pkg(
            "lfs-dirs",
            vec![
                link("lib", "usr/lib"),
                link("lib64", "usr/lib"),
                entry("usr", Kind::Dir, None, &[], false, 0),
            ],
            &[],
            &[],
        );
        let glibc = || {
            vec![
                elf("usr/lib/ld-linux-x86-64.so.2", &[]),
                elf("usr/lib/libc.so.6", &["ld-linux-x86-64.so.2"]),
                elf("usr/lib/libm.so.6", &["libc.so.6"]),
                file("usr/include/stdio.h"),
                file("usr/lib/libc.a"),
                elf("usr/bin/ldconfig", &[]),
            ]
        };
        w.pkg("glibc", glibc(), &["lfs-dirs"], &[]);
        w.pkg("glibc-boot", glibc(), &[], &[]);
        w.twin.insert("glibc-boot".into(), "glibc".into());
        let gcc = vec![
            elf("usr/bin/gcc", &["libc.so.6"]),
            elf(
                "usr/libexec/gcc/x86_64-pc-linux-gnu/15/cc1",
                &["libc.so.6", "libzstd.so.1"],
            ),
            link("usr/lib/libgcc_s.so", "libgcc_s.so.1"),
            elf("usr/lib/libgcc_s.so.1", &["libc.so.6"]),
            link("usr/lib/libstdc++.so.6", "libstdc++.so.6.0.34"),
            elf(
                "usr/lib/libstdc++.so.6.0.34",
                &["libm.so.6", "libc.so.6", "libgcc_s.so.1"],
            ),
        ];
        w.pkg("gcc", gcc, &["glibc"], &["glibc-boot"]);
        w.pkg(
            "zlib",
            vec![
                link("usr/lib/libz.so", "libz.so.1"),
                link("usr/lib/libz.so.1", "libz.so.1.3.1"),
                elf("usr/lib/libz.so.1.3.1", &["libc.so.6"]),
                file("usr/include/zlib.h"),
            ],
            &[],
            &["glibc", "gcc"],
        );
        w.pkg(
            "openssl",
            vec![
                elf("usr/bin/openssl", &["libssl.so.3", "libcrypto.so.3", "libc.so.6"]),
                elf("usr/lib/libssl.so.3", &["libcrypto.so.3", "libc.so.6"]),
                elf("usr/lib/libcrypto.so.3", &["libz.so.1", "libc.so.6"]),
                file("usr/share/man/man1/openssl.1"),
            ],
            &["zlib"],
            &["glibc", "gcc", "zlib"],
        );
        w
    }

    fn pkg(&mut self, name: &str, entries: Vec<Entry>, run: &[&str], root: &[&str]) {
        self.manifests.insert(name.into(), manifest(entries));
        self.run
            .insert(name.into(), run.iter().map(|s| s.to_string()).collect());
        self.root
            .insert(name.into(), root.iter().map(|s| s.to_string()).collect());
    }

    fn closure(&self, roots: &[&str]) -> Closure {
        let infos: BTreeMap<String, PackageInfo> = self
            .manifests
            .iter()
            .map(|(n, m)| {
                (
                    n.clone(),
                    PackageInfo {
                        run_deps: self.run[n].clone(),
                        build_root: self.root[n].clone(),
                        twin_of: self.twin.get(n).cloned(),
                        manifest: m,
                    },
                )
            })
            .collect();
        let roots: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
        let extra = |p: &str, f: &str| -> Option<ElfExtra> {
            if let Some(e) = self.extra.get(&(p.to_string(), f.to_string())) {
                return Some(e.clone());
            }
            // Executables have the loader as their interpreter.
            f.contains("/bin/").then(|| ElfExtra {
                interp: Some("/lib64/ld-linux-x86-64.so.2".into()),
                rpaths: vec![],
            })
        };
        closure(
            &infos,
            &roots,
            &|p| xlfs_assemble::exclude::excluded(p, &[]),
            &extra,
        )
    }
}

fn files(c: &Closure, pkg: &str) -> Vec<String> {
    match &c.packages[pkg] {
        Selection::Files(f) => f.iter().cloned().collect(),
        Selection::All => panic!("{pkg} is whole"),
    }
}

#[test]
fn run_dependencies_are_whole_and_needed_libraries_come_alone() {
    let w = World::new();
    let c = w.closure(&["openssl"]);
    assert!(c.unresolved.is_empty(), "{:#?}", c.unresolved);
    // openssl and zlib by declaration, lfs-dirs not: nothing declares it here.
    assert_eq!(c.packages["openssl"], Selection::All);
    assert_eq!(c.packages["zlib"], Selection::All);
    assert_eq!(c.why["zlib"], "run dependency of openssl");
    // glibc only for what the programs need: libc, and the loader as interpreter and as
    // libc's own need, through the lib64 -> usr/lib link of lfs-dirs.
    assert_eq!(
        files(&c, "glibc"),
        ["usr/lib/ld-linux-x86-64.so.2", "usr/lib/libc.so.6"]
    );
    assert!(c.why["glibc"].starts_with("provides "), "{}", c.why["glibc"]);
    // Never the twin the build root had, never the compiler.
    assert!(!c.packages.contains_key("glibc-boot"));
    assert!(!c.packages.contains_key("gcc"));
}

#[test]
fn a_library_from_the_compiler_brings_only_the_library_and_its_links() {
    let mut w = World::new();
    w.pkg(
        "cxxprog",
        vec![elf("usr/bin/cxxprog", &["libstdc++.so.6", "libc.so.6"])],
        &[],
        &["glibc", "gcc"],
    );
    let c = w.closure(&["cxxprog"]);
    assert!(c.unresolved.is_empty(), "{:#?}", c.unresolved);
    assert_eq!(
        files(&c, "gcc"),
        [
            "usr/lib/libgcc_s.so.1",
            "usr/lib/libstdc++.so.6",
            "usr/lib/libstdc++.so.6.0.34"
        ]
    );
    // libstdc++'s own needs: libm from glibc.
    assert!(files(&c, "glibc").contains(&"usr/lib/libm.so.6".to_string()));
    assert_eq!(
        c.why["gcc"],
        "provides libstdc++.so.6 to usr/bin/cxxprog (cxxprog)"
    );
}

#[test]
fn a_declared_runtime_package_is_preferred_and_a_twin_stands_for_its_final_package() {
    let mut w = World::new();
    // gcc-runtime, declared: libstdc++ comes from it, not from the compiler.
    w.pkg(
        "gcc-runtime",
        vec![
            elf("usr/lib/libgcc_s.so.1", &["libc.so.6"]),
            link("usr/lib/libstdc++.so.6", "libstdc++.so.6.0.34"),
            elf(
                "usr/lib/libstdc++.so.6.0.34",
                &["libm.so.6", "libc.so.6", "libgcc_s.so.1"],
            ),
        ],
        &[],
        &["gcc"],
    );
    w.pkg(
        "cxxprog",
        vec![elf("usr/bin/cxxprog", &["libstdc++.so.6"])],
        &["gcc-runtime"],
        &["glibc", "gcc"],
    );
    // A final toolchain package built against the twins: its libc is glibc's.
    w.pkg(
        "bash",
        vec![elf("usr/bin/bash", &["libc.so.6"])],
        &[],
        &["glibc-boot"],
    );
    let c = w.closure(&["cxxprog", "bash"]);
    assert!(c.unresolved.is_empty(), "{:#?}", c.unresolved);
    assert!(!c.packages.contains_key("gcc"), "{:?}", c.packages.keys());
    assert!(!c.packages.contains_key("glibc-boot"));
    assert!(c.packages.contains_key("glibc"));
}

#[test]
fn excluded_files_need_nothing_and_run_paths_are_followed() {
    let mut w = World::new();
    // The compiler listed on purpose: cc1's libzstd is not needed, since cc1 is excluded.
    let c = w.closure(&["gcc"]);
    assert!(c.unresolved.is_empty(), "{:#?}", c.unresolved);
    // A plugin directory found through $ORIGIN.
    w.pkg(
        "xen-tools",
        vec![
            elf("usr/sbin/xl", &["libxenlight.so.4.19"]),
            elf("usr/lib/xen/lib/libxenlight.so.4.19", &["libc.so.6"]),
        ],
        &[],
        &["glibc"],
    );
    w.extra.insert(
        ("xen-tools".into(), "usr/sbin/xl".into()),
        ElfExtra {
            interp: Some("/lib64/ld-linux-x86-64.so.2".into()),
            rpaths: vec!["$ORIGIN/../lib/xen/lib".into()],
        },
    );
    let c = w.closure(&["xen-tools"]);
    assert!(c.unresolved.is_empty(), "{:#?}", c.unresolved);
}

#[test]
fn what_nothing_provides_is_named_with_the_fix() {
    let mut w = World::new();
    w.pkg(
        "curl",
        vec![elf("usr/bin/curl", &["libcurl.so.4", "libc.so.6"])],
        &["openssl"],
        &["glibc"],
    );
    let c = w.closure(&["curl", "nothere"]);
    let want: BTreeSet<String> = [
        "curl: /usr/bin/curl needs libcurl.so.4, which no package of the image or of curl's build root provides; fix: add the package that installs it to host.packages, or to [depends] run of curl",
        "nothere: listed in host.packages, but it is not in the plan; fix: build it (`xlfs build --profile`)",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(c.unresolved.iter().cloned().collect::<BTreeSet<_>>(), want);
}
