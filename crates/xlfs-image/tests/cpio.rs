//! cpio writer/reader against real files and the real `cpio`/`gzip` tools.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::*;
use xlfs_image::{read_cpio, write_cpio, NodeKind, RootFs};

fn check_against(fs: &RootFs, entries: &[xlfs_image::CpioEntry]) {
    assert_eq!(entries[0].path, ".");
    assert_eq!(entries[0].mode, 0o40755);
    let names: Vec<&str> = entries[1..].iter().map(|e| e.path.as_str()).collect();
    let expected: Vec<&str> = fs.paths().collect();
    assert_eq!(names, expected, "paths, sorted, parents first");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.ino, i as u32 + 1, "sequential inode numbers");
        assert_eq!(e.mtime, MTIME, "{}", e.path);
        if e.path == "." {
            continue;
        }
        let node = fs.get(&e.path).unwrap();
        assert_eq!(e.mode, node.st_mode(), "mode of {}", e.path);
        assert_eq!((e.uid, e.gid), (node.uid, node.gid), "owner of {}", e.path);
        let data = expected_data(node);
        assert_eq!(e.size, data.len() as u64, "size of {}", e.path);
        assert!(e.data == data, "content of {}", e.path);
        match node.kind {
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                assert_eq!((e.rdev_major, e.rdev_minor), (major, minor), "{}", e.path)
            }
            _ => assert_eq!((e.rdev_major, e.rdev_minor), (0, 0)),
        }
    }
}

#[test]
fn cpio_roundtrip_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_artifact(&tmp.path().join("art"));
    let fs = sample_rootfs(&tmp.path().join("art"), &manifest);

    let a = tmp.path().join("a.cpio");
    let b = tmp.path().join("b.cpio");
    write_cpio(&fs, &a, MTIME, false).unwrap();
    // Touch the sources in between: their times must not matter.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(tmp.path().join("art/usr/bin/tool"), TOOL).unwrap();
    write_cpio(&fs, &b, MTIME, false).unwrap();
    assert_eq!(sha256_of(&a), sha256_of(&b), "byte-identical");
    assert_eq!(std::fs::metadata(&a).unwrap().len() % 512, 0);

    let entries = read_cpio(&a).unwrap();
    check_against(&fs, &entries);
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    // Ownership and modes come from the manifest, not from the disk.
    let secret = get("etc/secret");
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o100640, 0, 5));
    assert_eq!(secret.data, SECRET);
    assert_eq!(get("usr/bin/sudo").mode, 0o104755);
    assert_eq!(get("usr/bin/tool").mode, 0o100755);
    assert_eq!(get("tmp").mode, 0o41777);
    let console = get("dev/console");
    assert_eq!(
        (console.mode, console.rdev_major, console.rdev_minor),
        (0o20600, 5, 1)
    );
    let null = get("dev/null");
    assert_eq!((null.mode, null.rdev_major, null.rdev_minor), (0o20666, 1, 3));
    assert_eq!(get("dev/vda").mode, 0o60660);
    assert_eq!(get("run/initctl").mode, 0o10600);
    assert_eq!(get("bin").link_target().as_deref(), Some("usr/bin"));
    assert_eq!(get("usr/lib/libx.so").link_target().as_deref(), Some("libx.so.1"));
    // Hard links are stored as independent files.
    assert_eq!(get("usr/lib/libx-hard.so.1").data, LIB);
    assert_eq!(get("usr/lib/libx-hard.so.1").nlink, 1);
    // nlink of directories = 2 + subdirectories.
    assert_eq!(get("usr").nlink, 5, "usr has bin, lib, share");

    // The real cpio tool lists exactly our paths.
    let out = run(Command::new("cpio")
        .arg("-t")
        .arg("--quiet")
        .stdin(std::fs::File::open(&a).unwrap()));
    let listed: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected: BTreeSet<String> = fs.paths().map(str::to_string).collect();
    expected.insert(".".into());
    assert_eq!(listed, expected);
}

#[test]
fn cpio_gzip_reproducible_and_listed_by_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_artifact(&tmp.path().join("art"));
    let fs = sample_rootfs(&tmp.path().join("art"), &manifest);
    let a = tmp.path().join("a.cpio.gz");
    let b = tmp.path().join("b.cpio.gz");
    write_cpio(&fs, &a, MTIME, true).unwrap();
    write_cpio(&fs, &b, MTIME, true).unwrap();
    assert_eq!(sha256_of(&a), sha256_of(&b));
    let raw = std::fs::read(&a).unwrap();
    assert_eq!(&raw[..4], &[0x1f, 0x8b, 8, 0], "gzip, deflate, no FNAME");
    assert_eq!(&raw[4..8], &[0, 0, 0, 0], "gzip mtime 0");

    check_against(&fs, &read_cpio(&a).unwrap());

    // gzip -dc | cpio -tv
    let mut gz = Command::new("gzip")
        .arg("-dc")
        .arg(&a)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = run(Command::new("cpio")
        .args(["-tv", "--quiet"])
        .stdin(gz.stdout.take().unwrap()));
    assert!(gz.wait().unwrap().success(), "gzip -dc failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
            .to_string()
    };
    assert!(
        line("usr/bin/sudo").starts_with("-rwsr-xr-x"),
        "{}",
        line("usr/bin/sudo")
    );
    assert!(
        line("dev/console").starts_with("crw-------"),
        "{}",
        line("dev/console")
    );
    assert!(line("bin -> usr/bin").starts_with("lrwxrwxrwx"));
    assert!(line("tmp").starts_with("drwxrwxrwt"));
    assert_eq!(text.lines().count(), fs.len() + 1);
}

#[test]
fn cpio_uncompressed_and_compressed_same_content() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = RootFs::new();
    fs.add_file("init", b"#!/bin/sh\n".to_vec(), 0o755, 0, 0).unwrap();
    let a = tmp.path().join("x.cpio");
    let b = tmp.path().join("x.cpio.gz");
    write_cpio(&fs, &a, 0, false).unwrap();
    write_cpio(&fs, &b, 0, true).unwrap();
    assert_eq!(read_cpio(&a).unwrap(), read_cpio(&b).unwrap());
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn cpio_failure_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::write(&src, b"data").unwrap();
    let mut fs = RootFs::new();
    fs.add_file_from("a", &src, 0o644, 0, 0).unwrap();
    std::fs::remove_file(&src).unwrap();
    let out = tmp.path().join("out.cpio");
    let err = write_cpio(&fs, &out, MTIME, true).unwrap_err();
    assert!(err.to_string().contains("src"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp file removed"
    );
}
