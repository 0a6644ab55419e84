//! Where xlfs keeps its state, following the XDG base directory conventions.
//!
//! | what                 | default                              | override                    |
//! |----------------------|--------------------------------------|-----------------------------|
//! | state, store, builds | `$XDG_DATA_HOME/xlfs` (`~/.local/share/xlfs`) | `--home DIR` / `XLFS_HOME` |
//! | toolchain roots      | `HOME/toolchains`                     | `--toolchains DIR` / `XLFS_TOOLCHAINS` |
//! | downloaded sources   | `$XDG_CACHE_HOME/xlfs/sources`        | `--sources DIR` / `XLFS_SOURCES` (or `HOME/sources` with `--home`) |

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
    pub sources: PathBuf,
    /// The pinned toolchain roots of the `host` environment (see [`crate::toolchain`]).
    pub toolchains: PathBuf,
}

impl Home {
    /// `home`: explicit root (flag or `XLFS_HOME`); `sources`: explicit download cache.
    pub fn resolve(home: Option<PathBuf>, sources: Option<PathBuf>) -> Home {
        let explicit = home.is_some();
        let root = home.unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("/var/lib"))
                .join("xlfs")
        });
        let sources = sources.unwrap_or_else(|| {
            if explicit {
                root.join("sources")
            } else {
                dirs::cache_dir()
                    .unwrap_or_else(|| root.clone())
                    .join("xlfs")
                    .join("sources")
            }
        });
        Home {
            toolchains: root.join("toolchains"),
            root,
            sources,
        }
    }

    pub fn at(root: &Path) -> Home {
        Home {
            root: root.to_path_buf(),
            sources: root.join("sources"),
            toolchains: root.join("toolchains"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// Shared by `image` and `boot`, exclusive for `gc` and `verify` (see [`crate::lock`]).
    pub fn store_lock(&self) -> PathBuf {
        self.root.join("store.lock")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The build directory of one package build.
    pub fn build_dir(&self, name: &str, key: &str) -> PathBuf {
        self.builds().join(format!("{name}-{}", &key[..12]))
    }
    /// The build directories of `name` in this home, one for each key it was built with (the
    /// names [`Home::build_dir`] gives), in no particular order.
    pub fn build_dirs_of(&self, name: &str) -> Vec<PathBuf> {
        let prefix = format!("{name}-");
        let Ok(entries) = std::fs::read_dir(self.builds()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(&prefix))
                    .is_some_and(|k| k.len() == 12 && k.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .map(|e| e.path())
            .collect()
    }
    pub fn log_file(&self, name: &str, key: &str) -> PathBuf {
        self.logs().join(format!("{name}-{}.log", &key[..12]))
    }

    pub fn create(&self) -> std::io::Result<()> {
        for d in [
            self.root.clone(),
            self.store(),
            self.builds(),
            self.logs(),
            self.sources.clone(),
        ] {
            std::fs::create_dir_all(&d)?;
        }
        Ok(())
    }
}
