//! The sandbox against hostile build steps: each escape fails with the exact error, and what a
//! build needs works. Runs the real helper (`xlfs-sandbox-helper __sandbox SPEC`), as root and,
//! for one test, as an ordinary user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use xlfs_sandbox::{Bind, IdMap, Root, Spec};

const HELPER: &str = env!("CARGO_BIN_EXE_xlfs-sandbox-helper");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A build directory like xlfs makes one: build/ (the script), destdir/, book/, tmp/.
struct Sandbox {
    dir: tempfile::TempDir,
    ids: IdMap,
}

impl Sandbox {
    fn new() -> Sandbox {
        // On disk (not a tmpfs /tmp), like a home's build directory.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        for d in ["build", "destdir", "book", "tmp"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("book/recipe.toml"), "x").unwrap();
        Sandbox {
            dir,
            ids: IdMap::for_current_user().unwrap(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn spec(&self, root: Root, argv: &[&str]) -> Spec {
        let bind = |src: &str, dst: &str, writable| Bind {
            src: self.path(src),
            dst: dst.into(),
            writable,
        };
        Spec {
            root,
            sysroot: Vec::new(),
            binds: vec![
                bind("build", "/build", true),
                bind("destdir", "/destdir", true),
                bind("book", "/book", false),
                bind("tmp", "/tmp", true),
            ],
            scratch: self.path("scratch"),
            workdir: "/build".into(),
            env: vec![
                ("PATH".into(), "/usr/bin:/usr/sbin:/bin:/sbin".into()),
                ("HOME".into(), "/tmp".into()),
                ("LC_ALL".into(), "C".into()),
            ],
            argv: argv.iter().map(|s| s.to_string()).collect(),
            hostname: "xlfs-test".into(),
            ids: self.ids.clone(),
            inherit_fds: Vec::new(),
        }
    }
    fn run_spec(&self, spec: &Spec, wrap: &[&str]) -> Out {
        self.ids.give_to_root(self.dir.path()).unwrap();
        let spec_path = self.path("spec.json");
        let cmd = xlfs_sandbox::command(Path::new(HELPER), spec, &spec_path).unwrap();
        let mut cmd = if wrap.is_empty() {
            cmd
        } else {
            let mut w = Command::new(wrap[0]);
            w.args(&wrap[1..]).arg(cmd.get_program()).args(cmd.get_args());
            w
        };
        let out = cmd.output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Run a bash script in a root made of the build machine's `/usr`, `/etc`, ….
    fn sh(&self, script: &str) -> Out {
        std::fs::write(self.path("build/script.sh"), script).unwrap();
        let spec = self.spec(Root::Tree("/".into()), &["bash", "-e", "/build/script.sh"]);
        self.run_spec(&spec, &[])
    }
    /// Run Python code (the errno of a failing system call is exact there).
    fn py(&self, code: &str) -> Out {
        std::fs::write(self.path("build/probe.py"), format!("{PRELUDE}\n{code}")).unwrap();
        self.sh("python3 /build/probe.py")
    }
}

/// `attempt(what, fn)` prints `what: ok` or `what: ERRNO_NAME`.
const PRELUDE: &str = r#"
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(what, f):
    try:
        r = f()
        if r is not None and r is not True and r < 0:
            print(f"{what}: {errno.errorcode[ctypes.get_errno()]}")
        else:
            print(f"{what}: ok")
    except OSError as e:
        print(f"{what}: {errno.errorcode[e.errno]}")
    sys.stdout.flush()
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
def mount(src, dst, fstype, flags):
    return libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), ctypes.c_ulong(flags), None)
class MountAttr(ctypes.Structure):
    _fields_ = [("set", ctypes.c_uint64), ("clr", ctypes.c_uint64), ("prop", ctypes.c_uint64), ("fd", ctypes.c_uint64)]
def make_writable(path):
    a = MountAttr(0, 1, 0, 0)
    return libc.syscall(442, -100, path.encode(), 0, ctypes.byref(a), ctypes.sizeof(a))
def write(path):
    with open(path, "w") as f:
        f.write("x")
"#;

fn lines(out: &Out) -> Vec<String> {
    assert_eq!(out.code, 0, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
fn root_inside_is_an_unprivileged_id_outside_and_chown_works() {
    let sb = Sandbox::new();
    let out = sb
        .sh("id -u; id -g; touch /destdir/f /destdir/g; chown 1000:1000 /destdir/f; cat /proc/self/uid_map");
    let l = lines(&out);
    assert_eq!(l[0], "0");
    assert_eq!(l[1], "0");
    // The build sees an identity map of 65536 ids (it runs in the nested namespace).
    assert_eq!(l[2].split_whitespace().collect::<Vec<_>>(), ["0", "0", "65536"]);
    let f = std::fs::metadata(sb.path("destdir/f")).unwrap();
    let g = std::fs::metadata(sb.path("destdir/g")).unwrap();
    assert_eq!(Some(f.uid()), sb.ids.outside_uid(1000));
    assert_eq!(Some(f.gid()), sb.ids.outside_gid(1000));
    assert_eq!(sb.ids.inside_uid(f.uid()), Some(1000));
    assert_eq!(sb.ids.inside_uid(g.uid()), Some(0));
    assert_ne!(g.uid(), 0, "root inside must not be root outside");
}

#[test]
fn mknod_of_a_block_device_fails() {
    let sb = Sandbox::new();
    let out = sb.py("attempt('mknod', lambda: os.mknod('/build/sda', 0o600 | 0o060000, os.makedev(8, 0)))");
    assert_eq!(lines(&out), ["mknod: EPERM"]);
    assert!(!sb.path("build/sda").exists());
}

#[test]
fn mount_fails() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("build/m")).unwrap();
    let out = sb.py(
        "attempt('tmpfs', lambda: mount('none', '/build/m', 'tmpfs', 0))\n\
         attempt('proc', lambda: mount('proc', '/build/m', 'proc', 0))\n\
         attempt('bind', lambda: mount('/usr', '/build/m', None, MS_BIND))",
    );
    assert_eq!(lines(&out), ["tmpfs: EPERM", "proc: EPERM", "bind: EPERM"]);
}

#[test]
fn read_only_mounts_cannot_be_made_writable() {
    let sb = Sandbox::new();
    let out = sb.py("for p in ['/usr', '/sysroot', '/book', '/', '/dev']:\n    \
           attempt('remount ' + p, lambda: mount(None, p, None, MS_REMOUNT | MS_BIND))\n    \
           attempt('setattr ' + p, lambda: make_writable(p))");
    let want: Vec<String> = ["/usr", "/sysroot", "/book", "/", "/dev"]
        .iter()
        .flat_map(|p| [format!("remount {p}: EPERM"), format!("setattr {p}: EPERM")])
        .collect();
    assert_eq!(lines(&out), want);
}

/// Even with every capability (root of a further user namespace the build makes itself), the
/// read-only mounts are locked by the kernel.
#[test]
fn read_only_mounts_are_locked_even_for_a_nested_namespace() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("build/probe.py"),
        format!(
            "{PRELUDE}\nfor p in ['/usr', '/book', '/']:\n    \
               attempt('remount ' + p, lambda: mount(None, p, None, MS_REMOUNT | MS_BIND))\n    \
               attempt('setattr ' + p, lambda: make_writable(p))\n\
             attempt('tmpfs', lambda: mount('none', '/build', 'tmpfs', 0))\n\
             attempt('write /usr', lambda: write('/usr/x'))"
        ),
    )
    .unwrap();
    let out = sb.sh("unshare --user --map-root-user --mount python3 /build/probe.py");
    assert_eq!(
        lines(&out),
        [
            "remount /usr: EPERM",
            "setattr /usr: EPERM",
            "remount /book: EPERM",
            "setattr /book: EPERM",
            "remount /: EPERM",
            "setattr /: EPERM",
            // Its own mounts are possible there, and harmless: they live in its own namespace.
            "tmpfs: ok",
            "write /usr: EROFS",
        ]
    );
}

