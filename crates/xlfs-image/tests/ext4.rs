//! ext4 writer/reader with the real e2fsprogs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use xlfs_image::{ext4_cat, read_ext4, write_ext4, Ext4Entry, Ext4Options, NodeKind, RootFs};

fn opts() -> Ext4Options {
    Ext4Options {
        size_mib: 0,
        label: "xlfs-test".into(),
        uuid: "0f0e0d0c-0b0a-4908-8706-050403020100".into(),
        hash_seed: "01020304-0506-4708-890a-0b0c0d0e0f10".into(),
        mtime: MTIME,
    }
}

/// Checks every node of `fs` against the image listing and content.
fn check_image(fs: &RootFs, image: &Path) {
    let entries = read_ext4(image).unwrap();
    let by_path: BTreeMap<&str, &Ext4Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let root = by_path["."];
    assert_eq!(root.mode, fs.root().st_mode());
    assert_eq!((root.uid, root.gid), (fs.root().uid, fs.root().gid));
    let own_lf = fs.get("lost+found").is_some();
    if !own_lf {
        let lf = by_path["lost+found"];
        assert_eq!((lf.mode, lf.uid, lf.gid), (0o40700, 0, 0));
    }
    let mut listed: Vec<&str> = by_path
        .keys()
        .copied()
        .filter(|p| *p != "." && (own_lf || *p != "lost+found"))
        .collect();
    listed.sort();
    assert_eq!(listed, fs.paths().collect::<Vec<_>>());
    for (path, node) in fs.iter() {
        let e = by_path[path];
        assert_eq!(e.mode, node.st_mode(), "mode of {path}");
        assert_eq!((e.uid, e.gid), (node.uid, node.gid), "owner of {path}");
        match &node.kind {
            NodeKind::File { .. } => {
                let data = expected_data(node);
                assert_eq!(e.size, data.len() as u64, "size of {path}");
                assert!(ext4_cat(image, path).unwrap() == data, "content of {path}");
            }
            NodeKind::Symlink { target } => assert_eq!(e.target.as_deref(), Some(target.as_str()), "{path}"),
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                assert_eq!(e.rdev, Some((*major, *minor)), "{path}")
            }
            _ => {}
        }
    }
}

/// `debugfs -R "stat PATH"` output.
fn stat(image: &Path, path: &str) -> String {
    let out = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat \"{path}\""))
        .arg(image));
    String::from_utf8(out.stdout).unwrap()
}

fn fsck_clean(image: &Path) {
    run(Command::new("e2fsck").arg("-fn").arg(image));
}

#[test]
fn ext4_roundtrip_and_reproducible() {
    let tmp = open_tempdir();
    let art = tmp.path().join("art");
    let manifest = make_artifact(&art);
    let fs = sample_rootfs(&art, &manifest);

    let a = tmp.path().join("a.ext4");
    write_ext4(&fs, &a, &opts()).unwrap();
    fsck_clean(&a);
    check_image(&fs, &a);

    let entries = read_ext4(&a).unwrap();
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap().clone();
    // Ownership and modes from the manifest, whatever the disk says.
    let secret = get("etc/secret");
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o100640, 0, 5));
    assert_eq!(ext4_cat(&a, "/etc/secret").unwrap(), SECRET);
    assert_eq!(get("usr/bin/sudo").mode, 0o104755);
    assert_eq!(get("usr/bin/tool").mode, 0o100755);
    assert_eq!(get("tmp").mode, 0o41777);
    assert_eq!(get("home/user").uid, 1000);
    assert_eq!(get("dev/console").rdev, Some((5, 1)));
    assert_eq!(get("dev/console").mode, 0o20600);
    assert_eq!(get("dev/null").rdev, Some((1, 3)));
    assert_eq!(get("dev/vda").mode, 0o60660);
    assert_eq!(get("run/initctl").mode, 0o10600);
    assert_eq!(get("usr/share/long-link").target.unwrap(), "../".repeat(40));
    assert_eq!(ext4_cat(&a, "usr/share/we ird \"name\" #x\\y").unwrap(), b"odd");
    // The artifact's hard link is a hard link in the image too.
    assert_eq!(get("usr/lib/libx-hard.so.1").ino, get("usr/lib/libx.so.1").ino);
    assert_ne!(get("usr/share/copy-of-tool").ino, get("usr/bin/tool").ino);
    assert_eq!(get("dev/-odd name").rdev, Some((10, 200)));
    // Times are the fixed mtime everywhere (no staging time leaks).
    for p in [
        "/",
        "/etc/hostname",
        "/etc/secret",
        "/dev/console",
        "/lost+found",
        "/usr/lib/libx.so",
    ] {
        let s = stat(&a, p);
        for field in ["ctime", "atime", "mtime", "crtime"] {
            assert!(
                s.contains(&format!("{field}: 0x6553f100:00000000")),
                "{field} of {p}:\n{s}"
            );
        }
    }
    let out = run(Command::new("dumpe2fs").arg("-h").arg(&a));
    let sb = String::from_utf8(out.stdout).unwrap();
    assert!(sb.contains("Filesystem volume name:   xlfs-test"), "{sb}");
    assert!(sb.contains("0f0e0d0c-0b0a-4908-8706-050403020100"), "{sb}");
    assert!(
        sb.contains("Directory Hash Seed:      01020304-0506-4708-890a-0b0c0d0e0f10"),
        "{sb}"
    );
    for field in ["Filesystem created:", "Last write time:", "Last checked:"] {
        let line = sb.lines().find(|l| l.starts_with(field)).unwrap();
        assert!(line.ends_with("Tue Nov 14 22:13:20 2023"), "{line}");
    }

    // Second build after the clock moved on and the sources were touched.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(art.join("usr/bin/tool"), TOOL).unwrap();
    let b = tmp.path().join("sub/b.ext4");
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    write_ext4(&fs, &b, &opts()).unwrap();
    assert_eq!(sha256_of(&a), sha256_of(&b), "ext4 images must be byte-identical");

    // No temporary files or staging directories are left behind.
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.ext4", "art", "sub"]);
}

