//! LocalStore behaviour.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xlfs_store::{pack, ArtifactStore, LocalStore, PackOptions, Packed, StoreError};

fn key(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A trivial package: a handful of small files.
fn trivial_tree(root: &Path, flavour: &str) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/pkg")).unwrap();
    fs::write(root.join("usr/bin/tool"), format!("#!/bin/sh\necho {flavour}\n")).unwrap();
    fs::write(root.join("usr/share/doc/pkg/README"), "readme\n").unwrap();
    fs::write(root.join("usr/share/doc/pkg/COPYING"), "license\n").unwrap();
    symlink("tool", root.join("usr/bin/tool2")).unwrap();
}

fn packed_artifact(base: &Path, name: &str) -> (std::path::PathBuf, Packed) {
    let tree = base.join(format!("tree-{name}"));
    trivial_tree(&tree, name);
    let out = base.join(format!("{name}.tar.zst"));
    let p = pack(&tree, &out, &PackOptions::default()).unwrap();
    (out, p)
}

#[test]
fn put_contains_manifest_path_keys_remove() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (art, packed) = packed_artifact(dir.path(), "a");
    let (art_b, packed_b) = packed_artifact(dir.path(), "b");
    let (ka, kb) = (key('a'), key('b'));

    assert!(!store.contains(&ka).unwrap());
    assert!(matches!(store.manifest(&ka), Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.artifact_path(&ka),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.keys().unwrap(), Vec::<String>::new());

    store.put(&ka, &art, &packed).unwrap();
    store.put(&kb, &art_b, &packed_b).unwrap();
    assert!(store.contains(&ka).unwrap());
    assert_eq!(store.manifest(&ka).unwrap(), packed.manifest);
    assert_eq!(store.manifest(&kb).unwrap(), packed_b.manifest);
    let path = store.artifact_path(&ka).unwrap();
    assert_eq!(
        path,
        dir.path().join("store/objects/aa").join(format!("{ka}.tar.zst"))
    );
    assert!(path.with_file_name(format!("{ka}.manifest.json")).is_file());
    assert_eq!(fs::read(&path).unwrap(), fs::read(&art).unwrap());
    assert_eq!(store.keys().unwrap(), vec![ka.clone(), kb.clone()]);
    assert_eq!(store.packed(&ka).unwrap(), packed);
    store.verify(&ka).unwrap();
    // The caller's file is left alone.
    assert!(art.is_file());

    // Putting again is a no-op (first writer wins).
    store.put(&ka, &art, &packed).unwrap();
    assert_eq!(store.keys().unwrap().len(), 2);

    // Trait objects work.
    let dyn_store: Arc<dyn ArtifactStore> = Arc::new(store.clone());
    assert!(dyn_store.contains(&kb).unwrap());

    store.remove(&ka).unwrap();
    assert!(!store.contains(&ka).unwrap());
    assert!(!path.with_file_name(format!("{ka}.manifest.json")).exists());
    assert_eq!(store.keys().unwrap(), vec![kb.clone()]);
    assert!(matches!(store.remove(&ka), Err(StoreError::NotFound { .. })));

    // Corruption is detected by verify.
    let pb = store.artifact_path(&kb).unwrap();
    let mut bytes = fs::read(&pb).unwrap();
    bytes[10] ^= 1;
    fs::write(&pb, bytes).unwrap();
    assert!(matches!(store.verify(&kb), Err(StoreError::Corrupt { .. })));
}

#[test]
fn put_rejects_mismatching_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (art, mut packed) = packed_artifact(dir.path(), "a");
    packed.sha256 = "0".repeat(64);
    let err = store.put(&key('c'), &art, &packed).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("a.tar.zst"), "{err}");
    assert!(!store.contains(&key('c')).unwrap());
    assert!(store.keys().unwrap().is_empty());
    // No temporary artifact left behind.
    let objdir = dir.path().join("store/objects/cc");
    let names: Vec<String> = fs::read_dir(objdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".manifest.json")), "{names:?}");
}

