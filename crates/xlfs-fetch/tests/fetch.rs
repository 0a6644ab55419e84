//! Integration tests against a local HTTP server on 127.0.0.1.

mod common;

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{content, dead_url, sha256, Server};
use xlfs_fetch::{DebianRef, FetchError, Fetcher, Mirrors, Retries, SourceRef};

fn source(file: &str, data: &[u8], urls: Vec<String>) -> SourceRef {
    SourceRef {
        file: file.into(),
        sha256: sha256(data),
        urls,
        debian: None,
    }
}

fn fetcher(cache: &Path, mirrors: Mirrors, offline: bool) -> Fetcher {
    Fetcher::new(cache.to_path_buf(), mirrors, offline)
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(10))
        .with_retries(FAST_RETRIES)
}

/// The default number of retries, with short waits.
const FAST_RETRIES: Retries = Retries {
    retries: 3,
    first_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(80),
};

fn no_progress(_: u64, _: Option<u64>) {}

/// Names of the entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn good_download() {
    let server = Server::start();
    let data = content(300_000, 1);
    server.serve("/dl/foo-1.0.tar.xz", &data);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("sources"); // created on demand
    let f = fetcher(&cache_dir, Mirrors::default(), false);
    let src = source("foo-1.0.tar.xz", &data, vec![server.url("/dl/foo-1.0.tar.xz")]);

    let calls = RefCell::new(Vec::new());
    let got = f
        .fetch(&src, &|done, total| calls.borrow_mut().push((done, total)))
        .unwrap();
    assert_eq!(got.path, cache_dir.join("foo-1.0.tar.xz"));
    assert_eq!(got.file, "foo-1.0.tar.xz");
    assert_eq!(got.sha256, src.sha256);
    assert_eq!(got.from, server.url("/dl/foo-1.0.tar.xz"));
    assert_eq!(got.bytes_downloaded, data.len() as u64);
    assert_eq!(fs::read(&got.path).unwrap(), data);
    let calls = calls.into_inner();
    assert_eq!(calls.first(), Some(&(0, Some(data.len() as u64))));
    assert_eq!(calls.last(), Some(&(data.len() as u64, Some(data.len() as u64))));
    assert_eq!(
        listing(&cache_dir),
        ["foo-1.0.tar.xz", "foo-1.0.tar.xz.lock", "foo-1.0.tar.xz.verified"]
    );
    let reqs = server.requests_for("/dl/foo-1.0.tar.xz");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("Range"), None);
    assert_eq!(reqs[0].header("Accept-Encoding"), Some("identity"));

    // A second fetch is a cache hit, without any request.
    let again = f.fetch(&src, &no_progress).unwrap();
    assert_eq!(again.from, "cache");
    assert_eq!(again.bytes_downloaded, 0);
    assert_eq!(again.path, got.path);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(f.cached(&src), Some(got.path));
}

#[test]
fn resume_after_cut() {
    let server = Server::start();
    let data = content(200_000, 2);
    let cut = 70_000;
    server.serve_cut("/bar-2.tar.gz", &data, cut, 1);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let src = source("bar-2.tar.gz", &data, vec![server.url("/bar-2.tar.gz")]);

    let got = f.fetch(&src, &no_progress).unwrap();

    let reqs = server.requests_for("/bar-2.tar.gz");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].header("Range"), None);
    assert_eq!(reqs[1].header("Range"), Some(format!("bytes={cut}-").as_str()));
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert_eq!(got.bytes_downloaded, data.len() as u64);
    assert_eq!(f.cached(&src), Some(got.path.clone()));
    assert!(!cache.path().join("bar-2.tar.gz.part").exists());
}

#[test]
fn resume_partial_file_left_by_an_earlier_run() {
    let server = Server::start();
    let data = content(100_000, 3);
    server.serve("/baz.tar", &data);
    let cache = tempfile::tempdir().unwrap();
    fs::write(cache.path().join("baz.tar.part"), &data[..40_000]).unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let src = source("baz.tar", &data, vec![server.url("/baz.tar")]);

    let progress = RefCell::new(Vec::new());
    let got = f.fetch(&src, &|d, t| progress.borrow_mut().push((d, t))).unwrap();
    let reqs = server.requests_for("/baz.tar");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("Range"), Some("bytes=40000-"));
    assert_eq!(got.bytes_downloaded, 60_000);
    assert_eq!(progress.borrow()[0], (40_000, Some(100_000)));
    assert_eq!(fs::read(&got.path).unwrap(), data);
}

