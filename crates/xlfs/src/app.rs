//! The pieces a command needs, opened on demand: the book, the home, the store, the state
//! database, the fetcher and the environment identities.

use anyhow::{Context, Result};
use std::path::PathBuf;
use xlfs_book::Book;
use xlfs_build::{Home, StateDb};
use xlfs_fetch::{Fetcher, Mirrors};
use xlfs_plan::{EnvIds, Plan};
use xlfs_store::{ArtifactStore, LocalStore};

use crate::args::Global;

pub struct App {
    pub global: Global,
    pub home: Home,
}

/// Error type carrying a book's diagnostics, printed as they are.
#[derive(Debug)]
pub struct BookFailed(pub xlfs_book::BookErrors);

impl std::fmt::Display for BookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the book has problems:\n{}", self.0)
    }
}
impl std::error::Error for BookFailed {}

impl App {
    pub fn new(global: Global) -> App {
        let mut home = Home::resolve(global.home.clone(), global.sources.clone());
        if let Some(t) = &global.toolchains {
            home.toolchains = t.clone();
        }
        App { global, home }
    }

    pub fn book_dir(&self) -> PathBuf {
        if let Some(b) = &self.global.book {
            return b.clone();
        }
        let local = PathBuf::from("book");
        if local.join("book.toml").is_file() {
            return local;
        }
        // The book of the checkout this binary was built from.
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../book")
    }

    pub fn book(&self) -> Result<Book> {
        let dir = self.book_dir();
        Book::load(&dir).map_err(|e| anyhow::Error::new(BookFailed(e)))
    }

    /// The book and one of its profiles.
    pub fn profile(&self, name: &str) -> Result<(Book, xlfs_book::profile::Profile)> {
        let book = self.book()?;
        let profile =
            xlfs_book::profile::Profile::load(&book, name).map_err(|e| anyhow::Error::new(BookFailed(e)))?;
        Ok((book, profile))
    }

    pub fn prepare_home(&self) -> Result<()> {
        self.home
            .create()
            .with_context(|| format!("cannot create the xlfs home {}", self.home.root.display()))
    }

    pub fn db(&self) -> Result<StateDb> {
        self.prepare_home()?;
        StateDb::open(&self.home.db()).with_context(|| format!("cannot open {}", self.home.db().display()))
    }

    pub fn store(&self) -> Result<LocalStore> {
        self.prepare_home()?;
        LocalStore::open(self.home.store())
            .with_context(|| format!("cannot open the store {}", self.home.store().display()))
    }

    pub fn fetcher(&self) -> Fetcher {
        let mut mirrors = Mirrors::system();
        if let Some(m) = &self.global.debian_mirror {
            mirrors.debian_base = Some(m.trim_end_matches('/').to_string());
        }
        mirrors.local_dirs = self.global.mirror_dirs.clone();
        Fetcher::new(self.home.sources.clone(), mirrors, self.global.offline)
    }

    /// The environment identities: `host` is the book's toolchain root's, when it is created.
    pub fn envs(&self, book: &Book) -> EnvIds {
        let spec = &book.config.host_toolchain;
        let tc = xlfs_build::toolchain::load(&self.home.toolchains, spec);
        xlfs_build::envid::env_ids(
            tc.as_ref().map(|t| t.id.as_str()),
            &xlfs_build::toolchain::spec_id(spec),
        )
    }

    /// The book's toolchain root, created first if missing; its package list is recorded in the
    /// home (`HOME/toolchains.seen/ID`) so that `why` can say what changed in a toolchain.
    pub fn toolchain(&self, book: &Book) -> Result<xlfs_build::toolchain::Toolchain> {
        let spec = &book.config.host_toolchain;
        let tc = match xlfs_build::toolchain::load(&self.home.toolchains, spec) {
            Some(tc) => tc,
            None => {
                let mirror = self.fetcher().mirrors().debian_base.clone().context(
                    "no Debian mirror for the toolchain root: none in /etc/apt; pass --debian-mirror URL",
                )?;
                let quiet = self.global.quiet;
                xlfs_build::toolchain::ensure(&self.home.toolchains, spec, &mirror, &|m| {
                    if !quiet {
                        eprintln!("{m}")
                    }
                })
                .map_err(anyhow::Error::msg)?
            }
        };
        self.prepare_home()?;
        let seen = self.home.root.join("toolchains.seen");
        let file = seen.join(&tc.id);
        if !file.exists() {
            std::fs::create_dir_all(&seen).with_context(|| format!("cannot create {}", seen.display()))?;
            let text: String = tc.packages.iter().map(|p| format!("{p}\n")).collect();
            std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        }
        Ok(tc)
    }

    /// The package list of a toolchain identity recorded by [`App::toolchain`].
    pub fn toolchain_packages(&self, id: &str) -> Option<Vec<String>> {
        let id = id.split(' ').next()?;
        if !id.starts_with("host-") || id.contains('/') {
            return None;
        }
        let text = std::fs::read_to_string(self.home.root.join("toolchains.seen").join(id)).ok()?;
        Some(text.lines().map(str::to_string).collect())
    }

    /// Plan `targets` against the local store (an artifact there counts as cached, recorded in
    /// the state database or not; see [`crate::cache::adopt`]), without the shared caches.
    pub fn plan(&self, book: &Book, targets: &[String], db: &StateDb, store: &LocalStore) -> Result<Plan> {
        self.plan_with(book, targets, true, db, store)
    }

    /// `runtime = false`: leave out the targets' own runtime dependencies.
    pub fn plan_with(
        &self,
        book: &Book,
        targets: &[String],
        runtime: bool,
        db: &StateDb,
        store: &LocalStore,
    ) -> Result<Plan> {
        self.plan_tuned(book, targets, runtime, None, db, store)
    }

    /// `march`: a profile's `host.march`, in every key and every build's CFLAGS.
    pub fn plan_tuned(
        &self,
        book: &Book,
        targets: &[String],
        runtime: bool,
        march: Option<&str>,
        db: &StateDb,
        store: &LocalStore,
    ) -> Result<Plan> {
        let envs = self.envs(book);
        let in_store = |k: &str| store.contains(k).unwrap_or(false);
        let prev = |n: &str| db.previous(n);
        Ok(xlfs_plan::plan_tuned(
            book, targets, runtime, &envs, march, &prev, &in_store,
        )?)
    }
}
