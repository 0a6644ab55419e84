//! Integration tests for `xlfs_unpack::unpack`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{listing, Comp, Tar, MTIME};
use tar::EntryType;
use tempfile::TempDir;
use xlfs_unpack::{unpack, UnpackError};

/// A scratch area: archives go into `tmp/in`, destinations into `tmp/out`
/// (so that leftovers in the destination's parent are easy to spot).
struct Scratch {
    tmp: TempDir,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("in")).unwrap();
        fs::create_dir(tmp.path().join("out")).unwrap();
        Scratch { tmp }
    }
    fn input(&self) -> PathBuf {
        self.tmp.path().join("in")
    }
    fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }
    fn dest(&self) -> PathBuf {
        self.out().join("dest")
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The well-formed source archive used by the "good" tests.
fn good_archive() -> Tar {
    let long = format!("pkg-1.0/{}/long.txt", "x".repeat(120));
    let mut t = Tar::new();
    t.pax_global()
        .dir("pkg-1.0/", 0o755)
        .file("pkg-1.0/README", 0o644, b"hello\n")
        .file("pkg-1.0/configure", 0o755, b"#!/bin/sh\nexit 0\n")
        .dir("pkg-1.0/ro/", 0o555)
        .file("pkg-1.0/ro/file", 0o444, b"read-only\n")
        .file("pkg-1.0/src/main.c", 0o640, b"int main(void){return 0;}\n")
        .symlink("pkg-1.0/link", "README")
        .symlink("pkg-1.0/src/up", "../README")
        .symlink("pkg-1.0/src/self", ".")
        .symlink("pkg-1.0/src/via", "../src/../README")
        .hardlink("pkg-1.0/hard", "pkg-1.0/README")
        .long_file(&long, b"long name\n")
        .file("./pkg-1.0/dot", 0o600, b"dot\n");
    t
}

fn check_good_tree(dest: &Path) {
    let p = dest.join("pkg-1.0");
    assert_eq!(fs::read(p.join("README")).unwrap(), b"hello\n");
    assert_eq!(mode(&p.join("README")), 0o644);
    assert_eq!(mode(&p.join("configure")), 0o755);
    assert_eq!(mode(&p.join("src/main.c")), 0o640);
    assert_eq!(mode(&p.join("dot")), 0o600);
    assert_eq!(fs::read(p.join("ro/file")).unwrap(), b"read-only\n");
    assert_eq!(mode(&p.join("ro/file")), 0o444);
    assert_eq!(mode(&p.join("ro")), 0o555);
    assert_eq!(mode(&p.join("src")), 0o755, "implied directory");
    assert_eq!(mode(dest), 0o755, "extraction root");

    assert_eq!(fs::read_link(p.join("link")).unwrap(), Path::new("README"));
    assert_eq!(fs::read(p.join("link")).unwrap(), b"hello\n");
    assert_eq!(fs::read(p.join("src/up")).unwrap(), b"hello\n");
    assert_eq!(fs::read(p.join("src/via")).unwrap(), b"hello\n");
    assert!(p.join("src/self/main.c").exists());

    let a = fs::metadata(p.join("README")).unwrap();
    let b = fs::symlink_metadata(p.join("hard")).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "hard link");
    assert_eq!(a.nlink(), 2);

    let long = p.join("x".repeat(120)).join("long.txt");
    assert_eq!(fs::read(long).unwrap(), b"long name\n");
    assert!(!dest.join("pax_global_header").exists());

    // Archived mtimes are preserved for files and directories.
    let want = SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME);
    assert_eq!(a.modified().unwrap(), want);
    assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), want);
    assert_eq!(fs::metadata(p.join("ro")).unwrap().modified().unwrap(), want);
}

fn good(comp: Comp) {
    let s = Scratch::new();
    let archive = good_archive().write(&s.input(), "pkg-1.0", comp);
    let summary = unpack(&archive, &s.dest()).unwrap();
    check_good_tree(&s.dest());
    // README, configure, ro/file, main.c, link, up, self, via, hard, long, dot
    assert_eq!(summary.files, 11);
    assert_eq!(summary.bytes, 6 + 17 + 10 + 26 + 10 + 4);
    assert_eq!(summary.top_level, vec!["pkg-1.0".to_string()]);
    assert_eq!(listing(&s.out()), vec!["dest"], "no temp dir left");
}

