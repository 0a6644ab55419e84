//! Shared fixtures: an artifact tree on disk with its manifest, and a
//! sample root file system built from it.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use xlfs_image::{FileSource, Node, NodeKind, RootFs};
use xlfs_store::{Entry, Kind, Manifest};

/// Fixed mtime used by the tests (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;

pub const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
pub const SECRET: &[u8] = b"root:*:19000:0:99999:7:::\n";
pub const LIB: &[u8] = b"\x7fELF not really a library";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_of(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    sha256_hex(&buf)
}

pub fn entry(path: &str, kind: Kind, mode: u32, uid: u32, gid: u32) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode,
        uid,
        gid,
        size: 0,
        sha256: None,
        target: None,
        needed: vec![],
        elf: None,
    }
}

pub fn file_entry(path: &str, data: &[u8], mode: u32, uid: u32, gid: u32) -> Entry {
    Entry {
        size: data.len() as u64,
        sha256: Some(sha256_hex(data)),
        ..entry(path, Kind::File, mode, uid, gid)
    }
}

pub fn write_file(root: &Path, rel: &str, data: &[u8], disk_mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(disk_mode)).unwrap();
}

/// Creates an unpacked artifact under `dir` and returns its manifest.
///
/// On disk everything is owned by whoever runs the test (and, when that
/// is root, chowned to 1234:1234 so that it differs from the manifest);
/// modes on disk also differ from the manifest's.
pub fn make_artifact(dir: &Path) -> Manifest {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    write_file(dir, "usr/bin/tool", TOOL, 0o644);
    write_file(dir, "usr/bin/sudo", TOOL, 0o755);
    write_file(dir, "etc/secret", SECRET, 0o644);
    write_file(dir, "usr/lib/libx.so.1", LIB, 0o644);
    fs::hard_link(dir.join("usr/lib/libx.so.1"), dir.join("usr/lib/libx-hard.so.1")).unwrap();
    symlink("libx.so.1", dir.join("usr/lib/libx.so")).unwrap();
    if is_root() {
        for rel in ["etc/secret", "usr/bin/tool", "usr/lib/libx.so.1", "etc"] {
            let p = std::ffi::CString::new(dir.join(rel).to_str().unwrap()).unwrap();
            // SAFETY: valid NUL-terminated path. Test fixture only: makes the
            // disk owner differ from the manifest's.
            assert_eq!(unsafe { libc::chown(p.as_ptr(), 1234, 1234) }, 0);
        }
    }
    let mut entries = vec![
        entry("etc", Kind::Dir, 0o755, 0, 0),
        file_entry("etc/secret", SECRET, 0o640, 0, 5),
        entry("usr", Kind::Dir, 0o755, 0, 0),
        entry("usr/bin", Kind::Dir, 0o755, 0, 0),
        file_entry("usr/bin/sudo", TOOL, 0o4755, 0, 0),
        file_entry("usr/bin/tool", TOOL, 0o755, 0, 0),
        entry("usr/lib", Kind::Dir, 0o755, 0, 0),
        Entry {
            target: Some("usr/lib/libx.so.1".into()),
            ..entry("usr/lib/libx-hard.so.1", Kind::Hardlink, 0o644, 0, 0)
        },
        Entry {
            target: Some("libx.so.1".into()),
            ..entry("usr/lib/libx.so", Kind::Symlink, 0o777, 0, 0)
        },
        file_entry("usr/lib/libx.so.1", LIB, 0o644, 0, 0),
    ];
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Manifest { entries }
}

/// The sample root file system: the artifact plus generated nodes of every
/// kind.
pub fn sample_rootfs(artifact: &Path, manifest: &Manifest) -> RootFs {
    let mut fs = RootFs::new();
    fs.add_artifact("pkg-a", artifact, manifest).unwrap();
    fs.add_dir("tmp", 0o1777, 0, 0).unwrap();
    fs.add_dir("home/user", 0o700, 1000, 100).unwrap();
    fs.add_file("etc/hostname", b"xen-host\n".to_vec(), 0o644, 0, 0)
        .unwrap();
    fs.add_file("home/user/.profile", b"PS1='$ '\n".to_vec(), 0o600, 1000, 100)
        .unwrap();
    fs.add_file("usr/share/empty", Vec::new(), 0o644, 0, 0).unwrap();
    fs.add_file("usr/share/we ird \"name\" #x\\y", b"odd".to_vec(), 0o644, 0, 0)
        .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs.add_file("usr/share/big.bin", big, 0o644, 0, 0).unwrap();
    fs.add_symlink("bin", "usr/bin").unwrap();
    fs.add_symlink("usr/share/long-link", &"../".repeat(40)).unwrap();
    // Around the ext4 fast-symlink limit (< 60 bytes are stored in the inode).
    fs.add_symlink("usr/share/link59", &"x".repeat(59)).unwrap();
    fs.add_symlink("usr/share/link60", &"y".repeat(60)).unwrap();
    // The same source file added again: an independent copy, not a hard link.
    fs.add_file_from(
        "usr/share/copy-of-tool",
        &artifact.join("usr/bin/tool"),
        0o644,
        0,
        0,
    )
    .unwrap();
    fs.add_device("dev/-odd name", 'c', 10, 200, 0o600).unwrap();
    fs.add_device("dev/console", 'c', 5, 1, 0o600).unwrap();
    fs.add_device("dev/null", 'c', 1, 3, 0o666).unwrap();
    fs.add_device("dev/vda", 'b', 254, 0, 0o660).unwrap();
    fs.insert(
        "run/initctl",
        Node {
            kind: NodeKind::Fifo,
            mode: 0o600,
            uid: 0,
            gid: 0,
        },
    )
    .unwrap();
    fs
}

/// Content of a node as the images must store it (file bytes or link target).
pub fn expected_data(node: &Node) -> Vec<u8> {
    match &node.kind {
        NodeKind::File { source } => match source {
            FileSource::Bytes(b) => b.clone(),
            FileSource::Path(p) => fs::read(p).unwrap(),
        },
        NodeKind::Symlink { target } => target.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// A temp dir that another user may enter (tempfile makes them 0700).
pub fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn tool_exists(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(name).is_file())
}
