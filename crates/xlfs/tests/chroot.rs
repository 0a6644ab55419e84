//! `env = "chroot"` end to end: a static BusyBox built from the real upstream source (fetched
//! from the Debian archive configured in /etc/apt, like the book's own busybox) is the only
//! thing in the root of the packages built after it. Nothing of the build machine is there.

mod common;
use common::*;
use std::process::Command;

/// The book's busybox source pin (book/base/busybox.toml), Debian's copy only.
const BUSYBOX_SOURCE: &str = r#"[[source]]
file = "busybox-1.37.0.tar.bz2"
sha256 = "3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4"
debian = { package = "busybox", file = "busybox_1.37.0.orig.tar.bz2", sha256 = "3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4" }
"#;

/// Package A, built on the build machine's toolchain: a static BusyBox with a shell that also
/// answers to `bash` (the name xlfs runs a build's steps with) and the tools the next packages use.
const BUSYBOX_STATIC: &str = r#"[package]
name = "busybox-static"
version = "1.37.0"
license = "GPL-2.0-only"

SOURCE

[build]
env = "host"

[build.environment]
KCONFIG_NOTIMESTAMP = "1"

[build.steps]
configure = '''
cat > mini.config <<'EOF'
CONFIG_STATIC=y
CONFIG_BUSYBOX=y
CONFIG_SHELL_ASH=y
CONFIG_ASH=y
CONFIG_SH_IS_ASH=y
CONFIG_BASH_IS_ASH=y
CONFIG_ASH_BASH_COMPAT=y
CONFIG_ASH_ECHO=y
CONFIG_ASH_PRINTF=y
CONFIG_ASH_TEST=y
CONFIG_CAT=y
CONFIG_CHMOD=y
CONFIG_CP=y
CONFIG_CUT=y
CONFIG_DATE=y
CONFIG_ECHO=y
CONFIG_GREP=y
CONFIG_HEAD=y
CONFIG_ID=y
CONFIG_LN=y
CONFIG_LS=y
CONFIG_FEATURE_LS_SORTFILES=y
CONFIG_MKDIR=y
CONFIG_PRINTF=y
CONFIG_READLINK=y
CONFIG_RM=y
CONFIG_STAT=y
CONFIG_FEATURE_STAT_FORMAT=y
CONFIG_FEATURE_STAT_FILESYSTEM=y
CONFIG_TEST=y
CONFIG_TEST1=y
CONFIG_TOUCH=y
CONFIG_TR=y
CONFIG_WC=y
EOF
make allnoconfig > /dev/null
opts=$(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=.*/\1/p' mini.config)
for o in $opts; do sed -i -e "/^$o=/d" -e "/^# $o is not set\$/d" .config; done
# The shell choices: ash for `sh` and `bash`.
sed -i -e '/CONFIG_SH_IS_NONE/d' -e '/CONFIG_BASH_IS_NONE/d' .config
cat mini.config >> .config
{ yes "" || true; } | make oldconfig > /dev/null
for o in $opts; do grep -qx "$o=y" .config || { echo "mini.config: $o did not stick" >&2; exit 1; }; done
'''
build = "make"
install = '''
install -D -m 0755 busybox "$DESTDIR/usr/bin/busybox"
for a in $(./busybox --list); do ln -s busybox "$DESTDIR/usr/bin/$a"; done
ln -s usr/bin "$DESTDIR/bin"
'''
"#;

/// Package B, in a root made of A only: writes files with A's tools, and a script that needs
/// A's shell at run time.
const CHAIN_B: &str = r#"[package]
name = "chain-b"
version = "1.0"
license = "MIT"

[[source]]
file = "chain-b-1.0.tar.gz"
sha256 = "SHA"

[depends]
build = ["busybox-static"]
run = ["busybox-static"]

[build]
env = "chroot"

[build.steps]
build = '''
test "$(readlink /usr/bin/bash)" = busybox
test ! -e /usr/bin/cc
tr a-z A-Z < message.txt > loud.txt
'''
install = '''
mkdir -p "$DESTDIR/usr/share/chain-b" "$DESTDIR/usr/bin"
cp message.txt loud.txt "$DESTDIR/usr/share/chain-b/"
printf '#!/bin/sh\ncat /usr/share/chain-b/message.txt\n' > "$DESTDIR/usr/bin/chain-b"
chmod 0755 "$DESTDIR/usr/bin/chain-b"
ln -s message.txt "$DESTDIR/usr/share/chain-b/link"
'''
"#;

/// Package C, in a root made of B and (B's runtime closure) A: reports what its root holds.
const CHAIN_C: &str = r#"[package]
name = "chain-c"
version = "1.0"
license = "MIT"

[[source]]
file = "chain-c-1.0.tar.gz"
sha256 = "SHA"

[depends]
build = ["chain-b"]

[build]
env = "chroot"

