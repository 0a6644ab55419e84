//! The shared caches of a home, as the commands use them: look up what the plan needs, fetch it
//! (checked) before building, upload what was built; `xlfs cache …` and `xlfs key …`.
//!
//! A cache that fails costs one warning and its timeout, never a build: what it cannot give is
//! built here.

use crate::app::App;
use crate::args::{CacheCommand, KeyCommand};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;
use xlfs_build::StateDb;
use xlfs_cache::{CacheConfig, Config, S3Cache};
use xlfs_plan::{Plan, Status};
use xlfs_store::{ArtifactStore, LocalStore, StoreError};

/// The opened caches of a home, in configuration order.
pub struct Caches {
    pub list: Vec<(S3Cache, bool)>,
    quiet: bool,
    warned: Mutex<BTreeSet<String>>,
}

impl Caches {
    /// The home's caches. Problems that stop a cache from being used (no credentials, a bad
    /// endpoint) are warnings: the build goes on without it.
    pub fn open(app: &App) -> Result<Caches> {
        let config = Config::load(&app.home.root).map_err(anyhow::Error::msg)?;
        let mut caches = Caches {
            list: Vec::new(),
            quiet: app.global.quiet,
            warned: Mutex::new(BTreeSet::new()),
        };
        if config.caches.is_empty() {
            return Ok(caches);
        }
        let signer = xlfs_cache::load_key(&xlfs_cache::config::secret_key_path(&app.home.root))
            .map_err(anyhow::Error::msg)?;
        let creds = match xlfs_cache::creds::find(&|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warning: shared caches not used: {e}");
                return Ok(caches);
            }
        };
        let staging = app.home.root.join("cache-staging");
        for (name, c) in &config.caches {
            let signer = signer
                .as_ref()
                .map(|k| xlfs_cache::SecretKey::parse(&k.to_secret_string()).expect("round trip"));
            match S3Cache::open(name, &config, creds.clone(), signer, staging.clone()) {
                Ok(cache) => caches.list.push((cache, c.push)),
                Err(e) => eprintln!("warning: cache {name} not used: {e}"),
            }
        }
        Ok(caches)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether this is the first warning about `cache` in this process (one warning each).
    fn first_warning(&self, cache: &S3Cache) -> bool {
        self.warned
            .lock()
            .map(|mut w| w.insert(cache.name().to_string()))
            .unwrap_or(true)
    }

    fn warn(&self, cache: &S3Cache, e: &StoreError) {
        if self.first_warning(cache) {
            eprintln!(
                "warning: cache {} is unavailable, going on without it: {e}",
                cache.describe()
            );
        }
    }

