//! Faster rebuilds: a compile cache (ccache) and distributed compilation (icecream) inside the
//! sandbox, each turned on by one setting (`xlfs build --ccache`, `--icecc`). Neither is part of
//! any key: a package built with them is the same artifact, bit for bit, as one built without.
//!
//! **The tools root.** ccache and icecc come from a second pinned Debian root, made like the
//! toolchain root (see [`crate::toolchain`]) by `mmdebstrap --variant=extract` with the packages
//! of book.toml `[toolchain.tools]`, kept in `TOOLCHAINS/tools-<suite>-<spec>/`. Builds see it
//! read-only at [`TOOLS_DIR`] and run its programs through its own dynamic loader
//! (`ld-linux … --library-path`), so nothing of the build root is used or changed: the same
//! binaries work in the `host` root and in a `chroot` made of the LFS system's own libraries.
//!
//! **Compiler wrappers.** Each build gets a read-only directory [`WRAP_DIR`] first on its `PATH`
//! with `cc`, `gcc`, `c++`, `g++` and the build root's other compiler names (`gcc-12`,
//! `x86_64-linux-gnu-gcc`, ...), all links to one bash script, [`WRAPPER`]: it puts the build's
//! own `PATH` back (`XLFS_CC_PATH`) and runs ccache, icecc, or ccache with icecc as its
//! `prefix_command`, with the real compiler of the build root.
//!
//! **ccache.** The cache is per package *name*: `HOME/ccache/NAME`, bound read-write at
//! [`CCACHE_DIR`]; one package's build cannot put objects into another's cache. The sandbox's
//! fixed paths (`/build/src/...`) make hits possible across rebuilds; the compiler is checked
//! by content (`compiler_check = content`), not by its mtime.
//!
//! **icecream.** The build talks to the local `iceccd` through its unix socket, bound at
//! [`ICECC_SOCKET`] (icecc reads `ICECC_TEST_SOCKET`); no network namespace is opened. The
//! compilers shipped to the other machines are the build root's own: an environment tarball made
//! by `icecc-create-env` in a sandbox on that root, before the build (`HOME/icecc/`, bound at
//! [`ICECC_ENV`], `ICECC_VERSION`): once per toolchain identity for the `host` root, and for a
//! `chroot` root once per set of layers its packed files come from (see [`icecc_env`]). icecc
//! sends a remote job to the other daemon over TCP, which the build's loopback-only network
//! cannot reach: a `connect()` preloaded into icecc alone (`cctools/relay.c`, compiled by the
//! tools root's gcc, `ld.so --preload`) hands such
//! connections to [`start_relay`], outside the sandbox, which connects only to the daemons the
//! scheduler listed. Jobs: make's jobserver
//! still has the `-j` local slots; the remote slots (what the scheduler offers beyond `-j`) are a
//! second pool. A compile job that takes a remote slot lends its local slot back to make while
//! icecream compiles it, and takes a local slot again before it ends; a job without a remote
//! slot keeps its local slot. The wrapper reaches both pools on descriptors of their own
//! (`XLFS_ICECC_LOCAL`, `XLFS_ICECC_REMOTE`), not through `MAKEFLAGS`: a sub-make marks the
//! descriptors it knows close-on-exec for its non-recursive recipe lines, and kbuild's compile
//! jobs (busybox, linux) are such lines. When no scheduler answers, builds run without icecream.

use std::path::{Path, PathBuf};
use xlfs_book::HostToolchain;

/// Where builds see the tools root.
pub const TOOLS_DIR: &str = "/xlfs/tools";
/// Where builds see the compiler wrappers (first on `PATH`).
pub const WRAP_DIR: &str = "/xlfs/cc";
/// Where builds see their package's ccache directory.
pub const CCACHE_DIR: &str = "/xlfs/ccache";
/// Where builds see the local iceccd's socket.
pub const ICECC_SOCKET: &str = "/xlfs/icecc.socket";
/// Where builds see the icecream environment (the toolchain root's compilers).
pub const ICECC_ENV: &str = "/xlfs/icecc-env.tar.gz";
/// One byte per compile job that took a remote slot, in the build's `/tmp`.
pub const REMOTE_SLOT_COUNT: &str = ".xlfs-icecc-remote-slots";
/// Where builds see the relay's socket (see [`start_relay`]).
pub const ICECC_RELAY: &str = "/xlfs/icecc-relay.socket";
/// Where builds see the relay's `connect()`, preloaded into icecc (`cctools/relay.c`).
pub const ICECC_RELAY_SO: &str = "/xlfs/icecc-relay.so";
const RELAY_C: &str = include_str!("cctools/relay.c");

