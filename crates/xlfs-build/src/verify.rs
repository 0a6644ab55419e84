//! `xlfs verify` and the check `image` makes: the store's objects re-hashed against the checksum
//! their manifest records and the one the state database records. A corrupt object is removed
//! (artifact, manifest, extracted tree) and its row forgotten, with a failure noted, so the next
//! build makes it again; it can never reach an image.

use crate::state::{Failure, StateDb};
use xlfs_store::{ArtifactStore, LocalStore};

/// One object that does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    pub key: String,
    /// The package, when the database knows the key.
    pub package: Option<String>,
    /// What the database (or else the manifest) says the artifact's sha256 and size are.
    pub expected: String,
    /// What was found.
    pub got: String,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "artifact {} ({}): expected {}, found {}",
            self.key,
            self.package.as_deref().unwrap_or("no package recorded"),
            self.expected,
            self.got
        )
    }
}

/// Re-hashes the object stored under `key` and compares it with its manifest's record and the
/// database's; `deep`: also every member of the artifact with its manifest entry (decompresses
/// it all). `Ok(None)`: it matches.
pub fn check(store: &LocalStore, db: &StateDb, key: &str, deep: bool) -> Result<Option<Corrupt>, String> {
    let rec = db
        .build(key)
        .map_err(|e| format!("cannot read the state database: {e}"))?;
    let package = rec.as_ref().map(|r| r.name.clone());
    let corrupt = |expected: String, got: String| {
        Ok(Some(Corrupt {
            key: key.to_string(),
            package: package.clone(),
            expected,
            got,
        }))
    };
    let db_says = rec
        .as_ref()
        .map(|r| format!("sha256 {} ({} bytes)", r.artifact_sha256, r.artifact_size));
    if !store.contains(key).map_err(|e| e.to_string())? {
        return match db_says {
            Some(d) => corrupt(d, "no artifact in the store".into()),
            None => Ok(None),
        };
    }
    let packed = match store.packed(key) {
        Ok(p) => p,
        Err(e) => {
            return corrupt(
                db_says.unwrap_or_else(|| "a readable manifest".into()),
                format!("unreadable manifest: {e}"),
            )
        }
    };
    let manifest_says = format!("sha256 {} ({} bytes)", packed.sha256, packed.size);
    let path = store.artifact_path(key).map_err(|e| e.to_string())?;
    let (sha, size) =
        xlfs_util::sha256_file(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let found = format!("sha256 {sha} ({size} bytes)");
    let expected = db_says.unwrap_or(manifest_says.clone());
    if found != manifest_says || found != expected {
        return corrupt(expected, found);
    }
    if deep {
        if let Err(e) = store.verify_contents(key) {
            return corrupt("the artifact its manifest describes".into(), e.to_string());
        }
    }
    Ok(None)
}

/// Removes a corrupt object (artifact, manifest, tree) and forgets its build, noting why as the
/// package's failure, so that the next build makes it again.
pub fn discard(store: &LocalStore, db: &StateDb, c: &Corrupt) -> Result<(), String> {
    match store.remove(&c.key) {
        Ok(()) | Err(xlfs_store::StoreError::NotFound { .. }) => {}
        Err(e) => return Err(format!("cannot remove artifact {}: {e}", c.key)),
    }
    db.forget(&c.key)
        .map_err(|e| format!("cannot update the state database: {e}"))?;
    if let Some(name) = &c.package {
        db.record_failure(&Failure {
            name: name.clone(),
            key: c.key.clone(),
            at: xlfs_util::unix_now(),
            log: String::new(),
            build_dir: String::new(),
            message: format!("corrupt artifact removed ({c}); the next build makes it again"),
        })
        .map_err(|e| format!("cannot update the state database: {e}"))?;
    }
    Ok(())
}

/// For `image`: every one of `keys` must be sound. Corrupt ones are discarded (so the next build
/// makes them again) and named in the error.
pub fn require_sound<'a>(
    store: &LocalStore,
    db: &StateDb,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let mut corrupt = Vec::new();
    for key in keys {
        if let Some(c) = check(store, db, key, false)? {
            discard(store, db, &c)?;
            corrupt.push(c.to_string());
        }
    }
    if corrupt.is_empty() {
        Ok(())
    } else {
        Err(format!("corrupt artifacts, removed: {}", corrupt.join("; ")))
    }
}

