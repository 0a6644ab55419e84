//! The S3 cache against a real SeaweedFS server: a key is written once, concurrent uploads of
//! one key are harmless, and what is downloaded is what was signed.

use std::sync::Arc;
use xlfs_cache::seaweed::Server;
use xlfs_cache::SecretKey;
use xlfs_store::{pack, ArtifactStore, LocalStore, PackOptions};

#[test]
fn concurrent_uploads_of_one_key_publish_it_once_and_it_downloads_checked() {
    let server = Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("destdir");
    std::fs::create_dir_all(dest.join("usr/share/demo")).unwrap();
    std::fs::write(dest.join("usr/share/demo/data"), vec![7u8; 300_000]).unwrap();
    let artifact = dir.path().join("a.tar.zst");
    let opts = PackOptions {
        mtime: 1_700_000_000,
        ..PackOptions::default()
    };
    let packed = pack(&dest, &artifact, &opts).unwrap();
    let key = "ab".repeat(32);
    let signer = || SecretKey::from_seed("builder", [5; 32]).unwrap();
    let public = signer().public().to_string();
    let url = "s3://xlfs-test/concurrent";

    // Eight uploaders of the same key at once: each succeeds, exactly one publishes.
    let clients: Vec<_> = (0..8)
        .map(|_| Arc::new(server.signing_client("c", url, Some(&public), Some(signer()))))
        .collect();
    let published: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .map(|c| s.spawn(|| c.upload(&key, &artifact, &packed, "demo 1").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(published.iter().filter(|p| **p).count(), 1, "{published:?}");

    // The key is there once, and a fresh home gets exactly the artifact.
    let reader = server.client("c", url, Some(&public));
    assert_eq!(reader.keys().unwrap(), vec![key.clone()]);
    assert!(reader.contains(&key).unwrap());
    let local = LocalStore::open(dir.path().join("store")).unwrap();
    let got = reader.fetch_into(&key, &local).unwrap();
    assert_eq!(
        (got.packed.sha256.as_str(), got.signed_by.as_str()),
        (packed.sha256.as_str(), "builder")
    );
    local.verify_contents(&key).unwrap();
    assert_eq!(reader.manifest(&key).unwrap(), packed.manifest);

    // An upload of other bytes under the published key changes nothing.
    std::fs::write(dest.join("usr/share/demo/data"), b"other").unwrap();
    let other_art = dir.path().join("b.tar.zst");
    let other = pack(&dest, &other_art, &opts).unwrap();
    assert!(!clients[0].upload(&key, &other_art, &other, "demo 2").unwrap());
    assert_eq!(reader.info(&key).unwrap().sha256, packed.sha256);

    // An unknown key is not found.
    let missing = "cd".repeat(32);
    assert!(matches!(
        reader.download(&missing),
        Err(xlfs_store::StoreError::NotFound { .. })
    ));
}
