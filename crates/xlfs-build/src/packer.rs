//! Packing a build's DESTDIR and running the contamination check ([`crate::qa`]) on it. Static
//! archives' symbol-table times are zeroed first ([`crate::archives`]).
//!
//! A build may give files to other ids (`chown 1000 …; chmod 0600 …`). Outside its user
//! namespace those are subordinate ids of the user, and the user cannot read such files. So when
//! xlfs runs as an ordinary user, packing and checking run inside a user namespace with the build's own mapping, in the helper mode
//! `xlfs __pack JOB.json` ([`dispatch`]), where the user is root over every id of the build.
//! As root, xlfs reads everything itself and packs in process.

use crate::qa::{Problem, Qa};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xlfs_sandbox::IdMap;
use xlfs_store::{Attr, Manifest, PackOptions, Packed};

/// A recipe's `[[file]]`: (path, uid, gid, mode).
type FileAttr = (String, Option<u32>, Option<u32>, Option<u32>);

#[derive(Serialize, Deserialize)]
struct Job {
    destdir: PathBuf,
    out: PathBuf,
    mtime: u64,
    zstd_level: i32,
    attrs: Vec<FileAttr>,
    ids: IdMap,
    qa: Qa,
}

#[derive(Serialize, Deserialize)]
struct Done {
    manifest: Manifest,
    sha256: String,
    size: u64,
    problems: Vec<Problem>,
}

/// [`xlfs_store::pack`] `destdir` into `out`, made by a build with the id mapping `opts.ids`,
/// and check it with `qa`; through the helper binary `exe` when that mapping needs one (see
/// the module documentation).
pub fn pack(
    exe: &Path,
    destdir: &Path,
    out: &Path,
    opts: &PackOptions,
    qa: &Qa,
) -> Result<(Packed, Vec<Problem>), String> {
    let ids = match &opts.ids {
        Some(ids) if ids.helper => ids.clone(),
        _ => return pack_and_check(destdir, out, opts, qa),
    };
    let job = Job {
        destdir: destdir.to_path_buf(),
        out: out.to_path_buf(),
        mtime: opts.mtime,
        zstd_level: opts.zstd_level,
        attrs: opts
            .attrs
            .iter()
            .map(|a| (a.path.clone(), a.uid, a.gid, a.mode))
            .collect(),
        ids,
        qa: qa.clone(),
    };
    let job_path = out.with_extension("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job).expect("job serialises"))
        .map_err(|e| format!("cannot write {}: {e}", job_path.display()))?;
    let res = std::process::Command::new(exe)
        .arg("__pack")
        .arg(&job_path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let _ = std::fs::remove_file(&job_path);
    if !res.status.success() {
        return Err(String::from_utf8_lossy(&res.stderr).trim().to_string());
    }
    let done: Done = serde_json::from_slice(&res.stdout)
        .map_err(|e| format!("{} __pack: unreadable answer: {e}", exe.display()))?;
    let packed = Packed {
        manifest: done.manifest,
        sha256: done.sha256,
        size: done.size,
    };
    Ok((packed, done.problems))
}

fn pack_and_check(
    destdir: &Path,
    out: &Path,
    opts: &PackOptions,
    qa: &Qa,
) -> Result<(Packed, Vec<Problem>), String> {
    crate::archives::normalize_tree(destdir).map_err(|e| format!("normalizing static archives: {e}"))?;
    let packed = xlfs_store::pack(destdir, out, opts).map_err(|e| e.to_string())?;
    let problems = crate::qa::check(destdir, qa).map_err(|e| format!("contamination check: {e}"))?;
    Ok((packed, problems))
}

/// Run this process as the packing helper if it was started as one (`__pack JOB`), and never
/// return then. Call it first thing in `main`, before anything starts a thread.
pub fn dispatch() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() != 3 || argv[1] != "__pack" {
        return;
    }
    let fail = |e: String| -> ! {
        eprintln!("{e}");
        std::process::exit(1)
    };
    let job: Job = std::fs::read(&argv[2])
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| fail(format!("reading {}: {e}", Path::new(&argv[2]).display())));
    xlfs_sandbox::become_root_in(&job.ids);
    let opts = PackOptions {
        mtime: job.mtime,
        zstd_level: job.zstd_level,
        attrs: job
            .attrs
            .into_iter()
            .map(|(path, uid, gid, mode)| Attr { path, uid, gid, mode })
            .collect(),
        // Inside the namespace, owners are already the build's own ids.
        ids: Some(IdMap::identity()),
    };
    match pack_and_check(&job.destdir, &job.out, &opts, &job.qa) {
        Ok((p, problems)) => {
            let done = Done {
                manifest: p.manifest,
                sha256: p.sha256,
                size: p.size,
                problems,
            };
            println!("{}", serde_json::to_string(&done).expect("manifest serialises"));
            std::process::exit(0)
        }
        Err(e) => fail(e),
    }
}