#[test]
fn stale_partial_file_is_downloaded_again_from_zero() {
    let server = Server::start();
    let data = content(50_000, 4);
    server.serve("/q.tar", &data);
    let cache = tempfile::tempdir().unwrap();
    // A .part from some other version of the file.
    fs::write(cache.path().join("q.tar.part"), content(20_000, 99)).unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let got = f
        .fetch(&source("q.tar", &data, vec![server.url("/q.tar")]), &no_progress)
        .unwrap();
    let reqs = server.requests_for("/q.tar");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("Range"), Some("bytes=20000-"));
    assert_eq!(reqs[1].header("Range"), None);
    assert_eq!(fs::read(&got.path).unwrap(), data);
}

#[test]
fn complete_partial_file_is_verified_without_a_body() {
    let server = Server::start();
    let data = content(10_000, 5);
    server.serve("/done.tar", &data);
    let cache = tempfile::tempdir().unwrap();
    fs::write(cache.path().join("done.tar.part"), &data).unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let got = f
        .fetch(
            &source("done.tar", &data, vec![server.url("/done.tar")]),
            &no_progress,
        )
        .unwrap();
    // The server answered 416 to "bytes=10000-"; the .part was already whole.
    assert_eq!(server.requests_for("/done.tar").len(), 1);
    assert_eq!(got.bytes_downloaded, 0);
    assert_eq!(fs::read(&got.path).unwrap(), data);
}

#[test]
fn wrong_bytes_are_refused() {
    let server = Server::start();
    let data = content(30_000, 6);
    let evil = content(30_000, 7);
    server.serve("/evil.tar.gz", &evil);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let src = source("evil.tar.gz", &data, vec![server.url("/evil.tar.gz")]);

    let err = f.fetch(&src, &no_progress).unwrap_err();
    let FetchError::Unavailable { file, attempts, .. } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(file, "evil.tar.gz");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].place, server.url("/evil.tar.gz"));
    assert_eq!(
        attempts[0].error,
        format!(
            "sha256 mismatch: expected {}, got {}",
            sha256(&data),
            sha256(&evil)
        )
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot get evil.tar.gz (sha256 {}…):\n  - {}: sha256 mismatch",
            &src.sha256[..8],
            server.url("/evil.tar.gz")
        )),
        "{msg}"
    );
    // Nothing under the final name, no leftover partial file.
    assert!(!cache.path().join("evil.tar.gz").exists());
    assert!(!cache.path().join("evil.tar.gz.part").exists());
    assert_eq!(f.cached(&src), None);
}

#[test]
fn falls_back_from_404_to_a_local_dir() {
    let server = Server::start();
    let data = content(12_345, 8);
    server.serve_status("/gone.tar.xz", 404);
    let cache = tempfile::tempdir().unwrap();
    let mirror = tempfile::tempdir().unwrap();
    fs::write(mirror.path().join("gone.tar.xz"), &data).unwrap();
    let empty_mirror = tempfile::tempdir().unwrap();
    let mirrors = Mirrors {
        debian_base: None,
        local_dirs: vec![empty_mirror.path().into(), mirror.path().into()],
    };
    let f = fetcher(cache.path(), mirrors, false);
    let src = source("gone.tar.xz", &data, vec![server.url("/gone.tar.xz")]);

    let got = f.fetch(&src, &no_progress).unwrap();
    assert_eq!(got.from, mirror.path().join("gone.tar.xz").display().to_string());
    assert_eq!(got.bytes_downloaded, 0);
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert_eq!(server.requests_for("/gone.tar.xz").len(), 1);
}