/// Every key in the store or the database, checked deeply; the corrupt ones.
pub fn check_all(store: &LocalStore, db: &StateDb) -> Result<Vec<Corrupt>, String> {
    let mut keys: std::collections::BTreeSet<String> =
        store.keys().map_err(|e| e.to_string())?.into_iter().collect();
    keys.extend(
        db.keys()
            .map_err(|e| format!("cannot read the state database: {e}"))?,
    );
    let mut bad = Vec::new();
    for key in keys {
        if let Some(c) = check(store, db, &key, true)? {
            bad.push(c);
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::BuildRecord;
    use xlfs_store::{pack, PackOptions};

    fn artifact(dir: &std::path::Path, name: &str, body: &str) -> (std::path::PathBuf, xlfs_store::Packed) {
        let tree = dir.join(format!("tree-{name}"));
        std::fs::create_dir_all(tree.join("usr/share")).unwrap();
        std::fs::write(tree.join("usr/share/x"), body).unwrap();
        let out = dir.join(format!("{name}.tar.zst"));
        let p = pack(&tree, &out, &PackOptions::default()).unwrap();
        (out, p)
    }

    fn record(db: &StateDb, key: &str, p: &xlfs_store::Packed) {
        db.record(&BuildRecord {
            key: key.into(),
            name: "pkg".into(),
            version: "1".into(),
            inputs: xlfs_plan::Inputs::default(),
            artifact_sha256: p.sha256.clone(),
            artifact_size: p.size,
            installed_size: 0,
            build_tree_size: 0,
            wall_ms: 0,
            cpu_ms: 0,
            earlier_wall_ms: 0,
            finished_at: 0,
            log: String::new(),
            sources: vec![],
        })
        .unwrap();
    }

    /// A crash between `put` and recording the build, then a rebuild whose artifact differs:
    /// what is recorded is what is stored, and verification agrees.
    #[test]
    fn after_a_crash_between_put_and_record_the_db_records_the_stored_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("store")).unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let key = "ab".repeat(32);
        let (first, p1) = artifact(dir.path(), "first", "built at 1\n");
        store.put(&key, &first, &p1).unwrap();
        // crash: nothing recorded. The rebuild makes different bytes.
        let (second, p2) = artifact(dir.path(), "second", "built at 2\n");
        assert_ne!(p1.sha256, p2.sha256);
        let stored = store.put(&key, &second, &p2).unwrap();
        record(&db, &key, &stored);
        assert_eq!(db.build(&key).unwrap().unwrap().artifact_sha256, p1.sha256);
        assert_eq!(check_all(&store, &db).unwrap(), vec![]);
    }

    #[test]
    fn a_bit_flip_is_reported_removed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("store")).unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let key = "cd".repeat(32);
        let (art, p) = artifact(dir.path(), "a", "hello\n");
        let p = store.put(&key, &art, &p).unwrap();
        record(&db, &key, &p);
        store.tree(&key).unwrap();
        let path = store.artifact_path(&key).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len() / 2;
        bytes[n] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let bad = check_all(&store, &db).unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].package.as_deref(), Some("pkg"));
        assert!(bad[0].expected.contains(&p.sha256), "{}", bad[0]);
        assert!(!bad[0].got.contains(&p.sha256), "{}", bad[0]);
        discard(&store, &db, &bad[0]).unwrap();
        assert!(!store.contains(&key).unwrap());
        assert!(!dir.path().join("store/trees").join(&key).exists());
        assert!(db.build(&key).unwrap().is_none());
        let f = db.failures().unwrap();
        assert!(f[0].message.contains("corrupt artifact"), "{}", f[0].message);
        assert_eq!(check_all(&store, &db).unwrap(), vec![]);
    }

    /// What `image` relies on: a corrupt artifact is refused (and discarded), a sound one passes.
    #[test]
    fn image_inputs_must_be_sound() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("store")).unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).unwrap();
        let (good, bad) = ("11".repeat(32), "22".repeat(32));
        for (key, body) in [(&good, "good\n"), (&bad, "bad\n")] {
            let (art, p) = artifact(dir.path(), &key[..2], body);
            let p = store.put(key, &art, &p).unwrap();
            record(&db, key, &p);
        }
        require_sound(&store, &db, [good.as_str(), bad.as_str()]).unwrap();
        let path = store.artifact_path(&bad).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let e = require_sound(&store, &db, [good.as_str(), bad.as_str()]).unwrap_err();
        assert!(e.contains(&bad) && !e.contains(&good), "{e}");
        assert!(store.contains(&good).unwrap() && !store.contains(&bad).unwrap());
    }
}
