//! The build sandbox.
//!
//! A build runs as root of its own user namespace (root inside is an unprivileged id outside,
//! see [`IdMap`]), in its own mount, pid, network, UTS and IPC namespaces, with a clean
//! environment, `no_new_privs`, a fixed niceness and umask ([`BUILD_NICENESS`], [`BUILD_UMASK`]),
//! and fixed paths:
//!
//! | path       | what                                                                  |
//! |------------|-----------------------------------------------------------------------|
//! | `/`        | [`Root::Tree`]: a toolchain tree's `/usr`, `/etc`, …; [`Root::Layers`]: only the dependencies' outputs (read-only) |
//! | `/sysroot` | the declared dependencies' outputs, read-only (overlayfs)             |
//! | `/build`, `/destdir`, `/tmp`, … | what the [`Spec`] binds (the build tree, read-write, on disk) |
//! | `/dev`     | null, zero, full, random, urandom, tty, a private devpts (`/dev/pts`, `/dev/ptmx`), `shm`, fd links |
//! | `/proc`    | of the build's own pid namespace                                      |
//! | `/sys`     | sysfs of the build's own network namespace, read-only                 |
//!
//! Everything except the spec's writable binds, `/dev/shm` and `/dev/pts` is read-only, and
//! *locked* read-only: the mounts are made in a first user namespace (U1), then the build runs
//! in a second one (U2) nested in it, with a copy of the mount namespace. The kernel locks the
//! flags of mounts copied into a less privileged mount namespace (`MNT_LOCK_READONLY`, …), so
//! root in U2 cannot `mount -o remount,rw` nor `mount_setattr` them writable. The build's root
//! also lacks `CAP_SYS_ADMIN` and `CAP_MKNOD` (dropped from the bounding set), so it cannot
//! mount anything at all. The network namespace has only a loopback interface.
//!
//! Process layout: the helper (`xlfs __sandbox SPEC.json`, see [`command`]) stays outside and
//! writes U1's id maps; its child creates U1 and the other namespaces; that child's child is
//! pid 1 of the new pid namespace (makes the mounts, `pivot_root`s into the root and detaches
//! the old one, reaps orphans); its child creates U2 and execs the build. Each dies with its
//! parent (`PR_SET_PDEATHSIG`), and when pid 1 dies the kernel kills the whole namespace.
//!
//! Stopping: SIGTERM to the helper's process group (xlfs does so on Ctrl-C, then SIGKILL after
//! a grace period) reaches the build's processes, which stop as they would at a terminal: make
//! deletes a target it was writing, so a test's half-written output is not taken for a result
//! when the tree goes on. The helper, its child and pid 1 outlive it (they only note it; one
//! that comes while the sandbox is being set up stops the build before it starts), and pid 1
//! then reaps the build's last processes before it exits,
//! instead of the kernel killing them at once when the shell is gone. (The build can send pid 1
//! that SIGTERM too, being the same user: then pid 1 waits for the build's last process, which
//! gives it nothing a build that never exits does not have.)

mod ids;

pub use ids::{Extent, IdMap, DEFAULT_ROOT_BASE, IDS};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, execve, fork, pivot_root, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `/` is made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Root {
    /// The top-level directories [`TREE_DIRS`] of this tree (a toolchain root, or `/` of the
    /// build machine), each bound read-only into a fresh root; top-level symlinks (`/bin` →
    /// `usr/bin`) are copied.
    Tree(PathBuf),
    /// Only these layers (first wins), read-only (overlayfs): the `chroot` environment.
    Layers(Vec<PathBuf>),
}

/// The top-level entries of a [`Root::Tree`] that a build sees. Nothing else: not `/home`,
/// `/root`, `/var` or `/run` of the build machine.
pub const TREE_DIRS: &[&str] = &[
    "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub src: PathBuf,
    /// Absolute path inside the sandbox.
    pub dst: String,
    pub writable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub root: Root,
    /// Layers mounted read-only at `/sysroot` (first wins). Empty: an empty directory.
    pub sysroot: Vec<PathBuf>,
    /// Mounted in this order; a bind at `/tmp` makes `/tmp` writable (otherwise it is an empty,
    /// read-only directory).
    pub binds: Vec<Bind>,
    /// An empty directory outside the sandbox where the root is assembled (a tmpfs is mounted on
    /// it). Its parent must belong to root inside the namespace ([`IdMap::give_to_root`]).
    pub scratch: PathBuf,
    pub workdir: String,
    /// The complete environment of the build.
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub hostname: String,
    /// The user namespace's id mapping ([`IdMap::for_current_user`]).
    pub ids: IdMap,
    /// The descriptors beyond 0, 1 and 2 the build may inherit (a jobserver's pipe). Every other
    /// descriptor the helper was started with is closed before the build runs, so nothing the
    /// caller happened to hold open (a pipe, a file outside) reaches the build.
    #[serde(default)]
    pub inherit_fds: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot write sandbox spec {path}: {source}")]
    Spec { path: PathBuf, source: std::io::Error },
    #[error("cannot start the sandbox helper {exe}: {source}")]
    Spawn { exe: PathBuf, source: std::io::Error },
}