#[test]
fn good_plain_tar() {
    good(Comp::None);
}

#[test]
fn good_tar_gz() {
    good(Comp::Gz);
}

#[test]
fn good_tar_xz() {
    good(Comp::Xz);
}

#[test]
fn good_tar_bz2() {
    good(Comp::Bz2);
}

#[test]
fn good_tar_zst() {
    good(Comp::Zst);
}

#[test]
fn concatenated_gzip_members() {
    let s = Scratch::new();
    let tar = Tar::new().file("a", 0o644, b"multi-member\n").bytes();
    let (x, y) = tar.split_at(700);
    let mut data = Comp::Gz.compress(x);
    data.extend(Comp::Gz.compress(y));
    let archive = s.input().join("multi.tar.gz");
    fs::write(&archive, data).unwrap();
    unpack(&archive, &s.dest()).unwrap();
    assert_eq!(fs::read(s.dest().join("a")).unwrap(), b"multi-member\n");
}

#[test]
fn top_level_is_sorted_and_deduplicated() {
    let s = Scratch::new();
    let archive = Tar::new()
        .file("zeta/a", 0o644, b"")
        .file("alpha", 0o644, b"x")
        .file("zeta/b", 0o644, b"")
        .dir("mid/", 0o755)
        .write(&s.input(), "t", Comp::None);
    let summary = unpack(&archive, &s.dest()).unwrap();
    assert_eq!(summary.top_level, vec!["alpha", "mid", "zeta"]);
    assert_eq!(summary.files, 3);
    assert_eq!(summary.bytes, 1);
}

#[test]
fn setuid_and_setgid_are_stripped() {
    let s = Scratch::new();
    let archive = Tar::new()
        .dir("d/", 0o2775)
        .file("d/suid", 0o4755, b"x")
        .file("d/sgid", 0o2711, b"x")
        .file("d/sticky", 0o1644, b"x")
        .write(&s.input(), "t", Comp::Gz);
    unpack(&archive, &s.dest()).unwrap();
    let d = s.dest().join("d");
    assert_eq!(mode(&d), 0o775);
    assert_eq!(mode(&d.join("suid")), 0o755);
    assert_eq!(mode(&d.join("sgid")), 0o711);
    assert_eq!(mode(&d.join("sticky")), 0o1644);
}

#[test]
fn ownership_is_not_preserved() {
    let s = Scratch::new();
    let archive = Tar::new()
        .file("f", 0o644, b"x")
        .write(&s.input(), "t", Comp::None);
    unpack(&archive, &s.dest()).unwrap();
    let m = fs::metadata(s.dest().join("f")).unwrap();
    let me = fs::metadata(s.input()).unwrap();
    assert_eq!((m.uid(), m.gid()), (me.uid(), me.gid()));
    assert_ne!(m.uid(), 1234);
}

#[test]
fn later_duplicate_members_win() {
    let s = Scratch::new();
    let archive = Tar::new()
        .file("f", 0o644, b"first")
        .file("f", 0o600, b"second")
        .symlink("l", "f")
        .file("l", 0o644, b"replaces the link")
        .file("g", 0o644, b"file")
        .symlink("g", "f")
        .write(&s.input(), "t", Comp::None);
    unpack(&archive, &s.dest()).unwrap();
    assert_eq!(fs::read(s.dest().join("f")).unwrap(), b"second");
    assert_eq!(mode(&s.dest().join("f")), 0o600);
    assert!(fs::symlink_metadata(s.dest().join("l")).unwrap().is_file());
    assert_eq!(fs::read(s.dest().join("f")).unwrap(), b"second");
    assert_eq!(fs::read_link(s.dest().join("g")).unwrap(), Path::new("f"));
}

