//! Building one package: unpack its sources, patch, run its steps in the sandbox with only its
//! build root, pack DESTDIR into an artifact, store it, record it.

use crate::home::Home;
use crate::state::{BuildRecord, Failure, StateDb};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use xlfs_book::{Book, Part, Recipe, Source};
use xlfs_fetch::{DebianRef, Fetcher, SourceRef};
use xlfs_plan::Step;
use xlfs_sandbox::{Bind, IdMap, Root, Spec};
use xlfs_store::{ArtifactStore, Attr, LocalStore, PackOptions};

/// Everything a package build needs from the outside.
pub struct Ctx {
    pub home: Home,
    pub book: Book,
    pub store: LocalStore,
    pub fetcher: Fetcher,
    pub db: Mutex<StateDb>,
    /// Total parallelism (`-j`).
    pub jobs: usize,
    /// Whose check steps (test suites) run.
    pub checks: crate::suites::Checks,
    /// The binary that runs `__sandbox` (xlfs itself).
    pub sandbox_exe: PathBuf,
    /// Set to stop now (a second Ctrl-C, SIGTERM): builds stop starting new phases.
    pub cancel: AtomicBool,
    /// Set on a first Ctrl-C: no package starts; the running ones go on to their end.
    pub drain: AtomicBool,
    /// Process-group ids of running sandboxes (stopped by `run::interrupt`).
    pub running: Mutex<Vec<i32>>,
    /// ccache and icecream (`xlfs build --ccache`, `--icecc`); off by default, never in a key.
    pub cc: crate::cctools::CcOptions,
}

/// Phases reported to the progress display.
pub trait Progress: Sync {
    fn phase(&self, name: &str, phase: &str);
}

#[derive(Debug)]
pub struct BuildFailure {
    pub name: String,
    pub message: String,
    pub log: PathBuf,
    pub build_dir: PathBuf,
    pub tail: Vec<String>,
    pub interrupted: bool,
}

/// What to fetch for a source: exactly the bytes the recipe builds. Where Debian's copy has
/// other bytes than upstream's, only the chosen copy (`use`) is asked for; where the bytes are
/// the same, both places serve.
pub fn source_ref(s: &Source) -> SourceRef {
    let debian = s.debian.as_ref().map(|d| DebianRef {
        package: d.package.clone(),
        file: d.file.clone(),
        sha256: d.sha256.clone(),
    });
    match (s.copies_differ(), s.choice, debian) {
        (true, xlfs_book::SourceChoice::Debian, Some(d)) => SourceRef {
            file: d.file.clone(),
            sha256: d.sha256.clone(),
            urls: Vec::new(),
            debian: Some(d),
        },
        (true, _, _) => SourceRef {
            file: s.file.clone(),
            sha256: s.sha256.clone(),
            urls: s.urls.clone(),
            debian: None,
        },
        (false, _, debian) => SourceRef {
            file: s.file.clone(),
            sha256: s.sha256.clone(),
            urls: s.urls.clone(),
            debian,
        },
    }
}

/// Disk usage of a tree (allocated blocks), as `du` counts it.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Remove a build tree, including the files its build made under subordinate ids (which an
/// ordinary user cannot remove by itself), through the sandbox helper `exe`.
pub fn remove_build_tree(exe: &Path, dir: &Path) -> Result<(), String> {
    xlfs_sandbox::remove_tree(exe, &IdMap::for_current_user()?, dir)
}

/// The last `n` lines of a log.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Where a build tree records how far its steps got (`/build/.xlfs` in the sandbox, so the
/// build could write it too; it only decides which of the build's own steps run again).
pub const PROGRESS_DIR: &str = ".xlfs";

/// How far an earlier run of a build got in its tree (same key, same directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Nothing usable: the tree is made again from the sources.
    Fresh,
    /// The build step had finished (the shell's directory and exported variables were saved);
    /// `checked`: the check step had ended too, and its results are in the tree.
    AfterBuild { checked: bool },
}

/// Read a build tree's progress marks (see [`PROGRESS_DIR`]).
pub fn resume_point(dir: &Path) -> Resume {
    let p = dir.join(PROGRESS_DIR);
    let built = ["workdir", "built", "cwd", "env"]
        .iter()
        .all(|f| p.join(f).is_file());
    if !built || recorded_workdir(dir).is_none() {
        return Resume::Fresh;
    }
    Resume::AfterBuild {
        checked: p.join("checked").is_file(),
    }
}

/// The directory a build tree's steps started in, as its progress mark records it (relative to
/// `src/`). Written by xlfs before the sandbox ran, but in a tree the build could write: `None`
/// unless it names a directory inside the sources.
pub fn recorded_workdir(dir: &Path) -> Option<String> {
    let src = dir.join("src");
    let w = std::fs::read_to_string(dir.join(PROGRESS_DIR).join("workdir")).ok()?;
    let inside = Path::new(&w)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        && matches!(
            (src.join(&w).canonicalize(), src.canonicalize()),
            (Ok(a), Ok(b)) if a.starts_with(&b) && a.is_dir()
        );
    inside.then_some(w)
}

/// Time spent on a build tree (milliseconds of wall and CPU time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub wall_ms: u64,
    pub cpu_ms: u64,
}

/// What one progress mark says of the time spent on its tree when it was written: what earlier
/// runs had spent (`base`), plus this run's wall time (bash's `EPOCHREALTIME` at its start and
/// at the mark) and CPU time (`times`: the shell's and its waited-for children's). `None` for a
/// mark without it (written by an older xlfs) or one the build garbled.
fn mark_time(text: &str) -> Option<Spent> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let ["xlfs-time", "base", w, c, "run", t0, t1] = head.as_slice() else {
        return None;
    };
    // A locale may write the decimal point as a comma.
    let secs = |v: &str| v.replace(',', ".").parse::<f64>().ok().filter(|x| x.is_finite());
    let run_s = secs(t1)? - secs(t0)?;
    // `times`: two lines of "XmY.YYYs XmY.YYYs" (the shell, then its children; user and system).
    let mut cpu_s = 0.0;
    for tok in lines.flat_map(str::split_whitespace) {
        let (m, rest) = tok.split_once('m')?;
        cpu_s += m.parse::<f64>().ok()? * 60.0 + secs(rest.strip_suffix('s')?)?;
    }
    let ms = |s: f64| (s * 1000.0).round() as u64;
    // Bounded: a year (the marks are in a tree the build can write).
    const MAX_S: f64 = 365.0 * 86400.0;
    if !(0.0..MAX_S).contains(&run_s) || !(0.0..MAX_S).contains(&cpu_s) {
        return None;
    }
    Some(Spent {
        wall_ms: w.parse::<u64>().ok()?.min(ms(MAX_S)) + ms(run_s),
        cpu_ms: c.parse::<u64>().ok()?.min(ms(MAX_S)) + ms(cpu_s),
    })
}