/// Capabilities root inside the build does not get: no mounting, no device nodes, no
/// interface configuration, nothing that only makes sense for a real machine.
const DROPPED_CAPS: &[libc::c_int] = &[
    21, // CAP_SYS_ADMIN
    27, // CAP_MKNOD
    12, // CAP_NET_ADMIN
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    22, // CAP_SYS_BOOT
    25, // CAP_SYS_TIME
];

/// A command that runs `spec` in a sandbox through the helper binary `exe` (usually
/// `std::env::current_exe()`, which must dispatch `__sandbox SPEC` to [`enter`] first thing).
/// The helper gets its own process group and dies with its parent.
pub fn command(exe: &Path, spec: &Spec, spec_path: &Path) -> Result<Command, SandboxError> {
    let json = serde_json::to_vec_pretty(spec).expect("spec serialises");
    std::fs::write(spec_path, json).map_err(|source| SandboxError::Spec {
        path: spec_path.to_path_buf(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("__sandbox").arg(spec_path);
    cmd.process_group(0);
    xlfs_util::end_with_this_thread(&mut cmd, libc::SIGKILL);
    Ok(cmd)
}

/// Run this process as a helper if it was started as one, and never return then:
/// `__sandbox SPEC` ([`enter`]) or `__remove IDS DIR` (the inside of [`remove_tree`]).
/// Call it first thing in `main`, before anything starts a thread.
pub fn dispatch() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("__sandbox") if argv.len() == 3 => enter(Path::new(&argv[2])),
        Some("__remove") if argv.len() == 4 => remove_inside(&argv[2].to_string_lossy(), Path::new(&argv[3])),
        _ => {}
    }
}

/// Remove `dir` and everything in it, including what a build made there under its subordinate
/// ids. An ordinary user cannot do that itself (those files are not its own): the removal then
/// runs in a user namespace with the build's mapping `ids`, where the user is root over every
/// mapped id, through the helper binary `exe` (see [`dispatch`]). A missing `dir` is not an error.
pub fn remove_tree(exe: &Path, ids: &IdMap, dir: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    if !ids.helper {
        return std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()));
    }
    let out = Command::new(exe)
        .arg("__remove")
        .arg(serde_json::to_string(ids).expect("ids serialise"))
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "cannot remove {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Continue this process as root of a new user namespace mapped by `ids`, where it may read,
/// change and remove whatever a build made under those ids. The process must be
/// single-threaded (a helper mode, see [`dispatch`]). It forks: the parent writes the maps,
/// waits for the child and exits with its status; only the child returns.
pub fn become_root_in(ids: &IdMap) {
    if let Some(child) = fork_into_userns(CloneFlags::empty(), |pid| ids.write(pid.as_raw())) {
        std::process::exit(wait_exit(child));
    }
}

/// The helper side of [`remove_tree`]: enter a user namespace mapped by `ids` and remove `dir`.
fn remove_inside(ids: &str, dir: &Path) -> ! {
    let ids: IdMap = serde_json::from_str(ids).unwrap_or_else(|e| die("reading the id map", e));
    become_root_in(&ids);
    match std::fs::remove_dir_all(dir) {
        Ok(()) => std::process::exit(0),
        Err(e) => die(&format!("removing {}", dir.display()), e),
    }
}

fn die(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("xlfs sandbox: {what}: {err}");
    std::process::exit(125)
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| die("argument contains a NUL byte", s))
}

/// A one-byte, one-way signal between two processes of the setup.
struct Gate {
    r: OwnedFd,
    w: OwnedFd,
}