    /// Which keys the plan lacks locally are in which cache (the first that has it).
    pub fn lookup(&self, plan: &Plan) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        let mut wanted = plan.to_look_up();
        for (cache, _) in &self.list {
            if wanted.is_empty() {
                break;
            }
            if !cache.trusts_any() {
                if self.first_warning(cache) {
                    eprintln!(
                        "warning: cache {} not used for fetching: no trusted keys (`xlfs key trust NAME:KEY`)",
                        cache.name()
                    );
                }
                continue;
            }
            match cache.lookup(&wanted) {
                Ok(have) => {
                    wanted.retain(|k| !have.contains(k));
                    for k in have {
                        found.insert(k, cache.name().to_string());
                    }
                }
                Err(e) => self.warn(cache, &e),
            }
        }
        found
    }

    /// The plan with what the caches have (see [`Caches::lookup`]).
    pub fn plan(&self, plan: Plan) -> Plan {
        if self.is_empty() {
            return plan;
        }
        let found = self.lookup(&plan);
        plan.with_remote(&found)
    }

    /// Fetches the plan's artifacts that come from a cache into the local store and records
    /// them. An artifact refused (signature, hash, manifest) or not delivered is reported and
    /// left to build here. Returns how many were fetched.
    pub fn fetch(&self, app: &App, plan: &Plan, store: &LocalStore, db: &StateDb) -> Result<usize> {
        let started = Instant::now();
        let mut fetched = 0;
        let mut per_cache: BTreeMap<String, usize> = BTreeMap::new();
        for step in plan.to_fetch() {
            let Status::Remote { cache: name } = &step.status else {
                continue;
            };
            let Some((cache, _)) = self.list.iter().find(|(c, _)| c.name() == name) else {
                continue;
            };
            let t = Instant::now();
            match cache.fetch_into(&step.key, store) {
                Ok(got) => {
                    record_fetch(app, db, step, &got.packed, cache, &got.signed_by, t.elapsed())?;
                    if !self.quiet {
                        eprintln!(
                            "   fetch {} {} from cache {} (signed by {})",
                            step.name,
                            xlfs_build::run::human_bytes(got.packed.size),
                            cache.name(),
                            got.signed_by
                        );
                    }
                    fetched += 1;
                    *per_cache.entry(name.clone()).or_default() += 1;
                }
                Err(e @ StoreError::Unavailable { .. }) => {
                    self.warn(cache, &e);
                }
                Err(e) => {
                    eprintln!("error: {e}; building {} here instead", step.name);
                }
            }
        }
        if fetched > 0 {
            let bytes: u64 = self.list.iter().map(|(c, _)| c.traffic().0).sum();
            eprintln!(
                "fetched {fetched} artifact(s) from {} ({} received) in {:.1}s",
                per_cache
                    .iter()
                    .map(|(c, n)| format!("cache {c}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                xlfs_build::run::human_bytes(bytes),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(fetched)
    }

    /// Uploads the plan's local artifacts that a pushing cache (`push = true`, or every cache
    /// with `all`) does not have yet.
    pub fn push(&self, plan: &Plan, store: &LocalStore, all: bool) -> Result<()> {
        for (cache, push) in &self.list {
            if !(*push || all) {
                continue;
            }
            let local: Vec<&xlfs_plan::Step> = plan
                .steps
                .iter()
                .filter(|s| store.contains(&s.key).unwrap_or(false))
                .collect();
            let keys: Vec<String> = local.iter().map(|s| s.key.clone()).collect();
            let have = match cache.lookup(&keys) {
                Ok(h) => h,
                Err(e) => {
                    self.warn(cache, &e);
                    continue;
                }
            };
            let (mut sent, started) = (0, Instant::now());
            for step in local.iter().filter(|s| !have.contains(&s.key)) {
                let packed = store.packed(&step.key)?;
                let path = store.artifact_path(&step.key)?;
                let label = format!("{} {}", step.name, step.version);
                match cache.upload(&step.key, &path, &packed, &label) {
                    Ok(true) => {
                        sent += 1;
                        if !self.quiet {
                            eprintln!(
                                "    push {} {} to cache {}",
                                step.name,
                                xlfs_build::run::human_bytes(packed.size),
                                cache.name()
                            );
                        }
                    }
                    Ok(false) => {}
                    Err(e @ StoreError::Unavailable { .. }) => {
                        self.warn(cache, &e);
                        break;
                    }
                    Err(e) => eprintln!(
                        "error: cannot upload {} to cache {}: {e}",
                        step.name,
                        cache.name()
                    ),
                }
            }
            if sent > 0 {
                eprintln!(
                    "pushed {sent} artifact(s) to cache {} ({} sent) in {:.1}s",
                    cache.name(),
                    xlfs_build::run::human_bytes(cache.traffic().1),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }
}

/// Records a fetched artifact like a build (so that `why`, `files` and `report` know it), with a
/// log that says where it came from.
fn record_fetch(
    app: &App,
    db: &StateDb,
    step: &xlfs_plan::Step,
    packed: &xlfs_store::Packed,
    cache: &S3Cache,
    signed_by: &str,
    took: std::time::Duration,
) -> Result<()> {
    std::fs::create_dir_all(app.home.logs())?;
    let log = app.home.log_file(&step.name, &step.key);
    std::fs::write(
        &log,
        format!(
            "==> xlfs: {} {} key {}\n==> xlfs: fetched from cache {}, signed by {signed_by}: artifact sha256 {} ({} bytes) in {:.1}s; not built here\n",
            step.name,
            step.version,
            step.key,
            cache.describe(),
            packed.sha256,
            packed.size,
            took.as_secs_f64()
        ),
    )
    .with_context(|| format!("cannot write {}", log.display()))?;
    let record = not_built_here(
        step,
        packed,
        took.as_millis() as u64,
        xlfs_util::unix_now(),
        Some(&log),
    );
    db.record(&record)
        .with_context(|| format!("cannot record {} in the state database", step.name))
}

/// The state database's row for an artifact this home did not build: fetched from a cache in
/// `wall_ms`, or adopted from the store (no time, no log).
fn not_built_here(
    step: &xlfs_plan::Step,
    packed: &xlfs_store::Packed,
    wall_ms: u64,
    finished_at: i64,
    log: Option<&Path>,
) -> xlfs_build::BuildRecord {
    xlfs_build::BuildRecord {
        key: step.key.clone(),
        name: step.name.clone(),
        version: step.version.clone(),
        inputs: step.inputs.clone(),
        artifact_sha256: packed.sha256.clone(),
        artifact_size: packed.size,
        installed_size: packed.manifest.installed_size(),
        build_tree_size: 0,
        wall_ms,
        cpu_ms: 0,
        earlier_wall_ms: 0,
        finished_at,
        log: log.map(|l| l.display().to_string()).unwrap_or_default(),
        sources: Vec::new(),
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| {
            h.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| xlfs_cache::sign::valid_key_name(h))
        .unwrap_or_else(|| "xlfs".into())
}

pub fn cache_command(app: &App, cmd: CacheCommand) -> Result<i32> {
    app.prepare_home()?;
    let home = &app.home.root;
    let mut config = Config::load(home).map_err(anyhow::Error::msg)?;
    match cmd {
        CacheCommand::Add {
            name,
            url,
            endpoint,
            region,
            push,
            timeout,
        } => {
            if !xlfs_cache::config::valid_cache_name(&name) {
                bail!("`{name}` is not a cache name: use 1 to 32 of a-z, 0-9 and '-'");
            }
            xlfs_cache::config::S3Url::parse(&url).map_err(anyhow::Error::msg)?;
            if let Some(e) = &endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    bail!("--endpoint {e}: write the endpoint as http://HOST:PORT or https://HOST");
                }
            }
            let replaced = config
                .caches
                .insert(
                    name.clone(),
                    CacheConfig {
                        url,
                        endpoint,
                        region,
                        push,
                        timeout,
                    },
                )
                .is_some();
            config.save(home).map_err(anyhow::Error::msg)?;
            println!(
                "{} cache {name} in {}",
                if replaced { "replaced" } else { "added" },
                xlfs_cache::config::config_path(home).display()
            );
            if push
                && xlfs_cache::load_key(&xlfs_cache::config::secret_key_path(home))
                    .map_err(anyhow::Error::msg)?
                    .is_none()
            {
                println!("note: pushing needs a signing key: run `xlfs key generate`");
            }
            if config.trusted_keys.is_empty() {
                println!("note: no trusted keys: nothing will be fetched until `xlfs key trust NAME:KEY`");
            }
            Ok(0)
        }
        CacheCommand::List => {
            if config.caches.is_empty() {
                println!("no caches; add one with `xlfs cache add NAME s3://BUCKET/PREFIX --endpoint URL`");
            }
            for (name, c) in &config.caches {
                println!(
                    "{name:<12} {:<32} {:<28} {} timeout {}s",
                    c.url,
                    c.endpoint.as_deref().unwrap_or("(AWS)"),
                    if c.push { "push" } else { "pull" },
                    c.timeout(&config).as_secs()
                );
            }
            for k in &config.trusted_keys {
                println!("trusted  {k}");
            }
            if let Some(k) = xlfs_cache::load_key(&xlfs_cache::config::secret_key_path(home))
                .map_err(anyhow::Error::msg)?
            {
                println!("signing  {}", k.public());
            }
            Ok(0)
        }
        CacheCommand::Remove { name } => {
            if config.caches.remove(&name).is_none() {
                bail!(
                    "no cache `{name}` in {}; `xlfs cache list` shows them",
                    xlfs_cache::config::config_path(home).display()
                );
            }
            config.save(home).map_err(anyhow::Error::msg)?;
            println!("removed cache {name} (its contents are left alone)");
            Ok(0)
        }
        CacheCommand::Verify { name } => {
            if !config.caches.contains_key(&name) {
                bail!("no cache `{name}`; `xlfs cache list` shows them");
            }
            let creds = xlfs_cache::creds::find(&|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
            let cache = S3Cache::open(&name, &config, creds, None, home.join("cache-staging"))
                .map_err(anyhow::Error::msg)?;
            let checked = cache
                .verify_all(&|c| match &c.result {
                    Ok(()) => println!("ok      {} {}", c.key, c.package),
                    Err(e) => println!("BAD     {} {}: {e}", c.key, c.package),
                })
                .map_err(anyhow::Error::msg)?;
            let bad = checked.iter().filter(|c| c.result.is_err()).count();
            println!(
                "verified {} artifact(s) in cache {}: {bad} bad",
                checked.len(),
                cache.describe()
            );
            Ok(if bad == 0 { 0 } else { 1 })
        }
    }
}

pub fn key_command(app: &App, cmd: KeyCommand) -> Result<i32> {
    app.prepare_home()?;
    let home = &app.home.root;
    let key_path = xlfs_cache::config::secret_key_path(home);
    let mut config = Config::load(home).map_err(anyhow::Error::msg)?;
    match cmd {
        KeyCommand::Generate { name, force } => {
            let name = name.unwrap_or_else(host_name);
            let key = xlfs_cache::generate_key(&key_path, &name, force).map_err(anyhow::Error::msg)?;
            let public = key.public().to_string();
            if !config.trusted_keys.contains(&public) {
                config.trusted_keys.push(public.clone());
                config.save(home).map_err(anyhow::Error::msg)?;
            }
            eprintln!(
                "secret key in {} (mode 0600); its public key is trusted here. Trust it elsewhere with:\n  xlfs key trust {public}",
                key_path.display()
            );
            println!("{public}");
            Ok(0)
        }
        KeyCommand::Trust { key } => {
            let k = xlfs_cache::PublicKey::parse(&key).map_err(anyhow::Error::msg)?;
            let text = k.to_string();
            config.trusted_keys.retain(|t| {
                xlfs_cache::PublicKey::parse(t)
                    .map(|p| p.name != k.name)
                    .unwrap_or(true)
            });
            config.trusted_keys.push(text);
            config.save(home).map_err(anyhow::Error::msg)?;
            println!("trusting {}", k.name);
            Ok(0)
        }
        KeyCommand::Untrust { name } => {
            let before = config.trusted_keys.len();
            config.trusted_keys.retain(|t| {
                xlfs_cache::PublicKey::parse(t)
                    .map(|p| p.name != name)
                    .unwrap_or(true)
            });
            if config.trusted_keys.len() == before {
                bail!("no trusted key named `{name}`");
            }
            config.save(home).map_err(anyhow::Error::msg)?;
            println!("no longer trusting {name}");
            Ok(0)
        }
        KeyCommand::Show => match xlfs_cache::load_key(&key_path).map_err(anyhow::Error::msg)? {
            Some(k) => {
                println!("{}", k.public());
                Ok(0)
            }
            None => bail!(
                "no signing key in {}; run `xlfs key generate`",
                key_path.display()
            ),
        },
    }
}

/// Records the plan's artifacts that are in the local store without a row in the state
/// database (a crash between storing and recording): the database describes what is stored.
pub fn adopt(plan: &Plan, store: &LocalStore, db: &StateDb) -> Result<()> {
    for step in plan.steps.iter().filter(|s| s.status == Status::Cached) {
        if db.build(&step.key)?.is_some() {
            continue;
        }
        let packed = store.packed(&step.key)?;
        db.record(&not_built_here(step, &packed, 0, 0, None))
            .with_context(|| format!("cannot record {} in the state database", step.name))?;
    }
    Ok(())
}