#[test]
fn the_machines_secrets_are_unreadable() {
    let sb = Sandbox::new();
    let out = sb.py("attempt('/etc/shadow', lambda: open('/etc/shadow').read())\n\
         attempt('/proc/1/root', lambda: open('/proc/1/root/etc/shadow').read())\n\
         attempt('/proc/1/root/etc/passwd', lambda: open('/proc/1/root/etc/passwd').read())");
    assert_eq!(
        lines(&out),
        [
            "/etc/shadow: EACCES",
            "/proc/1/root: EACCES",
            "/proc/1/root/etc/passwd: EACCES"
        ]
    );
}

#[test]
fn processes_outside_cannot_be_signalled_or_traced() {
    let mut outside = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = outside.id();
    let sb = Sandbox::new();
    let out = sb.py(&format!(
        "attempt('kill', lambda: os.kill({pid}, 0))\n\
         PTRACE_ATTACH = 16\n\
         attempt('ptrace', lambda: libc.ptrace(PTRACE_ATTACH, {pid}, None, None))\n\
         print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    ));
    outside.kill().unwrap();
    outside.wait().unwrap();
    let l = lines(&out);
    assert_eq!(l[..2], ["kill: ESRCH", "ptrace: ESRCH"]);
    // Only the sandbox's own processes: pid 1 (the reaper), the shell, python.
    assert_eq!(l[2], "pids [1, 2, 3]");
}

#[test]
fn only_loopback_is_reachable() {
    let sb = Sandbox::new();
    let t = std::time::Instant::now();
    let out = sb.py("s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
         attempt('10.255.255.1', lambda: s.connect(('10.255.255.1', 80)))\n\
         print(sorted(n for _, n in socket.if_nameindex()))\n\
         srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n\
         c = socket.socket(); attempt('loopback', lambda: c.connect(srv.getsockname()))");
    assert_eq!(
        lines(&out),
        ["10.255.255.1: ENETUNREACH", "['lo']", "loopback: ok"]
    );
    assert!(t.elapsed().as_secs() < 10, "connect must fail at once");
}

#[test]
fn only_the_build_tree_is_writable() {
    let sb = Sandbox::new();
    let out = sb.py(
        "for p in ['/x', '/usr/x', '/etc/x', '/sysroot/x', '/book/x', '/dev/x', '/sys/x', '/build/x', '/destdir/x', '/tmp/x']:\n    \
           attempt(p, lambda: write(p))",
    );
    assert_eq!(
        lines(&out),
        [
            "/x: EROFS",
            "/usr/x: EROFS",
            "/etc/x: EROFS",
            "/sysroot/x: EROFS",
            "/book/x: EROFS",
            "/dev/x: EROFS",
            "/sys/x: EROFS",
            "/build/x: ok",
            "/destdir/x: ok",
            "/tmp/x: ok",
        ]
    );
    // /tmp is the build directory's tmp/, on disk.
    assert!(sb.path("tmp/x").exists());
}

#[test]
fn tmp_is_on_disk() {
    let sb = Sandbox::new();
    let out = sb.sh("stat -f -c %T /tmp; stat -f -c %T /build");
    let l = lines(&out);
    assert_ne!(l[0], "tmpfs");
    assert_eq!(l[0], l[1]);
}

#[test]
fn dev_holds_exactly_the_minimal_nodes() {
    let sb = Sandbox::new();
    let out = sb.sh(
        "ls -A /dev | tr '\\n' ' '; echo; ls -A /dev/pts | tr '\\n' ' '; echo; \
         echo hi > /dev/null; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; \
         stat -f -c %T /dev/pts; readlink /dev/ptmx; ls /sys/class/net | tr '\\n' ' '; echo; \
         python3 -c 'import os; m, s = os.openpty(); print(os.ttyname(s))'",
    );
    assert_eq!(
        lines(&out),
        [
            "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ",
            "ptmx ",
            "4",
            "4",
            "devpts",
            "pts/ptmx",
            "lo ",
            "/dev/pts/0",
        ]
    );
}

/// no_new_privs and nosuid mounts: a setuid-root program gains nothing.
#[test]
fn setuid_programs_gain_no_privilege() {
    let sb = Sandbox::new();
    let out = sb.sh(
        "cp /usr/bin/id /build/id; chmod 4755 /build/id; ls -l /build/id | cut -c1-10; \
         grep NoNewPrivs /proc/self/status | tr -s '\\t ' ' '; \
         setpriv --reuid=1000 --regid=1000 --clear-groups /build/id -u",
    );
    assert_eq!(lines(&out), ["-rwsr-xr-x", "NoNewPrivs: 1", "1000"]);
}

#[test]
fn capabilities_are_only_in_the_namespace_and_limited() {
    let sb = Sandbox::new();
    let out = sb.sh("grep -E '^Cap(Eff|Bnd)' /proc/self/status | tr -s '\\t ' ' '");
    // All capabilities except SYS_ADMIN (21), MKNOD (27), NET_ADMIN (12), SYS_MODULE (16),
    // SYS_RAWIO (17), SYS_BOOT (22), SYS_TIME (25).
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let all: u64 = (1u64 << (last_cap + 1)) - 1;
    let want = all & !((1 << 21) | (1 << 27) | (1 << 12) | (1 << 16) | (1 << 17) | (1 << 22) | (1 << 25));
    assert_eq!(
        lines(&out),
        [format!("CapEff: {want:016x}"), format!("CapBnd: {want:016x}")]
    );
}

/// `env = "chroot"`: a root made of layers only runs a static binary and holds nothing of the
/// build machine.
#[test]
fn layers_root_runs_a_static_binary_and_nothing_else() {
    let sb = Sandbox::new();
    let layer = sb.path("layer");
    std::fs::create_dir_all(layer.join("usr/bin")).unwrap();
    let c = sb.path("probe.c");
    std::fs::write(
        &c,
        r#"#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
int main(void) {
    const char *p[] = {"/usr/bin/probe", "/usr/bin/cc", "/etc/shadow", "/etc/passwd", "/bin/sh", "/dev/null", "/proc/self", "/sys/class", "/tmp", "/book/recipe.toml"};
    struct stat st;
    for (unsigned i = 0; i < sizeof p / sizeof *p; i++)
        printf("%s %s\n", p[i], stat(p[i], &st) == 0 ? "present" : "absent");
    FILE *f = fopen("/tmp/out", "w");
    printf("tmp %s\n", f && fputs("x", f) >= 0 && fclose(f) == 0 ? "writable" : "read-only");
    f = fopen("/usr/bin/new", "w");
    printf("usr %s\n", f ? "writable" : "read-only");
    return 0;
}
"#,
    )
    .unwrap();
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(layer.join("usr/bin/probe"))
        .arg(&c)
        .status()
        .unwrap();
    assert!(st.success(), "cc -static (needs libc6-dev)");
    let spec = sb.spec(Root::Layers(vec![layer]), &["/usr/bin/probe"]);
    let out = sb.run_spec(&spec, &[]);
    assert_eq!(
        lines(&out),
        [
            "/usr/bin/probe present",
            "/usr/bin/cc absent",
            "/etc/shadow absent",
            "/etc/passwd absent",
            "/bin/sh absent",
            "/dev/null present",
            "/proc/self present",
            "/sys/class present",
            "/tmp present",
            "/book/recipe.toml present",
            "tmp writable",
            "usr read-only",
        ]
    );
}

/// A sandbox failure is reported as exit status 125 with a message.
#[test]
fn a_missing_bind_source_is_a_sandbox_failure() {
    let sb = Sandbox::new();
    let mut spec = sb.spec(Root::Tree("/".into()), &["true"]);
    spec.binds.push(Bind {
        src: sb.path("missing"),
        dst: "/missing".into(),
        writable: false,
    });
    let out = sb.run_spec(&spec, &[]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(out.stderr.contains("missing"), "{}", out.stderr);
}

const TEST_USER: &str = "xlfs-sandbox-test";
/// The test user's subordinate range: away from adduser's (100000+) and xlfs's root default.
const TEST_SUB: u32 = 1_600_000_000;

/// A dedicated user with a subordinate id range (created once, idempotently).
fn test_user() -> (u32, u32) {
    xlfs_util::testing::user_with_subids(TEST_USER, TEST_SUB)
}

#[test]
fn works_as_an_ordinary_user() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root and drops to a test user"
    );
    let (uid, gid) = test_user();
    let mut sb = Sandbox::new();
    sb.ids = IdMap::for_user(uid, gid, Path::new("/etc/subuid"), Path::new("/etc/subgid")).unwrap();
    assert!(sb.ids.helper);
    // The user owns its build directory, as it would own its home.
    Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(sb.dir.path())
        .status()
        .unwrap();
    std::fs::write(
        sb.path("build/script.sh"),
        "id -u; touch /destdir/f /destdir/g; chown 1000:1000 /destdir/f; mount -t tmpfs none /build 2>&1 || true",
    )
    .unwrap();
    Command::new("chown")
        .arg(format!("{uid}:{gid}"))
        .arg(sb.path("build/script.sh"))
        .status()
        .unwrap();
    let spec = sb.spec(Root::Tree("/".into()), &["bash", "-e", "/build/script.sh"]);
    let (u, g) = (format!("--reuid={uid}"), format!("--regid={gid}"));
    let out = sb.run_spec(&spec, &["setpriv", &u, &g, "--clear-groups"]);
    let l = lines(&out);
    assert_eq!(l[0], "0");
    assert!(l[1].contains("ermission denied"), "{l:?}");
    let f = std::fs::metadata(sb.path("destdir/f")).unwrap();
    let g = std::fs::metadata(sb.path("destdir/g")).unwrap();
    assert_eq!(f.uid(), TEST_SUB + 999);
    assert_eq!(g.uid(), uid);
    assert_eq!(sb.ids.inside_uid(f.uid()), Some(1000));
    // Root (outside) cleans up what the subordinate ids own.
}

/// A build sees one niceness and one umask, whatever xlfs was started with: Python's configure,
/// for one, decides `HAVE_BROKEN_NICE` from what `nice()` returns.
#[test]
fn niceness_and_umask_are_the_same_for_every_build() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("build/script.sh"),
        "cut -d' ' -f19 /proc/self/stat; umask",
    )
    .unwrap();
    let spec = sb.spec(Root::Tree("/".into()), &["bash", "-e", "/build/script.sh"]);
    let plain = lines(&sb.run_spec(&spec, &[]));
    let niced = lines(&sb.run_spec(&spec, &["nice", "-n", "7"]));
    let masked = lines(&sb.run_spec(&spec, &["sh", "-c", "umask 077; exec \"$@\"", "umask"]));
    let expected = [
        xlfs_sandbox::BUILD_NICENESS.to_string(),
        format!("{:04o}", xlfs_sandbox::BUILD_UMASK),
    ];
    assert_eq!(plain, expected);
    assert_eq!(niced, expected);
    assert_eq!(masked, expected);
}

