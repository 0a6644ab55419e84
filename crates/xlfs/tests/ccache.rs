//! `xlfs build --ccache`: a real package (zlib, from the Debian archive's tarball the book pins)
//! built in the real sandbox with ccache from the build tools root. A rebuild after a recipe
//! change that does not touch the compile hits the package's cache, and the artifacts are bit
//! for bit those of a build without ccache.

mod common;
#[path = "common/zlib_book.rs"]
mod zlib_book;
use std::path::{Path, PathBuf};
use zlib_book::{artifact, chroot_zlib_book, xlfs, zlib_book};

/// (hits, misses) of the log's ccache line.
fn ccache_counts(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.starts_with("==> xlfs: ccache ") && l.contains(" hits, "))
        .unwrap_or_else(|| panic!("no ccache line in the log:\n{log}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let n = nums.len();
    (nums[n - 2], nums[n - 1])
}

#[test]
fn ccache_hits_on_a_rebuild_and_the_artifacts_are_those_of_a_build_without_it() {
    hits_on_a_rebuild(zlib_book);
}

/// The same in a `chroot` build root (Debian's compilers repacked as a package, see
/// `debian-cc`): the cache works with the root's own compiler.
#[test]
fn ccache_hits_on_a_rebuild_in_a_chroot_root() {
    hits_on_a_rebuild(chroot_zlib_book);
}

fn hits_on_a_rebuild(make_book: fn(&Path, &str) -> PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources");
    let (cached_home, plain_home) = (dir.path().join("home-ccache"), dir.path().join("home-plain"));
    let book1 = make_book(&dir.path().join("1"), "");
    xlfs(
        &book1,
        &cached_home,
        &sources,
        &["fetch", "zlib-quick", "--no-runtime"],
    );

    // First build with ccache: every compile misses, and the cache is the package's own.
    xlfs(
        &book1,
        &cached_home,
        &sources,
        &["build", "zlib-quick", "--ccache", "-j2"],
    );
    let log1 = xlfs(&book1, &cached_home, &sources, &["log", "zlib-quick"]);
    let (hits, misses) = ccache_counts(&log1);
    assert_eq!(hits, 0, "{log1}");
    assert!(
        misses >= 10,
        "zlib has some 15 C files, each compiled twice: {log1}"
    );
    assert!(cached_home.join("ccache/zlib-quick").is_dir());
    assert!(log1.contains("at /xlfs/ccache"), "{log1}");

    // The recipe changes in a way that changes its key but not what it compiles: a rebuild.
    let book2 = make_book(&dir.path().join("2"), "environment.XLFS_TEST_REBUILD = \"2\"\n");
    let plan = xlfs(&book2, &cached_home, &sources, &["plan", "zlib-quick"]);
    assert!(plan.contains("build"), "the changed recipe must rebuild: {plan}");
    xlfs(
        &book2,
        &cached_home,
        &sources,
        &["build", "zlib-quick", "--ccache", "-j2"],
    );
    let log2 = xlfs(&book2, &cached_home, &sources, &["log", "zlib-quick"]);
    let (hits2, misses2) = ccache_counts(&log2);
    assert_eq!(misses2, 0, "every compile of the rebuild is a hit: {log2}");
    assert_eq!(
        hits2, misses,
        "as many hits as the first build had misses: {log2}"
    );

    // Without ccache, in another home: the same bytes, for the first build and the rebuild.
    xlfs(&book2, &plain_home, &sources, &["build", "zlib-quick", "-j2"]);
    let plain = xlfs(&book2, &plain_home, &sources, &["log", "zlib-quick"]);
    assert!(!plain.contains("==> xlfs: ccache"), "{plain}");
    assert_eq!(
        artifact(&log1),
        artifact(&plain),
        "ccache (misses) changed the artifact"
    );
    assert_eq!(
        artifact(&log2),
        artifact(&plain),
        "ccache (hits) changed the artifact"
    );
}
