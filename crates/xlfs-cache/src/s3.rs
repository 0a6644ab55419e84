//! An [`ArtifactStore`] on an S3-compatible object store, with signed artifacts.
//!
//! Layout under `s3://BUCKET/PREFIX/`:
//! - `artifacts/SHA256.tar.zst`: artifact bytes, named by their own sha256 (two uploads of one
//!   name are the same bytes, so a concurrent upload is harmless);
//! - `manifests/SHA256.json`: manifests, named by the sha256 of their bytes;
//! - `info/KEY.json`: the signed [`Info`] of the package key `KEY`, written last and only once
//!   (`If-None-Match: *`, else check-then-put): a key is in the cache when its info is. Two
//!   machines building one key at once each upload their (content-named) artifact, and the
//!   first info wins; the other artifact is garbage for `gc` to collect.
//!
//! Everything read is checked before use: the info's signature against the trusted keys, the
//! manifest's and the artifact's bytes against the signed sha256s (the artifact is downloaded
//! to a temporary file, never into the store directly), then every member of the artifact
//! against the manifest. Every call is bounded by the cache's timeout; after one failure to
//! answer, the cache counts as down for the rest of the process and later calls fail at once.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig};
use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xlfs_store::{ArtifactStore, LocalStore, Manifest, Packed, StoreError};

use crate::config::{CacheConfig, Config, S3Url};
use crate::creds::Credentials;
use crate::sign::{Info, PublicKey, SecretKey};

