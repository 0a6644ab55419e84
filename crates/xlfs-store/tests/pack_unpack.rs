//! Packing, determinism, attrs and unpacking.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use xlfs_store::{pack, unpack_artifact, Attr, Kind, Manifest, PackOptions, StoreError};

const MTIME: u64 = 1_700_000_000;

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn long_dir() -> String {
    format!("usr/share/{}/{}", "d".repeat(60), "e".repeat(40))
}

/// Compiles libfoo.so and a program linked with -lfoo, once per test binary.
fn elf_pair() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("foo.c"), "int foo(void) { return 42; }\n").unwrap();
    fs::write(
        d.join("main.c"),
        "int foo(void);\nint main(void) { return foo() - 42; }\n",
    )
    .unwrap();
    let ok = |args: &[&str]| {
        let st = Command::new("cc").args(args).current_dir(d).status().unwrap();
        assert!(st.success(), "cc {args:?} failed");
    };
    ok(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
    ok(&["-o", "prog", "main.c", "-L.", "-lfoo"]);
    (
        fs::read(d.join("libfoo.so")).unwrap(),
        fs::read(d.join("prog")).unwrap(),
    )
}

/// Builds the reference tree in `root` (which must not exist).
fn make_tree(root: &Path, elf: &(Vec<u8>, Vec<u8>)) {
    fs::create_dir_all(root).unwrap();
    write(&root.join("usr/share/doc/readme"), b"hello\n", 0o644);
    write(&root.join("usr/bin/hello.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("usr/bin/su"), b"not really su\n", 0o4755);
    write(&root.join("etc/secret"), b"", 0o600);
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::set_permissions(root.join("var/empty"), fs::Permissions::from_mode(0o711)).unwrap();
    write(&root.join("var/lib/svc/state"), b"state", 0o640);
    write(&root.join("usr/lib/libfoo.so"), &elf.0, 0o755);
    write(&root.join("usr/bin/prog"), &elf.1, 0o755);
    symlink("libfoo.so", root.join("usr/lib/libfoo.so.1")).unwrap();
    // Hard link: "usr/bin/a-hello" sorts before "usr/bin/hello.sh".
    fs::hard_link(root.join("usr/bin/hello.sh"), root.join("usr/bin/a-hello")).unwrap();
    let long = root.join(long_dir()).join(format!("{}.txt", "f".repeat(50)));
    write(&long, b"long name\n", 0o644);
    let long_target = format!("{}/{}.txt", long_dir(), "f".repeat(50));
    symlink(format!("../../{long_target}"), root.join("usr/bin/long-link")).unwrap();
    // Large enough to exercise streaming over several buffers.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write(&root.join("usr/share/big.bin"), &big, 0o644);
}

/// Sets every mtime in the tree to `t` and (as root) every owner to 1234.
fn scramble_metadata(root: &Path, t: i64) {
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        let c = cstr(e.path());
        let ts = libc::timespec {
            tv_sec: t,
            tv_nsec: 123,
        };
        // SAFETY: valid path and timespec array.
        unsafe {
            assert_eq!(
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    [ts, ts].as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW
                ),
                0
            );
        }
        if is_root() {
            let mode = e.path().symlink_metadata().unwrap().mode();
            // SAFETY: valid path.
            unsafe { assert_eq!(libc::lchown(c.as_ptr(), 1234, 1234), 0) };
            if !e.path_is_symlink() {
                // chown clears setuid bits: restore the mode.
                fs::set_permissions(e.path(), fs::Permissions::from_mode(mode & 0o7777)).unwrap();
            }
        }
    }
}

fn opts() -> PackOptions {
    PackOptions {
        mtime: MTIME,
        ..PackOptions::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    elf: (Vec<u8>, Vec<u8>),
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    Fixture {
        _dir: dir,
        base,
        elf: elf_pair(),
    }
}

fn entry<'a>(m: &'a Manifest, p: &str) -> &'a xlfs_store::Entry {
    m.find(p).unwrap_or_else(|| panic!("{p} not in manifest"))
}