impl Gate {
    fn new() -> Gate {
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok((r, w)) => Gate { r, w },
            Err(e) => die("pipe", e),
        }
    }
    fn open(self) {
        let _ = std::fs::File::from(self.w).write_all(b"x");
    }
    /// Wait until the other side opens the gate; exit quietly if it died instead.
    fn wait(self) {
        drop(self.w);
        let mut b = [0u8; 1];
        if std::fs::File::from(self.r).read_exact(&mut b).is_err() {
            std::process::exit(125);
        }
    }
}

/// Fork a child that creates a user namespace (plus `flags`); the parent runs `map(child)` to
/// write its id maps. Returns in the child (`None`) once mapped, in the parent with the child.
fn fork_into_userns(flags: CloneFlags, map: impl FnOnce(Pid) -> Result<(), String>) -> Option<Pid> {
    let (unshared, mapped) = (Gate::new(), Gate::new());
    match unsafe { fork() } {
        Err(e) => die("fork", e),
        Ok(ForkResult::Child) => {
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Our parent opens our /proc files to write the maps: they must be ours.
                libc::prctl(libc::PR_SET_DUMPABLE, 1);
            }
            if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER | flags) {
                die(
                    "unshare (creating a user namespace; is kernel.unprivileged_userns_clone or user.max_user_namespaces 0?)",
                    e,
                );
            }
            unshared.open();
            mapped.wait();
            become_root();
            None
        }
        Ok(ForkResult::Parent { child }) => {
            unshared.wait();
            if let Err(e) = map(child) {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                die("writing the user namespace's id maps", e);
            }
            mapped.open();
            Some(child)
        }
    }
}

fn become_root() {
    let (u, g) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    // setgroups is denied where an unprivileged map was written without newgidmap; harmless then.
    let _ = nix::unistd::setgroups(&[]);
    if let Err(e) = nix::unistd::setresgid(g, g, g) {
        die("setresgid 0", e);
    }
    if let Err(e) = nix::unistd::setresuid(u, u, u) {
        die("setresuid 0", e);
    }
}

/// Run in the helper process: set up the namespaces and run the spec. Never returns.
/// Exit status: the build's, 128+N if it was killed by signal N, 125 for a sandbox failure.
pub fn enter(spec_path: &Path) -> ! {
    // From the start: the helper's own mount points need it too (under a umask of 077 the
    // build's namespace could not reach them), and the build inherits it.
    unsafe { libc::umask(BUILD_UMASK) };
    // A SIGTERM to the process group is for the build: the helper and its child wait for it
    // to stop (see the module's doc). Until the build runs, it is noted (and inherited by every
    // fork), so that one sent while the sandbox is being set up stops the build before it
    // starts instead of being lost. Pid 1 replaces this with its own handler.
    note_sigterm(true);
    let mut spec: Spec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => die(&format!("reading {}", spec_path.display()), e),
    };
    if !spec.ids.helper {
        if let Err(e) = stage(&mut spec) {
            die("preparing the build's paths", e);
        }
    }
    // Outside: write U1's maps, then wait.
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if let Some(child) = fork_into_userns(flags, |pid| spec.ids.write(pid.as_raw())) {
        std::process::exit(wait_exit(child));
    }
    // Root of U1; the next child is pid 1 of the new pid namespace.
    match unsafe { fork() } {
        Err(e) => die("fork", e),
        Ok(ForkResult::Parent { child }) => std::process::exit(wait_exit(child)),
        Ok(ForkResult::Child) => {}
    }
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    note_sigterm(false);
    if let Err(e) = setup(&spec) {
        die("setting up the build root", e);
    }
    // The build: root of U2, a mount namespace where every mount above is locked.
    let map_u2 = |pid: Pid| {
        // The identity, extent by extent: the kernel maps each extent of U2 into one of U1.
        let identity = |map: &[Extent]| -> String {
            map.iter()
                .map(|e| format!("{0} {0} {1}\n", e.inside, e.count))
                .collect()
        };
        for (file, map) in [("uid_map", &spec.ids.uids), ("gid_map", &spec.ids.gids)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, identity(map)).map_err(|e| format!("write {path}: {e}"))?;
        }
        // From now on nothing of pid 1 (its root, fds, memory) is open to the build.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
        Ok(())
    };
    let shell = match fork_into_userns(CloneFlags::CLONE_NEWNS, map_u2) {
        None => exec(&spec),
        Some(child) => child,
    };
    // Reap everything until the shell exits; orphans re-parent to us. When the build is being
    // stopped, the shell may die first (bash does at once): its last processes, make deleting a
    // half-written target, are then waited for too, until none is left (or xlfs's SIGKILL).
    let mut status = None;
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == shell => status = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == shell => status = Some(128 + sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECHILD) if status.is_some() => {}
            Err(e) => die("waitpid", e),
        }
        if let Some(code) = status {
            if !SIGTERM_SEEN.load(std::sync::atomic::Ordering::SeqCst)
                || matches!(
                    waitpid(Pid::from_raw(-1), Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
                    Err(nix::errno::Errno::ECHILD)
                )
            {
                std::process::exit(code);
            }
        }
    }
}