#[test]
fn dotdot_after_real_directory_in_symlink_target_is_accepted() {
    let s = Scratch::new();
    let archive = Tar::new()
        .file("sub/x", 0o644, b"x")
        .file("y", 0o644, b"y")
        .symlink("sub/l", "..")
        .symlink("q", "sub/../y")
        .write(&s.input(), "t", Comp::None);
    unpack(&archive, &s.dest()).unwrap();
    assert_eq!(fs::read(s.dest().join("q")).unwrap(), b"y");
}

/// Unpacks `tar` (plain and gzip-compressed) and asserts it is refused
/// for `member`, with a reason containing `why`, leaving nothing behind.
fn refused(tar: &mut Tar, member: &str, why: &str) {
    let bytes = tar.bytes();
    for comp in [Comp::None, Comp::Gz] {
        let s = Scratch::new();
        let archive = s.input().join(format!("evil.{}", comp.ext()));
        fs::write(&archive, comp.compress(&bytes)).unwrap();
        let err = unpack(&archive, &s.dest()).unwrap_err();
        match &err {
            UnpackError::Refused {
                archive: a,
                member: m,
                reason,
            } => {
                assert_eq!(a, &archive);
                assert_eq!(m, member, "{err}");
                assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(member) && msg.contains("evil.tar"), "{msg}");
        assert!(!s.dest().exists());
        assert!(listing(&s.out()).is_empty(), "left: {:?}", listing(&s.out()));
    }
}

fn preamble() -> Tar {
    let mut t = Tar::new();
    t.dir("ok/", 0o755).file("ok/file", 0o644, b"fine\n");
    t
}

#[test]
fn refuses_parent_dir_member() {
    refused(preamble().file("../evil", 0o644, b"x"), "../evil", "`..`");
}

#[test]
fn refuses_absolute_member() {
    refused(preamble().file("/etc/evil", 0o644, b"x"), "/etc/evil", "absolute");
}

#[test]
fn refuses_nested_parent_dir_member() {
    refused(
        preamble().file("a/../../evil", 0o644, b"x"),
        "a/../../evil",
        "`..`",
    );
    refused(preamble().file("a/../b", 0o644, b"x"), "a/../b", "`..`");
}

#[test]
fn refuses_empty_member_path() {
    refused(preamble().dir("./", 0o755), "./", "empty");
    refused(preamble().file(".", 0o644, b""), ".", "empty");
}

#[test]
fn refuses_absolute_symlink() {
    refused(preamble().symlink("link", "/etc"), "link", "absolute");
}

#[test]
fn refuses_escaping_symlinks() {
    refused(preamble().symlink("x", "../../.."), "x", "leaves");
    refused(preamble().symlink("ok/x", "../.."), "ok/x", "leaves");
    refused(preamble().symlink("ok/x", "../ok/../../y"), "ok/x", "leaves");
    refused(preamble().symlink("ok/x", ""), "ok/x", "empty");
}

#[test]
fn refuses_symlink_to_dotdot_then_member_below_it() {
    let mut t = preamble();
    t.symlink("d", "..").file("d/evil", 0o644, b"x");
    refused(&mut t, "d", "leaves");
}

#[test]
fn refuses_member_through_in_tree_symlink() {
    // `ok/l` points to the root (inside the tree), so it is accepted...
    let mut t = preamble();
    t.symlink("ok/l", "..").file("ok/l/evil", 0o644, b"x");
    // ...but writing through it is not.
    refused(&mut t, "ok/l/evil", "through symlink `ok/l`");

    let mut t = preamble();
    t.symlink("a", "ok").file("a/x", 0o644, b"x");
    refused(&mut t, "a/x", "through symlink `a`");

    let mut t = preamble();
    t.symlink("a", "ok").dir("a/", 0o755);
    refused(&mut t, "a/", "symlink");

    let mut t = preamble();
    t.symlink("a", "ok").symlink("a/l", "file");
    refused(&mut t, "a/l", "through symlink `a`");

    let mut t = preamble();
    t.symlink("a", "ok").hardlink("a/h", "ok/file");
    refused(&mut t, "a/h", "through symlink `a`");
}

#[test]
fn refuses_dotdot_through_symlinks_in_target() {
    // Lexically `q` points to `deep/deeper`, but the kernel resolves `p`
    // (the root) first, then `..`: outside.
    let mut t = preamble();
    t.dir("deep/deeper/", 0o755)
        .symlink("deep/deeper/p", "../..")
        .symlink("q", "deep/deeper/p/..");
    refused(&mut t, "q", "not a real directory");

    // Same, with the symlink created only after the link through it.
    let mut t = preamble();
    t.symlink("q", "p/..").symlink("p", ".");
    refused(&mut t, "q", "not a real directory");
}

#[test]
fn refuses_bad_hard_links() {
    refused(
        preamble().hardlink("h", "/etc/passwd"),
        "h",
        "hard link target is absolute",
    );
    refused(preamble().hardlink("h", "../x"), "h", "`..`");
    refused(
        preamble().hardlink("h", "later"),
        "h",
        "not a regular file extracted earlier",
    );
    refused(
        preamble().hardlink("h", "ok"),
        "h",
        "not a regular file extracted earlier",
    );
    refused(preamble().hardlink("h", ""), "h", "empty");
}

#[test]
fn refuses_hard_link_to_symlink() {
    // `ok/l` is fine where it is; a hard link to it elsewhere would be a
    // symlink with the same text, escaping the tree.
    let mut t = preamble();
    t.symlink("ok/l", "../x").hardlink("h", "ok/l");
    refused(&mut t, "h", "not a regular file");
    // Same when the regular file was replaced by a symlink.
    let mut t = preamble();
    t.file("ok/f", 0o644, b"")
        .symlink("ok/f", "../x")
        .hardlink("h", "ok/f");
    refused(&mut t, "h", "not a regular file");
}

#[test]
fn refuses_devices_and_fifos() {
    refused(
        preamble().raw("dev/null", EntryType::Char, 0o666, "", b""),
        "dev/null",
        "character device",
    );
    refused(
        preamble().raw("dev/sda", EntryType::Block, 0o660, "", b""),
        "dev/sda",
        "block device",
    );
    refused(
        preamble().raw("fifo", EntryType::Fifo, 0o644, "", b""),
        "fifo",
        "fifo",
    );
    refused(
        preamble().raw("odd", EntryType::new(b'Z'), 0o644, "", b""),
        "odd",
        "unsupported entry type",
    );
}

#[test]
fn refuses_replacing_directory_with_file() {
    let mut t = preamble();
    t.file("ok", 0o644, b"x");
    refused(&mut t, "ok", "would replace a directory");
}

#[test]
fn refusal_with_read_only_directories_leaves_nothing() {
    let mut t = Tar::new();
    t.dir("ro/", 0o555)
        .file("ro/f", 0o444, b"x")
        .file("../evil", 0o644, b"x");
    refused(&mut t, "../evil", "`..`");
}

fn expect_corrupt(s: &Scratch, archive: &Path) {
    match unpack(archive, &s.dest()) {
        Err(UnpackError::Corrupt { archive: a, detail }) => {
            assert_eq!(a, archive);
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!s.dest().exists());
    assert!(listing(&s.out()).is_empty(), "left: {:?}", listing(&s.out()));
}

#[test]
fn truncated_archives_are_corrupt() {
    // Incompressible data so that truncating the compressed stream cuts
    // into the middle of the file.
    let mut data = vec![0u8; 200_000];
    let mut x: u32 = 12345;
    for b in data.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 24) as u8;
    }
    let tar = Tar::new()
        .file("a/small", 0o644, b"small")
        .file("a/big", 0o644, &data)
        .bytes();
    for comp in [Comp::None, Comp::Gz, Comp::Xz, Comp::Bz2, Comp::Zst] {
        for frac in [2, 10] {
            let s = Scratch::new();
            let full = comp.compress(&tar);
            let cut = full.len() - full.len() / frac;
            let archive = s.input().join(format!("trunc.{}", comp.ext()));
            fs::write(&archive, &full[..cut]).unwrap();
            expect_corrupt(&s, &archive);
        }
    }
}

