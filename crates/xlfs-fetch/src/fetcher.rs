//! The [`Fetcher`]: cache lookups, the order of places, locking and atomic installs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cache::{self, BUF_SIZE};
use crate::http::Retries;
use crate::{debian_pool_path, http, Attempt, FetchAllError, FetchError, Fetched, Mirrors, Place, SourceRef};

/// Default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for one read (or write) on an open connection.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches [`SourceRef`]s into a cache directory.
///
/// Cheap to share between threads (`&Fetcher` is `Sync`); see
/// [`Fetcher::fetch_all`].
#[derive(Debug)]
pub struct Fetcher {
    cache_dir: PathBuf,
    mirrors: Mirrors,
    offline: bool,
    connect_timeout: Duration,
    read_timeout: Duration,
    retries: Retries,
    agent: ureq::Agent,
}

/// How trying one place can fail.
pub(crate) enum TryError {
    /// This place failed (recorded as an [`Attempt`]); try the next one.
    Place(String),
    /// The cache itself failed: stop.
    Fatal(FetchError),
}

impl From<FetchError> for TryError {
    fn from(e: FetchError) -> Self {
        TryError::Fatal(e)
    }
}

/// A file name with the hash it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    file: String,
    sha256: String,
}

/// A place to try, and what it must yield.
struct Candidate {
    place: Place,
    want: Variant,
}

impl Fetcher {
    /// A fetcher caching into `cache_dir` (created when needed), with default
    /// timeouts. When `offline`, nothing is downloaded: only the cache and
    /// `mirrors.local_dirs` are used.
    pub fn new(cache_dir: PathBuf, mirrors: Mirrors, offline: bool) -> Self {
        Fetcher {
            cache_dir,
            mirrors,
            offline,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            retries: Retries::default(),
            agent: build_agent(DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT),
        }
    }