/// The compiler wrapper's file name in [`WRAP_DIR`]; the compiler names link to it.
pub const WRAPPER: &str = "xlfs-cc";

/// What a build run uses (see [`crate::Ctx::cc`]).
#[derive(Debug, Clone, Default)]
pub struct CcOptions {
    /// The tools root, when ccache or icecream is on.
    pub tools: Option<Tools>,
    /// ccache, with one cache per package name under this directory (`HOME/ccache`).
    pub ccache: Option<PathBuf>,
    pub icecc: Option<Icecc>,
}

impl CcOptions {
    pub fn enabled(&self) -> bool {
        self.tools.is_some() && (self.ccache.is_some() || self.icecc.is_some())
    }
}

/// Distributed compilation through a local iceccd.
#[derive(Debug, Clone)]
pub struct Icecc {
    /// The local iceccd's unix socket.
    pub socket: PathBuf,
    /// Remote job slots beyond `-j` (the second pool's size).
    pub remote_slots: usize,
    /// Where the icecream environments of toolchain roots are kept (`HOME/icecc`).
    pub envs: PathBuf,
    /// The relay's unix socket ([`start_relay`]).
    pub relay: PathBuf,
}

/// A created tools root.
#[derive(Debug, Clone)]
pub struct Tools {
    pub root: PathBuf,
    /// Its dynamic loader, relative to the root.
    pub loader: String,
    /// Its library directories, relative to the root.
    pub libpath: Vec<String>,
}

impl Tools {
    /// The command line prefix that runs the root's `program` (e.g. `usr/bin/ccache`) inside a
    /// build, where the root is at [`TOOLS_DIR`].
    pub fn inside(&self, program: &str) -> String {
        let lp: Vec<String> = self.libpath.iter().map(|l| format!("{TOOLS_DIR}/{l}")).collect();
        format!(
            "{TOOLS_DIR}/{} --library-path {} {TOOLS_DIR}/{program}",
            self.loader,
            lp.join(":")
        )
    }

    /// The same, outside (on the build machine).
    pub fn outside(&self, program: &str) -> std::process::Command {
        let lp: Vec<String> = self
            .libpath
            .iter()
            .map(|l| self.root.join(l).display().to_string())
            .collect();
        let mut cmd = std::process::Command::new(self.root.join(&self.loader));
        cmd.arg("--library-path")
            .arg(lp.join(":"))
            .arg(self.root.join(program));
        cmd
    }
}

/// A short hash of what the book asks for: the name of the tools root's directory.
pub fn spec_id(t: &HostToolchain) -> String {
    crate::toolchain::spec_hash("xlfs-tools-1", "extract", t)
}

/// The directory of the tools root `t` under `toolchains`.
pub fn dir(toolchains: &Path, t: &HostToolchain) -> PathBuf {
    toolchains.join(format!("tools-{}-{}", t.suite, spec_id(t)))
}

/// The tools root `t`, if it has been created.
pub fn load(toolchains: &Path, t: &HostToolchain) -> Option<Tools> {
    let d = dir(toolchains, t);
    let loader = std::fs::read_to_string(d.join("loader")).ok()?.trim().to_string();
    let libpath = std::fs::read_to_string(d.join("libpath"))
        .ok()?
        .lines()
        .map(str::to_string)
        .collect();
    let root = d.join("root");
    root.join(&loader).is_file().then_some(Tools {
        root,
        loader,
        libpath,
    })
}

/// The tools root `t`, created first if missing (some 20 seconds and 100 MB from `mirror`).
pub fn ensure(
    toolchains: &Path,
    t: &HostToolchain,
    mirror: &str,
    say: &dyn Fn(&str),
) -> Result<Tools, String> {
    if t.packages.is_empty() {
        return Err("book.toml has no [toolchain.tools] packages (ccache, icecc): add the table".into());
    }
    let final_dir = dir(toolchains, t);
    crate::toolchain::create_once(
        toolchains,
        &final_dir,
        "tools root",
        say,
        &|| load(toolchains, t),
        |tmp| fill_tools_root(tmp, &final_dir, t, mirror, say),
    )
}

