//! Assembling root file systems from artifacts: precedence and conflicts.

mod common;

use std::path::Path;

use common::*;
use xlfs_image::{FileSource, ImageError, NodeKind, RootFs};
use xlfs_store::{Entry, Kind, Manifest};

fn artifact(dir: &Path, files: &[(&str, &[u8], u32)]) -> Manifest {
    let mut entries = Vec::new();
    for (path, data, mode) in files {
        write_file(dir, path, data, 0o644);
        entries.push(file_entry(path, data, *mode, 0, 0));
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            let d = d.to_str().unwrap();
            if !entries.iter().any(|e: &Entry| e.path == d) {
                entries.push(entry(d, Kind::Dir, 0o755, 0, 0));
            }
            p = Path::new(d).parent();
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Manifest { entries }
}

#[test]
fn artifact_ownership_comes_from_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let m = make_artifact(&tmp.path().join("art"));
    let fs = sample_rootfs(&tmp.path().join("art"), &m);
    let secret = fs.get("etc/secret").unwrap();
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o640, 0, 5));
    assert_eq!(fs.get("/usr/bin/sudo").unwrap().mode, 0o4755);
    assert_eq!(fs.owner("usr/bin/sudo"), Some("pkg-a"));
    assert_eq!(fs.owner("etc/hostname"), None);
    // The hard link became a regular file with the same source.
    match &fs.get("usr/lib/libx-hard.so.1").unwrap().kind {
        NodeKind::File {
            source: FileSource::Path(p),
        } => assert!(p.ends_with("usr/lib/libx.so.1")),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        fs.get("usr/lib/libx.so").unwrap().kind,
        NodeKind::Symlink {
            target: "libx.so.1".into()
        }
    );
    // Artifact files (4 + 1 hard link), hostname, .profile, odd name, big.bin,
    // copy-of-tool (the empty file adds nothing).
    let expected = (TOOL.len() * 3 + SECRET.len() + LIB.len() * 2 + 9 + 9 + 3 + 300_000) as u64;
    assert_eq!(fs.total_size(), expected);
}

#[test]
fn conflicting_artifacts_name_both_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let a = artifact(&tmp.path().join("a"), &[("usr/bin/x", b"one", 0o755)]);
    let b = artifact(&tmp.path().join("b"), &[("usr/bin/x", b"two", 0o755)]);
    let mut fs = RootFs::new();
    fs.add_artifact("alpha", &tmp.path().join("a"), &a).unwrap();
    let err = fs.add_artifact("beta", &tmp.path().join("b"), &b).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::Conflict { .. }), "{err:?}");
    assert!(
        msg.contains("usr/bin/x") && msg.contains("alpha") && msg.contains("beta"),
        "{msg}"
    );
    assert!(msg.contains("content"), "{msg}");
    // Nothing of the failed artifact was added.
    assert_eq!(fs.owner("usr/bin/x"), Some("alpha"));

    // Same content but different mode is also a conflict.
    let c = artifact(&tmp.path().join("c"), &[("usr/bin/x", b"one", 0o700)]);
    let msg = fs
        .add_artifact("gamma", &tmp.path().join("c"), &c)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("alpha") && msg.contains("gamma") && msg.contains("mode"),
        "{msg}"
    );

    // Identical files in two artifacts are fine (first owner kept).
    let d = artifact(
        &tmp.path().join("d"),
        &[("usr/bin/x", b"one", 0o755), ("usr/bin/y", b"y", 0o755)],
    );
    fs.add_artifact("delta", &tmp.path().join("d"), &d).unwrap();
    assert_eq!(fs.owner("usr/bin/x"), Some("alpha"));
    assert_eq!(fs.owner("usr/bin/y"), Some("delta"));

    // File vs directory.
    let e = artifact(&tmp.path().join("e"), &[("usr/bin/x/z", b"z", 0o644)]);
    let msg = fs
        .add_artifact("epsilon", &tmp.path().join("e"), &e)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("usr/bin/x") && msg.contains("alpha") && msg.contains("epsilon"),
        "{msg}"
    );
    assert!(fs.get("usr/bin/x/z").is_none());
}

#[test]
fn conflicting_directories_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    std::fs::create_dir_all(dir.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("x", dir.join("var/l")).unwrap();
    let m1 = Manifest {
        entries: vec![
            entry("var", Kind::Dir, 0o755, 0, 0),
            Entry {
                target: Some("x".into()),
                ..entry("var/l", Kind::Symlink, 0o777, 0, 0)
            },
            entry("var/lib", Kind::Dir, 0o755, 0, 0),
        ],
    };
    let mut m2 = m1.clone();
    m2.entries[2].mode = 0o700;
    let mut m3 = m1.clone();
    m3.entries[1].target = Some("y".into());
    let mut fs = RootFs::new();
    fs.add_artifact("one", &dir, &m1).unwrap();
    fs.add_artifact("one-again", &dir, &m1).unwrap();
    let msg = fs.add_artifact("two", &dir, &m2).unwrap_err().to_string();
    assert!(
        msg.contains("var/lib") && msg.contains("one") && msg.contains("two"),
        "{msg}"
    );
    let msg = fs.add_artifact("three", &dir, &m3).unwrap_err().to_string();
    assert!(msg.contains("var/l:") && msg.contains("symlink target"), "{msg}");
}

