//! Real QEMU (TCG) tests with the echo boot sector, plus `run` against a
//! stand-in console. They fail, saying how to install QEMU, if it is missing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use xlfs_boot::sectors::{echo_sector, ECHO_BANNER, ECHO_BYE};
use xlfs_boot::{
    choose_accel, find_qemu, interactive, run_checks, Accel, AccelPref, BootError, Check, Console, Drive,
    ExpectReason, Machine, QEMU_INSTALL_HINT,
};

const BOOT: Duration = Duration::from_secs(60);

/// The QEMU binary, or a test failure that says how to install it.
fn qemu() -> PathBuf {
    let q = xlfs_boot::default_qemu();
    match find_qemu(&q) {
        Ok(p) => p,
        Err(_) => panic!(
            "these tests need QEMU: {} is not installed; {QEMU_INSTALL_HINT}",
            q.display()
        ),
    }
}

/// A TCG machine booting the echo sector from an IDE disk in `dir`.
fn echo_machine(dir: &Path) -> Machine {
    let img = dir.join("boot.img");
    std::fs::write(&img, echo_sector()).unwrap();
    let mut m = Machine::new(Accel::Tcg);
    m.qemu = qemu();
    m.memory_mib = 16;
    m.drives.push(Drive::raw(&img, "ide"));
    m.extra = vec!["-boot".into(), "c".into()];
    m
}

fn boot(dir: &TempDir) -> Console {
    let m = echo_machine(dir.path());
    let mut c = Console::spawn(&m, &dir.path().join("logs/console.log")).unwrap();
    c.expect(ECHO_BANNER, BOOT).unwrap();
    c.expect("> ", BOOT).unwrap();
    c
}

/// Whether a process whose command line mentions `needle` is alive
/// (zombies count as gone).
fn process_mentioning(needle: &str) -> Option<String> {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if cmdline.contains(needle) && !zombie {
            return Some(format!("{pid}: {cmdline}"));
        }
    }
    None
}

#[test]
fn echo_roundtrip_and_poweroff() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = boot(&dir);
    c.send("hello xlfs").unwrap();
    let got = c.expect("hello xlfs", Duration::from_secs(30)).unwrap();
    assert_eq!(got, "hello xlfs");
    c.sendline("again").unwrap();
    c.expect_re(r"ag[a-z]+n", Duration::from_secs(30)).unwrap();
    assert!(c.elapsed() > Duration::ZERO);

    c.send("q").unwrap();
    c.expect(ECHO_BYE, Duration::from_secs(30)).unwrap();
    let status = c.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");

    // The log holds the raw bytes, escape sequences and all.
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    assert!(log.contains("XLFS-TEST-BOOT\r\n> hello xlfsagain\n"), "{log:?}");
    assert!(log.contains("BYE"));
    assert!(
        log.contains('\x1b'),
        "SeaBIOS's escape sequences are kept in the log"
    );
}

#[test]
fn timed_out_expect_shows_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = boot(&dir);
    let t = Instant::now();
    let err = c.expect("NEVER-PRINTED", Duration::from_secs(1)).unwrap_err();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(t.elapsed() < Duration::from_secs(5));
    let BootError::Expect {
        expected,
        waited,
        reason,
        tail,
        log,
        ..
    } = &err
    else {
        panic!("not an Expect error: {err}");
    };
    assert_eq!(expected, "\"NEVER-PRINTED\"");
    assert!(*waited >= Duration::from_secs(1));
    assert_eq!(*reason, ExpectReason::TimedOut);
    assert!(tail.contains(ECHO_BANNER), "{tail:?}");
    assert!(tail.contains("SeaBIOS"), "{tail:?}");
    assert!(!tail.contains('\x1b') && !tail.contains('\r'), "{tail:?}");
    assert_eq!(log, &dir.path().join("logs/console.log"));
    let msg = err.to_string();
    for want in [
        "timed out after 1.0s",
        "\"NEVER-PRINTED\"",
        ECHO_BANNER,
        "console.log",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    // The console still works after a failed expect.
    c.send("ok").unwrap();
    c.expect("ok", Duration::from_secs(30)).unwrap();
}