#[test]
fn every_failed_place_is_reported() {
    let server = Server::start();
    let data = content(1_000, 9);
    server.serve_status("/a.tar", 404);
    server.serve_status("/b.tar", 503);
    let mirror = tempfile::tempdir().unwrap();
    fs::write(mirror.path().join("a.tar"), b"not it").unwrap();
    let dead = dead_url("/a.tar");
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(
        cache.path(),
        Mirrors {
            debian_base: None,
            local_dirs: vec![mirror.path().into(), "/nonexistent-xlfs-mirror".into()],
        },
        false,
    );
    let src = source(
        "a.tar",
        &data,
        vec![server.url("/a.tar"), dead.clone(), server.url("/b.tar")],
    );
    let err = f.fetch(&src, &no_progress).unwrap_err();
    let FetchError::Unavailable { attempts, .. } = &err else {
        panic!("unexpected {err:?}")
    };
    let places: Vec<&str> = attempts.iter().map(|a| a.place.as_str()).collect();
    let local = mirror.path().join("a.tar").display().to_string();
    assert_eq!(
        places,
        [
            server.url("/a.tar").as_str(),
            dead.as_str(),
            server.url("/b.tar").as_str(),
            local.as_str(),
            "/nonexistent-xlfs-mirror/a.tar",
        ]
    );
    assert_eq!(attempts[0].error, "HTTP 404 Not Found");
    assert!(
        attempts[1].error.contains("connection failed"),
        "{}",
        attempts[1].error
    );
    assert!(attempts[2].error.starts_with("HTTP 503"));
    assert!(attempts[3].error.starts_with("sha256 mismatch: expected "));
    assert_eq!(attempts[4].error, "not found");
    let msg = err.to_string();
    assert_eq!(msg.lines().count(), 6, "{msg}");
    assert!(msg.contains("\n  - /nonexistent-xlfs-mirror/a.tar: not found"));
    assert!(listing(cache.path()).iter().all(|n| n.ends_with(".lock")));
}

#[test]
fn debian_archive_variant() {
    let server = Server::start();
    let upstream = content(5_000, 10);
    let repack = content(4_000, 11);
    server.serve_status("/upstream/zlib-1.3.1.tar.gz", 404);
    server.serve(
        "/debian/pool/main/z/zlib/zlib_1.3.dfsg+really1.3.1.orig.tar.gz",
        &repack,
    );
    server.serve("/debian/pool/main/libx/libxml2/libxml2_2.9.orig.tar.xz", &repack);
    let cache = tempfile::tempdir().unwrap();
    let mirrors = Mirrors {
        debian_base: Some(server.url("/debian/")),
        local_dirs: vec![],
    };
    let f = fetcher(cache.path(), mirrors, false);
    let mut src = source(
        "zlib-1.3.1.tar.gz",
        &upstream,
        vec![server.url("/upstream/zlib-1.3.1.tar.gz")],
    );
    // Without a DebianRef there is nothing to try in the archive.
    let err = f.fetch(&src, &no_progress).unwrap_err().to_string();
    assert_eq!(err.lines().count(), 2, "{err}");

    src.debian = Some(DebianRef {
        package: "zlib".into(),
        file: "zlib_1.3.dfsg+really1.3.1.orig.tar.gz".into(),
        sha256: sha256(&repack).to_uppercase(),
    });
    let got = f.fetch(&src, &no_progress).unwrap();
    assert_eq!(got.file, "zlib_1.3.dfsg+really1.3.1.orig.tar.gz");
    assert_eq!(got.sha256, sha256(&repack));
    assert_eq!(
        got.from,
        server.url("/debian/pool/main/z/zlib/zlib_1.3.dfsg+really1.3.1.orig.tar.gz")
    );
    assert_eq!(fs::read(&got.path).unwrap(), repack);
    assert_eq!(f.cached(&src), Some(got.path.clone()));
    assert_eq!(f.fetch(&src, &no_progress).unwrap().from, "cache");

    // lib* packages live under a four-letter prefix.
    let xml = SourceRef {
        file: "libxml2-2.9.tar.xz".into(),
        sha256: sha256(&upstream),
        urls: vec![],
        debian: Some(DebianRef {
            package: "libxml2".into(),
            file: "libxml2_2.9.orig.tar.xz".into(),
            sha256: sha256(&repack),
        }),
    };
    assert_eq!(
        f.fetch(&xml, &no_progress).unwrap().from,
        server.url("/debian/pool/main/libx/libxml2/libxml2_2.9.orig.tar.xz")
    );
}