#[test]
fn ext4_explicit_size_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = RootFs::new();
    fs.add_file("f", vec![1u8; 3 << 20], 0o644, 0, 0).unwrap();
    let out = tmp.path().join("small.ext4");
    let mut o = opts();
    o.size_mib = 1;
    let err = write_ext4(&fs, &out, &o).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("mke2fs"), "{msg}");
    assert!(!out.exists(), "no complete-looking image on failure");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp files removed"
    );

    o.size_mib = 64;
    write_ext4(&fs, &out, &o).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 64 << 20);
    assert_eq!(ext4_cat(&out, "f").unwrap(), vec![1u8; 3 << 20]);
    assert!(ext4_cat(&out, "missing")
        .unwrap_err()
        .to_string()
        .contains("missing"));

    o.mtime = 0;
    assert!(
        write_ext4(&fs, &out, &o).is_err(),
        "mtime 0 means 'now' to e2fsprogs"
    );
    let mut o = opts();
    o.uuid = "random".into();
    assert!(write_ext4(&fs, &out, &o)
        .unwrap_err()
        .to_string()
        .contains("uuid"));
}

#[test]
fn ext4_lost_and_found_and_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("empty.ext4");
    write_ext4(&RootFs::new(), &out, &opts()).unwrap();
    let e = read_ext4(&out).unwrap();
    assert_eq!(
        e.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        [".", "lost+found"]
    );

    let mut fs = RootFs::new();
    fs.add_dir("", 0o700, 0, 0).unwrap();
    fs.add_dir("lost+found", 0o750, 0, 3).unwrap();
    fs.add_file("lost+found/readme", b"kept".to_vec(), 0o644, 0, 0)
        .unwrap();
    write_ext4(&fs, &out, &opts()).unwrap();
    check_image(&fs, &out);
    let e = read_ext4(&out).unwrap();
    assert_eq!(e[0].mode, 0o40700);
    fsck_clean(&out);

    let mut fs = RootFs::new();
    fs.add_file("lost+found", vec![], 0o644, 0, 0).unwrap();
    assert!(write_ext4(&fs, &out, &opts()).is_err());
}

#[test]
fn ext4_auto_size_many_small_files() {
    // Many empty files: the inode count, not the data, limits the size.
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = RootFs::new();
    for i in 0..3000 {
        fs.add_file(&format!("d{}/f{i}", i % 7), Vec::new(), 0o644, 0, 0)
            .unwrap();
    }
    let out = tmp.path().join("many.ext4");
    write_ext4(&fs, &out, &opts()).unwrap();
    assert_eq!(read_ext4(&out).unwrap().len(), 3000 + 7 + 2);
    // Multi-block directories are reproducible too.
    let again = tmp.path().join("again.ext4");
    write_ext4(&fs, &again, &opts()).unwrap();
    assert_eq!(sha256_of(&out), sha256_of(&again));
}