#[test]
fn explicit_nodes_win() {
    let tmp = tempfile::tempdir().unwrap();
    let a = artifact(
        &tmp.path().join("a"),
        &[("etc/passwd", b"from pkg", 0o644), ("etc/group", b"g", 0o644)],
    );
    let mut fs = RootFs::new();
    // Explicit before the artifact: the artifact does not override it.
    fs.add_file("etc/group", b"generated".to_vec(), 0o600, 0, 0)
        .unwrap();
    fs.add_artifact("base", &tmp.path().join("a"), &a).unwrap();
    // add_file after the artifact replaces its file.
    fs.add_file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n".to_vec(), 0o644, 0, 0)
        .unwrap();
    for (p, want) in [
        ("etc/passwd", &b"root:x:0:0::/root:/bin/sh\n"[..]),
        ("etc/group", b"generated"),
    ] {
        match &fs.get(p).unwrap().kind {
            NodeKind::File {
                source: FileSource::Bytes(b),
            } => assert_eq!(b, want),
            k => panic!("{p}: {k:?}"),
        }
    }
    assert_eq!(fs.get("etc/group").unwrap().mode, 0o600);
    assert_eq!(fs.owner("etc/passwd"), None);
    // An implicit parent takes the attributes an artifact gives it later.
    fs.add_file("opt/x/f", b"f".to_vec(), 0o644, 0, 0).unwrap();
    let dir = tmp.path().join("b");
    std::fs::create_dir_all(dir.join("opt")).unwrap();
    let m = Manifest {
        entries: vec![entry("opt", Kind::Dir, 0o711, 0, 7)],
    };
    fs.add_artifact("opt", &dir, &m).unwrap();
    assert_eq!(fs.get("opt").unwrap().mode, 0o711);
    assert_eq!(fs.get("opt").unwrap().gid, 7);
    // A symlink replaces a file, a file cannot replace a directory.
    fs.add_symlink("etc/group", "passwd").unwrap();
    assert!(fs.add_file("opt", vec![], 0o644, 0, 0).is_err());
    assert!(fs.remove("opt"));
    assert!(fs.get("opt/x/f").is_none());
    fs.add_file("opt", vec![], 0o644, 0, 0).unwrap();
}

#[test]
fn artifact_must_match_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut m = artifact(&dir, &[("bin/sh", b"#!", 0o755)]);
    let mut fs = RootFs::new();

    let mut missing = m.clone();
    missing.entries.push(file_entry("bin/zsh", b"z", 0o755, 0, 0));
    let msg = fs.add_artifact("shells", &dir, &missing).unwrap_err().to_string();
    assert!(
        msg.contains("shells") && msg.contains("bin/zsh") && msg.contains("not found"),
        "{msg}"
    );

    m.entries[1].size = 99;
    let msg = fs.add_artifact("shells", &dir, &m).unwrap_err().to_string();
    assert!(msg.contains("size"), "{msg}");

    let mut wrong_kind = m.clone();
    wrong_kind.entries[1] = entry("bin/sh", Kind::Dir, 0o755, 0, 0);
    assert!(fs.add_artifact("shells", &dir, &wrong_kind).is_err());

    let bad = Manifest {
        entries: vec![file_entry("../escape", b"", 0o644, 0, 0)],
    };
    assert!(matches!(
        fs.add_artifact("evil", &dir, &bad),
        Err(ImageError::InvalidPath { .. })
    ));
    assert!(fs.is_empty(), "failed adds leave nothing behind");
}

#[test]
fn parent_blocked_by_other_artifacts_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = artifact(&tmp.path().join("a"), &[("opt/x", b"file", 0o644)]);
    let dir = tmp.path().join("b");
    write_file(&dir, "opt/x/y", b"y", 0o644);
    // A manifest that does not list the parent directory itself.
    let b = Manifest {
        entries: vec![file_entry("opt/x/y", b"y", 0o644, 0, 0)],
    };
    let mut fs = RootFs::new();
    fs.add_artifact("alpha", &tmp.path().join("a"), &a).unwrap();
    let msg = fs.add_artifact("beta", &dir, &b).unwrap_err().to_string();
    assert!(
        msg.contains("opt/x") && msg.contains("alpha") && msg.contains("beta"),
        "{msg}"
    );
}