    /// The same fetcher with other timeouts: `connect` for opening a
    /// connection, `read` for each read or write on it.
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self.agent = build_agent(connect, read);
        self
    }

    /// The same fetcher with another policy for transient errors (see [`Retries`]).
    pub fn with_retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The mirrors tried after a source's own URLs.
    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    /// Whether downloads are forbidden.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The connect and read timeouts.
    pub fn timeouts(&self) -> (Duration, Duration) {
        (self.connect_timeout, self.read_timeout)
    }

    /// Path of a verified cached copy of `src` (the upstream file, or else the
    /// Debian variant), or `None`.
    ///
    /// Verified on every call, cheaply: a file is hashed once, and the result
    /// kept in the sidecar `FILE.verified` bound to the file's inode, size,
    /// mtime and ctime; when any of these changes, the file is hashed again
    /// (and a file that no longer matches is not returned).
    pub fn cached(&self, src: &SourceRef) -> Option<PathBuf> {
        let variants = variants(src).ok()?;
        self.cached_variant(&variants).map(|f| f.path)
    }

    /// Make `src` available in the cache and return where it is.
    ///
    /// Tries, in order: the cache; each of `src.urls`; the Debian archive
    /// (`mirrors.debian_base` + the pool path of `src.debian`, checked against
    /// the Debian sha256); each local dir (a file named `src.file`, or the
    /// Debian file name, in it). When offline, only the cache and the local
    /// dirs are tried. `progress(done, total)` is called while copying.
    ///
    /// Downloads go to `FILE.part` (resumed with a `Range` request when it
    /// exists), are hashed, then fsynced and renamed to `FILE`. A file that
    /// does not match is deleted and recorded as a failed [`Attempt`].
    /// Fetches of the same file (by threads or processes) are serialised by a
    /// lock on `FILE.lock`.
    pub fn fetch(&self, src: &SourceRef, progress: &dyn Fn(u64, Option<u64>)) -> Result<Fetched, FetchError> {
        let variants = variants(src)?;
        if let Some(hit) = self.cached_variant(&variants) {
            return Ok(hit);
        }
        let candidates = self.candidates(src, &variants);
        if !candidates.is_empty() {
            fs::create_dir_all(&self.cache_dir).map_err(|e| FetchError::io(&self.cache_dir, e))?;
        }
        let mut attempts = Vec::new();
        for candidate in candidates {
            match self.try_candidate(&variants, &candidate, progress) {
                Ok(fetched) => {
                    tracing::debug!("{}: got it from {}", src.file, fetched.from);
                    return Ok(fetched);
                }
                Err(TryError::Place(error)) => {
                    tracing::debug!("{}: {}: {error}", src.file, candidate.place);
                    attempts.push(Attempt {
                        place: candidate.place.to_string(),
                        error,
                    });
                }
                Err(TryError::Fatal(e)) => return Err(e),
            }
        }
        if self.offline {
            Err(FetchError::Offline {
                file: src.file.clone(),
                cache: self.cache_dir.clone(),
                attempts,
            })
        } else {
            Err(FetchError::Unavailable {
                file: src.file.clone(),
                sha256: variants[0].sha256.clone(),
                attempts,
            })
        }
    }

    /// Fetch all of `srcs`, up to `jobs` at a time (at least one), and return
    /// what was fetched in the order of `srcs` — or, if any failed, an error
    /// listing every failure (the successes stay in the cache).
    pub fn fetch_all(&self, srcs: &[SourceRef], jobs: usize) -> Result<Vec<Fetched>, FetchAllError> {
        let results: Mutex<Vec<Option<Result<Fetched, FetchError>>>> =
            Mutex::new((0..srcs.len()).map(|_| None).collect());
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(src) = srcs.get(i) else { break };
            let result = self.fetch(src, &|_, _| {});
            match &result {
                Ok(f) => tracing::info!("{}: ok ({})", f.file, f.from),
                Err(e) => tracing::warn!("{e}"),
            }
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
        };
        let jobs = jobs.clamp(1, srcs.len().max(1));
        if jobs == 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..jobs {
                    s.spawn(work);
                }
            });
        }
        let mut fetched = Vec::with_capacity(srcs.len());
        let mut failures = Vec::new();
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        for result in results.into_iter().flatten() {
            match result {
                Ok(f) => fetched.push(f),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(fetched)
        } else {
            Err(FetchAllError { failures })
        }
    }

    /// The first variant verified in the cache.
    fn cached_variant(&self, variants: &[Variant]) -> Option<Fetched> {
        variants.iter().find_map(|v| {
            let path = self.cache_dir.join(&v.file);
            cache::is_verified(&path, &v.sha256).then(|| Fetched {
                path,
                file: v.file.clone(),
                sha256: v.sha256.clone(),
                from: "cache".into(),
                bytes_downloaded: 0,
            })
        })
    }

    /// The places to try for `src`, in order.
    fn candidates(&self, src: &SourceRef, variants: &[Variant]) -> Vec<Candidate> {
        let upstream = &variants[0];
        let mut out = Vec::new();
        if !self.offline {
            for url in &src.urls {
                out.push(Candidate {
                    place: Place::Url(url.clone()),
                    want: upstream.clone(),
                });
            }
            if let (Some(base), Some(deb)) = (&self.mirrors.debian_base, &src.debian) {
                out.push(Candidate {
                    place: Place::Url(format!(
                        "{}/{}",
                        base.trim_end_matches('/'),
                        debian_pool_path(&deb.package, &deb.file)
                    )),
                    want: Variant {
                        file: deb.file.clone(),
                        sha256: deb.sha256.to_ascii_lowercase(),
                    },
                });
            }
        }
        for dir in &self.mirrors.local_dirs {
            for v in variants {
                out.push(Candidate {
                    place: Place::Local(dir.join(&v.file)),
                    want: v.clone(),
                });
            }
        }
        out
    }

    /// Try one place, holding the lock of the file it would produce.
    fn try_candidate(
        &self,
        variants: &[Variant],
        candidate: &Candidate,
        progress: &dyn Fn(u64, Option<u64>),
    ) -> Result<Fetched, TryError> {
        let want = &candidate.want;
        let final_path = self.cache_dir.join(&want.file);
        let lock_path = cache::with_suffix(&final_path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| FetchError::io(&lock_path, e))?;
        lock.lock().map_err(|e| FetchError::io(&lock_path, e))?;

        // Someone else may have fetched it while we waited for the lock.
        if let Some(hit) = self.cached_variant(variants) {
            return Ok(hit);
        }
        // Whatever sits under the final name now matches nothing we want.
        if fs::symlink_metadata(&final_path).is_ok() {
            tracing::warn!("removing corrupt cached file {}", final_path.display());
            cache::remove_if_exists(&final_path).map_err(|e| FetchError::io(&final_path, e))?;
        }
        cache::remove_sidecar(&final_path).map_err(|e| FetchError::io(&final_path, e))?;

        let part = cache::with_suffix(&final_path, ".part");
        let bytes_downloaded = match &candidate.place {
            Place::Url(url) => {
                http::download(&self.agent, &self.retries, url, &part, &want.sha256, progress)?
            }
            Place::Local(path) => {
                copy_local(path, &part, &want.sha256, progress)?;
                0
            }
        };
        self.install(&part, &final_path, &want.sha256)?;
        drop(lock);
        Ok(Fetched {
            path: final_path,
            file: want.file.clone(),
            sha256: want.sha256.clone(),
            from: candidate.place.to_string(),
            bytes_downloaded,
        })
    }

    /// Move a verified `.part` file to its final name, durably.
    fn install(&self, part: &Path, final_path: &Path, sha256: &str) -> Result<(), FetchError> {
        File::open(part)
            .and_then(|f| f.sync_all())
            .map_err(|e| FetchError::io(part, e))?;
        fs::rename(part, final_path).map_err(|e| FetchError::io(final_path, e))?;
        if let Ok(dir) = File::open(&self.cache_dir) {
            let _ = dir.sync_all();
        }
        if let Err(e) = cache::write_sidecar(final_path, sha256) {
            tracing::warn!("cannot write sidecar for {}: {e}", final_path.display());
        }
        Ok(())
    }
}