/// Set in pid 1 when the build is being stopped (SIGTERM).
static SIGTERM_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Note a SIGTERM instead of dying of it (pid 1: a signal from outside its namespace reaches it
/// only through a handler). `restart` for the processes that set the sandbox up; none for pid
/// 1, whose `waitpid` then returns, and it looks again.
fn note_sigterm(restart: bool) {
    extern "C" fn seen(_: libc::c_int) {
        SIGTERM_SEEN.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = seen as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// Where [`stage`] puts the spec's outside paths, in the helper's own mount namespace.
const STAGE: &str = "/tmp";

/// When xlfs runs as root: make every outside path of the spec reachable for root inside the
/// user namespace, which could not even look them up below a directory closed to others (the
/// default home `/root/.local/share/xlfs`). In a mount namespace of its own, the helper (still
/// real root) mounts a tmpfs on [`STAGE`] and binds each path to `STAGE/in/N` there; the spec
/// then names those, and the scratch directory moves to `STAGE/scratch`. Nothing of this is
/// visible outside the sandbox. (An ordinary user's files are its own: nothing to do.)
fn stage(spec: &mut Spec) -> Res {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount namespace: {e}"))?;
    m(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // Open every path first: the stage may hide them (a home below /tmp).
    let mut paths: Vec<&mut PathBuf> = Vec::new();
    match &mut spec.root {
        Root::Tree(t) => paths.push(t),
        Root::Layers(l) => paths.extend(l.iter_mut()),
    }
    paths.extend(spec.sysroot.iter_mut());
    paths.extend(spec.binds.iter_mut().map(|b| &mut b.src));
    let mut files = Vec::new();
    for p in &paths {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&**p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        let is_dir = f
            .metadata()
            .map_err(|e| format!("{}: {e}", p.display()))?
            .is_dir();
        files.push((f, is_dir));
    }
    let stage = Path::new(STAGE);
    let (uid, gid) = (
        spec.ids.outside_uid(0).unwrap_or(0),
        spec.ids.outside_gid(0).unwrap_or(0),
    );
    m(
        Some(Path::new("tmpfs")),
        stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=0755,uid={uid},gid={gid}")),
    )?;
    for (n, (p, (f, is_dir))) in paths.into_iter().zip(&files).enumerate() {
        use std::os::fd::AsRawFd;
        let dst = stage.join("in").join(n.to_string());
        mountpoint(*is_dir, &dst)?;
        let src = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
        m(Some(&src), &dst, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .map_err(|e| format!("{} ({e})", p.display()))?;
        *p = dst;
    }
    spec.scratch = stage.join("scratch");
    Ok(())
}

fn wait_exit(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => die("waitpid", e),
        }
    }
}

/// Every build's niceness: the lowest priority, which any process may take without privilege,
/// whatever niceness xlfs itself runs at (a build started under `nice -n 19` and one started
/// at 0 must not differ).
pub const BUILD_NICENESS: i32 = 19;

/// Every build's umask.
pub const BUILD_UMASK: libc::mode_t = 0o022;

fn exec(spec: &Spec) -> ! {
    // The build is being stopped already (a SIGTERM while the sandbox was set up): it does not
    // start. From the default set here on, a SIGTERM ends this process as it would the build.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        if SIGTERM_SEEN.load(std::sync::atomic::Ordering::SeqCst) {
            libc::_exit(128 + libc::SIGTERM);
        }
    }
    for &cap in DROPPED_CAPS {
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            die(
                &format!("dropping capability {cap}"),
                std::io::Error::last_os_error(),
            );
        }
    }
    // The same niceness for every build, whoever starts it and how: Python's configure, for
    // one, compares two `nice()` calls. (The umask was set by `enter`.)
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, BUILD_NICENESS) != 0 {
            die("setpriority", std::io::Error::last_os_error());
        }
    }
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            die("PR_SET_NO_NEW_PRIVS", std::io::Error::last_os_error());
        }
    }
    if let Err(e) = close_on_exec_except(&spec.inherit_fds) {
        die("closing the descriptors the build must not inherit", e);
    }
    if let Err(e) = chdir(spec.workdir.as_str()) {
        die(&format!("chdir {}", spec.workdir), e);
    }
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstr(a)).collect();
    let env: Vec<CString> = spec.env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect();
    let Some(prog) = argv.first() else {
        die("spec", "empty argv")
    };
    // Resolve the program through the sandbox PATH.
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    let prog_s = prog.to_string_lossy().to_string();
    let resolved = if prog_s.contains('/') {
        prog_s
    } else {
        path.split(':')
            .map(|d| format!("{d}/{prog_s}"))
            .find(|p| Path::new(p).exists())
            .unwrap_or(prog_s)
    };
    let err = execve(&cstr(&resolved), &argv, &env).unwrap_err();
    die(&format!("exec {resolved}"), err)
}

