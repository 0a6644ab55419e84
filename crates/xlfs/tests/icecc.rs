//! `xlfs build --icecc`: distributed compilation through icecream, end to end. The test starts
//! a real icecream network on this machine (scripts/icecc-net.sh: a scheduler and two iceccd
//! daemons, each in a network namespace of its own, joined by a bridge; needs root, `ip` and the
//! Debian package icecc) and builds a real package (zlib) in the real sandbox, whose only way
//! out is the local daemon's socket and xlfs's relay to the daemons the scheduler lists.

mod common;
#[path = "common/zlib_book.rs"]
mod zlib_book;
use std::path::{Path, PathBuf};
use std::process::Command;
use zlib_book::{artifact, chroot_zlib_book, xlfs, zlib_book};

const NET_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/icecc-net.sh");

/// A running icecream network, stopped on drop.
struct Net {
    dir: PathBuf,
    n: u32,
}

impl Net {
    fn up(dir: &Path) -> Net {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the icecream tests need root (network namespaces); CI runs them as root"
        );
        // Distinct names and subnets for concurrent test processes.
        let n = 20 + std::process::id() % 200;
        // The daemons run as the icecc user: the test's directory (a private tempdir) must be
        // open to it.
        {
            use std::os::unix::fs::PermissionsExt;
            let parent = dir.parent().unwrap();
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = Command::new("bash")
            .arg(NET_SCRIPT)
            .arg("up")
            .arg(dir)
            .arg(n.to_string())
            .output()
            .unwrap();
        let net = Net {
            dir: dir.to_path_buf(),
            n,
        };
        assert!(out.status.success(), "icecc-net.sh up:\n{}", common::text(&out));
        net
    }
    /// `xlfs build` with this network: PACKAGE, `-j2`, `--icecc` and its settings, then `more`.
    fn build(&self, book: &Path, home: &Path, sources: &Path, package: &str, more: &[&str]) -> String {
        let (socket, scheduler) = (self.socket(), self.scheduler());
        let mut args = vec![
            "build",
            package,
            "-j2",
            "--icecc",
            "--icecc-socket",
            &socket,
            "--icecc-scheduler",
            &scheduler,
            "--icecc-node",
            "local",
        ];
        args.extend_from_slice(more);
        xlfs(book, home, sources, &args)
    }
    fn socket(&self) -> String {
        self.dir.join("a/iceccd.socket").display().to_string()
    }
    fn scheduler(&self) -> String {
        format!("10.77.{}.2", self.n)
    }
    /// Jobs the remote daemon compiled, from its log.
    fn remote_jobs(&self) -> usize {
        std::fs::read_to_string(self.dir.join("b/iceccd.log"))
            .unwrap_or_default()
            .matches("Remote compilation completed with exit code 0")
            .count()
    }
    fn script(&self, cmd: &str) {
        let out = Command::new("bash")
            .arg(NET_SCRIPT)
            .arg(cmd)
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "icecc-net.sh {cmd}:\n{}",
            common::text(&out)
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(NET_SCRIPT)
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}

#[test]
fn compile_jobs_run_on_the_other_daemon_and_the_artifact_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::up(&dir.path().join("net"));
    let sources = dir.path().join("sources");
    let book = zlib_book(&dir.path().join("book"), "");
    let (ice_home, plain_home) = (dir.path().join("home-icecc"), dir.path().join("home-plain"));
    xlfs(
        &book,
        &ice_home,
        &sources,
        &["fetch", "zlib-quick", "--no-runtime"],
    );

    let before = net.remote_jobs();
    let out = net.build(&book, &ice_home, &sources, "zlib-quick", &[]);
    assert!(out.contains("-j2 local + 2 remote job slot(s)"), "{out}");
    let log = xlfs(&book, &ice_home, &sources, &["log", "zlib-quick"]);
    assert!(log.contains("==> xlfs: icecream through"), "{log}");
    // -j2 local slots, and the remote ones counted apart: compile jobs that took a remote slot
    // lent their local slot to make meanwhile.
    assert!(log.contains("compile job(s) took a remote slot"), "{log}");
    // The local daemon takes no jobs (-m 0): every compile job icecream ran went to the other
    // daemon, in its own network namespace, and its log says so.
    let remote = net.remote_jobs() - before;
    assert!(
        remote >= 15,
        "zlib compiles some 30 files; the remote daemon compiled {remote}:\n{log}"
    );

    xlfs(&book, &plain_home, &sources, &["build", "zlib-quick", "-j2"]);
    let plain = xlfs(&book, &plain_home, &sources, &["log", "zlib-quick"]);
    assert_eq!(artifact(&log), artifact(&plain), "icecream changed the artifact");
}