#[test]
fn invalid_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    for bad in ["", "a", "../etc", "ab/cd", ".tmp-x", "a b"] {
        assert!(
            matches!(store.contains(bad), Err(StoreError::InvalidKey { .. })),
            "{bad:?}"
        );
        assert!(store.tree(bad).is_err());
    }
}

#[test]
fn crash_leftovers_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let k = key('d');
    // A crash after the manifest was published and while the artifact was
    // being copied: manifest + temp file, no .tar.zst.
    let (art, packed) = packed_artifact(dir.path(), "a");
    let objdir = dir.path().join("store/objects/dd");
    fs::create_dir_all(&objdir).unwrap();
    fs::write(
        objdir.join(format!("{k}.manifest.json")),
        serde_json::to_vec(&packed.manifest).unwrap(),
    )
    .unwrap();
    fs::copy(&art, objdir.join(format!(".tmp-{k}-12345"))).unwrap();
    fs::create_dir_all(dir.path().join(format!("store/trees/.tmp-{k}-999/usr"))).unwrap();

    assert!(!store.contains(&k).unwrap());
    assert!(store.keys().unwrap().is_empty());
    assert!(matches!(store.manifest(&k), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.tree(&k), Err(StoreError::NotFound { .. })));

    // Young temps are kept, old ones cleaned.
    assert_eq!(store.clean_temps(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(store.clean_temps(Duration::ZERO).unwrap(), 2);
    assert!(!objdir.join(format!(".tmp-{k}-12345")).exists());

    // A later put completes normally.
    store.put(&k, &art, &packed).unwrap();
    assert!(store.contains(&k).unwrap());
    assert_eq!(store.manifest(&k).unwrap(), packed.manifest);
}

#[test]
fn tree_is_extracted_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (art, packed) = packed_artifact(dir.path(), "a");
    let k = key('e');
    store.put(&k, &art, &packed).unwrap();

    // Concurrent first use.
    let paths: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| store.tree(&k).unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    let tree = &paths[0];
    assert_eq!(tree, &dir.path().join("store/trees").join(&k));
    assert_eq!(
        fs::read_to_string(tree.join("usr/bin/tool")).unwrap(),
        "#!/bin/sh\necho a\n"
    );
    let ino = fs::metadata(tree).unwrap().ino();

    // Reused while unchanged: the directory is the same.
    assert_eq!(&store.tree(&k).unwrap(), tree);
    assert_eq!(fs::metadata(tree).unwrap().ino(), ino);

    // An added file is caught: the tree is extracted afresh (a new
    // directory) and the marker is gone.
    fs::write(tree.join("marker"), "x").unwrap();
    assert_eq!(&store.tree(&k).unwrap(), tree);
    assert!(!tree.join("marker").exists());
    let ino2 = fs::metadata(tree).unwrap().ino();
    assert_ne!(ino2, ino, "re-extracted");

    // A modified file is caught, even with its size and mtime restored.
    let tool = tree.join("usr/bin/tool");
    let meta = fs::metadata(&tool).unwrap();
    fs::write(
        &tool,
        "#!/bin/sh
echo b
",
    )
    .unwrap();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(meta.mtime() as u64);
    fs::File::options()
        .write(true)
        .open(&tool)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(&tool).unwrap().len(), meta.len());
    assert_eq!(&store.tree(&k).unwrap(), tree);
    assert_eq!(fs::read_to_string(&tool).unwrap(), "#!/bin/sh\necho a\n");
    assert_ne!(fs::metadata(tree).unwrap().ino(), ino2, "re-extracted");

    // A removed file is caught too.
    fs::remove_file(tree.join("usr/share/doc/pkg/README")).unwrap();
    store.tree(&k).unwrap();
    assert!(tree.join("usr/share/doc/pkg/README").is_file());

    // A tree without stamps (crash right after extraction) is not trusted.
    fs::remove_file(dir.path().join("store/trees").join(format!("{k}.stamps"))).unwrap();
    fs::write(tree.join("marker"), "x").unwrap();
    store.tree(&k).unwrap();
    assert!(!tree.join("marker").exists());

    // No temporary directories left by the losers of the race.
    let names: Vec<String> = fs::read_dir(dir.path().join("store/trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, vec![k.clone(), format!("{k}.stamps")]);

    // Removing the artifact removes its tree.
    store.remove(&k).unwrap();
    assert!(!tree.exists());
    assert!(!dir
        .path()
        .join("store/trees")
        .join(format!("{k}.stamps"))
        .exists());
    assert!(matches!(store.tree(&k), Err(StoreError::NotFound { .. })));
}

/// The stamp check walks the whole tree before each use: it must stay cheap on a big tree.
#[test]
fn tree_check_of_10k_files_is_cheap() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store"))
        .unwrap()
        .with_fsync(false);
    let src = dir.path().join("big");
    for d in 0..100 {
        let sub = src.join(format!("usr/share/d{d:03}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            fs::write(sub.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
        }
    }
    let art = dir.path().join("big.tar.zst");
    let packed = pack(&src, &art, &PackOptions::default()).unwrap();
    let k = key('b');
    store.put(&k, &art, &packed).unwrap();
    let t = Instant::now();
    let tree = store.tree(&k).unwrap();
    let extract = t.elapsed();
    let ino = fs::metadata(&tree).unwrap().ino();
    let n = 10;
    let t = Instant::now();
    for _ in 0..n {
        store.tree(&k).unwrap();
    }
    let check = t.elapsed() / n;
    eprintln!("10k files: extract and stamp {extract:?}, check {check:?}");
    assert_eq!(
        fs::metadata(&tree).unwrap().ino(),
        ino,
        "an unchanged tree is reused"
    );
    // Generous bound for a debug build on a loaded 2-core machine.
    assert!(check < Duration::from_millis(500), "{check:?}");
    assert!(
        check * 3 < extract,
        "checking ({check:?}) is much cheaper than extracting ({extract:?})"
    );
}

/// After a crash between `put` and recording the build, the rebuild's artifact may differ: `put`
/// keeps the first one and says so, so the caller records what is really stored.
#[test]
fn put_of_an_existing_key_returns_the_stored_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (art_a, packed_a) = packed_artifact(dir.path(), "a");
    let (art_b, packed_b) = packed_artifact(dir.path(), "b");
    assert_ne!(packed_a.sha256, packed_b.sha256);
    let k = key('d');
    assert_eq!(store.put(&k, &art_a, &packed_a).unwrap(), packed_a);
    let stored = store.put(&k, &art_b, &packed_b).unwrap();
    assert_eq!(stored, packed_a, "the first artifact stays and is reported");
    assert_eq!(
        xlfs_util::sha256_file(&store.artifact_path(&k).unwrap())
            .unwrap()
            .0,
        packed_a.sha256
    );
}