#[test]
fn expect_fails_fast_when_qemu_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = boot(&dir);
    c.send("q").unwrap();
    let t = Instant::now();
    let err = c.expect("NEVER-PRINTED", Duration::from_secs(60)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("QEMU exited"), "{msg}");
    assert!(msg.contains("BYE"), "{msg}");
    // Sending to a machine that is gone fails too.
    assert!(matches!(c.send("x"), Err(BootError::Send { .. })));
}

#[test]
fn drop_kills_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().to_string_lossy().into_owned();
    let c = boot(&dir);
    let pid = c.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(process_mentioning(&marker).is_some());
    let t = Instant::now();
    drop(c);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Reaped, not a zombie: its /proc entry is gone.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} still in /proc"
    );
    assert_eq!(process_mentioning(&marker), None, "stray QEMU left");
}

#[test]
fn wait_exit_times_out_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().to_string_lossy().into_owned();
    let mut c = boot(&dir);
    let err = c.wait_exit(Duration::from_millis(500)).unwrap_err();
    assert!(matches!(err, BootError::ExitTimeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("did not exit within") && msg.contains(ECHO_BANNER),
        "{msg}"
    );
    assert_eq!(process_mentioning(&marker), None, "stray QEMU left");
}

#[test]
fn checks_run_in_order_and_stop_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let m = echo_machine(dir.path());
    let mut c = Console::spawn(&m, &dir.path().join("console.log")).unwrap();
    let checks = vec![
        Check::wait("banner", ECHO_BANNER, 60),
        Check::send("echo", "abc", "abc", 30),
        Check::wait("never", "NEVER-PRINTED", 1),
        Check::wait("not reached", ECHO_BANNER, 1),
    ];
    let r = run_checks(&mut c, &checks);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r[0].ok && r[1].ok && !r[2].ok, "{r:?}");
    assert!(r[0].at <= r[1].at && r[1].at <= r[2].at);
    assert!(r[2].took >= Duration::from_secs(1));
    let e = r[2].error.as_deref().unwrap();
    assert!(e.contains("NEVER-PRINTED") && e.contains(ECHO_BANNER), "{e}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json[2]["name"], "never");
    assert!(json[0]["at"].is_f64());
}

#[test]
fn choose_tcg_does_not_probe() {
    let t = Instant::now();
    let (a, why) = choose_accel(AccelPref::Tcg, Duration::from_secs(5));
    assert_eq!(a, Accel::Tcg);
    assert!(!why.is_empty());
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[test]
fn choose_auto_answers_within_the_timeout() {
    qemu();
    let timeout = Duration::from_secs(5);
    let t = Instant::now();
    let (a, why) = choose_accel(AccelPref::Auto, timeout);
    let took = t.elapsed();
    eprintln!("choose_accel(Auto) = {a} in {took:?}: {why}");
    assert!(took < timeout + Duration::from_millis(500), "{took:?}");
    assert!(!why.is_empty());
    match a {
        Accel::Kvm => assert!(why.starts_with("KVM works"), "{why}"),
        Accel::Tcg => assert!(!why.starts_with("KVM works"), "{why}"),
    }
    // No probe QEMU is left behind.
    assert_eq!(process_mentioning("xlfs-kvm-probe"), None);
}

#[test]
fn spawn_without_qemu_says_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = echo_machine(dir.path());
    m.qemu = "/nonexistent/qemu-system-x86_64".into();
    let err = Console::spawn(&m, &dir.path().join("c.log")).err().unwrap();
    assert!(err.to_string().contains("apt-get install"), "{err}");
    assert!(interactive(&m).is_err());
}