/// Fills `tmp` with the tools root `t` (mmdebstrap, extract only) and its loader files.
fn fill_tools_root(
    tmp: &Path,
    final_dir: &Path,
    t: &HostToolchain,
    mirror: &str,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let root = tmp.join("root");
    say(&format!(
        "creating the build tools root {} ({}: {}) from {mirror}",
        final_dir.display(),
        t.suite,
        t.packages.join(", ")
    ));
    let args = [
        "--variant=extract".to_string(),
        format!("--include={}", t.packages.join(",")),
    ];
    crate::toolchain::mmdebstrap(&args, &t.suite, &root, mirror, &tmp.join("mmdebstrap.log"))?;
    let (loader, libpath) = find_loader(&root)?;
    std::fs::write(tmp.join("loader"), format!("{loader}\n")).map_err(|e| e.to_string())?;
    std::fs::write(
        tmp.join("libpath"),
        libpath.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The root's dynamic loader (a regular file, not the `lib64` link that points at `/lib`) and
/// its library directories, relative to `root`.
fn find_loader(root: &Path) -> Result<(String, Vec<String>), String> {
    let mut libpath = Vec::new();
    let mut loader = None;
    for base in ["lib", "usr/lib"] {
        let Ok(entries) = std::fs::read_dir(root.join(base)) else {
            continue;
        };
        let mut dirs: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with("-linux-gnu"))
            .collect();
        dirs.sort();
        for d in dirs {
            let rel = format!("{base}/{d}");
            if loader.is_none() {
                if let Ok(files) = std::fs::read_dir(root.join(&rel)) {
                    for f in files.filter_map(Result::ok) {
                        let n = f.file_name().to_string_lossy().to_string();
                        if n.starts_with("ld-linux") && f.file_type().map(|t| t.is_file()).unwrap_or(false) {
                            loader = Some(format!("{rel}/{n}"));
                        }
                    }
                }
            }
            libpath.push(rel);
        }
    }
    match loader {
        Some(l) => Ok((l, libpath)),
        None => Err(format!(
            "no dynamic loader (ld-linux*) in {}/lib/*-linux-gnu",
            root.display()
        )),
    }
}

/// Is `name` a C or C++ compiler driver's name that the wrappers stand in for?
pub fn is_compiler_name(name: &str) -> bool {
    let base = name.rsplit_once('-').map_or(name, |(prefix, last)| {
        // gcc-12, g++-12: a version suffix
        if last.chars().all(|c| c.is_ascii_digit()) && !last.is_empty() {
            prefix
        } else {
            name
        }
    });
    let tool = base.rsplit_once('-').map_or(base, |(_, t)| t);
    matches!(tool, "cc" | "gcc" | "c++" | "g++")
}

/// The compiler names found in these `usr/bin` (or `bin`) directories, plus the four plain ones.
pub fn compiler_names(bin_dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = ["cc", "gcc", "c++", "g++"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for d in bin_dirs {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().to_string();
                if is_compiler_name(&n) {
                    names.push(n);
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The wrapper script (see the module's documentation). `tools` is the tools root.
pub fn wrapper_script(tools: &Tools) -> String {
    format!(
        r#"#!/bin/bash
# xlfs: the compiler wrapper of `xlfs build --ccache` / `--icecc` (crates/xlfs-build/src/cctools.rs).
# Runs the build root's own compiler, through ccache and/or icecc from the tools root.
name=${{0##*/}}
PATH=$XLFS_CC_PATH
export PATH
icecc() {{
    # A remote slot, if one is free right now: lend this job's local slot to make meanwhile.
    local rr rw mr mw tok rtok rc
    if [[ -n $XLFS_ICECC_REMOTE && -n $XLFS_ICECC_LOCAL ]]; then
        IFS=, read -r rr rw <<<"$XLFS_ICECC_REMOTE"
        IFS=, read -r mr mw <<<"$XLFS_ICECC_LOCAL"
        if {{ true <&"$mr" && true >&"$mw" && true <&"$rr"; }} 2>/dev/null \
            && IFS= read -r -N 1 -t 0.005 -u "$rr" rtok 2>/dev/null; then
            printf + >&"$mw"
            printf r >>/tmp/{REMOTE_SLOT_COUNT} 2>/dev/null
            {icecc} "$@"
            rc=$?
            IFS= read -r -N 1 -u "$mr" tok
            printf %s "${{rtok:-+}}" >&"$rw"
            exit $rc
        fi
    fi
    exec {icecc} "$@"
}}
case $name in
    {WRAPPER}-icecc) icecc "$@" ;;
esac
if [[ -n $XLFS_CCACHE ]]; then
    exec {ccache} "$name" "$@"
fi
icecc "$name" "$@"
"#,
        icecc = tools.inside("usr/bin/icecc").replacen(
            " --library-path ",
            &format!(" --preload {ICECC_RELAY_SO} --library-path "),
            1
        ),
        ccache = tools.inside("usr/bin/ccache"),
    )
}

/// Write the wrapper directory of one build: the script, a link per compiler name, and
/// `{WRAPPER}-icecc` (ccache's `prefix_command` when both are on).
pub fn write_wrappers(dir: &Path, tools: &Tools, names: &[String]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| format!("cannot write the compiler wrappers in {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    let script = dir.join(WRAPPER);
    std::fs::write(&script, wrapper_script(tools)).map_err(err)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    for n in names
        .iter()
        .map(String::as_str)
        .chain([format!("{WRAPPER}-icecc").as_str()])
    {
        let link = dir.join(n);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(WRAPPER, &link).map_err(err)?;
    }
    Ok(())
}

/// The build environment for the wrappers, given the build's own `path`.
/// `pools`: the remote pool's and the local pool's descriptors (`R,W` each), for lending.
pub fn environment(opts: &CcOptions, path: &str, pools: Option<(&str, &str)>) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), format!("{WRAP_DIR}:{path}")),
        ("XLFS_CC_PATH".to_string(), path.to_string()),
    ];
    if opts.ccache.is_some() {
        env.extend([
            ("XLFS_CCACHE".to_string(), "1".to_string()),
            ("CCACHE_DIR".to_string(), CCACHE_DIR.to_string()),
            ("CCACHE_COMPILERCHECK".to_string(), "content".to_string()),
        ]);
        if opts.icecc.is_some() {
            env.push(("CCACHE_PREFIX".to_string(), format!("{WRAP_DIR}/{WRAPPER}-icecc")));
        }
    }
    if opts.icecc.is_some() {
        env.extend([
            ("ICECC_TEST_SOCKET".to_string(), ICECC_SOCKET.to_string()),
            ("ICECC_VERSION".to_string(), ICECC_ENV.to_string()),
        ]);
        if let Some((remote, local)) = pools {
            env.push(("XLFS_ICECC_REMOTE".to_string(), remote.to_string()));
            env.push(("XLFS_ICECC_LOCAL".to_string(), local.to_string()));
        }
    }
    env
}

/// ccache's counters of one cache directory (`ccache --print-stats`): (hits, misses).
pub fn ccache_stats(tools: &Tools, cache: &Path) -> Option<(u64, u64)> {
    let out = tools
        .outside("usr/bin/ccache")
        .arg("--print-stats")
        .env_clear()
        .env("CCACHE_DIR", cache)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| -> u64 {
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(n, _)| *n == k)
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    };
    let hits = get("direct_cache_hit") + get("preprocessed_cache_hit");
    let misses = get("cache_miss");
    Some((hits, misses))
}

/// The root an icecream environment is made from: the compilers a build uses.
pub enum EnvRoot<'a> {
    /// The `host` environment's toolchain root, with its identity.
    Toolchain { root: &'a Path, id: &'a str },
    /// A `chroot` build root: its layers, first wins.
    Chroot(&'a [Layer]),
}

/// One layer of a `chroot` build root.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub key: String,
    pub tree: PathBuf,
}

/// The icecream environment of a build root and the relay's `connect()` for icecc.
///
/// The environment is `icecc-create-env` run in a sandbox whose root is the build's (so it
/// packs the compilers, assembler and libraries the builds use); the relay is `relay.c`
/// compiled once per tools root by the tools root's own compiler (icecc runs on that root's C
/// library). Both are kept in `envs`.
///
/// A toolchain root's environment is named after the root's identity. A `chroot` root's is
/// named after what it was made of: `icecc-create-env` logs every file it packs, and the name
/// hashes each of those paths with the name and key of the layer it came from. A later build
/// root reuses an environment when the same paths come from the same layers in it; otherwise a
/// new one is made.
pub fn icecc_env(
    exe: &Path,
    tools: &Tools,
    root: EnvRoot,
    envs: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(envs).map_err(|e| format!("cannot create {}: {e}", envs.display()))?;
    let relay = icecc_relay(exe, tools, envs)?;
    let env = match root {
        EnvRoot::Toolchain { root, id } => {
            let short = id.trim_start_matches("host-");
            let short = &short[..short.len().min(16)];
            let file = envs.join(format!("{short}.tar.gz"));
            if !file.is_file() {
                let _lock = env_lock(envs, short)?;
                if !file.is_file() {
                    let made = create_env(
                        exe,
                        tools,
                        xlfs_sandbox::Root::Tree(root.to_path_buf()),
                        envs,
                        short,
                    )?;
                    std::fs::rename(&made.tarball, &file)
                        .map_err(|e| format!("cannot move the icecc environment: {e}"))?;
                    made.clean(exe);
                }
            }
            file
        }
        EnvRoot::Chroot(layers) => chroot_env(exe, tools, layers, envs)?,
    };
    Ok((env, relay))
}

fn env_lock(envs: &Path, name: &str) -> Result<crate::lock::HomeLock, String> {
    crate::lock::lock(
        &envs.join(format!("{name}.lock")),
        "icecc environment",
        true,
        &|_| {},
    )
    .map_err(|e| e.to_string())
}

/// The environment of a `chroot` build root (see [`icecc_env`]).
fn chroot_env(exe: &Path, tools: &Tools, layers: &[Layer], envs: &Path) -> Result<PathBuf, String> {
    let _lock = env_lock(envs, "chroot")?;
    // An environment made from the same files of the same layers.
    let mut known: Vec<PathBuf> = std::fs::read_dir(envs)
        .map_err(|e| format!("cannot read {}: {e}", envs.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("chroot-") && n.ends_with(".files")
        })
        .collect();
    known.sort();
    for list in known {
        let Ok(text) = std::fs::read_to_string(&list) else {
            continue;
        };
        let paths: Vec<String> = text.lines().map(str::to_string).collect();
        if let Some(id) = chroot_env_id(layers, &paths) {
            let file = envs.join(format!("chroot-{id}.tar.gz"));
            if file.is_file() {
                return Ok(file);
            }
        }
    }
    let layer_trees = layers.iter().map(|l| l.tree.clone()).collect();
    let made = create_env(
        exe,
        tools,
        xlfs_sandbox::Root::Layers(layer_trees),
        envs,
        "chroot",
    )?;
    let paths = packed_sources(&made.log);
    let Some(id) = chroot_env_id(layers, &paths) else {
        made.clean(exe);
        return Err("icecc-create-env packed a file that no layer of the build root holds".into());
    };
    let (file, list) = (
        envs.join(format!("chroot-{id}.tar.gz")),
        envs.join(format!("chroot-{id}.files")),
    );
    std::fs::write(&list, paths.iter().map(|p| format!("{p}\n")).collect::<String>())
        .and_then(|_| std::fs::rename(&made.tarball, &file))
        .map_err(|e| format!("cannot keep the icecc environment in {}: {e}", envs.display()))?;
    made.clean(exe);
    Ok(file)
}

/// The files `icecc-create-env` packed, from its log (`adding file [NAME=]PATH`): the paths
/// in the build root they were read from. Its rewritten copy of `/etc/ld.so.conf` (a file in
/// `/tmp`) counts as `/etc/ld.so.conf`.
pub fn packed_sources(log: &str) -> Vec<String> {
    let mut paths: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("adding file "))
        .map(|f| f.rsplit_once('=').map_or(f, |(_, path)| path).trim().to_string())
        .map(|p| {
            if p.starts_with("/tmp/") {
                "/etc/ld.so.conf".to_string()
            } else {
                p
            }
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The name of the environment made from `paths` in the build root `layers` (first wins): a
/// hash of each path with the name and key of the layer it comes from; `None` when a path is in
/// no layer.
pub fn chroot_env_id(layers: &[Layer], paths: &[String]) -> Option<String> {
    let mut text = String::from("xlfs-icecc-chroot-1\n");
    for p in paths {
        let rel = p.trim_start_matches('/');
        let owner = layers
            .iter()
            .find(|l| l.tree.join(rel).symlink_metadata().is_ok())?;
        text.push_str(&format!("{p}\t{}\t{}\n", owner.name, owner.key));
    }
    Some(xlfs_util::sha256_hex(text.as_bytes())[..16].to_string())
}

/// What one `icecc-create-env` run left: the tarball and its log, in a work directory.
struct MadeEnv {
    work: PathBuf,
    tarball: PathBuf,
    log: String,
}

impl MadeEnv {
    fn clean(self, exe: &Path) {
        let _ = crate::package::remove_build_tree(exe, &self.work);
    }
}

/// Run `icecc-create-env` for the build root `root`'s `/usr/bin/gcc` and `g++`, in a sandbox
/// with that root, in a work directory of `envs`.
fn create_env(
    exe: &Path,
    tools: &Tools,
    root: xlfs_sandbox::Root,
    envs: &Path,
    name: &str,
) -> Result<MadeEnv, String> {
    let script = format!(
        "set -e; cd /out; bash {TOOLS_DIR}/usr/bin/icecc-create-env --gcc /usr/bin/gcc /usr/bin/g++ > create-env.log 2>&1 \
         || {{ cat create-env.log; exit 1; }}; mv ./*.tar.gz env.tar.gz"
    );
    let argv = vec!["bash".to_string(), "-c".to_string(), script];
    let work = run_in(exe, tools, root, envs, name, argv, "icecc-create-env")?;
    let log = std::fs::read_to_string(work.join("out/create-env.log")).unwrap_or_default();
    Ok(MadeEnv {
        tarball: work.join("out/env.tar.gz"),
        work,
        log,
    })
}

/// The relay's `connect()` for icecc (`cctools/relay.c`), compiled by the tools root's own gcc
/// in a sandbox whose root is the tools root: `envs/relay-TOOLS.so`.
pub fn icecc_relay(exe: &Path, tools: &Tools, envs: &Path) -> Result<PathBuf, String> {
    let id = tools
        .root
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "tools".into());
    let file = envs.join(format!("relay-{id}.so"));
    if file.is_file() {
        return Ok(file);
    }
    let _lock = env_lock(envs, &format!("relay-{id}"))?;
    if file.is_file() {
        return Ok(file);
    }
    // The tools root has no shell: gcc is run directly.
    let argv = "gcc -O2 -Wall -Werror -shared -fPIC -o relay.so relay.c -ldl";
    let work = run_in(
        exe,
        tools,
        xlfs_sandbox::Root::Tree(tools.root.clone()),
        envs,
        "relay",
        argv.split(' ').map(str::to_string).collect(),
        "compiling the icecream relay",
    )?;
    std::fs::rename(work.join("out/relay.so"), &file)
        .map_err(|e| format!("cannot move the icecc relay: {e}"))?;
    let _ = crate::package::remove_build_tree(exe, &work);
    Ok(file)
}

/// Run `argv` in a sandbox with `root`, the tools root at [`TOOLS_DIR`], a
/// writable `/out` (holding `relay.c`) and `/tmp`, in a new work directory of `envs`, which
/// is returned; on failure it is removed and the error shows the script's output.
fn run_in(
    exe: &Path,
    tools: &Tools,
    root: xlfs_sandbox::Root,
    envs: &Path,
    name: &str,
    argv: Vec<String>,
    what: &str,
) -> Result<PathBuf, String> {
    let work = envs.join(format!(".new-{name}-{}", std::process::id()));
    let _ = crate::package::remove_build_tree(exe, &work);
    let (out, tmp) = (work.join("out"), work.join("tmp"));
    for d in [&out, &tmp] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    std::fs::write(out.join("relay.c"), RELAY_C)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let ids = xlfs_sandbox::IdMap::for_current_user()?;
    ids.give_to_root(&work)
        .map_err(|e| format!("cannot give {} to the sandbox: {e}", work.display()))?;
    let shown = match &root {
        xlfs_sandbox::Root::Tree(t) => t.display().to_string(),
        xlfs_sandbox::Root::Layers(l) => format!("a build root of {} layers", l.len()),
    };
    let spec = xlfs_sandbox::Spec {
        root,
        sysroot: Vec::new(),
        binds: vec![
            xlfs_sandbox::Bind {
                src: tools.root.clone(),
                dst: TOOLS_DIR.into(),
                writable: false,
            },
            xlfs_sandbox::Bind {
                src: out,
                dst: "/out".into(),
                writable: true,
            },
            // icecc-create-env makes its tree with `mktemp -d /tmp/...`.
            xlfs_sandbox::Bind {
                src: tmp,
                dst: "/tmp".into(),
                writable: true,
            },
        ],
        scratch: work.join("scratch"),
        workdir: "/out".into(),
        env: vec![
            ("PATH".into(), "/usr/bin:/usr/sbin:/bin:/sbin".into()),
            ("HOME".into(), "/out".into()),
            ("LC_ALL".into(), "C".into()),
        ],
        argv,
        hostname: "xlfs-build".into(),
        ids,
        inherit_fds: Vec::new(),
    };
    let mut cmd = xlfs_sandbox::command(exe, &spec, &work.join("spec.json")).map_err(|e| e.to_string())?;
    let res = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the sandbox {}: {e}", exe.display()))?;
    if !res.status.success() {
        let _ = crate::package::remove_build_tree(exe, &work);
        return Err(format!(
            "{what} failed in {shown}: {}{}",
            String::from_utf8_lossy(&res.stdout).trim(),
            String::from_utf8_lossy(&res.stderr).trim()
        ));
    }
    Ok(work)
}

/// What the icecream scheduler at `host:port` (its text interface, `listcs`) knows of the nodes
/// other than `local` (the local iceccd's node name, by default the host name): their job slots
/// and daemon addresses (`IP:PORT`); `None` when it does not answer within `timeout`.
pub fn scheduler_nodes(
    addr: &str,
    local: &str,
    timeout: std::time::Duration,
) -> Option<(usize, Vec<String>)> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let sa = addr.to_socket_addrs().ok()?.next()?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(b"listcs\r\nquit\r\n").ok()?;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.starts_with("200").then(|| remote_nodes(&text, local))
}

/// The other nodes of a `listcs` answer (lines ` NAME (IP:PORT) [ARCH] speed=... jobs=0/2
/// load=...`): the sum of their job slots, and their addresses.
pub fn remote_nodes(text: &str, local: &str) -> (usize, Vec<String>) {
    let mut slots = 0;
    let mut addrs = Vec::new();
    for l in text.lines().filter(|l| l.contains(" jobs=")) {
        let mut words = l.split_whitespace();
        if words.next() == Some(local) {
            continue;
        }
        for w in l.split_whitespace() {
            if let Some((_, max)) = w.strip_prefix("jobs=").and_then(|j| j.split_once('/')) {
                slots += max.parse::<usize>().unwrap_or(0);
            }
            if let Some(a) = w.strip_prefix('(').and_then(|w| w.strip_suffix(')')) {
                if a.parse::<std::net::SocketAddr>().is_ok() {
                    addrs.push(a.to_string());
                }
            }
        }
    }
    (slots, addrs)
}

/// Serve the relay for icecc inside builds on the unix socket `path` (made world-connectable:
/// builds run under other ids): each connection names `IP:PORT`, and only an address in
/// `allowed` (the daemons the scheduler listed) is connected to, then bytes are copied both
/// ways. The sandbox stays closed: this reaches icecream daemons and nothing else.
pub fn start_relay(path: &Path, allowed: Vec<String>) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let allowed = allowed.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(match conn.try_clone() {
                    Ok(c) => c,
                    Err(_) => return,
                });
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || !allowed.iter().any(|a| a == line.trim()) {
                    return;
                }
                let Ok(sa) = line.trim().parse::<std::net::SocketAddr>() else {
                    return;
                };
                let Ok(tcp) = std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(10))
                else {
                    return;
                };
                let mut conn_w = conn;
                if conn_w.write_all(b"ok\n").is_err() {
                    return;
                }
                let (Ok(mut tcp_r), mut tcp_w) = (tcp.try_clone(), tcp) else {
                    return;
                };
                let up = std::thread::spawn(move || {
                    // What the reader buffered past the header line goes first.
                    let buffered = reader.buffer().to_vec();
                    let _ = tcp_w.write_all(&buffered);
                    let _ = std::io::copy(reader.get_mut(), &mut tcp_w);
                    let _ = tcp_w.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut tcp_r, &mut conn_w);
                let _ = conn_w.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_names_are_recognised() {
        for n in [
            "cc",
            "gcc",
            "g++",
            "c++",
            "gcc-12",
            "g++-12",
            "x86_64-linux-gnu-gcc",
            "x86_64-linux-gnu-gcc-12",
        ] {
            assert!(is_compiler_name(n), "{n}");
        }
        for n in [
            "gcc-ar",
            "gcc-nm-12",
            "x86_64-linux-gnu-gcc-ranlib",
            "ccache",
            "icc",
            "cpp",
            "ld",
        ] {
            assert!(!is_compiler_name(n), "{n}");
        }
    }

    #[test]
    fn listcs_slots() {
        let text = "200-ICECC 1.4.0: 20s uptime, 2 hosts, 0 jobs in queue (0 total).\n\
                    200 Use 'help' for help and 'quit' to quit.\n \
                    nodeA (10.77.0.2:10245) [x86_64] speed=0.00 jobs=0/2 load=958\n \
                    nodeB (10.77.0.3:10245) [x86_64] speed=0.00 jobs=1/3 load=958\n200 done\n";
        assert_eq!(
            remote_nodes(text, "nodeA"),
            (3, vec!["10.77.0.3:10245".to_string()])
        );
        assert_eq!(remote_nodes(text, "other").0, 5);
        assert_eq!(remote_nodes("", "nodeA"), (0, vec![]));
    }

    #[test]
    fn the_files_icecc_create_env_packed() {
        let log = "adding file /usr/bin/gcc=/usr/bin/gcc-12\n\
                   adding file /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                   some other line\n\
                   adding file /etc/ld.so.conf=/tmp/icecc_ld_so_confAbC123\n\
                   adding file /usr/bin/gcc-12\n";
        assert_eq!(
            packed_sources(log),
            [
                "/etc/ld.so.conf",
                "/usr/bin/gcc-12",
                "/usr/lib/x86_64-linux-gnu/libc.so.6"
            ]
        );
    }

    #[test]
    fn a_chroot_environment_is_named_after_the_layers_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |name: &str, key: &str, files: &[&str]| {
            let tree = dir.path().join(format!("{name}-{key}"));
            for f in files {
                let p = tree.join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, name).unwrap();
            }
            Layer {
                name: name.into(),
                key: key.into(),
                tree,
            }
        };
        let gcc = layer("gcc", "k1", &["usr/bin/gcc", "usr/lib/libgcc_s.so.1"]);
        let glibc = layer("glibc", "k2", &["usr/lib/libc.so.6", "usr/lib/libgcc_s.so.1"]);
        let paths = vec!["/usr/bin/gcc".to_string(), "/usr/lib/libc.so.6".to_string()];
        let id = chroot_env_id(&[gcc.clone(), glibc.clone()], &paths).unwrap();
        assert_eq!(id.len(), 16);
        // Other packages in the root do not matter; the order of layers does (first wins).
        let other = layer("zlib", "k3", &["usr/lib/libz.so.1"]);
        assert_eq!(
            chroot_env_id(&[other, gcc.clone(), glibc.clone()], &paths).as_deref(),
            Some(id.as_str())
        );
        let shared = vec!["/usr/lib/libgcc_s.so.1".to_string()];
        assert_ne!(
            chroot_env_id(&[gcc.clone(), glibc.clone()], &shared),
            chroot_env_id(&[glibc.clone(), gcc.clone()], &shared)
        );
        // Another build of gcc: another environment. A file in no layer: none.
        let gcc2 = layer("gcc", "k9", &["usr/bin/gcc"]);
        assert_ne!(chroot_env_id(&[gcc2, glibc.clone()], &paths).unwrap(), id);
        assert_eq!(chroot_env_id(&[glibc], &paths), None);
    }
}