#[test]
fn truncated_compressed_trailer_is_corrupt() {
    // The tar stream is complete but the compressed stream lacks its last
    // bytes (checksum): still corrupt.
    let tar = Tar::new().file("a", 0o644, b"content").bytes();
    for comp in [Comp::Gz, Comp::Xz, Comp::Zst] {
        let s = Scratch::new();
        let full = comp.compress(&tar);
        let archive = s.input().join(format!("trailer.{}", comp.ext()));
        fs::write(&archive, &full[..full.len() - 4]).unwrap();
        expect_corrupt(&s, &archive);
    }
}

#[test]
fn bad_header_checksum_is_corrupt() {
    let s = Scratch::new();
    let mut tar = Tar::new().file("a", 0o644, b"x").bytes();
    tar[0] = b'b'; // name changed, checksum not updated
    tar[257..262].copy_from_slice(b"ustar");
    let archive = s.input().join("bad.tar.gz");
    fs::write(&archive, Comp::Gz.compress(&tar)).unwrap();
    expect_corrupt(&s, &archive);
}

#[test]
fn unknown_formats() {
    for (name, data) in [
        ("empty.tar", Vec::new()),
        ("text.tar", b"this is not an archive\n".repeat(100)),
        ("zip.zip", b"PK\x03\x04rest".to_vec()),
    ] {
        let s = Scratch::new();
        let archive = s.input().join(name);
        fs::write(&archive, data).unwrap();
        match unpack(&archive, &s.dest()) {
            Err(UnpackError::UnknownFormat { archive: a }) => assert_eq!(a, archive),
            other => panic!("{name}: expected UnknownFormat, got {other:?}"),
        }
        assert!(!s.dest().exists());
        assert!(listing(&s.out()).is_empty());
    }
}

