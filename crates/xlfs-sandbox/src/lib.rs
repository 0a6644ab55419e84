//! The build sandbox.
//!
//! A build runs in its own mount, pid, network, UTS and IPC namespaces, with a clean
//! environment and fixed paths:
//!
//! | path       | what                                                                  |
//! |------------|-----------------------------------------------------------------------|
//! | `/`        | `host` env: the toolchain root's `/usr`, `/etc` (read-only); `chroot` env: the dependencies' outputs |
//! | `/sysroot` | `host` env: the declared dependencies' outputs, read-only (overlayfs)  |
//! | `/build`   | the package's source tree and scripts (read-write)                    |
//! | `/destdir` | where the package installs (read-write)                               |
//! | `/tmp`, `/dev`, `/proc` | private                                                  |
//!
//! The network namespace has only a loopback interface, so builds cannot download anything.
//!
//! The parent spawns the helper (`xlfs __sandbox SPEC.json`, see [`command`]); the helper calls
//! [`enter`], which never returns. Process layout: helper → pid 1 of the new pid namespace
//! (mounts, chroot, reaps orphans) → the build shell. Killing the helper kills pid 1 (parent-death
//! signal), and the kernel then kills everything in the namespace.

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, execve, fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `/` is made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Root {
    /// A read-only tree (the `host` environment's toolchain root): its top-level directories
    /// are bound into a fresh root.
    Tree(PathBuf),
    /// Only these layers (first wins), writable through a throw-away upper layer.
    Layers(Vec<PathBuf>),
}

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
    pub binds: Vec<Bind>,
    /// An empty directory outside the sandbox where the root is assembled (a tmpfs is mounted on it).
    pub scratch: PathBuf,
    pub workdir: String,
    /// The complete environment of the build.
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub hostname: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot write sandbox spec {path}: {source}")]
    Spec { path: PathBuf, source: std::io::Error },
    #[error("cannot start the sandbox helper {exe}: {source}")]
    Spawn { exe: PathBuf, source: std::io::Error },
}

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
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

fn die(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("xlfs sandbox: {what}: {err}");
    std::process::exit(125)
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| die("argument contains a NUL byte", s))
}

/// Run in the helper process: set up the namespaces and run the spec. Never returns.
/// Exit status: the build's, 128+N if it was killed by signal N, 125 for a sandbox failure.
pub fn enter(spec_path: &Path) -> ! {
    let spec: Spec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => die(&format!("reading {}", spec_path.display()), e),
    };
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if let Err(e) = unshare(flags) {
        die("unshare (xlfs builds need root, or CAP_SYS_ADMIN)", e);
    }
    match unsafe { fork() } {
        Err(e) => die("fork", e),
        Ok(ForkResult::Parent { child }) => std::process::exit(wait_exit(child)),
        Ok(ForkResult::Child) => {}
    }
    // pid 1 of the new namespace.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Err(e) = setup(&spec) {
        die("setting up the build root", e);
    }
    let shell = match unsafe { fork() } {
        Err(e) => die("fork", e),
        Ok(ForkResult::Child) => exec(&spec),
        Ok(ForkResult::Parent { child }) => child,
    };
    // Reap everything until the shell exits; orphans re-parent to us.
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == shell => std::process::exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == shell => std::process::exit(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => die("waitpid", e),
        }
    }
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

fn exec(spec: &Spec) -> ! {
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

fn mkdir(p: &Path) -> Res {
    std::fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

fn bind(src: &Path, dst: &Path, writable: bool) -> Res {
    let is_dir = src.is_dir();
    if is_dir {
        mkdir(dst)?;
    } else {
        if let Some(parent) = dst.parent() {
            mkdir(parent)?;
        }
        std::fs::write(dst, b"").map_err(|e| format!("create {}: {e}", dst.display()))?;
    }
    m(Some(src), dst, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if !writable {
        m(
            None,
            dst,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None,
        )?;
    }
    Ok(())
}

/// Mount `layers` (first wins) at `dst`: empty dir, a read-only bind, or an overlay. Layer paths are
/// bind-mounted to short names first so that many layers fit in overlayfs' option string.
fn layers(layers: &[PathBuf], dst: &Path, scratch: &Path, tag: &str, upper: bool) -> Res {
    mkdir(dst)?;
    if layers.is_empty() && !upper {
        return Ok(());
    }
    if layers.len() == 1 && !upper {
        return bind(&layers[0], dst, false);
    }
    let short = scratch.join(format!(".{tag}"));
    mkdir(&short)?;
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = short.join(i.to_string());
        bind(l, &p, false)?;
        names.push(i.to_string());
    }
    let mut lower = names.join(":");
    if layers.len() == 1 || layers.is_empty() {
        // overlayfs needs two lower layers without an upper one; with an upper one, one is enough.
        mkdir(&short.join("empty"))?;
        if lower.is_empty() {
            lower = "empty".into();
        }
    }
    let mut data = format!("lowerdir={lower}");
    if upper {
        mkdir(&short.join("upper"))?;
        mkdir(&short.join("work"))?;
        data.push_str(",upperdir=upper,workdir=work");
    }
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    chdir(&short).map_err(|e| format!("chdir {}: {e}", short.display()))?;
    let flags = if upper {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    let r = m(
        Some(Path::new("overlay")),
        dst,
        Some("overlay"),
        flags,
        Some(&data),
    );
    chdir(&cwd).map_err(|e| e.to_string())?;
    r
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
    m(
        Some(Path::new("tmpfs")),
        scratch,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )?;
    let root = scratch.join("root");
    match &spec.root {
        Root::Tree(tree) => {
            mkdir(&root)?;
            m(
                Some(Path::new("tmpfs")),
                &root,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("mode=0755"),
            )?;
            for top in [
                "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt",
            ] {
                let host = tree.join(top);
                let meta = match std::fs::symlink_metadata(&host) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&host).map_err(|e| e.to_string())?;
                    std::os::unix::fs::symlink(&target, root.join(top)).map_err(|e| e.to_string())?;
                } else if meta.is_dir() {
                    bind(&host, &root.join(top), false)?;
                }
            }
        }
        Root::Layers(l) => layers(l, &root, scratch, "root", true)?,
    }
    layers(&spec.sysroot, &root.join("sysroot"), scratch, "sysroot", false)?;
    for b in &spec.binds {
        let dst = root.join(b.dst.trim_start_matches('/'));
        bind(&b.src, &dst, b.writable)?;
    }
    let tmp = root.join("tmp");
    mkdir(&tmp)?;
    m(
        Some(Path::new("tmpfs")),
        &tmp,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=1777"),
    )?;
    let dev = root.join("dev");
    mkdir(&dev)?;
    m(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        bind(&Path::new("/dev").join(node), &dev.join(node), true)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(|e| e.to_string())?;
    }
    mkdir(&dev.join("shm"))?;
    m(
        Some(Path::new("tmpfs")),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=1777"),
    )?;
    let proc_ = root.join("proc");
    mkdir(&proc_)?;
    m(
        Some(Path::new("proc")),
        &proc_,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    loopback_up();
    chdir(&root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    chroot(".").map_err(|e| format!("chroot {}: {e}", root.display()))?;
    chdir("/").map_err(|e| e.to_string())?;
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
