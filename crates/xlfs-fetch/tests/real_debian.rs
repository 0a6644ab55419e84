//! A real download from this machine's Debian mirror (as configured for apt).
//!
//! Needs network access to the mirror, so it is ignored by default. Run it with
//!
//! ```sh
//! cargo test -p xlfs-fetch --test real_debian -- --ignored
//! ```

use std::path::Path;

use xlfs_fetch::{debian_base_from_apt, DebianRef, Fetcher, Mirrors, SourceRef};

#[test]
#[ignore = "needs network access to the Debian mirror in /etc/apt"]
fn fetch_zlib_orig_tarball_from_debian() {
    let base = debian_base_from_apt(Path::new("/etc/apt")).expect("no Debian archive configured in /etc/apt");
    let cache = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(
        cache.path().to_path_buf(),
        Mirrors {
            debian_base: Some(base),
            local_dirs: vec![],
        },
        false,
    );
    let sha256 = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb";
    let src = SourceRef {
        file: "zlib-1.3.1.tar.gz".into(),
        sha256: "9a93b2b7dfdac77ceba5a558a580e74667dd6fede4585b91eefb60f03b72df23".into(),
        urls: vec![], // upstream is out of reach here; only the Debian archive is tried
        debian: Some(DebianRef {
            package: "zlib".into(),
            file: "zlib_1.3.dfsg+really1.3.1.orig.tar.gz".into(),
            sha256: sha256.into(),
        }),
    };
    let got = fetcher.fetch(&src, &|_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.file, "zlib_1.3.dfsg+really1.3.1.orig.tar.gz");
    assert_eq!(got.sha256, sha256);
    assert!(got.bytes_downloaded > 500_000, "{got:?}");
    assert!(got
        .from
        .ends_with("/pool/main/z/zlib/zlib_1.3.dfsg+really1.3.1.orig.tar.gz"));
    assert_eq!(fetcher.cached(&src), Some(got.path.clone()));
    assert_eq!(fetcher.fetch(&src, &|_, _| {}).unwrap().from, "cache");
}
