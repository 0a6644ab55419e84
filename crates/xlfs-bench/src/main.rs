//! `scripts/bench.sh`: measures the engine against its targets and prints the figures.
//!
//! 1. `xlfs plan` on a generated book of 2,000 recipes (target < 200 ms);
//! 2. a no-op `xlfs build` of a fully cached 100-package book (target < 1 s);
//! 3. per-package overhead (sandbox, pack, store) of a trivial package (target < 300 ms);
//! 4. CPU utilisation of a `-j2` build of 20 independent small packages (target ≥ 90 %);
//! 5. (`cache`) a shared cache on a real S3 server (SeaweedFS): a second home getting all of a
//!    12-package book from the cache, against building it cold; the bytes transferred.
//! 6. (`quick-cache`, only when named: it builds the quick profile cold, an hour or more on 2
//!    cores) the same with the real book: home A runs `xlfs up quick` from an empty store and
//!    pushes; home B, empty too, runs `xlfs up quick` from the cache; both include the images and
//!    the boot check. Sources and the pinned toolchain root are shared (not part of either time):
//!    `XLFS_BENCH_SOURCES` (default /var/cache/xlfs-bench/sources) and `XLFS_BENCH_QUICK_TOOLCHAINS`
//!    (default /var/cache/xlfs-bench/quick-toolchains). With `XLFS_BENCH_KEEP=DIR` (a new
//!    directory) both homes are kept there for later use instead of being removed.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MAKE_TEMPLATE: &str = include_str!("../../../book/templates/make.toml");

struct Book {
    dir: tempfile::TempDir,
}