#[test]
fn ext4_source_xattrs_and_symlinks_do_not_leak() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::write(&src, b"payload").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let c = std::ffi::CString::new(src.to_str().unwrap()).unwrap();
    // SAFETY: valid path and value buffer.
    let set = unsafe { libc::setxattr(c.as_ptr(), c"user.test".as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    let mut fs = RootFs::new();
    fs.add_file_from("a", &src, 0o644, 0, 0).unwrap();
    fs.add_file_from("b", &link, 0o644, 0, 0).unwrap();
    let out = tmp.path().join("x.ext4");
    write_ext4(&fs, &out, &opts()).unwrap();
    fsck_clean(&out);
    check_image(&fs, &out);
    let e = read_ext4(&out).unwrap();
    assert_eq!(
        e.iter().find(|e| e.path == "b").unwrap().file_type(),
        libc::S_IFREG
    );
    assert!(ext4_cat(&out, "b").is_ok());
    assert!(ext4_cat(&out, "/").is_err(), "directories are not files");
    if set == 0 {
        let out = run(Command::new("debugfs")
            .args(["-R", "ea_list /a"])
            .arg(tmp.path().join("x.ext4")));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("user.test"), "{text}");
        // The source keeps its attribute (it was not touched) ...
        let mut buf = [0u8; 8];
        // SAFETY: valid path, name and buffer.
        let n = unsafe { libc::getxattr(c.as_ptr(), c"user.test".as_ptr(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(n, 1);
        // ... and the image is the same as without the attribute.
        // SAFETY: valid path and name.
        assert_eq!(unsafe { libc::removexattr(c.as_ptr(), c"user.test".as_ptr()) }, 0);
        let clean = tmp.path().join("clean.ext4");
        write_ext4(&fs, &clean, &opts()).unwrap();
        assert_eq!(sha256_of(&clean), sha256_of(&tmp.path().join("x.ext4")));
    } else {
        eprintln!(
            "user xattrs unsupported here: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Builds the sample image as an unprivileged user (uid/gid 65534) and
/// checks it is byte-identical to the one built by root.
#[test]
fn ext4_as_unprivileged_user_is_identical() {
    if !is_root() {
        eprintln!("not root: the other tests already ran unprivileged");
        return;
    }
    let tmp = open_tempdir();
    let art = tmp.path().join("art");
    let manifest = make_artifact(&art);
    let fs = sample_rootfs(&art, &manifest);
    let as_root = tmp.path().join("root.ext4");
    write_ext4(&fs, &as_root, &opts()).unwrap();

    // A directory the unprivileged user can write, and a copy of this test
    // binary it can execute.
    let outdir = tmp.path().join("nobody");
    std::fs::create_dir(&outdir).unwrap();
    let c = std::ffi::CString::new(outdir.to_str().unwrap()).unwrap();
    // SAFETY: valid path; test setup only.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    let exe = tmp.path().join("test-exe");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    // setpriv is in util-linux (scripts/host-packages.txt); a missing one is a failure.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "nonroot_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("XLFS_IMAGE_HELPER_ART", &art)
        .env("XLFS_IMAGE_HELPER_OUT", outdir.join("nobody.ext4"))
        .env("TMPDIR", &outdir)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 passed"), "helper did not run: {log}");
    let as_nobody = outdir.join("nobody.ext4");
    let meta = std::fs::metadata(&as_nobody).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        65534,
        "built by nobody"
    );
    check_image(&fs, &as_nobody);
    assert_eq!(
        sha256_of(&as_root),
        sha256_of(&as_nobody),
        "root and nobody builds identical"
    );
}

/// Run by `ext4_as_unprivileged_user_is_identical` under another uid.
#[test]
#[ignore = "helper run by ext4_as_unprivileged_user_is_identical"]
fn nonroot_helper() {
    let (Some(art), Some(out)) = (
        std::env::var_os("XLFS_IMAGE_HELPER_ART"),
        std::env::var_os("XLFS_IMAGE_HELPER_OUT"),
    ) else {
        return;
    };
    assert!(!is_root(), "helper must run unprivileged");
    let art = PathBuf::from(art);
    // The manifest is rebuilt the same way (without touching the tree).
    let manifest = manifest_only(&art);
    let fs = sample_rootfs(&art, &manifest);
    write_ext4(&fs, Path::new(&out), &opts()).unwrap();
    let e = read_ext4(Path::new(&out)).unwrap();
    let secret = e.iter().find(|e| e.path == "etc/secret").unwrap();
    assert_eq!((secret.uid, secret.gid, secret.mode), (0, 5, 0o100640));
}

/// The manifest [`make_artifact`] returns, for an existing tree.
fn manifest_only(art: &Path) -> xlfs_store::Manifest {
    let scratch = tempfile::tempdir().unwrap();
    let m = make_artifact(&scratch.path().join("a"));
    assert!(art.join("etc/secret").exists());
    m
}

#[test]
fn image_code_never_chowns() {
    for (name, src) in [
        ("ext4.rs", include_str!("../src/ext4.rs")),
        ("rootfs.rs", include_str!("../src/rootfs.rs")),
        ("cpio.rs", include_str!("../src/cpio.rs")),
        ("util.rs", include_str!("../src/util.rs")),
    ] {
        for bad in ["chown(", "lchown", "fchown", "chown ", "set_owner"] {
            assert!(!src.contains(bad), "{name} uses {bad}");
        }
    }
}

/// Timing: ~5,000 files, ~200 MiB. Run with
/// `cargo test -p xlfs-image --release --test ext4 -- --ignored --nocapture bench`.
#[test]
#[ignore = "benchmark"]
fn bench_ext4_5000_files_200mib() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut fs = RootFs::new();
    let mut state = 0x1234_5678_u64;
    for i in 0..5000u64 {
        let dir = format!("usr/lib/pkg{}/sub{}", i % 50, i % 7);
        let size = if i % 100 == 0 {
            1_300_000
        } else {
            20_000 + (i % 17) * 1000
        };
        let data: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let p = src.join(format!("f{i}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(&p, &data).unwrap();
        let mode = if i % 10 == 0 { 0o755 } else { 0o644 };
        fs.add_file_from(&format!("{dir}/file{i}.so"), &p, mode, 0, (i % 3) as u32)
            .unwrap();
    }
    eprintln!(
        "tree: {} nodes, {:.1} MiB of file data",
        fs.len(),
        fs.total_size() as f64 / (1 << 20) as f64
    );
    let mut o = opts();
    o.size_mib = 200 + 100;
    let out = tmp.path().join("bench.ext4");
    let t = Instant::now();
    write_ext4(&fs, &out, &o).unwrap();
    eprintln!("write_ext4 ({} MiB image): {:.2?}", o.size_mib, t.elapsed());
    o.size_mib = 0;
    let t = Instant::now();
    write_ext4(&fs, &out, &o).unwrap();
    eprintln!(
        "write_ext4 (automatic size {} MiB): {:.2?}",
        std::fs::metadata(&out).unwrap().len() >> 20,
        t.elapsed()
    );
    let first = sha256_of(&out);
    // Same tree with in-memory contents: every file is written to the stage
    // (what happens when sources cannot be hard-linked, e.g. unprivileged
    // users with protected_hardlinks or another file system).
    let mut copied = RootFs::new();
    for (path, node) in fs.iter() {
        let mut node = node.clone();
        if let NodeKind::File {
            source: xlfs_image::FileSource::Path(p),
        } = &node.kind
        {
            node.kind = NodeKind::File {
                source: xlfs_image::FileSource::Bytes(std::fs::read(p).unwrap()),
            };
        }
        copied.insert(path, node).unwrap();
    }
    let out2 = tmp.path().join("bench2.ext4");
    let t = Instant::now();
    write_ext4(&copied, &out2, &o).unwrap();
    eprintln!(
        "write_ext4 (automatic size, contents copied to the stage): {:.2?}",
        t.elapsed()
    );
    assert_eq!(first, sha256_of(&out2), "same image either way");
    let t = Instant::now();
    let n = read_ext4(&out).unwrap().len();
    eprintln!("read_ext4 ({n} entries): {:.2?}", t.elapsed());
    let t = Instant::now();
    xlfs_image::write_cpio(&fs, &tmp.path().join("bench.cpio"), MTIME, false).unwrap();
    eprintln!("write_cpio: {:.2?}", t.elapsed());
    let t = Instant::now();
    xlfs_image::write_cpio(&fs, &tmp.path().join("bench.cpio.gz"), MTIME, true).unwrap();
    eprintln!("write_cpio gzip: {:.2?}", t.elapsed());
}