/// A bit flipped in a stored object is caught by `verify`.
#[test]
fn a_bit_flip_in_a_stored_object_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (art, packed) = packed_artifact(dir.path(), "a");
    let k = key('f');
    store.put(&k, &art, &packed).unwrap();
    store.verify(&k).unwrap();
    let path = store.artifact_path(&k).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let e = store.verify(&k).unwrap_err().to_string();
    assert!(e.contains(&packed.sha256) && e.contains(&k), "{e}");
}

/// Times `n` pack+put rounds of a trivial package; returns (pack, put) per round.
fn time_trivial(store: &LocalStore, base: &Path, n: u32, tag: &str) -> (Duration, Duration) {
    let tree = base.join(format!("tree-{tag}"));
    trivial_tree(&tree, tag);
    // Warm up (page cache, lazy statics).
    pack(&tree, &base.join("warm.tar.zst"), &PackOptions::default()).unwrap();
    let (mut t_pack, mut t_put) = (Duration::ZERO, Duration::ZERO);
    for i in 0..n {
        let out = base.join(format!("{tag}{i}.tar.zst"));
        let t0 = Instant::now();
        let p = pack(&tree, &out, &PackOptions::default()).unwrap();
        let t1 = Instant::now();
        let k = format!("{i:02}{tag}{}", "f".repeat(61));
        store.put(&k, &out, &p).unwrap();
        t_pack += t1 - t0;
        t_put += t1.elapsed();
    }
    (t_pack / n, t_put / n)
}