/// The shell function `xlfs_mark FILE` that writes a progress mark with the time spent so far
/// (read by [`mark_time`]); `$xlfs_outer` names a file with the `times` of the shell a subshell
/// was started from, since a subshell's own `times` start at zero. A mark that cannot say its
/// time (a bash without `EPOCHREALTIME`) is still a mark.
fn mark_function(before: Spent) -> String {
    format!(
        "xlfs_t0=${{EPOCHREALTIME:-}}\n\
         xlfs_mark() {{ {{ printf 'xlfs-time base {} {} run %s %s\\n' \"$xlfs_t0\" \"${{EPOCHREALTIME:-}}\"; times; \
         if [ -n \"${{xlfs_outer:-}}\" ]; then cat \"$xlfs_outer\"; fi; }} > \"$1\" 2>/dev/null || : > \"$1\"; }}\n",
        before.wall_ms, before.cpu_ms,
    )
}

/// The time earlier runs spent on a build tree that goes on (see [`resume_point`]), up to the
/// last of their steps that ended: the latest of its marks. The work of a step killed before
/// its end is done again, and counted in the run that does it.
pub fn spent_before(dir: &Path) -> Spent {
    let Ok(entries) = std::fs::read_dir(dir.join(PROGRESS_DIR)) else {
        return Spent::default();
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == "built" || n == "checked" || n.starts_with("part-")
        })
        .filter_map(|e| {
            // Small files; anything larger is not a mark.
            let f = File::open(e.path()).ok()?;
            let mut text = String::new();
            f.take(4096).read_to_string(&mut text).ok()?;
            mark_time(&text)
        })
        .max_by_key(|t| t.wall_ms)
        .unwrap_or_default()
}

/// The mark of one part of a test suite: its position and what it is (its command, and its
/// name and kept file when it has them), so that an edited part runs again.
fn part_mark(i: usize, part: &Part) -> String {
    let what = match (&part.name, &part.keep) {
        (None, None) => part.run.clone(),
        (name, keep) => format!(
            "{}\n{}\n{}",
            name.as_deref().unwrap_or_default(),
            part.run,
            keep.as_deref().unwrap_or_default()
        ),
    };
    format!("part-{}-{}", i + 1, &xlfs_util::sha256_hex(what.as_bytes())[..12])
}

/// A part's commands in the script: its own, and for a part that keeps a result file, that file
/// renamed when they end (paths relative to `workdir`, where the script starts). An earlier
/// attempt's copy goes first, so that a part that writes nothing leaves nothing to judge.
fn part_body(part: &Part, workdir: &str) -> String {
    match (&part.keep, part.kept()) {
        (Some(keep), Some(kept)) => {
            let (keep, kept) = (
                shell_quote(&format!("{workdir}/{keep}")),
                shell_quote(&format!("{workdir}/{kept}")),
            );
            format!(
                "rm -f -- {kept}\n{}\nmv -fv -- {keep} {kept}",
                part.run.trim_end()
            )
        }
        _ => part.run.trim_end().to_string(),
    }
}