/// A build inherits no descriptor but 0, 1, 2 and those its spec names (a jobserver's pipe):
/// whatever the caller of xlfs held open (here 251 and 9, as a harness or a shell may leave them)
/// never reaches the build. glibc's descriptor tests (io/tst-close_range) fail on such a leak.
#[test]
fn only_the_named_descriptors_are_inherited() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("build/script.sh"),
        "for fd in 9 200 251; do if [ -e /proc/$$/fd/$fd ]; then echo \"open $fd\"; fi; done",
    )
    .unwrap();
    let mut spec = sb.spec(Root::Tree("/".into()), &["bash", "-e", "/build/script.sh"]);
    let wrap = [
        "bash",
        "-c",
        "exec 9</dev/null 200</dev/null 251</dev/null; exec \"$@\"",
        "leak",
    ];
    let closed = sb.run_spec(&spec, &wrap);
    assert_eq!(closed.code, 0, "{}", closed.stderr);
    assert_eq!(lines(&closed), Vec::<String>::new());
    spec.inherit_fds = vec![200];
    assert_eq!(lines(&sb.run_spec(&spec, &wrap)), ["open 200"]);
}

/// A SIGTERM to the sandbox's process group while the sandbox is still being set up (xlfs
/// stopping its builds just after one was started) stops the build before it starts, and the
/// helper reports it (128 + 15); it is not lost, leaving the build to run until xlfs's SIGKILL.
/// Sent at fractions of the set-up time measured first, so before the build could run.
#[test]
fn a_sigterm_during_set_up_stops_the_build_before_it_starts() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("build/script.sh"), "touch /build/started; exec sleep 30").unwrap();
    let spec = sb.spec(Root::Tree("/".into()), &["bash", "-e", "/build/script.sh"]);
    sb.ids.give_to_root(sb.dir.path()).unwrap();
    // How long set-up and teardown take here: the quickest of five builds of `true` (one run
    // slowed by a loaded machine would put the signals below after the build had started).
    let quick = sb.spec(Root::Tree("/".into()), &["true"]);
    let setup = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            assert_eq!(sb.run_spec(&quick, &[]).code, 0);
            t.elapsed()
        })
        .min()
        .unwrap();
    for fraction in [8, 4, 2] {
        let spec_path = sb.path("spec.json");
        let mut child = xlfs_sandbox::command(Path::new(HELPER), &spec, &spec_path)
            .unwrap()
            .spawn()
            .unwrap();
        std::thread::sleep(setup / fraction);
        let started = std::time::Instant::now();
        unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
        let status = child.wait().unwrap();
        let took = started.elapsed();
        use std::os::unix::process::ExitStatusExt;
        // Reported by the helper, or (a SIGTERM before it could note one) the helper's own end.
        assert!(
            status.code() == Some(128 + libc::SIGTERM) || status.signal() == Some(libc::SIGTERM),
            "set-up {setup:?}, sent after 1/{fraction} of it: {status:?}"
        );
        assert!(
            !sb.path("build/started").exists(),
            "the build ran (SIGTERM after 1/{fraction} of set-up {setup:?})"
        );
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    }
}