#[test]
fn manifest_describes_tree() {
    let fx = fixture();
    let tree = fx.base.join("tree");
    make_tree(&tree, &fx.elf);
    let out = fx.base.join("a.tar.zst");
    let packed = pack(&tree, &out, &opts()).unwrap();
    let m = &packed.manifest;

    // Sorted bytewise, no root entry.
    let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(paths, sorted);
    assert!(!paths.contains(&""));

    let readme = entry(m, "usr/share/doc/readme");
    assert_eq!(readme.kind, Kind::File);
    assert_eq!(
        (readme.mode, readme.uid, readme.gid, readme.size),
        (0o644, 0, 0, 6)
    );
    assert_eq!(
        readme.sha256.as_deref(),
        Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
    );
    assert_eq!(readme.elf, None);
    assert_eq!(entry(m, "usr/bin/hello.sh").mode, 0o755);
    assert_eq!(entry(m, "usr/bin/su").mode, 0o4755);
    assert_eq!(entry(m, "etc/secret").mode, 0o600);
    assert_eq!(entry(m, "etc/secret").size, 0);

    let empty = entry(m, "var/empty");
    assert_eq!((empty.kind, empty.mode, empty.size), (Kind::Dir, 0o711, 0));

    let link = entry(m, "usr/lib/libfoo.so.1");
    assert_eq!(link.kind, Kind::Symlink);
    assert_eq!(link.target.as_deref(), Some("libfoo.so"));
    assert_eq!((link.size, link.sha256.as_ref()), (0, None));

    let hl = entry(m, "usr/bin/hello.sh");
    assert_eq!(hl.kind, Kind::Hardlink);
    assert_eq!(hl.target.as_deref(), Some("usr/bin/a-hello"));
    assert_eq!(hl.size, 0);
    let first = entry(m, "usr/bin/a-hello");
    assert_eq!(first.kind, Kind::File);
    assert_eq!(first.size, 18);

    let long = format!("{}/{}.txt", long_dir(), "f".repeat(50));
    assert!(long.len() > 100);
    assert_eq!(entry(m, &long).size, 10);
    assert!(entry(m, "usr/bin/long-link").target.as_ref().unwrap().len() > 100);

    let lib = entry(m, "usr/lib/libfoo.so");
    let prog = entry(m, "usr/bin/prog");
    let arch_ok = cfg!(target_arch = "x86_64");
    if arch_ok {
        assert_eq!(lib.elf.as_deref(), Some("ELF64 x86-64 shared object"));
    }
    assert!(lib.elf.as_ref().unwrap().ends_with("shared object"));
    assert!(
        prog.elf.as_ref().unwrap().contains("executable"),
        "{:?}",
        prog.elf
    );
    assert!(
        prog.needed.contains(&"libfoo.so".to_string()),
        "{:?}",
        prog.needed
    );
    assert!(
        prog.needed.contains(&"libc.so.6".to_string()),
        "{:?}",
        prog.needed
    );
    assert_eq!(m.elf_files().count(), 2);

    let files: u64 = m.entries.iter().map(|e| e.size).sum();
    assert_eq!(m.installed_size(), files);
    assert!(m.installed_size() > 3_000_000);

    // The artifact on disk matches what was reported.
    let (sha, size) = xlfs_util::sha256_file(&out).unwrap();
    assert_eq!((sha, size), (packed.sha256.clone(), packed.size));
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644);
    // No temp file left behind.
    let leftovers: Vec<_> = fs::read_dir(&fx.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The manifest survives a JSON round-trip.
    let json = serde_json::to_string(m).unwrap();
    let back: Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, m);
}

#[test]
fn tar_headers_are_deterministic_gnu() {
    let fx = fixture();
    let tree = fx.base.join("tree");
    make_tree(&tree, &fx.elf);
    let out = fx.base.join("a.tar.zst");
    pack(&tree, &out, &opts()).unwrap();
    let tar = zstd::decode_all(fs::File::open(&out).unwrap()).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut n = 0;
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert!(h.as_gnu().is_some(), "not a GNU header");
        assert_eq!(h.mtime().unwrap(), MTIME);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        let gnu = h.as_gnu().unwrap();
        assert_eq!(gnu.atime, [0; 12]);
        assert_eq!(gnu.ctime, [0; 12]);
        assert!(e.header().entry_type() != tar::EntryType::XHeader);
        n += 1;
    }
    assert!(n > 10);
}

#[test]
fn same_tree_gives_identical_artifact() {
    let fx = fixture();
    let a = fx.base.join("a");
    let b = fx.base.join("b");
    make_tree(&a, &fx.elf);
    make_tree(&b, &fx.elf);
    let pa = pack(&a, &fx.base.join("a.tar.zst"), &opts()).unwrap();
    scramble_metadata(&b, 1_234_567);
    let pb = pack(&b, &fx.base.join("b.tar.zst"), &opts()).unwrap();
    assert_eq!(pa.sha256, pb.sha256);
    assert_eq!(pa.manifest, pb.manifest);
    assert_eq!(
        fs::read(fx.base.join("a.tar.zst")).unwrap(),
        fs::read(fx.base.join("b.tar.zst")).unwrap()
    );
    // Packing again over an existing output replaces it with the same bytes.
    let pa2 = pack(&a, &fx.base.join("a.tar.zst"), &opts()).unwrap();
    assert_eq!(pa, pa2);
    // A different SOURCE_DATE_EPOCH changes the artifact, not the manifest.
    let pc = pack(
        &a,
        &fx.base.join("c.tar.zst"),
        &PackOptions {
            mtime: MTIME + 1,
            ..PackOptions::default()
        },
    )
    .unwrap();
    assert_ne!(pc.sha256, pa.sha256);
    assert_eq!(pc.manifest, pa.manifest);
}

