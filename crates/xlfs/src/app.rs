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
        let home = Home::resolve(global.home.clone(), global.sources.clone());
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

    pub fn envs(&self) -> EnvIds {
        xlfs_build::envid::probe_cached(&self.home.root.join("envid"))
    }

    /// Plan `targets` against the state database and the store.
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
        let recorded = db.keys()?;
        let envs = self.envs();
        let in_store = |k: &str| recorded.contains(k) && store.contains(k).unwrap_or(false);
        let prev = |n: &str| db.previous(n);
        Ok(xlfs_plan::plan_with(
            book, targets, runtime, &envs, &prev, &in_store,
        )?)
    }
}