#[test]
fn interactive_returns_the_exit_status() {
    // A stand-in "QEMU" that exits at once with status 3.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-qemu");
    std::fs::write(&fake, "#!/bin/sh\nexit 3\n").unwrap();
    make_executable(&fake);
    let mut m = Machine::new(Accel::Tcg);
    m.qemu = fake;
    let status = interactive(&m).unwrap();
    assert_eq!(status.code(), Some(3));
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A stand-in console: an interactive `sh` that echoes its input lines
/// (`-v`), as a serial console with a shell does.
fn shell_console(dir: &Path) -> Console {
    let fake = dir.join("fake-console");
    std::fs::write(&fake, "#!/bin/sh\nPS1='# ' exec sh -v -i 2>&1\n").unwrap();
    make_executable(&fake);
    Console::spawn_command(&fake, &[], &dir.join("console.log")).unwrap()
}

#[test]
fn run_returns_exit_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shell_console(dir.path());
    let t = Duration::from_secs(30);
    assert_eq!(
        c.run("echo hello; echo world", t).unwrap(),
        (0, "hello\nworld\n".into())
    );
    assert_eq!(c.run("false", t).unwrap().0, 1);
    assert_eq!(c.run("sh -c 'exit 42'", t).unwrap(), (42, String::new()));
    // Quotes, commas, comments, no trailing newline.
    assert_eq!(
        c.run("printf '%s' \"it's a,b\" # comment", t).unwrap(),
        (0, "it's a,b".into())
    );
    // State persists between commands (same shell).
    assert_eq!(c.run("cd /tmp && X=7", t).unwrap().0, 0);
    assert_eq!(c.run("pwd; echo $X", t).unwrap(), (0, "/tmp\n7\n".into()));
    // Multi-line commands.
    assert_eq!(
        c.run("for i in 1 2\ndo echo $i\ndone", t).unwrap(),
        (0, "1\n2\n".into())
    );
    // The echoed input was on the console but is not in the output.
    assert!(c.output().contains("printf '__XLFS_%s%s__\\n' B 1"));
    // A command that outlives its timeout.
    let err = c.run("sleep 5", Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, BootError::Expect { .. }), "{err}");
}

/// A console that loses input as Xen's serial input does for a busy dom0: a ring of 128 bytes
/// (`SERIAL_RX_SIZE`) drained every 30 ms; what does not fit is lost, and the rest goes to an
/// interactive shell. Long commands still arrive whole: `send` writes them in chunks. The ring's
/// 30 ms are the hypervisor's, which a loaded build machine does not stretch: when the model
/// wakes late, the ring has drained once per 30 ms gone by (a real-time priority, tried first,
/// is refused inside a cgroup without a real-time budget, and the model then lost a chunk under
/// load). As on a real console, the command waits for the shell's prompt: under load, Python
/// took longer to start than xlfs took to send it.
#[test]
fn long_commands_survive_a_small_input_ring() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("lossy-console");
    std::fs::write(
        &fake,
        r##"#!/usr/bin/python3
import os, select, subprocess, time
# Input that came after `since` has not been drained yet (the ring is there from the start).
since = time.monotonic()
sh = subprocess.Popen(["sh", "-v", "-i"], stdin=subprocess.PIPE, stderr=subprocess.STDOUT,
                      env=dict(os.environ, PS1="# "))
while True:
    time.sleep(0.03)
    t = time.monotonic()
    if not select.select([0], [], [], 0)[0]:
        since = t
        continue
    data = os.read(0, 65536)
    if not data:
        break
    # 128 bytes for each 30 ms gone by since then, measured after the read: the hypervisor's
    # time, however late this process ran.
    room = 128 * max(1, int((time.monotonic() - since) / 0.03))
    since = t
    sh.stdin.write(data[:room])
    sh.stdin.flush()
"##,
    )
    .unwrap();
    make_executable(&fake);
    let mut c = Console::spawn_command(&fake, &[], &dir.path().join("console.log")).unwrap();
    // As on a real console, the shell is there first (the boot check waits for its login).
    c.expect("# ", Duration::from_secs(60)).unwrap();
    let word = "0123456789abcdef".repeat(120);
    let (rc, out) = c
        .run(&format!("echo {word} | wc -c"), Duration::from_secs(60))
        .unwrap();
    assert_eq!((rc, out.trim()), (0, (word.len() + 1).to_string().as_str()));
}

/// QEMU runs in a process group of its own, so a Ctrl-C or kill that ends xlfs does not reach
/// it: it ends when the thread that started it ends, however that thread ends (here: without
/// dropping the console, as a killed process drops nothing).
#[test]
fn qemu_ends_with_the_thread_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let pid = std::thread::spawn(move || {
        let m = echo_machine(&path);
        let mut c = Console::spawn(&m, &path.join("console.log")).unwrap();
        c.expect(ECHO_BANNER, BOOT).unwrap();
        let pid = c.pid();
        std::mem::forget(c);
        pid
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie: this process is its parent and does not reap it.
        let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "QEMU (pid {pid}) outlived its thread: {stat}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reap it.
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
}