#[test]
fn attrs_override_owner_and_mode() {
    let fx = fixture();
    let tree = fx.base.join("tree");
    make_tree(&tree, &fx.elf);
    let attrs = vec![
        Attr {
            path: "var/lib/svc/**".into(),
            uid: Some(100),
            gid: Some(101),
            mode: None,
        },
        Attr {
            path: "usr/bin/su".into(),
            uid: None,
            gid: Some(5),
            mode: Some(0o104711),
        },
        Attr {
            path: "/usr/lib/**".into(),
            uid: Some(7),
            gid: None,
            mode: None,
        },
    ];
    let o = PackOptions { attrs, ..opts() };
    let out = fx.base.join("a.tar.zst");
    let packed = pack(&tree, &out, &o).unwrap();
    let m = &packed.manifest;
    let su = entry(m, "usr/bin/su");
    assert_eq!((su.uid, su.gid, su.mode), (0, 5, 0o4711));
    let state = entry(m, "var/lib/svc/state");
    assert_eq!((state.uid, state.gid, state.mode), (100, 101, 0o640));
    // "dir/**" is about what is below dir, not dir itself.
    let svc = entry(m, "var/lib/svc");
    assert_eq!((svc.uid, svc.gid), (0, 0));
    // Symlinks get owners but keep their mode.
    let link = entry(m, "usr/lib/libfoo.so.1");
    assert_eq!((link.uid, link.mode), (7, 0o777));
    assert_eq!(entry(m, "usr/bin/hello.sh").uid, 0);

    let dest = fx.base.join("out");
    unpack_artifact(&out, &dest).unwrap();
    let meta = fs::metadata(dest.join("usr/bin/su")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4711);
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (0, 5));
        let meta = fs::metadata(dest.join("var/lib/svc/state")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (100, 101));
        let meta = fs::symlink_metadata(dest.join("usr/lib/libfoo.so.1")).unwrap();
        assert_eq!(meta.uid(), 7);
    }
}

#[test]
fn unpack_round_trips() {
    let fx = fixture();
    let tree = fx.base.join("tree");
    make_tree(&tree, &fx.elf);
    let out = fx.base.join("a.tar.zst");
    let packed = pack(&tree, &out, &opts()).unwrap();

    let dest = fx.base.join("unpacked");
    unpack_artifact(&out, &dest).unwrap();
    // Repacking the extracted tree gives the very same artifact.
    let again = pack(&dest, &fx.base.join("b.tar.zst"), &opts()).unwrap();
    assert_eq!(again, packed);

    for e in &packed.manifest.entries {
        let p = dest.join(&e.path);
        let meta = fs::symlink_metadata(&p).unwrap();
        match e.kind {
            Kind::File | Kind::Hardlink => {
                assert!(meta.is_file());
                assert_eq!(meta.mode() & 0o7777, e.mode, "{}", e.path);
                assert_eq!(meta.mtime() as u64, MTIME);
            }
            Kind::Dir => {
                assert!(meta.is_dir());
                assert_eq!(meta.mode() & 0o7777, e.mode, "{}", e.path);
                assert_eq!(meta.mtime() as u64, MTIME, "{}", e.path);
            }
            Kind::Symlink => {
                assert_eq!(fs::read_link(&p).unwrap().to_str(), e.target.as_deref());
            }
        }
    }
    assert_eq!(fs::read(dest.join("usr/bin/prog")).unwrap(), fx.elf.1);
    let a = fs::metadata(dest.join("usr/bin/a-hello")).unwrap();
    let b = fs::metadata(dest.join("usr/bin/hello.sh")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o755);

    // The destination must not exist.
    let err = unpack_artifact(&out, &dest).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("unpacked"), "{err}");

    // A corrupt artifact fails and leaves nothing behind.
    let mut bytes = fs::read(&out).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = fx.base.join("bad.tar.zst");
    fs::write(&bad, bytes).unwrap();
    let dest2 = fx.base.join("unpacked2");
    assert!(unpack_artifact(&bad, &dest2).is_err());
    assert!(!dest2.exists());
    let leftovers: Vec<_> = fs::read_dir(&fx.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn special_files_are_refused() {
    let fx = fixture();
    let tree = fx.base.join("tree");
    write(&tree.join("usr/bin/ok"), b"ok", 0o755);
    fs::create_dir_all(tree.join("run")).unwrap();
    let fifo = tree.join("run/initctl");
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(cstr(&fifo).as_ptr(), 0o600) }, 0);
    let out = fx.base.join("a.tar.zst");
    let err = pack(&tree, &out, &opts()).unwrap_err();
    assert!(matches!(err, StoreError::SpecialFile { .. }), "{err}");
    assert!(err.to_string().contains(&*fifo.to_string_lossy()), "{err}");
    assert!(!out.exists());
    let names: Vec<_> = fs::read_dir(&fx.base).unwrap().collect();
    assert_eq!(names.len(), 1, "only the tree should exist");
}

#[test]
fn empty_and_missing_destdir() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("empty");
    fs::create_dir(&tree).unwrap();
    let out = dir.path().join("e.tar.zst");
    let p = pack(&tree, &out, &opts()).unwrap();
    assert!(p.manifest.entries.is_empty());
    assert_eq!(p.manifest.installed_size(), 0);
    let dest = dir.path().join("x");
    unpack_artifact(&out, &dest).unwrap();
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);

    let err = pack(&dir.path().join("missing"), &out, &opts()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