impl Book {
    fn new() -> Book {
        let b = Book {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(b.book().join("templates")).unwrap();
        std::fs::create_dir_all(b.mirror()).unwrap();
        std::fs::write(b.book().join("templates/make.toml"), MAKE_TEMPLATE).unwrap();
        std::fs::write(b.book().join("book.toml"), "[book]\nname = \"bench\"\n").unwrap();
        b
    }
    fn book(&self) -> PathBuf {
        self.dir.path().join("book")
    }
    fn mirror(&self) -> PathBuf {
        self.dir.path().join("mirror")
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    /// A package whose Makefile's `all` runs `work` and installs one file.
    fn package(&self, name: &str, deps: &[String], work: &str) {
        let mk = format!(
            "all:\n\t{work}\n\techo {name} > out.txt\ninstall:\n\tinstall -D -m 0644 out.txt $(DESTDIR)/usr/share/{name}/out.txt\n"
        );
        let tgz = tarball(&format!("{name}-1"), &[("Makefile", &mk)]);
        let file = format!("{name}-1.tar.gz");
        std::fs::write(self.mirror().join(&file), &tgz).unwrap();
        self.recipe(name, &file, &hex::encode(Sha256::digest(&tgz)), deps);
    }
    fn recipe(&self, name: &str, file: &str, sha: &str, deps: &[String]) {
        let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        std::fs::write(
            self.book().join(format!("{name}.toml")),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"1\"\nlicense = \"MIT\"\n[[source]]\nfile = \"{file}\"\nsha256 = \"{sha}\"\n[depends]\nbuild = [{}]\n[build]\ntemplate = \"make\"\ninstall = \"install\"\n",
                deps.join(", ")
            ),
        )
        .unwrap();
    }
    fn xlfs(&self, args: &[&str]) -> Duration {
        let t = Instant::now();
        let out = Command::new(xlfs_exe())
            .arg("--book")
            .arg(self.book())
            .arg("--home")
            .arg(self.home())
            .arg("--mirror-dir")
            .arg(self.mirror())
            .arg("--toolchains")
            .arg(toolchains())
            .arg("--quiet")
            .args(args)
            .output()
            .expect("run xlfs");
        let d = t.elapsed();
        if !out.status.success() {
            panic!(
                "xlfs {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        d
    }
}

fn tarball(top: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("{top}/{path}"), body.as_bytes())
            .unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

/// Where the bench keeps the (bare) toolchain root of its books across runs: it is made once,
/// before anything is timed (see [`main`]), since creating it is not per-package overhead.
fn toolchains() -> PathBuf {
    std::env::var_os("XLFS_BENCH_TOOLCHAINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xlfs-bench/toolchains"))
}

fn xlfs_exe() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let exe = me.with_file_name("xlfs");
    assert!(exe.exists(), "build xlfs first: {} is missing", exe.display());
    exe
}

fn children_cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let d = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    d(u.ru_utime) + d(u.ru_stime)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench_plan() {
    let b = Book::new();
    let n = 2000;
    let mut seed: u64 = 42;
    let mut rnd = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    for i in 0..n {
        let mut deps = Vec::new();
        if i > 0 {
            for _ in 0..rnd(4) {
                let d = format!("p{:04}", rnd(i));
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        b.recipe(
            &format!("p{i:04}"),
            &format!("p{i:04}.tar.gz"),
            "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb",
            &deps,
        );
    }
    // In-process: load the book and plan.
    let mut load = Vec::new();
    let mut plan = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let book = xlfs_book::Book::load(&b.book()).expect("book loads");
        load.push(t.elapsed());
        let envs = xlfs_plan::EnvIds {
            host: "h".into(),
            chroot: "c".into(),
        };
        let t = Instant::now();
        let p = xlfs_plan::plan(&book, &[], &envs, &|_| None, &|_| false).unwrap();
        plan.push(t.elapsed());
        assert_eq!(p.steps.len(), n as usize);
    }
    // The whole command, cold process each time.
    b.xlfs(&["plan"]);
    let cli = median((0..5).map(|_| b.xlfs(&["plan"])).collect());
    println!(
        "plan, 2000 recipes:     {:>8.1} ms  `xlfs plan` (load {:.1} ms + plan {:.1} ms in process)  target < 200 ms  {}",
        cli.as_secs_f64() * 1e3,
        median(load).as_secs_f64() * 1e3,
        median(plan).as_secs_f64() * 1e3,
        verdict(cli < Duration::from_millis(200))
    );
}

fn bench_noop_and_overhead() {
    let b = Book::new();
    for i in 0..100 {
        let deps = if i >= 10 {
            vec![format!("t{:03}", i % 10)]
        } else {
            vec![]
        };
        b.package(&format!("t{i:03}"), &deps, "true");
    }
    let cold = b.xlfs(&["build", "-j2"]);
    let noop = median((0..5).map(|_| b.xlfs(&["build"])).collect());
    println!(
        "no-op build, 100 pkgs:  {:>8.1} ms  (cold build of the same book: {:.1} s)  target < 1 s  {}",
        noop.as_secs_f64() * 1e3,
        cold.as_secs_f64(),
        verdict(noop < Duration::from_secs(1))
    );

    let b = Book::new();
    for i in 0..10 {
        b.package(&format!("o{i:02}"), &[], "true");
    }
    b.xlfs(&["fetch"]);
    let t = b.xlfs(&["build", "-j1"]);
    let per = t / 10;
    println!(
        "per-package overhead:   {:>8.1} ms  (10 trivial packages, -j1, {:.2} s in all)  target < 300 ms  {}",
        per.as_secs_f64() * 1e3,
        t.as_secs_f64(),
        verdict(per < Duration::from_millis(300))
    );
}

fn bench_utilisation() {
    let b = Book::new();
    // Each package burns a few seconds of CPU in a single-threaded loop, like a small real package (zlib: 6 s).
    for i in 0..20 {
        b.package(
            &format!("u{i:02}"),
            &[],
            "i=0; while [ $$i -lt 2000000 ]; do i=$$((i+1)); done",
        );
    }
    b.xlfs(&["fetch"]);
    let cpu0 = children_cpu();
    let wall = b.xlfs(&["build", "-j2"]);
    let cpu = children_cpu() - cpu0;
    let util = cpu.as_secs_f64() / (wall.as_secs_f64() * 2.0);
    println!(
        "CPU use, -j2, 20 pkgs:  {:>8.1} %  ({:.1} s CPU over {:.1} s wall on 2 slots)  target >= 90 %  {}",
        util * 100.0,
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        verdict(util >= 0.9)
    );
}

/// Home A builds a 12-package book cold and pushes it to a SeaweedFS server; home B, with an
/// empty store, gets everything from the cache. Prints both times, the ratio and the bytes.
fn bench_cache() {
    let mut server = match xlfs_cache::seaweed::Server::start() {
        Ok(s) => s,
        Err(e) => {
            println!("shared cache:           skipped: {e}");
            return;
        }
    };
    let b = Book::new();
    // Each package compiles 30 small C files into a static library: real compiler work and a
    // real artifact, as a small library would be.
    let mut prev: Vec<String> = Vec::new();
    for i in 0..12 {
        let name = format!("c{i:02}");
        let mk = format!(
            "all:\n\tfor i in $$(seq 1 30); do printf 'int {name}_f%d(int x){{int s=0;for(int j=0;j<x;j++)s+=j*%d;return s;}}\\n' $$i $$i > f$$i.c; cc -O2 -c f$$i.c; done\n\tar rcs lib{name}.a f*.o\n\
             install:\n\tinstall -D -m 0644 lib{name}.a $(DESTDIR)/usr/lib/lib{name}.a\n"
        );
        let tgz = tarball(&format!("{name}-1"), &[("Makefile", &mk)]);
        let file = format!("{name}-1.tar.gz");
        std::fs::write(b.mirror().join(&file), &tgz).unwrap();
        b.recipe(&name, &file, &hex::encode(Sha256::digest(&tgz)), &prev);
        if i % 3 == 2 {
            prev = vec![name];
        }
    }
    let url = "s3://xlfs-bench/book";
    let run = |home: &Path, args: &[&str]| -> (Duration, String) {
        let t = Instant::now();
        let out = Command::new(xlfs_exe())
            .arg("--book")
            .arg(b.book())
            .arg("--home")
            .arg(home)
            .arg("--mirror-dir")
            .arg(b.mirror())
            .arg("--toolchains")
            .arg(toolchains())
            .args(args)
            .env("AWS_ACCESS_KEY_ID", xlfs_cache::seaweed::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", xlfs_cache::seaweed::SECRET_KEY)
            .output()
            .expect("run xlfs");
        let d = t.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "xlfs {args:?} failed:\n{text}");
        (d, text)
    };
    let (a, bh) = (b.dir.path().join("home-a"), b.dir.path().join("home-b"));
    let (_, key) = run(&a, &["key", "generate", "--name", "bench-a"]);
    let key = key
        .lines()
        .rfind(|l| l.starts_with("bench-a:"))
        .expect("public key")
        .to_string();
    run(
        &a,
        &[
            "cache",
            "add",
            "bench",
            url,
            "--endpoint",
            &server.endpoint(),
            "--push",
        ],
    );
    run(
        &bh,
        &["cache", "add", "bench", url, "--endpoint", &server.endpoint()],
    );
    run(&bh, &["key", "trust", &key]);
    let (cold, out_a) = run(&a, &["build", "-j2"]);
    let (warm, out_b) = run(&bh, &["build", "-j2"]);
    assert!(
        out_b.contains("nothing to do"),
        "home B built something:\n{out_b}"
    );
    println!(
        "shared cache, 12 pkgs:  cold build {:.1} s, from the cache {:.1} s: {:.1}x faster; pushed {}, fetched {}",
        cold.as_secs_f64(),
        warm.as_secs_f64(),
        cold.as_secs_f64() / warm.as_secs_f64().max(0.001),
        amount(&out_a, "pushed "),
        amount(&out_b, "fetched ")
    );
    server.stop();
}

/// `amount(text, "pushed ")`: the last parentheses of the first line starting with `what`, as in
/// "pushed 12 artifact(s) to cache bench (38.2 KiB sent) in 0.3s".
fn amount(text: &str, what: &str) -> String {
    text.lines()
        .find(|l| l.trim_start().starts_with(what))
        .and_then(|l| l.rsplit_once('('))
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_else(|| "?".into())
}

fn bench_quick_cache() {
    let mut server = xlfs_cache::seaweed::Server::start().expect("SeaweedFS (scripts/host-deps.sh test)");
    let env_dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let sources = env_dir("XLFS_BENCH_SOURCES", "/var/cache/xlfs-bench/sources");
    let toolchains = env_dir(
        "XLFS_BENCH_QUICK_TOOLCHAINS",
        "/var/cache/xlfs-bench/quick-toolchains",
    );
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    // Images and builds are large: next to the other long-lived scratch data, not in /tmp.
    let scratch = tempfile::tempdir_in("/var/tmp").expect("scratch dir");
    let kept = std::env::var_os("XLFS_BENCH_KEEP").map(PathBuf::from);
    if let Some(dir) = &kept {
        assert!(
            !dir.exists(),
            "XLFS_BENCH_KEEP={}: must not exist yet (the homes must start empty)",
            dir.display()
        );
        std::fs::create_dir_all(dir).expect("XLFS_BENCH_KEEP");
    }
    let base = kept.as_deref().unwrap_or(scratch.path());
    let url = "s3://xlfs-bench/quick";
    let run = |home: &Path, args: &[&str]| -> (Duration, Duration, String) {
        let (t, cpu) = (Instant::now(), children_cpu());
        let out = Command::new(xlfs_exe())
            .arg("--book")
            .arg(&book)
            .arg("--home")
            .arg(home)
            .arg("--sources")
            .arg(&sources)
            .arg("--toolchains")
            .arg(&toolchains)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", xlfs_cache::seaweed::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", xlfs_cache::seaweed::SECRET_KEY)
            .output()
            .expect("run xlfs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "xlfs {args:?} failed:\n{text}");
        (t.elapsed(), children_cpu() - cpu, text)
    };
    let (a, b) = (base.join("home-a"), base.join("home-b"));
    // Outside the timings: the downloads and the toolchain root, which both homes share.
    run(
        &a,
        &["fetch", "filesystem", "busybox", "xen", "xen-tools", "linux"],
    );
    run(&a, &["toolchain"]);
    let (_, _, key) = run(&a, &["key", "generate", "--name", "bench-a"]);
    let key = key
        .lines()
        .rfind(|l| l.starts_with("bench-a:"))
        .expect("public key")
        .to_string();
    let endpoint = server.endpoint();
    run(
        &a,
        &["cache", "add", "bench", url, "--endpoint", &endpoint, "--push"],
    );
    run(&b, &["cache", "add", "bench", url, "--endpoint", &endpoint]);
    run(&b, &["key", "trust", &key]);
    let (cold, cold_cpu, out_a) = run(&a, &["up", "quick", "-j2"]);
    let (warm, warm_cpu, out_b) = run(&b, &["up", "quick", "-j2"]);
    assert!(
        !out_b.lines().any(|l| l.trim_start().starts_with("done ")),
        "home B built something:\n{out_b}"
    );
    println!(
        "quick from the cache:   cold `up quick` {:.0} s (cpu {:.0} s), from the cache {:.0} s (cpu {:.0} s): {:.1}x faster; pushed {}, fetched {}",
        cold.as_secs_f64(),
        cold_cpu.as_secs_f64(),
        warm.as_secs_f64(),
        warm_cpu.as_secs_f64(),
        cold.as_secs_f64() / warm.as_secs_f64().max(0.001),
        amount(&out_a, "pushed "),
        amount(&out_b, "fetched ")
    );
    server.stop();
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let want = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    if only.iter().any(|o| o == "quick-cache") {
        bench_quick_cache();
        if only.len() == 1 {
            return;
        }
    }
    println!(
        "xlfs benchmarks ({} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if want("build") || want("cpu") || want("cache") {
        // The books' toolchain root, made once outside the timings.
        Book::new().xlfs(&["toolchain"]);
    }
    if want("plan") {
        bench_plan();
    }
    if want("build") {
        bench_noop_and_overhead();
    }
    if want("cpu") {
        bench_utilisation();
    }
    if want("cache") {
        bench_cache();
    }
    let _ = Path::new("");
}