#[test]
fn trivial_package_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (pack_t, put_t) = time_trivial(&store, dir.path(), 20, "a");
    eprintln!("trivial package: pack {pack_t:?}, put (fsync) {put_t:?}");
    let fast = store.clone().with_fsync(false);
    let (pack_f, put_f) = time_trivial(&fast, dir.path(), 20, "b");
    eprintln!("trivial package: pack {pack_f:?}, put (no fsync) {put_f:?}");
    // Generous bounds: debug build on a loaded shared machine whose disk
    // takes several ms per fsync.
    assert!(pack_t < Duration::from_millis(100), "{pack_t:?}");
    assert!(
        pack_f + put_f < Duration::from_millis(100),
        "{pack_f:?} {put_f:?}"
    );
    assert!(put_t < Duration::from_millis(500), "{put_t:?}");
    assert_eq!(store.keys().unwrap().len(), 40);
}

#[test]
fn stale_tree_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let k = key('9');
    // A tree left behind (e.g. by a crash during remove) without artifact.
    let stale = dir.path().join("store/trees").join(&k);
    fs::create_dir_all(stale.join("old")).unwrap();
    assert!(matches!(store.tree(&k), Err(StoreError::NotFound { .. })));
    // Publishing an artifact under that key drops the stale tree.
    let (art, packed) = packed_artifact(dir.path(), "a");
    store.put(&k, &art, &packed).unwrap();
    let tree = store.tree(&k).unwrap();
    assert!(!tree.join("old").exists());
    assert!(tree.join("usr/bin/tool").is_file());
}

/// A manifest that no longer describes its artifact is caught by the deep check.
#[test]
fn verify_contents_compares_every_member_with_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let (art, packed) = packed_artifact(dir.path(), "a");
    let k = key('7');
    store.put(&k, &art, &packed).unwrap();
    store.verify_contents(&k).unwrap();
    let mpath = store
        .artifact_path(&k)
        .unwrap()
        .with_file_name(format!("{k}.manifest.json"));
    let text = fs::read_to_string(&mpath).unwrap();
    let readme = packed
        .manifest
        .find("usr/share/doc/pkg/README")
        .unwrap()
        .sha256
        .clone()
        .unwrap();
    fs::write(&mpath, text.replace(&readme, &"0".repeat(64))).unwrap();
    store.verify(&k).unwrap(); // the artifact's own checksum still matches
    let e = store.verify_contents(&k).unwrap_err().to_string();
    assert!(e.contains("usr/share/doc/pkg/README"), "{e}");
}

/// Hard links, symlinks, directories and recipe-given owners and modes all pass the deep check.
#[test]
fn verify_contents_accepts_every_kind_of_member() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    trivial_tree(&tree, "k");
    fs::hard_link(tree.join("usr/bin/tool"), tree.join("usr/bin/tool-hard")).unwrap();
    let opts = PackOptions {
        attrs: vec![xlfs_store::Attr {
            path: "usr/bin/tool".into(),
            uid: Some(0),
            gid: Some(5),
            mode: Some(0o4755),
        }],
        ..PackOptions::default()
    };
    let art = dir.path().join("k.tar.zst");
    let packed = pack(&tree, &art, &opts).unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let k = key('8');
    store.put(&k, &art, &packed).unwrap();
    store.verify_contents(&k).unwrap();
}