#[test]
fn missing_archive_is_io_error() {
    let s = Scratch::new();
    let missing = s.input().join("nope.tar.gz");
    assert!(matches!(
        unpack(&missing, &s.dest()),
        Err(UnpackError::Io { path, .. }) if path == missing
    ));
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn existing_destination_is_refused_and_untouched() {
    let s = Scratch::new();
    let archive = Tar::new().file("a", 0o644, b"x").write(&s.input(), "t", Comp::Gz);
    fs::create_dir(s.dest()).unwrap();
    fs::write(s.dest().join("keep"), b"keep").unwrap();
    match unpack(&archive, &s.dest()) {
        Err(UnpackError::Io { path, source }) => {
            assert_eq!(path, s.dest());
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert_eq!(listing(&s.dest()), vec!["keep"]);
    assert_eq!(listing(&s.out()), vec!["dest"]);
}

#[test]
fn missing_destination_parent_is_created() {
    let s = Scratch::new();
    let archive = Tar::new()
        .file("a", 0o644, b"x")
        .write(&s.input(), "t", Comp::Zst);
    let dest = s.out().join("deep/er/dest");
    unpack(&archive, &dest).unwrap();
    assert_eq!(fs::read(dest.join("a")).unwrap(), b"x");
    assert_eq!(listing(&s.out().join("deep/er")), vec!["dest"]);
}

#[test]
fn old_v7_directories_are_directories() {
    // V7 tar (sendmail's release tarball): no type byte, a directory is a name ending in `/`.
    let s = Scratch::new();
    let mut t = Tar::new();
    t.raw("pkg-1.0/", EntryType::Regular, 0o755, "", b"")
        .file("pkg-1.0/Makefile", 0o644, b"all:\n");
    let mut bytes = t.bytes();
    bytes[156] = 0; // the first header's type flag: NUL, not '0'
    let sum: u32 = bytes[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    bytes[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let archive = s.input().join("v7.tar");
    fs::write(&archive, bytes).unwrap();
    unpack(&archive, &s.dest()).unwrap();
    assert!(s.dest().join("pkg-1.0").is_dir());
    assert_eq!(fs::read(s.dest().join("pkg-1.0/Makefile")).unwrap(), b"all:\n");
    // A type-'0' member named with a trailing slash is still refused as a file, not a directory.
    let s = Scratch::new();
    let archive = Tar::new()
        .raw("odd/", EntryType::Regular, 0o644, "", b"")
        .file("odd/x", 0o644, b"x")
        .write(&s.input(), "typed", Comp::None);
    assert!(unpack(&archive, &s.dest()).is_err());
}