/// A shared cache: one `[cache.NAME]` of a home, opened.
pub struct S3Cache {
    name: String,
    url: String,
    endpoint: Option<String>,
    store: Arc<AmazonS3>,
    prefix: String,
    rt: tokio::runtime::Runtime,
    timeout: Duration,
    trusted: Vec<PublicKey>,
    signer: Option<SecretKey>,
    staging: PathBuf,
    /// Why the cache counts as down, once it failed to answer.
    down: Mutex<Option<String>>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl std::fmt::Debug for S3Cache {
    // Not derived: the object store's client holds the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Cache")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("trusted", &self.trusted)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// A checked download: the temporary file, what it is, and the trusted key that signed it.
#[derive(Debug)]
pub struct Downloaded {
    pub file: tempfile::NamedTempFile,
    pub packed: Packed,
    pub signed_by: String,
}

/// An artifact fetched into the local store.
#[derive(Debug)]
pub struct Fetched {
    /// What the local store holds under the key now.
    pub packed: Packed,
    pub signed_by: String,
}

/// What `xlfs cache verify` found for one key.
#[derive(Debug)]
pub struct Checked {
    pub key: String,
    pub package: String,
    pub result: Result<(), String>,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("xlfs-cache")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the S3 client's runtime: {e}"))
}

impl S3Cache {
    /// Opens cache `name` of `config` with `creds`; downloads are staged in `staging` (a
    /// directory of the home). `signer`: the home's signing key, needed to upload.
    pub fn open(
        name: &str,
        config: &Config,
        creds: Credentials,
        signer: Option<SecretKey>,
        staging: PathBuf,
    ) -> Result<S3Cache, String> {
        let c: &CacheConfig = config
            .caches
            .get(name)
            .ok_or_else(|| format!("no cache `{name}`; `xlfs cache list` shows the configured ones"))?;
        let url = S3Url::parse(&c.url)?;
        let timeout = c.timeout(config);
        let mut options = ClientOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout_disabled();
        if c.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
            options = options.with_allow_http(true);
        }
        let retry = RetryConfig {
            max_retries: 1,
            retry_timeout: timeout,
            ..RetryConfig::default()
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_region(c.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(t) = &creds.session_token {
            b = b.with_token(t);
        }
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        let store = b
            .build()
            .map_err(|e| format!("cache {name}: cannot configure the S3 client: {e}"))?;
        Ok(S3Cache {
            name: name.into(),
            url: c.url.clone(),
            endpoint: c.endpoint.clone(),
            store: Arc::new(store),
            prefix: url.prefix,
            rt: runtime()?,
            timeout,
            trusted: config.trusted()?,
            signer,
            staging,
            down: Mutex::new(None),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `NAME (s3://bucket/prefix at ENDPOINT)`.
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("{} ({} at {e})", self.name, self.url),
            None => format!("{} ({})", self.name, self.url),
        }
    }

    /// Whether any key is trusted (without one, nothing can be fetched).
    pub fn trusts_any(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Why the cache counts as down, if it does.
    pub fn down(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    /// Bytes downloaded and uploaded so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }

    fn path(&self, rel: String) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }
    fn info_path(&self, key: &str) -> ObjPath {
        self.path(format!("info/{key}.json"))
    }
    fn artifact_obj(&self, sha: &str) -> ObjPath {
        self.path(format!("artifacts/{sha}.tar.zst"))
    }
    fn manifest_obj(&self, sha: &str) -> ObjPath {
        self.path(format!("manifests/{sha}.json"))
    }

    fn unavailable(&self, reason: String) -> StoreError {
        if let Ok(mut d) = self.down.lock() {
            if d.is_none() {
                *d = Some(reason.clone());
            }
        }
        StoreError::Unavailable {
            cache: self.name.clone(),
            reason,
        }
    }

    fn refused(&self, key: &str, reason: impl Into<String>) -> StoreError {
        StoreError::Refused {
            cache: self.name.clone(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Fails at once when the cache is down.
    fn check_up(&self) -> Result<(), StoreError> {
        match self.down() {
            Some(reason) => Err(StoreError::Unavailable {
                cache: self.name.clone(),
                reason: format!("skipped, it did not answer earlier ({reason})"),
            }),
            None => Ok(()),
        }
    }

    /// The object store's error as ours: missing objects are [`StoreError::NotFound`]; anything
    /// else means the cache cannot serve (network, server, credentials) and marks it down.
    fn map_err(&self, what: &str, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { key: key.into() },
            other => self.unavailable(format!("{what}: {}", one_line(&other.to_string()))),
        }
    }

    /// Runs `fut` bounded by `limit`.
    fn bounded<T>(
        &self,
        what: &str,
        key: &str,
        limit: Duration,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, StoreError> {
        self.check_up()?;
        match self.rt.block_on(async { tokio::time::timeout(limit, fut).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err(what, key, e)),
            Err(_) => Err(self.unavailable(format!("{what}: no answer within {}s", limit.as_secs_f64()))),
        }
    }

    async fn get_small(store: &AmazonS3, path: &ObjPath) -> object_store::Result<Bytes> {
        store.get(path).await?.bytes().await
    }

    fn get_bytes(&self, what: &str, key: &str, path: &ObjPath) -> Result<Bytes, StoreError> {
        let b = self.bounded(what, key, self.timeout, Self::get_small(&self.store, path))?;
        self.received.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Which of `keys` the cache has (an info object), asking for up to 16 at once. Fails as a
    /// whole when the cache does not answer.
    pub fn lookup(&self, keys: &[String]) -> Result<BTreeSet<String>, StoreError> {
        self.check_up()?;
        let timeout = self.timeout;
        let mut heads = futures::stream::iter(keys.iter().cloned())
            .map(|k| {
                let path = self.info_path(&k);
                let store = self.store.clone();
                async move {
                    let r = tokio::time::timeout(timeout, store.head(&path)).await;
                    (k, r)
                }
            })
            .buffer_unordered(16);
        // The first failure ends the lookup: the cache is down, waiting for the rest is waste.
        let found = self.rt.block_on(async {
            let mut found = BTreeSet::new();
            while let Some((k, r)) = heads.next().await {
                match r {
                    Ok(Ok(_)) => {
                        found.insert(k);
                    }
                    Ok(Err(object_store::Error::NotFound { .. })) => {}
                    Ok(Err(e)) => return Err((k, Some(e))),
                    Err(_) => return Err((k, None)),
                }
            }
            Ok(found)
        });
        let found = match found {
            Ok(f) => f,
            Err((k, Some(e))) => return Err(self.map_err("looking up artifacts", &k, e)),
            Err((_, None)) => {
                return Err(self.unavailable(format!(
                    "looking up artifacts: no answer within {}s",
                    timeout.as_secs_f64()
                )))
            }
        };
        Ok(found)
    }

    /// The signed info of `key`, its signature checked against the trusted keys.
    pub fn info(&self, key: &str) -> Result<Info, StoreError> {
        self.signed_info(key).map(|(i, _)| i)
    }

    /// Like [`info`](Self::info), with the name of the trusted key whose signature verified.
    fn signed_info(&self, key: &str) -> Result<(Info, String), StoreError> {
        xlfs_store::validate_key(key)?;
        let bytes = self.get_bytes("reading the artifact's info", key, &self.info_path(key))?;
        let info: Info = serde_json::from_slice(&bytes)
            .map_err(|e| self.refused(key, format!("its info is not readable: {e}")))?;
        if info.key != key {
            return Err(self.refused(key, format!("its info describes key {}", info.key)));
        }
        if info.version != 1 {
            return Err(self.refused(key, format!("info version {} is not known", info.version)));
        }
        if !is_sha256(&info.sha256) || !is_sha256(&info.manifest_sha256) {
            return Err(self.refused(key, "its info holds a malformed sha256"));
        }
        let by = info
            .check_signature(&self.trusted)
            .map_err(|e| self.refused(key, e))?
            .name
            .clone();
        Ok((info, by))
    }

    /// The manifest of a checked `info`, compared with its signed sha256.
    fn manifest_of(&self, info: &Info) -> Result<Manifest, StoreError> {
        let key = &info.key;
        let bytes = self.get_bytes(
            "reading the manifest",
            key,
            &self.manifest_obj(&info.manifest_sha256),
        )?;
        let sha = xlfs_util::sha256_hex(&bytes);
        if sha != info.manifest_sha256 {
            return Err(self.refused(
                key,
                format!(
                    "its manifest disagrees with the signed one (sha256 {sha}, signed {})",
                    info.manifest_sha256
                ),
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| self.refused(key, format!("its manifest is not readable: {e}")))
    }

    /// Downloads the artifact of `key` into a temporary file in the staging directory and checks
    /// it: signature, sha256 and size, manifest, and every member against the manifest. Nothing
    /// unchecked leaves this function.
    pub fn download(&self, key: &str) -> Result<Downloaded, StoreError> {
        let (info, signed_by) = self.signed_info(key)?;
        let manifest = self.manifest_of(&info)?;
        std::fs::create_dir_all(&self.staging).map_err(|e| StoreError::io(&self.staging, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-cache-")
            .suffix(".tar.zst")
            .tempfile_in(&self.staging)
            .map_err(|e| StoreError::io(&self.staging, e))?;
        let tmp_path = tmp.path().to_path_buf();
        let path = self.artifact_obj(&info.sha256);
        let timeout = self.timeout;
        let limit = info.size;
        let received = &self.received;
        let file = tmp.as_file_mut();
        let fetch = async {
            let res = match tokio::time::timeout(timeout, self.store.get(&path)).await {
                Ok(r) => r.map_err(|e| self.map_err("downloading the artifact", key, e))?,
                Err(_) => {
                    return Err(self.unavailable(format!(
                        "downloading the artifact: no answer within {}s",
                        timeout.as_secs_f64()
                    )))
                }
            };
            let mut stream = res.into_stream();
            let mut hasher = xlfs_util::HashWriter::new(file);
            let mut got = 0u64;
            loop {
                // Bounded per chunk: a large artifact may take long, a stalled one may not.
                let chunk = match tokio::time::timeout(timeout, stream.try_next()).await {
                    Ok(Ok(Some(c))) => c,
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => return Err(self.map_err("downloading the artifact", key, e)),
                    Err(_) => {
                        return Err(self.unavailable(format!(
                            "downloading the artifact: stalled for {}s",
                            timeout.as_secs_f64()
                        )))
                    }
                };
                got += chunk.len() as u64;
                received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if got > limit {
                    return Err(self.refused(
                        key,
                        format!("its bytes do not match the signed size ({limit} bytes): more arrived"),
                    ));
                }
                hasher
                    .write_all(&chunk)
                    .map_err(|e| StoreError::io(&tmp_path, e))?;
            }
            let (file, sha, size) = hasher.finish();
            file.flush().map_err(|e| StoreError::io(&tmp_path, e))?;
            Ok((sha, size))
        };
        self.check_up()?;
        let (sha, size) = self.rt.block_on(fetch)?;
        if sha != info.sha256 || size != info.size {
            return Err(self.refused(
                key,
                format!(
                    "its bytes do not match the signed sha256: expected {} ({} bytes), got {sha} ({size} bytes)",
                    info.sha256, info.size
                ),
            ));
        }
        xlfs_store::check_contents(tmp.path(), &manifest)
            .map_err(|e| self.refused(key, format!("its manifest disagrees with its contents: {e}")))?;
        Ok(Downloaded {
            file: tmp,
            packed: Packed {
                manifest,
                sha256: sha,
                size,
            },
            signed_by,
        })
    }

    /// Downloads and checks `key` (see [`download`](Self::download)), then publishes it into
    /// `local` with the local store's atomic `put`.
    pub fn fetch_into(&self, key: &str, local: &LocalStore) -> Result<Fetched, StoreError> {
        let d = self.download(key)?;
        let packed = local.put(key, d.file.path(), &d.packed)?;
        Ok(Fetched {
            packed,
            signed_by: d.signed_by,
        })
    }

    /// Uploads `artifact` (described by `packed`) under `key`, signed with the home's key.
    /// Content-named objects are written only when missing; the info is written once
    /// (`If-None-Match: *`, else check-then-put). Returns whether this call published the key.
    pub fn upload(
        &self,
        key: &str,
        artifact: &Path,
        packed: &Packed,
        package: &str,
    ) -> Result<bool, StoreError> {
        xlfs_store::validate_key(key)?;
        let signer = self.signer.as_ref().ok_or_else(|| StoreError::Unavailable {
            cache: self.name.clone(),
            reason: "no signing key to upload with; run `xlfs key generate`".into(),
        })?;
        let info_path = self.info_path(key);
        if self.exists(key, &info_path)? {
            return Ok(false);
        }
        let manifest_bytes =
            serde_json::to_vec(&packed.manifest).map_err(|e| StoreError::corrupt(artifact, e.to_string()))?;
        let manifest_sha = xlfs_util::sha256_hex(&manifest_bytes);
        let mut info = Info::new(key, &packed.sha256, packed.size, &manifest_sha, package);
        info.sign(signer);

        // The artifact, checked against `packed` on the way.
        let art = self.artifact_obj(&packed.sha256);
        if !self.exists(key, &art)? {
            let (sha, size) = self.put_file(key, artifact, &art, packed.size)?;
            if sha != packed.sha256 || size != packed.size {
                // Remove what is not what its name says.
                let _ = self.bounded(
                    "removing a bad upload",
                    key,
                    self.timeout,
                    self.store.delete(&art),
                );
                return Err(StoreError::corrupt(
                    artifact,
                    format!(
                        "expected sha256 {} ({} bytes), read {sha} ({size} bytes)",
                        packed.sha256, packed.size
                    ),
                ));
            }
        }
        let man = self.manifest_obj(&manifest_sha);
        if !self.exists(key, &man)? {
            self.put_small(
                "uploading the manifest",
                key,
                &man,
                manifest_bytes,
                PutMode::Overwrite,
            )
            .map_err(|e| e.into_store(self, key))?;
        }
        let info_bytes = serde_json::to_vec_pretty(&info).expect("info serialises");
        match self.put_small(
            "publishing the info",
            key,
            &info_path,
            info_bytes.clone(),
            PutMode::Create,
        ) {
            Ok(()) => Ok(true),
            Err(PutFailed::Exists) => Ok(false),
            Err(PutFailed::NotImplemented) => {
                // No conditional writes here: check, then put. A racing writer of the same key
                // has uploaded its own content-named artifact, so either info is consistent.
                if self.exists(key, &info_path)? {
                    return Ok(false);
                }
                self.put_small(
                    "publishing the info",
                    key,
                    &info_path,
                    info_bytes,
                    PutMode::Overwrite,
                )
                .map_err(|e| e.into_store(self, key))?;
                Ok(true)
            }
            Err(e) => Err(e.into_store(self, key)),
        }
    }

    fn exists(&self, key: &str, path: &ObjPath) -> Result<bool, StoreError> {
        match self.bounded("looking up an object", key, self.timeout, self.store.head(path)) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn put_small(
        &self,
        what: &str,
        key: &str,
        path: &ObjPath,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), PutFailed> {
        self.check_up().map_err(PutFailed::Store)?;
        let len = bytes.len() as u64;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let fut = self.store.put_opts(path, bytes.into(), opts);
        match self
            .rt
            .block_on(async { tokio::time::timeout(self.timeout, fut).await })
        {
            Ok(Ok(_)) => {
                self.sent.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(object_store::Error::AlreadyExists { .. })) => Err(PutFailed::Exists),
            Ok(Err(object_store::Error::NotImplemented { .. })) => Err(PutFailed::NotImplemented),
            Ok(Err(e)) if is_not_implemented(&e) => Err(PutFailed::NotImplemented),
            Ok(Err(e)) => Err(PutFailed::Store(self.map_err(what, key, e))),
            Err(_) => Err(PutFailed::Store(self.unavailable(format!(
                "{what}: no answer within {}s",
                self.timeout.as_secs_f64()
            )))),
        }
    }

    /// Streams a file to `path` (one PUT when small, a multipart upload that completes
    /// atomically otherwise), hashing what is sent. Bounded by the timeout plus 1 s per MiB.
    fn put_file(
        &self,
        key: &str,
        file: &Path,
        path: &ObjPath,
        size: u64,
    ) -> Result<(String, u64), StoreError> {
        use std::io::Read;
        use tokio::io::AsyncWriteExt;
        self.check_up()?;
        let mut src = std::fs::File::open(file).map_err(|e| StoreError::io(file, e))?;
        let limit = self.timeout + Duration::from_secs(size / (1 << 20));
        let store: Arc<dyn ObjectStore> = self.store.clone();
        let sent = &self.sent;
        let upload = async move {
            let mut w = object_store::buffered::BufWriter::with_capacity(store, path.clone(), 16 << 20);
            let mut hasher = xlfs_util::HashWriter::new(std::io::sink());
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = src
                    .read(&mut buf)
                    .map_err(|e| UpErr::Local(StoreError::io(file, e)))?;
                if n == 0 {
                    break;
                }
                hasher.write_all(&buf[..n]).expect("sink");
                if let Err(e) = w.put(Bytes::copy_from_slice(&buf[..n])).await {
                    let _ = w.abort().await;
                    return Err(UpErr::S3(e));
                }
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            w.shutdown().await.map_err(|e| {
                UpErr::S3(object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })
            })?;
            let (_, sha, size) = hasher.finish();
            Ok((sha, size))
        };
        match self
            .rt
            .block_on(async { tokio::time::timeout(limit, upload).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(UpErr::Local(e))) => Err(e),
            Ok(Err(UpErr::S3(e))) => Err(self.map_err("uploading the artifact", key, e)),
            Err(_) => Err(self.unavailable(format!(
                "uploading the artifact: not done within {}s",
                limit.as_secs()
            ))),
        }
    }

    /// Every key with an info object, sorted.
    pub fn list_keys(&self) -> Result<Vec<String>, StoreError> {
        let prefix = self.path("info".into());
        let store = self.store.clone();
        let listing = async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await };
        // Listing a large cache takes a while: bounded by ten times the timeout.
        let metas = self.bounded("listing the cache", "", self.timeout * 10, listing)?;
        let mut keys: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()
                    .and_then(|f| f.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .filter(|k| xlfs_store::validate_key(k).is_ok())
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// `xlfs cache verify`: every key's info, signature, manifest and artifact checked, as a
    /// download would (without installing anything).
    pub fn verify_all(&self, progress: &dyn Fn(&Checked)) -> Result<Vec<Checked>, StoreError> {
        let mut out = Vec::new();
        for key in self.list_keys()? {
            let package = self.package_label(&key);
            let result = match self.download(&key) {
                Ok(_) => Ok(()),
                Err(e @ StoreError::Unavailable { .. }) => return Err(e),
                Err(e) => Err(e.to_string()),
            };
            let c = Checked { key, package, result };
            progress(&c);
            out.push(c);
        }
        Ok(out)
    }

    /// The unsigned package label of a key's info, for messages ("" when unreadable).
    fn package_label(&self, key: &str) -> String {
        self.get_bytes("reading the artifact's info", key, &self.info_path(key))
            .ok()
            .and_then(|b| serde_json::from_slice::<Info>(&b).ok())
            .map(|i| i.package)
            .unwrap_or_default()
    }

    /// Writes raw bytes to a path of the cache (relative to its prefix). For tests and repairs:
    /// nothing checks what is written.
    pub fn put_raw(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_small("writing", rel, &self.path(rel.into()), bytes, PutMode::Overwrite)
            .map_err(|e| e.into_store(self, rel))
    }

    /// Reads raw bytes from a path of the cache (relative to its prefix).
    pub fn get_raw(&self, rel: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.get_bytes("reading", rel, &self.path(rel.into()))?.to_vec())
    }
}

enum UpErr {
    Local(StoreError),
    S3(object_store::Error),
}

enum PutFailed {
    Exists,
    NotImplemented,
    Store(StoreError),
}

impl PutFailed {
    fn into_store(self, cache: &S3Cache, key: &str) -> StoreError {
        match self {
            PutFailed::Store(e) => e,
            PutFailed::Exists => cache.unavailable(format!("{key} was written concurrently")),
            PutFailed::NotImplemented => cache.unavailable("the server does not implement a write".into()),
        }
    }
}

fn is_not_implemented(e: &object_store::Error) -> bool {
    let s = e.to_string();
    s.contains("501") || s.contains("NotImplemented")
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ArtifactStore for S3Cache {
    fn contains(&self, key: &str) -> Result<bool, StoreError> {
        xlfs_store::validate_key(key)?;
        self.exists(key, &self.info_path(key))
    }

    /// Uploads, signed (see [`S3Cache::upload`]); returns what is stored under `key` then.
    fn put(&self, key: &str, artifact: &Path, packed: &Packed) -> Result<Packed, StoreError> {
        if self.upload(key, artifact, packed, "")? {
            return Ok(packed.clone());
        }
        let info = self.info(key)?;
        Ok(Packed {
            manifest: self.manifest_of(&info)?,
            sha256: info.sha256,
            size: info.size,
        })
    }

    fn manifest(&self, key: &str) -> Result<Manifest, StoreError> {
        let info = self.info(key)?;
        self.manifest_of(&info)
    }

    /// Downloads and checks the artifact into the staging directory (`KEY.tar.zst` there).
    fn artifact_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let d = self.download(key)?;
        let dest = self.staging.join(format!("{key}.tar.zst"));
        d.file
            .persist(&dest)
            .map_err(|e| StoreError::io(&dest, e.error))?;
        Ok(dest)
    }

    /// Removes the key's info: the key is no longer in the cache. Its content-named objects may
    /// be shared with other keys and are left to the cache's garbage collection.
    fn remove(&self, key: &str) -> Result<(), StoreError> {
        if !self.contains(key)? {
            return Err(StoreError::NotFound { key: key.into() });
        }
        self.bounded(
            "removing",
            key,
            self.timeout,
            self.store.delete(&self.info_path(key)),
        )
    }

    fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.list_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials_or_the_secret_key() {
        let mut config = Config::default();
        config.caches.insert(
            "team".into(),
            CacheConfig {
                url: "s3://bucket/prefix".into(),
                endpoint: Some("http://127.0.0.1:9".into()),
                region: None,
                push: true,
                timeout: Some(1),
            },
        );
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMIsecretK7MDENG".into(),
            session_token: Some("sessionTOKENsecret".into()),
            from: "environment".into(),
        };
        let key = SecretKey::from_seed("host-a", [3; 32]).unwrap();
        let secret = key.to_secret_string();
        let dir = tempfile::tempdir().unwrap();
        let cache = S3Cache::open("team", &config, creds, Some(key), dir.path().into()).unwrap();
        let dbg = format!("{cache:?}");
        for s in [
            "wJalrXUtnFEMIsecretK7MDENG",
            "sessionTOKENsecret",
            secret.split_once(':').unwrap().1,
        ] {
            assert!(!dbg.contains(s), "{dbg}");
        }
        assert!(
            dbg.contains("team") && dbg.contains("s3://bucket/prefix"),
            "{dbg}"
        );
    }

    #[test]
    fn a_cache_that_is_not_there_costs_one_timeout_then_fails_at_once() {
        // A port that accepts connections and never answers: a hung server.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = Config::default();
        config.caches.insert(
            "slow".into(),
            CacheConfig {
                url: "s3://bucket/p".into(),
                endpoint: Some(format!("http://127.0.0.1:{port}")),
                region: None,
                push: false,
                timeout: Some(1),
            },
        );
        let creds = Credentials {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
            session_token: None,
            from: "test".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = S3Cache::open("slow", &config, creds, None, dir.path().into()).unwrap();
        let keys: Vec<String> = (0..40).map(|i| format!("{i:064x}")).collect();
        let t = std::time::Instant::now();
        let e = cache.lookup(&keys).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(1900), "{:?}", t.elapsed());
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
        assert!(e.to_string().contains("no answer within 1s"), "{e}");
        let t = std::time::Instant::now();
        let e = cache.download(&keys[0]).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
        assert!(e.to_string().contains("did not answer earlier"), "{e}");
        drop(listener);
    }
}