[build.steps]
build = '''
echo "root: $(ls / | tr '\n' ' ')"
echo "usr/bin has cc: $(test -e /usr/bin/cc && echo yes || echo no)"
echo "etc: $(test -e /etc && echo present || echo absent)"
echo "chain-b says: $(chain-b)"
echo "loud: $(cat /usr/share/chain-b/loud.txt)"
echo "shell: $(readlink /usr/bin/bash) $(busybox --help > /tmp/help && head -n 1 /tmp/help | cut -d' ' -f1-2)"
echo "tmp: $(stat -f -c %T /tmp) $(touch /tmp/w && echo writable)"
echo "build: $(stat -f -c %T /build)"
echo "dev/pts: $(stat -f -c %T /dev/pts)"
echo "dev: $(ls /dev | tr '\n' ' ')"
echo "proc 1: $(tr '\0' ' ' < /proc/1/cmdline | cut -d' ' -f2)"
echo "processes: $(ls /proc | grep -c '^[0-9]')"
echo "usr: $(touch /usr/x 2>/dev/null && echo writable || echo read-only)"
echo "id: $(id -u):$(id -g)"
'''
install = '''
mkdir -p "$DESTDIR/usr/share/chain-c"
echo done > "$DESTDIR/usr/share/chain-c/done"
'''
"#;

/// Fetch busybox's source through the real fetcher and the Debian archive of /etc/apt (the
/// world's own commands point the Debian mirror at a dead address).
fn fetch_busybox(w: &World) {
    let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
        .arg("--book")
        .arg(w.book())
        .arg("--home")
        .arg(w.home())
        .args(["fetch", "busybox-static"])
        .env_remove("XLFS_DEBIAN_MIRROR")
        .env_remove("XLFS_MIRROR_DIR")
        .env_remove("XLFS_SOURCES")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "xlfs fetch busybox-static:\n{t}");
}

fn files(w: &World, package: &str) -> Vec<String> {
    w.ok(&["files", package]).lines().map(str::to_string).collect()
}

#[test]
fn a_static_toolchain_free_chain_builds_in_chroot() {
    let w = World::new();
    w.write_recipe(
        "busybox-static",
        &BUSYBOX_STATIC.replace("SOURCE", BUSYBOX_SOURCE),
    );
    let b = tarball("chain-b-1.0", &[("message.txt", "hello from chain-b\n", 0o644)]);
    let sha = w.add_tarball("chain-b-1.0.tar.gz", &b);
    w.write_recipe("chain-b", &CHAIN_B.replace("SHA", &sha));
    let c = tarball("chain-c-1.0", &[("README", "c\n", 0o644)]);
    let sha = w.add_tarball("chain-c-1.0.tar.gz", &c);
    w.write_recipe("chain-c", &CHAIN_C.replace("SHA", &sha));
    fetch_busybox(&w);

    let out = w.ok(&["build"]);
    assert!(out.contains("built 3, cached 0, failed 0"), "{out}");

    // A: one static binary (no DT_NEEDED) and its links, all root's.
    let a = files(&w, "busybox-static");
    assert!(
        a.iter()
            .any(|l| l.starts_with("- 0755     0:0     ") && l.ends_with(" /usr/bin/busybox")),
        "{a:?}"
    );
    assert!(a.iter().all(|l| !l.contains("[needs")), "static: {a:?}");
    for applet in ["bash", "sh", "cat", "stat"] {
        let want = format!(" /usr/bin/{applet} -> busybox");
        assert!(a.iter().any(|l| l.ends_with(&want)), "{applet}: {a:?}");
    }
    assert!(a.iter().any(|l| l.ends_with(" /bin -> usr/bin")), "{a:?}");

    // B: what its steps made with A's tools.
    let b = files(&w, "chain-b");
    let want_b = [
        "d 0755     0:0              0 /usr",
        "d 0755     0:0              0 /usr/bin",
        "- 0755     0:0             45 /usr/bin/chain-b",
        "d 0755     0:0              0 /usr/share",
        "d 0755     0:0              0 /usr/share/chain-b",
        "l 0777     0:0              0 /usr/share/chain-b/link -> message.txt",
        "- 0644     0:0             19 /usr/share/chain-b/loud.txt",
        "- 0644     0:0             19 /usr/share/chain-b/message.txt",
    ];
    assert_eq!(b[..want_b.len()], want_b, "{b:?}");
    let c = files(&w, "chain-c");
    assert!(c.iter().any(|l| l.ends_with(" /usr/share/chain-c/done")), "{c:?}");

    // C: its root, as its steps saw it.
    let log = w.ok(&["log", "chain-c"]);
    let mut report: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.starts_with("==> xlfs: build ("))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("==> xlfs:"))
        .collect();
    // Only the sandbox's own processes: its pid 1, the shell, the command substitution's.
    let processes = report
        .iter()
        .position(|l| l.starts_with("processes: "))
        .map(|i| report.remove(i))
        .unwrap_or_else(|| panic!("{log}"));
    let n: usize = processes["processes: ".len()..].parse().unwrap();
    assert!((3..8).contains(&n), "{processes}");
    let fs = |p: &str| {
        let out = Command::new("stat").args(["-f", "-c", "%T", p]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let disk = fs(w.home().to_str().unwrap());
    assert_ne!(disk, "tmpfs", "the test's home must be on disk");
    assert_eq!(
        report,
        [
            "root: bin book build destdir dev proc sys sysroot tmp usr ".to_string(),
            "usr/bin has cc: no".into(),
            "etc: absent".into(),
            "chain-b says: hello from chain-b".into(),
            "loud: HELLO FROM CHAIN-B".into(),
            "shell: busybox BusyBox v1.37.0".into(),
            format!("tmp: {disk} writable"),
            format!("build: {disk}"),
            "dev/pts: devpts".into(),
            "dev: fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ".into(),
            "proc 1: __sandbox".into(),
            "usr: read-only".into(),
            "id: 0:0".into(),
        ],
        "{log}"
    );
}