/// Mark every descriptor from 3 up close-on-exec except those in `keep` (close_range(2) with
/// CLOSE_RANGE_CLOEXEC over the gaps between them), so the exec drops them.
fn close_on_exec_except(keep: &[i32]) -> std::io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|&&fd| fd > 2).map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > from {
            // SAFETY: only changes descriptor flags of this process.
            let r = unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, libc::CLOSE_RANGE_CLOEXEC) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        from = fd.saturating_add(1);
    }
    Ok(())
}

type Res = Result<(), String>;

fn m(src: Option<&Path>, dst: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Res {
    mount(src, dst, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {} ({}): {e}",
            src.map(|p| p.display().to_string()).unwrap_or_default(),
            dst.display(),
            fstype.unwrap_or("bind")
        )
    })
}

const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Set mount attributes on `dst` and the mounts below it. Unlike a bind remount, this keeps
/// every other flag, including those locked by the kernel.
fn setattr(dst: &Path, set: u64) -> Res {
    setattr_with(dst, set, libc::AT_RECURSIVE as libc::c_uint)
}

/// [`setattr`] with mount_setattr(2)'s `flags` (0: only the mount at `dst`).
fn setattr_with(dst: &Path, set: u64, flags: libc::c_uint) -> Res {
    let c = cstr(&dst.to_string_lossy());
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(format!(
            "mount_setattr {}: {}",
            dst.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn mkdir(p: &Path) -> Res {
    std::fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

/// Create the mount point `dst` for `src` (a directory or an empty file) if it is missing.
fn mountpoint(src_is_dir: bool, dst: &Path) -> Res {
    if src_is_dir {
        return mkdir(dst);
    }
    if let Some(parent) = dst.parent() {
        mkdir(parent)?;
    }
    if std::fs::symlink_metadata(dst).is_err() {
        std::fs::write(dst, b"").map_err(|e| format!("create {}: {e}", dst.display()))?;
    }
    Ok(())
}

fn bind(src: &Path, dst: &Path, writable: bool) -> Res {
    if std::fs::symlink_metadata(dst).is_err() {
        mountpoint(src.is_dir(), dst)?;
    }
    m(Some(src), dst, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    let ro = if writable { 0 } else { ATTR_RDONLY };
    setattr(dst, ro | ATTR_NOSUID | ATTR_NODEV)
}

/// Mount `layers` (first wins) read-only at `dst`: empty dir, a read-only bind, or an overlay.
/// Layer paths are bind-mounted to short names first so that many layers fit in overlayfs'
/// option string. `skel`, if given, is the topmost layer (mount points for the root).
fn layers(layers: &[PathBuf], skel: Option<&Path>, dst: &Path, scratch: &Path, tag: &str) -> Res {
    mkdir(dst)?;
    if skel.is_none() {
        match layers {
            [] => return Ok(()),
            [one] => return bind(one, dst, false),
            _ => {}
        }
    }
    let short = scratch.join(format!(".{tag}"));
    mkdir(&short)?;
    let mut names: Vec<String> = Vec::new();
    if let Some(s) = skel {
        // Relative to `short` (overlayfs splits its options at ',' and ':').
        let rel = s
            .strip_prefix(scratch)
            .map_err(|_| "skeleton outside scratch".to_string())?;
        names.push(Path::new("..").join(rel).to_string_lossy().into_owned());
    }
    for (i, l) in layers.iter().enumerate() {
        let p = short.join(i.to_string());
        bind(l, &p, false)?;
        names.push(i.to_string());
    }
    if names.len() < 2 {
        // overlayfs needs two lower layers without an upper one.
        mkdir(&short.join("empty"))?;
        names.push("empty".into());
    }
    let data = format!("lowerdir={}", names.join(":"));
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    chdir(&short).map_err(|e| format!("chdir {}: {e}", short.display()))?;
    let r = m(
        Some(Path::new("overlay")),
        dst,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&data),
    );
    chdir(&cwd).map_err(|e| e.to_string())?;
    r
}

/// Mount points the root must have, whatever it is made of: (path, is a directory).
fn mountpoints(spec: &Spec) -> Vec<(PathBuf, bool)> {
    let mut v: Vec<(PathBuf, bool)> = ["dev", "proc", "sys", "sysroot", "tmp"]
        .iter()
        .map(|d| (PathBuf::from(d), true))
        .collect();
    for b in &spec.binds {
        v.push((PathBuf::from(b.dst.trim_start_matches('/')), b.src.is_dir()));
    }
    v
}

fn setup(spec: &Spec) -> Res {
    m(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let scratch = &spec.scratch;
    mkdir(scratch)?;
    let tmpfs = |dst: &Path, flags: MsFlags, mode: &str| {
        m(
            Some(Path::new("tmpfs")),
            dst,
            Some("tmpfs"),
            flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(mode),
        )
    };
    tmpfs(scratch, MsFlags::empty(), "mode=0755")?;
    let root = scratch.join("root");
    mkdir(&root)?;
    match &spec.root {
        Root::Tree(tree) => {
            tmpfs(&root, MsFlags::empty(), "mode=0755")?;
            for (p, dir) in mountpoints(spec) {
                mountpoint(dir, &root.join(p))?;
            }
            for top in TREE_DIRS {
                let from = tree.join(top);
                let meta = match std::fs::symlink_metadata(&from) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&from).map_err(|e| e.to_string())?;
                    std::os::unix::fs::symlink(&target, root.join(top)).map_err(|e| e.to_string())?;
                } else if meta.is_dir() {
                    bind(&from, &root.join(top), false)?;
                }
            }
        }
        Root::Layers(l) => {
            let skel = scratch.join("skel");
            for (p, dir) in mountpoints(spec) {
                mountpoint(dir, &skel.join(p))?;
            }
            layers(l, Some(&skel), &root, scratch, "root")?;
        }
    }
    layers(&spec.sysroot, None, &root.join("sysroot"), scratch, "sysroot")?;
    for b in &spec.binds {
        let dst = root.join(b.dst.trim_start_matches('/'));
        bind(&b.src, &dst, b.writable)?;
    }
    let dev = root.join("dev");
    tmpfs(&dev, MsFlags::MS_NOEXEC, "mode=0755")?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let dst = dev.join(node);
        mountpoint(false, &dst)?;
        m(
            Some(&Path::new("/dev").join(node)),
            &dst,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
        setattr(&dst, ATTR_NOSUID | ATTR_NOEXEC)?;
    }
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(|e| e.to_string())?;
    }
    mkdir(&dev.join("pts"))?;
    m(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mkdir(&dev.join("shm"))?;
    tmpfs(&dev.join("shm"), MsFlags::empty(), "mode=1777")?;
    m(
        Some(Path::new("proc")),
        &root.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    m(
        Some(Path::new("sysfs")),
        &root.join("sys"),
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    loopback_up();
    // Enter the root and drop the machine's tree entirely.
    chdir(&root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root {}: {e}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    chdir("/").map_err(|e| e.to_string())?;
    // `/` and `/dev` themselves read-only (not recursive: the writable binds stay writable).
    for p in ["/", "/dev"] {
        setattr_with(Path::new(p), ATTR_RDONLY | ATTR_NOSUID, 0)?;
    }
    Ok(())
}

/// Bring up `lo` in the new network namespace (test suites use 127.0.0.1); nothing else exists.
fn loopback_up() {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        libc::close(fd);
    }
}