/// The shell script that runs a recipe's steps in one shell, like a page of the book typed in
/// order. It marks its progress in `/build/.xlfs`: after the build step (the shell's directory
/// and exported variables), after the check step, and after each part of a test suite. With
/// `resume`, it starts where an earlier run of the same tree stopped: after the build step, and
/// past the check (or its finished parts) when those had ended.
///
/// `env` is the environment the sandbox gives this run: a resumed script restores what the earlier
/// run's steps exported, then this run's own values over it (the jobserver's `MAKEFLAGS` is not
/// the earlier run's). Each mark also records the time spent on the tree so far: `before` (what
/// earlier runs had spent, see [`spent_before`]) plus this run's.
pub fn script(
    r: &Recipe,
    workdir: &str,
    run_checks: bool,
    resume: Resume,
    env: &[(String, String)],
    before: Spent,
) -> String {
    let marks = format!("/build/{PROGRESS_DIR}");
    let mut s = format!(
        "# xlfs: {} {}\nset -e -o pipefail\numask 022\ncd {}\nmkdir -p {marks}\n{}",
        r.name,
        r.version,
        shell_quote(workdir),
        mark_function(before),
    );
    let resumed = resume != Resume::Fresh;
    if resumed {
        s.push_str(&format!(
            "printf '\\n==> xlfs: resuming this build tree: prepare, configure and build ended in an earlier run\\n'\n\
             . {marks}/env\ncd \"$(cat {marks}/cwd)\"\n"
        ));
        for (k, v) in env {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
    }
    let parts = r.tests.as_ref().map(|t| t.parts.as_slice()).unwrap_or_default();
    for step in xlfs_book::STEP_NAMES {
        if resumed && matches!(step, "prepare" | "configure" | "build") {
            continue;
        }
        if step == "check" && !resumed {
            // The build step has ended: what a later run needs to go on from here.
            s.push_str(&format!(
                "pwd > {marks}/cwd\nexport -p | grep -v '^declare -[^ ]*r' > {marks}/env || true\nxlfs_mark {marks}/built\n"
            ));
        }
        if step == "check" && !run_checks {
            continue;
        }
        let ended = "printf '\\n==> xlfs: check ended in an earlier run; its results are judged again\\n'\n";
        let checked = step == "check" && resume == (Resume::AfterBuild { checked: true });
        if checked && parts.is_empty() {
            s.push_str(ended);
            continue;
        }
        let text = match r.steps.get(step) {
            // The check step ran in an earlier run; what follows is the parts it has not run: a
            // part added or changed since (the recipe's suite is not in the key).
            Some(_) if checked => {
                "printf '==> xlfs: the check step ended in an earlier run; its parts go on\\n'".to_string()
            }
            Some(text) => text.trim_end().to_string(),
            // A suite in parts needs no check step of its own.
            None if step == "check" && !parts.is_empty() => ":".to_string(),
            None => continue,
        };
        if checked {
            // Every part ran already: nothing to run, the results are judged again.
            let all = parts
                .iter()
                .enumerate()
                .map(|(i, part)| format!("[ -e {marks}/{} ]", part_mark(i, part)))
                .collect::<Vec<_>>()
                .join(" && ");
            s.push_str(&format!("if {all}; then\n{ended}else\n"));
        }
        s.push_str(&format!(
            "printf '\\n==> xlfs: {step} (%s)\\n' \"$(date -u +%T)\"\n"
        ));
        if step == "check" && r.tests.is_some() {
            // A test suite with an allowlist: its exit status does not decide, its result files
            // do (judged after the build, see suites.rs). It runs in a subshell so that a failed
            // test does not end the script. Each part is marked when it ends, and skipped when
            // its mark is there.
            let mut body = text;
            for (i, part) in parts.iter().enumerate() {
                let mark = format!("{marks}/{}", part_mark(i, part));
                let n = parts.len();
                let q = shell_quote(part.run.trim());
                let which = match &part.name {
                    Some(name) => format!("{}/{n} ({name})", i + 1),
                    None => format!("{}/{n}", i + 1),
                };
                body.push_str(&format!(
                    "\nif [ -e {mark} ]; then\n\
                     printf '==> xlfs: check part {which} ended in an earlier run: %s\\n' {q}\n\
                     else\n\
                     printf '\\n==> xlfs: check part {which} (%s): %s\\n' \"$(date -u +%T)\" {q}\n\
                     (\n{}\n)\n\
                     printf '==> xlfs: check part {which} exited with status %s\\n' \"$?\"\n\
                     xlfs_mark {mark}\n\
                     fi",
                    part_body(part, workdir),
                ));
            }
            s.push_str(&format!(
                // The parts' marks are written in the subshell, whose `times` starts at zero:
                // cpu-outer adds what the shell had spent before it.
                "set +e\ntimes > {marks}/cpu-outer\n(\nxlfs_outer={marks}/cpu-outer\n{body}\n)\nstatus=$?\nset -e\nxlfs_mark {marks}/checked\n\
                 printf '==> xlfs: check exited with status %s; the results are judged against [build.tests] allow\\n' \"$status\"\n",
            ));
            if checked {
                s.push_str("fi\n");
            }
        } else if step == "check" {
            // In a subshell: a test suite that changes directory must not move the install.
            s.push_str(&format!("(\n{text}\n)\nxlfs_mark {marks}/checked\n"));
        } else {
            s.push_str(&format!("{text}\n"));
        }
    }
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

struct Log {
    file: File,
    path: PathBuf,
}

impl Log {
    fn line(&mut self, s: &str) {
        let _ = self.file.seek(SeekFrom::End(0));
        let _ = writeln!(self.file, "{s}");
    }
}

/// Build one planned package.
pub fn build(ctx: &Ctx, step: &Step, progress: &dyn Progress) -> Result<BuildRecord, Box<BuildFailure>> {
    let r = &ctx.book.recipes[&step.name];
    let dir = ctx.home.build_dir(&step.name, &step.key);
    let log_path = ctx.home.log_file(&step.name, &step.key);
    let fail = |message: String, interrupted: bool| {
        Box::new(BuildFailure {
            name: step.name.clone(),
            message,
            log: log_path.clone(),
            build_dir: dir.clone(),
            tail: tail(&log_path, 25),
            interrupted,
        })
    };
    // A tree whose build step ended in an earlier run (interrupted or killed during its check
    // or install, or failed by its test results) goes on from there; its log goes on too.
    let resume = resume_point(&dir);
    let opened = if resume == Resume::Fresh {
        File::create(&log_path)
    } else {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            return Err(fail(
                format!("cannot create log {}: {e}", log_path.display()),
                false,
            ))
        }
    };
    let latest = ctx.home.logs().join(format!("{}.log", step.name));
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(log_path.file_name().unwrap(), &latest);
    let mut log = Log {
        file,
        path: log_path.clone(),
    };
    match run(ctx, step, r, &dir, resume, &mut log, progress) {
        Ok(rec) => {
            if let Err(e) = remove_build_tree(&ctx.sandbox_exe, &dir) {
                log.line(&format!("==> xlfs: warning: {e}"));
            }
            Ok(rec)
        }
        Err(message) => {
            let interrupted = ctx.cancel.load(Ordering::SeqCst);
            if interrupted {
                log.line("\n==> xlfs: interrupted");
                return Err(fail("interrupted".into(), true));
            }
            log.line(&format!("\n==> xlfs: FAILED: {message}"));
            if let Ok(db) = ctx.db.lock() {
                let _ = db.record_failure(&Failure {
                    name: step.name.clone(),
                    key: step.key.clone(),
                    at: xlfs_util::unix_now(),
                    log: log.path.display().to_string(),
                    build_dir: dir.display().to_string(),
                    message: message.clone(),
                });
            }
            Err(fail(message, interrupted))
        }
    }
}

fn run(
    ctx: &Ctx,
    step: &Step,
    r: &Recipe,
    dir: &Path,
    resume: Resume,
    log: &mut Log,
    progress: &dyn Progress,
) -> Result<BuildRecord, String> {
    let started = Instant::now();
    log.line(&format!(
        "==> xlfs: {} {} key {}\n==> xlfs: build directory {}",
        r.name,
        r.version,
        step.key,
        dir.display()
    ));
    let src = dir.join("src");
    let destdir = dir.join("destdir");
    let book_dir = dir.join("book");
    let tmp_dir = dir.join("tmp");
    let earlier = if resume == Resume::Fresh {
        // A build directory left by a crash or an earlier failure before its build step ended:
        // start over.
        remove_build_tree(&ctx.sandbox_exe, dir)?;
        Spent::default()
    } else {
        // The install starts again from an empty DESTDIR, the steps from an empty /tmp.
        let spent = spent_before(dir);
        log.line(&format!(
            "==> xlfs: resuming the tree of an earlier run (its build step had ended{}; \
             {:.1} s, cpu {:.1} s spent on it up to there)",
            if resume == (Resume::AfterBuild { checked: true }) {
                ", and its check"
            } else {
                ""
            },
            spent.wall_ms as f64 / 1000.0,
            spent.cpu_ms as f64 / 1000.0
        ));
        remove_build_tree(&ctx.sandbox_exe, &destdir)?;
        remove_build_tree(&ctx.sandbox_exe, &tmp_dir)?;
        spent
    };
    for d in [&src, &destdir, &book_dir, &tmp_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let check_cancel = || {
        if ctx.cancel.load(Ordering::SeqCst) {
            Err("interrupted".to_string())
        } else {
            Ok(())
        }
    };

    // Sources (a resumed tree has them unpacked and patched already).
    let fresh = resume == Resume::Fresh;
    progress.phase(&r.name, if fresh { "unpacking" } else { "resuming" });
    let mut used = Vec::new();
    for (i, s) in r.sources.iter().enumerate() {
        check_cancel()?;
        let sref = source_ref(s);
        let path = ctx.fetcher.cached(&sref).ok_or_else(|| {
            format!(
                "source {} is not in the download cache {}; run `xlfs fetch {}`",
                s.file,
                ctx.fetcher.cache_dir().display(),
                r.name
            )
        })?;
        // The chosen copy's name and sha256, whichever place the (identical) bytes came from.
        let (fname, sha) = s.used();
        let (fname, sha) = (fname.to_string(), sha.to_string());
        log.line(&format!(
            "==> xlfs: source {fname} (sha256 {sha}) from {}",
            path.display()
        ));
        used.push((fname.clone(), sha));
        if !fresh {
            continue;
        }
        if s.unpack && is_archive(&fname) {
            let tmp = dir.join(format!("unpack-{i}"));
            xlfs_unpack::unpack(&path, &tmp).map_err(|e| e.to_string())?;
            merge_into(&tmp, &src)?;
            let _ = std::fs::remove_dir(&tmp);
        } else {
            std::fs::copy(&path, src.join(&fname)).map_err(|e| format!("cannot copy {fname}: {e}"))?;
        }
    }
    // Where the steps start: found in the fresh tree, and kept for a later run of it (the build
    // may add directories beside the one it started in).
    let marks = dir.join(PROGRESS_DIR);
    let workdir_rel = if fresh {
        let w = workdir_in(r, &src);
        std::fs::create_dir_all(&marks)
            .and_then(|()| std::fs::write(marks.join("workdir"), &w))
            .map_err(|e| format!("cannot write {}: {e}", marks.display()))?;
        w
    } else {
        // The mark `resume_point` accepted (a directory inside the sources).
        recorded_workdir(dir).ok_or_else(|| {
            format!(
                "{} names no directory of the sources",
                marks.join("workdir").display()
            )
        })?
    };
    let work = src.join(&workdir_rel);
    if !work.is_dir() {
        return Err(format!(
            "build directory `{workdir_rel}` is not in the unpacked sources; set build.subdir in {}",
            r.path.display()
        ));
    }

    // Patches and inputs from the book: copied into the build, and the copy (what the build
    // reads) checked against the hash of the book as it was loaded.
    let recipe_dir = ctx.book.root.join(r.dir());
    for p in r.patches.iter().filter(|_| fresh) {
        check_cancel()?;
        let to = copy_verified(&recipe_dir, &p.file, &p.sha256, &book_dir, "patch")?;
        log.line(&format!("==> xlfs: patch {} -p{}", p.file, p.strip));
        xlfs_unpack::apply_patch_inside(&src, &workdir_rel, &to, p.strip).map_err(|e| e.to_string())?;
    }
    for (name, sha) in r.inputs.iter().filter(|_| fresh) {
        copy_verified(&recipe_dir, name, sha, &book_dir, "input")?;
    }

    // The build root: outputs of exactly the declared dependencies.
    let mut named_layers = Vec::new();
    for dep in step.build_root.iter().rev() {
        let key = &step.inputs.deps[dep];
        named_layers.push(crate::cctools::Layer {
            name: dep.clone(),
            key: key.clone(),
            tree: ctx
                .store
                .tree(key)
                .map_err(|e| format!("dependency {dep}: {e}"))?,
        });
    }
    let layers: Vec<PathBuf> = named_layers.iter().map(|l| l.tree.clone()).collect();
    // The contamination check reads the same trees after the build.
    let dep_trees = layers.clone();
    let workdir = format!("/build/src/{workdir_rel}");
    let workdir = workdir.trim_end_matches('/').to_string();
    let env = environment(ctx, r, step.inputs.march.as_deref());
    let ids = IdMap::for_current_user()?;
    let toolchain_root = match r.env {
        xlfs_book::BuildEnv::Host => Some(host_toolchain(ctx, step)?),
        xlfs_book::BuildEnv::Chroot => None,
    };
    let (root, sysroot) = match &toolchain_root {
        Some(tree) => (Root::Tree(tree.clone()), layers),
        None => (Root::Layers(layers), Vec::new()),
    };
    let mut binds = vec![
        Bind {
            src: dir.to_path_buf(),
            dst: "/build".into(),
            writable: true,
        },
        Bind {
            src: destdir.clone(),
            dst: "/destdir".into(),
            writable: true,
        },
        Bind {
            src: book_dir.clone(),
            dst: "/book".into(),
            writable: false,
        },
        // On disk, not in RAM.
        Bind {
            src: tmp_dir.clone(),
            dst: "/tmp".into(),
            writable: true,
        },
    ];
    let mut env = env;
    let ccache_dir = if ctx.cc.enabled() {
        cc_setup(
            ctx,
            r,
            step,
            dir,
            &root,
            &sysroot,
            toolchain_root.as_deref(),
            &named_layers,
            &mut binds,
            &mut env,
            log,
        )?
    } else {
        None
    };
    let script_path = dir.join("steps.sh");
    let steps = script(r, &workdir, ctx.checks.wants(&r.name), resume, &env, earlier);
    std::fs::write(&script_path, steps).map_err(|e| e.to_string())?;
    let spec = Spec {
        root,
        sysroot,
        binds,
        scratch: dir.join("scratch"),
        workdir: "/build".into(),
        env,
        argv: vec!["bash".into(), "/build/steps.sh".into()],
        hostname: "xlfs-build".into(),
        ids: ids.clone(),
        inherit_fds: crate::jobs::inherited_fds(),
    };
    // Root inside the build's user namespace owns its build tree.
    ids.give_to_root(dir)
        .map_err(|e| format!("cannot give the build tree to the build's user namespace: {e}"))?;

    check_cancel()?;
    progress.phase(&r.name, "building");
    let before = ccache_dir
        .as_ref()
        .and_then(|(t, d)| crate::cctools::ccache_stats(t, d));
    let cpu_ms = sandbox(ctx, &spec, &dir.join("spec.json"), log)?;
    if let Ok(m) = std::fs::metadata(tmp_dir.join(crate::cctools::REMOTE_SLOT_COUNT)) {
        log.line(&format!(
            "==> xlfs: icecream: {} compile job(s) took a remote slot and lent their local one",
            m.len()
        ));
    }
    if let Some((tools, d)) = &ccache_dir {
        if let (Some((h0, m0)), Some((h1, m1))) = (before, crate::cctools::ccache_stats(tools, d)) {
            log.line(&format!(
                "==> xlfs: ccache {}: {} hits, {} misses",
                d.display(),
                h1.saturating_sub(h0),
                m1.saturating_sub(m0)
            ));
        }
    }
    check_cancel()?;
    if let (true, Some(suite)) = (ctx.checks.wants(&r.name), &r.tests) {
        judge_tests(suite, &src.join(&workdir_rel), log)?;
    }

    // Pack and store.
    progress.phase(&r.name, "packing");
    let build_tree_size = disk_usage(&src);
    let empty = std::fs::read_dir(&destdir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    // A group (no sources, no steps: only dependencies, like the LFS chroot) installs nothing.
    let group = r.sources.is_empty() && r.steps.is_empty();
    if empty && !group {
        return Err("the install step put nothing into $DESTDIR".into());
    }
    let attrs = r
        .files
        .iter()
        .map(|f| Attr {
            path: f.path.clone(),
            uid: f.uid,
            gid: f.gid,
            mode: f.mode,
        })
        .collect();
    let opts = PackOptions {
        mtime: ctx.book.config.source_date_epoch,
        zstd_level: 3,
        attrs,
        ids: Some(ids),
    };
    let artifact = dir.join("artifact.tar.zst");
    let qa = qa_inputs(ctx, r, &dep_trees, toolchain_root.as_deref(), dir);
    let (packed, problems) = crate::packer::pack(&ctx.sandbox_exe, &destdir, &artifact, &opts, &qa)?;
    contamination(&problems, log)?;
    check_cancel()?;
    // The store keeps the first artifact published under a key (e.g. one stored just before a
    // crash, then rebuilt): record the one really stored, not this build's.
    let packed = ctx
        .store
        .put(&step.key, &artifact, &packed)
        .map_err(|e| format!("cannot store the artifact: {e}"))?;
    let rec = BuildRecord {
        key: step.key.clone(),
        name: r.name.clone(),
        version: r.version.clone(),
        inputs: step.inputs.clone(),
        artifact_sha256: packed.sha256.clone(),
        artifact_size: packed.size,
        installed_size: packed.manifest.installed_size(),
        build_tree_size,
        // Earlier runs of this tree included: the package's cost, whatever its interruptions.
        wall_ms: started.elapsed().as_millis() as u64 + earlier.wall_ms,
        cpu_ms: cpu_ms + earlier.cpu_ms,
        earlier_wall_ms: earlier.wall_ms,
        finished_at: xlfs_util::unix_now(),
        log: log.path.display().to_string(),
        sources: used,
    };
    ctx.db
        .lock()
        .map_err(|_| "state database lock poisoned".to_string())?
        .record(&rec)
        .map_err(|e| format!("cannot record the build: {e}"))?;
    log.line(&format!(
        "==> xlfs: done in {:.1}s (cpu {:.1}s){}, artifact {} ({} bytes)",
        rec.wall_ms as f64 / 1000.0,
        rec.cpu_ms as f64 / 1000.0,
        if earlier.wall_ms > 0 {
            format!(", {:.1}s of it in earlier runs", earlier.wall_ms as f64 / 1000.0)
        } else {
            String::new()
        },
        packed.sha256,
        packed.size
    ));
    Ok(rec)
}

/// The binds and environment of ccache and icecream for one build (see [`crate::cctools`]);
/// returns the tools root and the package's ccache directory when ccache is on.
#[allow(clippy::too_many_arguments)]
fn cc_setup(
    ctx: &Ctx,
    r: &Recipe,
    step: &Step,
    dir: &Path,
    root: &Root,
    sysroot: &[PathBuf],
    toolchain_root: Option<&Path>,
    chroot_layers: &[crate::cctools::Layer],
    binds: &mut Vec<Bind>,
    env: &mut Vec<(String, String)>,
    log: &mut Log,
) -> Result<Option<(crate::cctools::Tools, PathBuf)>, String> {
    use crate::cctools as cc;
    let Some(tools) = &ctx.cc.tools else {
        return Ok(None);
    };
    // The compiler names of the build root: its usr/bin and bin, and /sysroot's.
    let mut trees: Vec<PathBuf> = match root {
        Root::Tree(t) => vec![t.clone()],
        Root::Layers(l) => l.clone(),
    };
    trees.extend(sysroot.iter().cloned());
    let bins: Vec<PathBuf> = trees
        .iter()
        .flat_map(|t| [t.join("usr/bin"), t.join("bin")])
        .collect();
    let wrap = dir.join("cc-wrappers");
    cc::write_wrappers(&wrap, tools, &cc::compiler_names(&bins))?;
    binds.push(Bind {
        src: tools.root.clone(),
        dst: cc::TOOLS_DIR.into(),
        writable: false,
    });
    binds.push(Bind {
        src: wrap,
        dst: cc::WRAP_DIR.into(),
        writable: false,
    });
    let mut ccache = None;
    if let Some(base) = &ctx.cc.ccache {
        // One cache per package name: no build writes into another package's objects.
        let d = base.join(&r.name);
        if !d.is_dir() {
            std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            IdMap::for_current_user()?
                .give_to_root(&d)
                .map_err(|e| format!("cannot give {} to the build's user namespace: {e}", d.display()))?;
        }
        binds.push(Bind {
            src: d.clone(),
            dst: cc::CCACHE_DIR.into(),
            writable: true,
        });
        log.line(&format!("==> xlfs: ccache {} at {}", d.display(), cc::CCACHE_DIR));
        ccache = Some((tools.clone(), d));
    }
    let mut icecc = ctx.cc.icecc.as_ref();
    if let Some(ic) = icecc {
        // The compilers shipped to the other daemons: the build root's own.
        let env_root = match toolchain_root {
            Some(root) => cc::EnvRoot::Toolchain {
                root,
                id: &step.inputs.env,
            },
            None => cc::EnvRoot::Chroot(chroot_layers),
        };
        let chroot = toolchain_root.is_none();
        match cc::icecc_env(&ctx.sandbox_exe, tools, env_root, &ic.envs) {
            Ok((envfile, relay_so)) => {
                binds.push(Bind {
                    src: ic.socket.clone(),
                    dst: cc::ICECC_SOCKET.into(),
                    writable: false,
                });
                binds.push(Bind {
                    src: ic.relay.clone(),
                    dst: cc::ICECC_RELAY.into(),
                    writable: false,
                });
                binds.push(Bind {
                    src: relay_so,
                    dst: cc::ICECC_RELAY_SO.into(),
                    writable: false,
                });
                binds.push(Bind {
                    src: envfile.clone(),
                    dst: cc::ICECC_ENV.into(),
                    writable: false,
                });
                log.line(&format!(
                    "==> xlfs: icecream through {}, environment {}, {} remote slot(s)",
                    ic.socket.display(),
                    envfile.display(),
                    ic.remote_slots
                ));
            }
            // A chroot root without what icecc-create-env needs (bash, file, objcopy, ...):
            // this build compiles locally, and says why.
            Err(e) if chroot => {
                log.line(&format!(
                    "==> xlfs: no icecream environment for this build root, so it compiles locally: {e}"
                ));
                icecc = None;
            }
            Err(e) => return Err(e),
        }
    }
    let opts = cc::CcOptions {
        tools: Some(tools.clone()),
        ccache: ctx.cc.ccache.clone(),
        icecc: icecc.cloned(),
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/bin:/bin".into());
    let remote = if icecc.is_some() {
        crate::jobs::remote_fds().zip(crate::jobs::local_dup_fds())
    } else {
        None
    };
    let remote = remote.as_ref().map(|(r, l)| (r.as_str(), l.as_str()));
    for (k, v) in cc::environment(&opts, &path, remote) {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }
    Ok(ccache)
}

/// Copy the book file `name` (relative to `recipe_dir`, see [`xlfs_book::is_book_relative`]) to
/// the same place below `to_dir`, then hash the copy: what the build reads is what was checked.
/// A path that leads out of the recipe's directory through a symbolic link is refused.
fn copy_verified(
    recipe_dir: &Path,
    name: &str,
    sha256: &str,
    to_dir: &Path,
    what: &str,
) -> Result<PathBuf, String> {
    let from = recipe_dir.join(name);
    if !xlfs_book::is_book_relative(name) {
        return Err(format!(
            "{what} `{name}` is not a path inside the recipe's directory"
        ));
    }
    if let Some(real) = xlfs_book::escapes_through_link(recipe_dir, name) {
        return Err(format!(
            "{what} {} leads through a symbolic link to {}, outside the recipe's directory; copy the file into the book",
            from.display(),
            real.display()
        ));
    }
    let to = to_dir.join(name);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::copy(&from, &to).map_err(|e| format!("cannot copy {what} {}: {e}", from.display()))?;
    let (got, _) = xlfs_util::sha256_file(&to).map_err(|e| format!("cannot read {}: {e}", to.display()))?;
    if got != sha256 {
        return Err(format!(
            "{what} {} changed since the book was loaded (sha256 {got}, expected {sha256}); run the build again to use the new file",
            from.display()
        ));
    }
    Ok(to)
}

/// What the contamination check (see [`crate::qa`]) compares a build's installed tree with.
fn qa_inputs(
    ctx: &Ctx,
    r: &Recipe,
    dep_trees: &[PathBuf],
    toolchain_root: Option<&Path>,
    dir: &Path,
) -> crate::qa::Qa {
    let dep_libs = dep_trees
        .iter()
        .flat_map(|tree| crate::qa::library_names(tree, None))
        .collect();
    let mut build_paths = vec![
        dir.display().to_string(),
        ctx.home.root.display().to_string(),
        "/build/src/".to_string(),
    ];
    for p in [dir, ctx.home.root.as_path()] {
        if let Ok(real) = p.canonicalize() {
            build_paths.push(real.display().to_string());
        }
    }
    build_paths.sort();
    build_paths.dedup();
    // Three levels reach /bin, /usr/lib64 and /usr/lib/x86_64-linux-gnu.
    let dep_links = dep_trees
        .iter()
        .flat_map(|tree| crate::qa::link_paths(tree, 3))
        .collect();
    crate::qa::Qa {
        dep_libs,
        dep_links,
        toolchain_libs: toolchain_root.map(toolchain_libs).unwrap_or_default(),
        build_paths,
        skip: r.qa_skip.keys().cloned().collect(),
    }
}

/// Fail the build on the contamination check's findings, each one in the log.
fn contamination(problems: &[crate::qa::Problem], log: &mut Log) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    for p in problems {
        log.line(&format!("==> xlfs: contamination: {p}"));
    }
    let first = &problems[0];
    Err(format!(
        "contamination check failed ({} problem{}, all in the log); first: {first}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ))
}

/// Sonames of a toolchain root's own libraries, which any `host` build may link against (in
/// `chroot` there are none: everything comes from declared dependencies); read once per root.
fn toolchain_libs(root: &Path) -> std::collections::BTreeSet<String> {
    type Cache = Mutex<std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<String>>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(libs) = cache.lock().ok().and_then(|c| c.get(root).cloned()) {
        return libs;
    }
    let libs = crate::qa::library_names(root, Some(&["lib", "lib64", "usr/lib", "usr/lib64"]));
    if let Ok(mut c) = cache.lock() {
        c.insert(root.to_path_buf(), libs.clone());
    }
    libs
}

fn is_archive(name: &str) -> bool {
    [
        ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst",
    ]
    .iter()
    .any(|e| name.ends_with(e))
}

/// The directory a recipe builds in, relative to its unpacked sources `src`: its `subdir`, else
/// the sources' single top directory.
pub fn workdir_in(r: &Recipe, src: &Path) -> String {
    match &r.subdir {
        Some(sub) => sub.clone(),
        None => single_top_dir(src).unwrap_or_default(),
    }
}

fn single_top_dir(src: &Path) -> Option<String> {
    let entries: Vec<_> = std::fs::read_dir(src).ok()?.filter_map(Result::ok).collect();
    match entries.as_slice() {
        [one] if one.path().is_dir() => Some(one.file_name().to_string_lossy().to_string()),
        _ => None,
    }
}

/// Move the top-level entries of `from` into `to`; a name present in both is an error.
fn merge_into(from: &Path, to: &Path) -> Result<(), String> {
    for e in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let dst = to.join(e.file_name());
        if dst.exists() {
            return Err(format!(
                "two sources unpack `{}`; give one of them unpack = false",
                e.file_name().to_string_lossy()
            ));
        }
        std::fs::rename(e.path(), &dst)
            .map_err(|err| format!("cannot move {}: {err}", e.path().display()))?;
    }
    Ok(())
}

/// The toolchain root of a `host` build: the one whose identity is in the step's key.
fn host_toolchain(ctx: &Ctx, step: &Step) -> Result<PathBuf, String> {
    let spec = &ctx.book.config.host_toolchain;
    let tc = crate::toolchain::load(&ctx.home.toolchains, spec).ok_or_else(|| {
        format!(
            "the toolchain root {} is not created; run `xlfs toolchain`",
            crate::toolchain::dir(&ctx.home.toolchains, spec).display()
        )
    })?;
    if !step.inputs.env.starts_with(&tc.id) {
        return Err(format!(
            "the toolchain root {} ({}) is not the one planned ({}); plan again",
            tc.root.display(),
            tc.id,
            step.inputs.env
        ));
    }
    Ok(tc.root)
}

/// The C and C++ compiler flags of every build unless its recipe sets its own.
pub const DEFAULT_CFLAGS: &str = "-O2 -ffile-prefix-map=/build/src=.";

/// Judge a test suite's results against the recipe's allowlist, logging the counts.
fn judge_tests(suite: &xlfs_book::TestSuite, workdir: &Path, log: &mut Log) -> Result<(), String> {
    let verdict = crate::suites::judge(suite, workdir)?;
    log.line(&format!("==> xlfs: {}", verdict.summary()));
    let problems = verdict.problems();
    for f in &problems {
        log.line(&format!("==> xlfs: {f}"));
    }
    if verdict.passed() {
        return Ok(());
    }
    let shown: Vec<&str> = (verdict.unexpected.iter().chain(&verdict.missing))
        .take(10)
        .map(String::as_str)
        .collect();
    let what = match (verdict.unexpected.len(), verdict.missing.len()) {
        (n, 0) => format!("{n} test(s) failed that [build.tests] allow does not list"),
        (0, m) => format!("{m} part(s) of the suite left no results"),
        (n, m) => format!(
            "{n} test(s) failed that [build.tests] allow does not list, and {m} part(s) left no results"
        ),
    };
    Err(format!(
        "{what}: {}{}\n  {}",
        shown.join("; "),
        if problems.len() > 10 { "; ..." } else { "" },
        verdict.fixes().join("\n  ")
    ))
}

/// The complete environment of a build: fixed paths, nothing inherited from the caller.
/// `march` (a tuned host's CPU, part of the key) is added to the default flags.
fn environment(ctx: &Ctx, r: &Recipe, march: Option<&str>) -> Vec<(String, String)> {
    let host = r.env == xlfs_book::BuildEnv::Host;
    let cflags = match march {
        Some(m) => format!("{DEFAULT_CFLAGS} -march={m}"),
        None => DEFAULT_CFLAGS.to_string(),
    };
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), "/tmp".into()),
        ("TERM".into(), "dumb".into()),
        ("LC_ALL".into(), "C".into()),
        ("TZ".into(), "UTC".into()),
        ("SHELL".into(), "/bin/bash".into()),
        ("DESTDIR".into(), "/destdir".into()),
        ("BOOK".into(), "/book".into()),
        ("SRC".into(), "/build/src".into()),
        ("NAME".into(), r.name.clone()),
        ("VERSION".into(), r.version.clone()),
        ("JOBS".into(), ctx.jobs.to_string()),
        (
            "SOURCE_DATE_EPOCH".into(),
            ctx.book.config.source_date_epoch.to_string(),
        ),
        ("PYTHONHASHSEED".into(), "0".into()),
        // Compiled files must not record where they were built (the contamination check's
        // `buildpaths`): __FILE__ and friends say `./pkg-1.0/x.c`, and without `-g` there is no
        // debug information naming the build directory. A recipe may set its own flags.
        ("CFLAGS".into(), cflags.clone()),
        ("CXXFLAGS".into(), cflags),
    ];
    if host {
        env.extend([
            // The declared dependencies first, then the toolchain root.
            (
                "PATH".into(),
                "/sysroot/usr/bin:/sysroot/usr/sbin:/usr/bin:/usr/sbin:/bin:/sbin".into(),
            ),
            ("SYSROOT".into(), "/sysroot".into()),
            ("CPATH".into(), "/sysroot/usr/include".into()),
            (
                "LIBRARY_PATH".into(),
                "/sysroot/usr/lib:/sysroot/usr/lib64:/sysroot/lib".into(),
            ),
            // Only /sysroot's .pc files: LIBDIR replaces pkg-config's default search path (the
            // toolchain root's), and PKG_CONFIG_PATH stays unset.
            (
                "PKG_CONFIG_LIBDIR".into(),
                "/sysroot/usr/lib/pkgconfig:/sysroot/usr/share/pkgconfig".into(),
            ),
            ("PKG_CONFIG_SYSROOT_DIR".into(), "/sysroot".into()),
        ]);
    } else {
        env.push(("PATH".into(), "/usr/bin:/usr/sbin:/bin:/sbin".into()));
    }
    // The jobserver of this xlfs run, shared by every build.
    if let Some(flags) = crate::jobs::makeflags() {
        env.push(("MAKEFLAGS".into(), flags.clone()));
        env.push(("CARGO_MAKEFLAGS".into(), flags));
    }
    for (k, v) in &r.environment {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Run the sandbox helper, logging its output; returns its CPU time in milliseconds.
fn sandbox(ctx: &Ctx, spec: &Spec, spec_path: &Path, log: &mut Log) -> Result<u64, String> {
    let mut cmd = xlfs_sandbox::command(&ctx.sandbox_exe, spec, spec_path).map_err(|e| e.to_string())?;
    let out = log.file.try_clone().map_err(|e| e.to_string())?;
    let err = log.file.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err);
    crate::jobs::configure(&mut cmd);
    crate::jobs::configure_remote(&mut cmd);
    crate::jobs::configure_local_dup(&mut cmd);
    let child = {
        let mut running = ctx.running.lock().map_err(|_| "lock poisoned".to_string())?;
        if ctx.cancel.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the sandbox {}: {e}", ctx.sandbox_exe.display()))?;
        running.push(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    // Off the list of running sandboxes once it has exited, but before it is reaped: until
    // then its pid (its process group's id) cannot be another process's, so a Ctrl-C's signal
    // to the group never reaches anything else.
    wait_exited(pid);
    if let Ok(mut running) = ctx.running.lock() {
        running.retain(|p| *p != pid);
    }
    let (status, cpu_ms) = wait4(pid);
    drop(child);
    match status {
        Ok(0) => Ok(cpu_ms),
        Ok(125) => Err("the sandbox could not be set up (see the log)".into()),
        Ok(code) if code > 128 => Err(format!("the build was killed by signal {}", code - 128)),
        Ok(code) => Err(format!("the build failed with exit status {code}")),
        Err(sig) => Err(format!("the build was killed by signal {sig}")),
    }
}

/// Wait until child `pid` has exited, without reaping it.
fn wait_exited(pid: i32) {
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Wait for `pid` and return (exit code or Err(signal), CPU time of it and its descendants).
fn wait4(pid: i32) -> (Result<i32, i32>, u64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return (Err(0), 0);
        }
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    let cpu = ms(usage.ru_utime) + ms(usage.ru_stime);
    if libc::WIFEXITED(status) {
        (Ok(libc::WEXITSTATUS(status)), cpu)
    } else {
        (Err(libc::WTERMSIG(status)), cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree as a run leaves it after its build step: sources, and the marks.
    fn marked_tree(workdir: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/pkg-1.0")).unwrap();
        let marks = d.path().join(PROGRESS_DIR);
        std::fs::create_dir_all(&marks).unwrap();
        for (f, text) in [
            ("workdir", workdir),
            ("cwd", "/build/src/pkg-1.0"),
            ("env", ""),
            ("built", ""),
        ] {
            std::fs::write(marks.join(f), text).unwrap();
        }
        d
    }

    #[test]
    fn a_tree_resumes_only_after_its_build_step_and_inside_its_sources() {
        let t = marked_tree("pkg-1.0");
        assert_eq!(resume_point(t.path()), Resume::AfterBuild { checked: false });
        std::fs::write(t.path().join(".xlfs/checked"), "").unwrap();
        assert_eq!(resume_point(t.path()), Resume::AfterBuild { checked: true });
        // The build step had not ended.
        std::fs::remove_file(t.path().join(".xlfs/built")).unwrap();
        assert_eq!(resume_point(t.path()), Resume::Fresh);
        assert_eq!(resume_point(Path::new("/nonexistent")), Resume::Fresh);
        // A workdir the build rewrote to lead out of its sources: made again, never followed.
        let outside = tempfile::tempdir().unwrap();
        for w in ["../..", "/etc", "pkg-1.0/../../book", "missing", "link"] {
            let t = marked_tree(w);
            std::os::unix::fs::symlink(outside.path(), t.path().join("src/link")).unwrap();
            assert_eq!(resume_point(t.path()), Resume::Fresh, "workdir `{w}`");
        }
        // The whole of src (a recipe with several top directories) is inside.
        assert_eq!(
            resume_point(marked_tree("").path()),
            Resume::AfterBuild { checked: false }
        );
    }

    #[test]
    fn marks_read_back_the_time_spent_with_what_earlier_runs_had() {
        assert_eq!(
            mark_time("xlfs-time base 1000 500 run 10.25 12.75\n0m0.010s 0m0.005s\n1m2.500s 0m0,485s\n"),
            Some(Spent {
                wall_ms: 3500,
                cpu_ms: 500 + 63_000
            })
        );
        // An older xlfs's empty mark, a garbled one, a clock going back, an absurd time.
        for bad in [
            "",
            "xlfs-time base x 0 run 1 2\n",
            "xlfs-time base 0 0 run 5 2\n",
            "xlfs-time base 0 0 run 0 1e12\n",
            "xlfs-time base 0 0 run 0 1\n0mXs 0m0s\n",
        ] {
            assert_eq!(mark_time(bad), None, "{bad:?}");
        }
    }

    /// The marks as bash writes them: a part's mark, written in the check's subshell, counts the
    /// CPU the shell had spent before it (the build step) and the wall time since the run began,
    /// on top of the earlier runs' time; the latest mark is what the next run starts from.
    #[test]
    fn bash_marks_count_the_build_step_and_earlier_runs() {
        let t = marked_tree("pkg-1.0");
        let marks = t.path().join(PROGRESS_DIR);
        let m = marks.display();
        let before = Spent {
            wall_ms: 60_000,
            cpu_ms: 30_000,
        };
        // The build step: a second of wall time, some of it CPU; then the check's subshell.
        let burn = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
        let text = format!(
            "set -e\n{}( {burn} ); sleep 0.5\nxlfs_mark {m}/built\ntimes > {m}/cpu-outer\n\
             (\nxlfs_outer={m}/cpu-outer\nsleep 0.5\nxlfs_mark {m}/part-1-x\n)\n",
            mark_function(before)
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&text)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let read = |f: &str| mark_time(&std::fs::read_to_string(marks.join(f)).unwrap()).unwrap();
        let (built, part) = (read("built"), read("part-1-x"));
        assert!(built.wall_ms >= 60_500 && built.cpu_ms > 30_000, "{built:?}");
        assert!(part.wall_ms >= built.wall_ms + 500, "{part:?} {built:?}");
        // The build step's CPU is in the part's mark, though its subshell's `times` began at 0.
        assert!(part.cpu_ms >= built.cpu_ms, "{part:?} {built:?}");
        assert_eq!(spent_before(t.path()), part);
        // A tree whose marks say nothing of time (an older xlfs): nothing is known.
        assert_eq!(spent_before(marked_tree("pkg-1.0").path()), Spent::default());
    }
}