fn build_agent(connect: Duration, read: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(connect)
        .timeout_read(read)
        .timeout_write(read)
        .user_agent(concat!("xlfs-fetch/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Copy a local file to `part`, hashing on the way; remove `part` on mismatch.
fn copy_local(
    from: &Path,
    part: &Path,
    sha256: &str,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<(), TryError> {
    let mut input = match File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TryError::Place("not found".into())),
        Err(e) => return Err(TryError::Place(e.to_string())),
    };
    let meta = input.metadata().map_err(|e| TryError::Place(e.to_string()))?;
    if !meta.is_file() {
        return Err(TryError::Place("not a regular file".into()));
    }
    let total = Some(meta.len());
    let part_err = |e: io::Error| TryError::Fatal(FetchError::io(part, e));
    let mut out = BufWriter::with_capacity(BUF_SIZE, File::create(part).map_err(part_err)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut done = 0;
    progress(done, total);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                drop(out);
                cache::remove_if_exists(part).map_err(part_err)?;
                return Err(TryError::Place(format!("read error: {e}")));
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(part_err)?;
        done += n as u64;
        progress(done, total);
    }
    out.flush().map_err(part_err)?;
    drop(out);
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        cache::remove_if_exists(part).map_err(part_err)?;
        return Err(TryError::Place(format!(
            "sha256 mismatch: expected {sha256}, got {actual}"
        )));
    }
    Ok(())
}

/// The file variants of `src` (upstream first, then Debian's if different),
/// with hashes in lowercase, after checking names and hashes.
fn variants(src: &SourceRef) -> Result<Vec<Variant>, FetchError> {
    let check = |file: &str, sha256: &str| -> Result<Variant, FetchError> {
        let invalid = |reason: String| FetchError::Invalid {
            file: src.file.clone(),
            reason,
        };
        if file.is_empty() || file == "." || file == ".." || file.contains(['/', '\\', '\0']) {
            return Err(invalid(format!("{file:?} is not a plain file name")));
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "sha256 of {file} is not 64 hex digits: {sha256:?}"
            )));
        }
        Ok(Variant {
            file: file.to_string(),
            sha256: sha256.to_ascii_lowercase(),
        })
    };
    let mut out = vec![check(&src.file, &src.sha256)?];
    if let Some(deb) = &src.debian {
        let v = check(&deb.file, &deb.sha256)?;
        if v != out[0] {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DebianRef;

    fn src(file: &str, sha: &str) -> SourceRef {
        SourceRef {
            file: file.into(),
            sha256: sha.into(),
            urls: vec![],
            debian: None,
        }
    }

    #[test]
    fn rejects_bad_names_and_hashes() {
        let good = "A".repeat(64);
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(matches!(
                variants(&src(bad, &good)),
                Err(FetchError::Invalid { .. })
            ));
        }
        assert!(matches!(
            variants(&src("x", "abc")),
            Err(FetchError::Invalid { .. })
        ));
        assert!(matches!(
            variants(&src("x", &"g".repeat(64))),
            Err(FetchError::Invalid { .. })
        ));
        let v = variants(&src("x", &good)).unwrap();
        assert_eq!(v[0].sha256, "a".repeat(64));
    }

    #[test]
    fn candidate_order() {
        let sha = "a".repeat(64);
        let mut s = src("z-1.tar.gz", &sha);
        s.urls = vec!["http://u1/z-1.tar.gz".into(), "http://u2/z-1.tar.gz".into()];
        s.debian = Some(DebianRef {
            package: "z".into(),
            file: "z_1.orig.tar.gz".into(),
            sha256: "b".repeat(64),
        });
        let mirrors = Mirrors {
            debian_base: Some("http://deb/debian/".into()),
            local_dirs: vec!["/m1".into(), "/m2".into()],
        };
        let vs = variants(&s).unwrap();
        let online = Fetcher::new("/c".into(), mirrors.clone(), false);
        let places: Vec<String> = online
            .candidates(&s, &vs)
            .iter()
            .map(|c| c.place.to_string())
            .collect();
        assert_eq!(
            places,
            [
                "http://u1/z-1.tar.gz",
                "http://u2/z-1.tar.gz",
                "http://deb/debian/pool/main/z/z/z_1.orig.tar.gz",
                "/m1/z-1.tar.gz",
                "/m1/z_1.orig.tar.gz",
                "/m2/z-1.tar.gz",
                "/m2/z_1.orig.tar.gz",
            ]
        );
        let offline = Fetcher::new("/c".into(), mirrors, true);
        assert_eq!(offline.candidates(&s, &vs).len(), 4);
    }
}