#[test]
fn offline_mode() {
    let server = Server::start();
    let data = content(8_000, 12);
    server.serve("/off.tar", &data);
    let cache = tempfile::tempdir().unwrap();
    let src = source("off.tar", &data, vec![server.url("/off.tar")]);

    // Not cached: refused, and the network is not touched.
    let offline = fetcher(cache.path(), Mirrors::default(), true);
    let err = offline.fetch(&src, &no_progress).unwrap_err();
    assert!(
        matches!(&err, FetchError::Offline { file, cache: c, .. } if file == "off.tar" && c == cache.path()),
        "{err:?}"
    );
    assert!(err.to_string().contains("offline"), "{err}");
    assert!(server.requests().is_empty());

    // Cached (by an online fetcher): served from the cache.
    fetcher(cache.path(), Mirrors::default(), false)
        .fetch(&src, &no_progress)
        .unwrap();
    let got = offline.fetch(&src, &no_progress).unwrap();
    assert_eq!(got.from, "cache");
    assert_eq!(fs::read(&got.path).unwrap(), data);
    assert_eq!(server.requests().len(), 1);

    // Local dirs are not network: they are still used offline.
    let mirror = tempfile::tempdir().unwrap();
    fs::write(mirror.path().join("off.tar"), &data).unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    let offline2 = fetcher(
        cache2.path(),
        Mirrors {
            debian_base: Some(server.url("/debian")),
            local_dirs: vec![mirror.path().into()],
        },
        true,
    );
    assert_eq!(
        offline2.fetch(&src, &no_progress).unwrap().from,
        mirror.path().join("off.tar").display().to_string()
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn fetch_all_lists_all_failures() {
    let server = Server::start();
    let good = content(20_000, 13);
    let other = content(20_000, 14);
    server.serve("/good.tar", &good);
    server.serve("/bad-hash.tar", &other);
    server.serve_status("/missing.tar", 404);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let srcs = vec![
        source("missing.tar", &good, vec![server.url("/missing.tar")]),
        source("good.tar", &good, vec![server.url("/good.tar")]),
        source("bad-hash.tar", &good, vec![server.url("/bad-hash.tar")]),
    ];
    let err = f.fetch_all(&srcs, 3).unwrap_err();
    assert_eq!(err.failures.len(), 2);
    assert_eq!(err.failures[0].file(), "missing.tar");
    assert_eq!(err.failures[1].file(), "bad-hash.tar");
    let msg = err.to_string();
    assert!(msg.starts_with("failed to fetch 2 files:\n"), "{msg}");
    assert!(msg.contains(&format!("{}: HTTP 404", server.url("/missing.tar"))));
    assert!(msg.contains(&format!(
        "{}: sha256 mismatch: expected {}, got {}",
        server.url("/bad-hash.tar"),
        sha256(&good),
        sha256(&other)
    )));
    // The good one was still fetched.
    assert!(cache.path().join("good.tar").is_file());
}

#[test]
fn fetch_all_in_order_and_one_download_per_file() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let mut srcs = Vec::new();
    for i in 0..6u8 {
        let data = content(40_000 + i as usize, i);
        let path = format!("/p{i}.tar");
        server.serve(&path, &data);
        srcs.push(source(&format!("p{i}.tar"), &data, vec![server.url(&path)]));
    }
    // The same file twice: the lock makes the second wait and find it cached.
    srcs.push(srcs[0].clone());
    let got = f.fetch_all(&srcs, 4).unwrap();
    let files: Vec<&str> = got.iter().map(|g| g.file.as_str()).collect();
    assert_eq!(
        files,
        ["p0.tar", "p1.tar", "p2.tar", "p3.tar", "p4.tar", "p5.tar", "p0.tar"]
    );
    assert_eq!(server.requests_for("/p0.tar").len(), 1);
    assert_eq!(server.requests().len(), 6);
    assert!(f.fetch_all(&[], 4).unwrap().is_empty());
}

#[test]
fn cached_rehashes_a_file_changed_with_its_mtime_restored() {
    let server = Server::start();
    let data = content(64_000, 15);
    server.serve("/s.tar", &data);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let src = source("s.tar", &data, vec![server.url("/s.tar")]);
    let path: PathBuf = f.fetch(&src, &no_progress).unwrap().path;
    let sidecar = cache.path().join("s.tar.verified");
    let text = fs::read_to_string(&sidecar).unwrap();
    assert!(
        text.contains(&src.sha256) && text.contains("size 64000"),
        "{text}"
    );

    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(f.cached(&src), Some(path.clone()));

    // Tamper with one byte in place (same inode, same size) and put the mtime back, as
    // `touch -d` would: the ctime changed, so cached() hashes the file again and refuses it.
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
    {
        use std::os::unix::fs::FileExt;
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.write_all_at(&[data[100] ^ 0xff], 100).unwrap();
        // futimens(2): utimensat on the open file.
        file.set_modified(mtime).unwrap();
    }
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(
        (
            meta.modified().unwrap(),
            meta.len(),
            std::os::unix::fs::MetadataExt::ino(&meta)
        ),
        (mtime, 64_000, ino)
    );
    assert_eq!(f.cached(&src), None);
    assert_eq!(f.cached(&src), None);

    // fetch() replaces the corrupt file with a verified download.
    let got = f.fetch(&src, &no_progress).unwrap();
    assert_ne!(got.from, "cache");
    assert_eq!(fs::read(&path).unwrap(), data);

    // Without a sidecar, cached() hashes once and writes one.
    fs::remove_file(&sidecar).unwrap();
    assert_eq!(f.cached(&src), Some(path.clone()));
    assert!(sidecar.is_file());
    assert_eq!(f.cached(&src), Some(path));
}

#[test]
fn invalid_source_is_rejected() {
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let src = source("../escape.tar", b"x", vec![]);
    assert!(matches!(
        f.fetch(&src, &no_progress),
        Err(FetchError::Invalid { .. })
    ));
    assert_eq!(f.cached(&src), None);
    let nowhere = source("x.tar", b"x", vec![]);
    let msg = f.fetch(&nowhere, &no_progress).unwrap_err().to_string();
    assert!(msg.contains("no place to get it from"), "{msg}");
}

#[test]
fn transient_errors_are_retried_with_backoff() {
    let server = Server::start();
    let data = content(5_000, 3);
    server.serve("/a.tar", &data);
    server.fail_next("/a.tar", 503, 2);
    server.serve("/b.tar", &data);
    server.fail_next("/b.tar", 429, 1);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let started = std::time::Instant::now();
    let got = f
        .fetch(&source("a.tar", &data, vec![server.url("/a.tar")]), &no_progress)
        .unwrap();
    // Waits of 20 ms and 40 ms before the second and third request.
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(got.from, server.url("/a.tar"));
    assert_eq!(server.requests_for("/a.tar").len(), 3);
    assert_eq!(fs::read(&got.path).unwrap(), data);
    f.fetch(&source("b.tar", &data, vec![server.url("/b.tar")]), &no_progress)
        .unwrap();
    assert_eq!(server.requests_for("/b.tar").len(), 2);
}

#[test]
fn retries_are_bounded_then_the_next_place_is_tried() {
    let server = Server::start();
    let data = content(2_000, 4);
    server.serve_status("/down.tar", 503);
    server.serve_status("/gone.tar", 404);
    server.serve("/mirror.tar", &data);
    let dead = dead_url("/x.tar");
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false);
    let src = source(
        "x.tar",
        &data,
        vec![
            server.url("/gone.tar"),
            server.url("/down.tar"),
            dead.clone(),
            server.url("/mirror.tar"),
        ],
    );
    let got = f.fetch(&src, &no_progress).unwrap();
    assert_eq!(got.from, server.url("/mirror.tar"));
    // 404 is final at once; 503 is tried 1 + 3 times.
    assert_eq!(server.requests_for("/gone.tar").len(), 1);
    assert_eq!(server.requests_for("/down.tar").len(), 4);

    // The attempts say how often a place was tried.
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), Mirrors::default(), false).with_retries(Retries {
        retries: 1,
        ..FAST_RETRIES
    });
    let src = source("x.tar", &data, vec![server.url("/down.tar"), dead]);
    let err = f.fetch(&src, &no_progress).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 503 Service Unavailable (tried 2 times)"),
        "{err}"
    );
    assert!(err.contains("(tried 2 times)"), "{err}");
    assert_eq!(server.requests_for("/down.tar").len(), 6);
}