#[test]
fn without_a_scheduler_builds_run_locally() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::up(&dir.path().join("net"));
    net.script("stop-scheduler");
    let sources = dir.path().join("sources");
    let book = zlib_book(&dir.path().join("book"), "");
    let home = dir.path().join("home");
    let before = net.remote_jobs();
    let scheduler = net.scheduler();
    let out = net.build(&book, &home, &sources, "zlib-quick", &["--no-runtime"]);
    assert!(
        out.contains(&format!("no icecream scheduler answers at {scheduler}:8766"))
            && out.contains("building locally"),
        "{out}"
    );
    assert!(out.contains("built 1, cached 0, failed 0"), "{out}");
    let log = xlfs(&book, &home, &sources, &["log", "zlib-quick"]);
    assert!(!log.contains("icecream through"), "{log}");
    assert!(!log.contains("ICECC["), "icecc was not involved: {log}");
    assert_eq!(net.remote_jobs(), before);
}

#[test]
fn chroot_builds_ship_their_own_root_s_compilers() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::up(&dir.path().join("net"));
    let sources = dir.path().join("sources");
    let book = chroot_zlib_book(&dir.path().join("book"), "");
    let recipe = book.join("zlib-quick.toml");
    let (ice_home, plain_home) = (dir.path().join("home-icecc"), dir.path().join("home-plain"));
    xlfs(&book, &ice_home, &sources, &["build", "debian-cc"]);

    let before = net.remote_jobs();
    let build = || net.build(&book, &ice_home, &sources, "zlib-quick", &[]);
    build();
    let log = xlfs(&book, &ice_home, &sources, &["log", "zlib-quick"]);
    // The environment was made from the chroot root (named after its files' layers), not
    // from the toolchain root, and the other daemon compiled with it.
    let envs: Vec<String> = std::fs::read_dir(ice_home.join("icecc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let env = envs
        .iter()
        .find(|n| n.starts_with("chroot-") && n.ends_with(".tar.gz"))
        .unwrap_or_else(|| panic!("no chroot environment in HOME/icecc: {envs:?}\n{log}"));
    assert!(log.contains(&format!("icecc/{env}")), "{log}");
    let files =
        std::fs::read_to_string(ice_home.join("icecc").join(env.replace(".tar.gz", ".files"))).unwrap();
    assert!(files.lines().any(|l| l.ends_with("/cc1")), "{files}");
    let remote = net.remote_jobs() - before;
    assert!(
        remote >= 15,
        "zlib compiles some 30 files; the remote daemon compiled {remote}:\n{log}"
    );

    // After a change to the recipe, its next build in the same root reuses the environment.
    let made = std::fs::metadata(ice_home.join("icecc").join(env))
        .unwrap()
        .modified()
        .unwrap();
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("libz.a'", "libz.a; true'")).unwrap();
    let out = build();
    assert!(out.contains("built 1,"), "{out}");
    let log2 = xlfs(&book, &ice_home, &sources, &["log", "zlib-quick"]);
    assert!(log2.contains(&format!("icecc/{env}")), "{log2}");
    let again = std::fs::metadata(ice_home.join("icecc").join(env))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(made, again, "the environment was made again");
    std::fs::write(&recipe, text).unwrap();

    xlfs(&book, &plain_home, &sources, &["build", "zlib-quick"]);
    let plain = xlfs(&book, &plain_home, &sources, &["log", "zlib-quick"]);
    assert_eq!(artifact(&log), artifact(&plain), "icecream changed the artifact");
}

/// A package built the way kbuild builds (busybox, linux): the compile jobs are recipe lines of
/// a sub-make, which closes make's jobserver descriptors for them.
const SUB_MAKE: &str = r#"[package]
name = "sub-make"
version = "1.0"
license = "MIT"

[build.steps]
build = '''
for i in $(seq 1 24); do printf 'int f%d(int x) { return x * %d; }\n' $i $i > f$i.c; done
printf 'OBJS = %s\nall: $(OBJS)\n%%.o: %%.c\n\t$(CC) -O2 -c $< -o $@\n' "$(echo f{1..24}.o)" > sub.mk
printf 'all:\n\t$(MAKE) -f sub.mk\n' > Makefile
make
'''
install = 'mkdir -p "$DESTDIR/usr/lib" && ar rcsD "$DESTDIR/usr/lib/libsubmake.a" f*.o'
"#;

#[test]
fn compile_jobs_of_a_sub_make_lend_their_local_slot_too() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::up(&dir.path().join("net"));
    let sources = dir.path().join("sources");
    let book = zlib_book(&dir.path().join("book"), "");
    std::fs::write(book.join("sub-make.toml"), SUB_MAKE).unwrap();
    let home = dir.path().join("home");
    let before = net.remote_jobs();
    net.build(&book, &home, &sources, "sub-make", &[]);
    let log = xlfs(&book, &home, &sources, &["log", "sub-make"]);
    assert!(log.contains("compile job(s) took a remote slot"), "{log}");
    assert!(net.remote_jobs() > before, "{log}");
}
