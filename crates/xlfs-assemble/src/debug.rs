//! Debug information out of the image, into a separate artifact (issue 7 §5): for each ELF
//! file of a root file system that has `.debug_*` sections, `objcopy --only-keep-debug` keeps
//! them in `usr/lib/debug/PATH.debug` of a tarball (`debug.tar.zst` next to the image), and the
//! image gets the file from `strip --strip-debug` with a `.gnu_debuglink` to it.
//!
//! The tools are the binutils of a given root (the pinned toolchain root), run through that
//! root's own dynamic loader and libraries, never the build machine's.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use xlfs_image::{FileSource, NodeKind, RootFs};

/// The binutils of a root file system.
#[derive(Debug, Clone)]
pub struct Binutils {
    root: PathBuf,
    loader: PathBuf,
    library_path: String,
}

impl Binutils {
    /// The binutils of `root` (`usr/bin/objcopy` and `strip`, the loader and libraries of
    /// `usr/lib/TRIPLE` or `usr/lib64`).
    pub fn from_root(root: &Path) -> Result<Binutils> {
        let mut libdirs = Vec::new();
        let mut loader = None;
        for dir in [
            "usr/lib/x86_64-linux-gnu",
            "lib/x86_64-linux-gnu",
            "usr/lib64",
            "usr/lib",
        ] {
            let d = root.join(dir);
            if d.is_dir() {
                if loader.is_none() && d.join("ld-linux-x86-64.so.2").exists() {
                    loader = Some(d.join("ld-linux-x86-64.so.2"));
                }
                libdirs.push(d.to_string_lossy().into_owned());
            }
        }
        let Some(loader) = loader else {
            bail!(
                "{} has no dynamic loader (ld-linux-x86-64.so.2) to run its binutils; create the toolchain root with `xlfs toolchain`",
                root.display()
            );
        };
        for tool in ["objcopy", "strip"] {
            if !root.join("usr/bin").join(tool).is_file() {
                bail!(
                    "{} has no usr/bin/{tool}; the toolchain root needs binutils",
                    root.display()
                );
            }
        }
        Ok(Binutils {
            root: root.to_path_buf(),
            loader,
            library_path: libdirs.join(":"),
        })
    }

    fn run(&self, tool: &str, args: &[&str], dir: &Path) -> Result<()> {
        let out = Command::new(&self.loader)
            .arg("--library-path")
            .arg(&self.library_path)
            .arg(self.root.join("usr/bin").join(tool))
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("LC_ALL", "C")
            .output()
            .with_context(|| format!("cannot run {tool} of {}", self.root.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Whether an ELF file has DWARF debug sections.
pub fn has_debug_info(bytes: &[u8]) -> bool {
    use goblin::elf::Elf;
    let Ok(elf) = Elf::parse(bytes) else {
        return false;
    };
    elf.section_headers.iter().any(|s| {
        elf.shdr_strtab
            .get_at(s.sh_name)
            .is_some_and(|n| n.starts_with(".debug_") || n.starts_with(".zdebug_"))
    })
}

/// What [`split`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DebugSplit {
    /// Files stripped (their debug files are in the tarball).
    pub files: Vec<String>,
    /// Bytes the image lost.
    pub saved: u64,
}

fn read(fs: &RootFs, path: &str) -> Option<Vec<u8>> {
    match &fs.get(path)?.kind {
        NodeKind::File {
            source: FileSource::Bytes(b),
        } => Some(b.clone()),
        NodeKind::File {
            source: FileSource::Path(p),
        } => std::fs::read(p).ok(),
        _ => None,
    }
}

/// Strip the debug information of every ELF file of `fs` into `tarball` (zstd-compressed tar,
/// entries `usr/lib/debug/PATH.debug`, owned by root, mtime `epoch`), in `work` (a scratch
/// directory). Without any debug information, no tarball is written.
pub fn split(fs: &mut RootFs, bin: &Binutils, work: &Path, tarball: &Path, epoch: u64) -> Result<DebugSplit> {
    let mut result = DebugSplit::default();
    let paths: Vec<String> = fs.paths().map(str::to_string).collect();
    let mut debug_files: Vec<(String, PathBuf)> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let Some(node) = fs.get(path) else { continue };
        if !matches!(node.kind, NodeKind::File { .. }) {
            continue;
        }
        let (mode, uid, gid) = (node.mode, node.uid, node.gid);
        let Some(bytes) = read(fs, path) else { continue };
        if !bytes.starts_with(b"\x7fELF") || !has_debug_info(&bytes) {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let dir = work.join(format!("{i}"));
        std::fs::create_dir_all(&dir)?;
        let input = dir.join(name);
        let dbg_name = format!("{name}.debug");
        std::fs::write(&input, &bytes)?;
        bin.run("objcopy", &["--only-keep-debug", name, &dbg_name], &dir)
            .with_context(|| format!("keeping the debug information of /{path}"))?;
        bin.run("strip", &["--strip-debug", name], &dir)
            .with_context(|| format!("stripping /{path}"))?;
        bin.run(
            "objcopy",
            &[&format!("--add-gnu-debuglink={dbg_name}"), name],
            &dir,
        )
        .with_context(|| format!("linking /{path} to its debug file"))?;
        let stripped = std::fs::read(&input)?;
        result.saved += (bytes.len() as u64).saturating_sub(stripped.len() as u64);
        fs.add_file(path, stripped, mode, uid, gid)?;
        debug_files.push((format!("usr/lib/debug/{path}.debug"), dir.join(&dbg_name)));
        result.files.push(path.clone());
    }
    if debug_files.is_empty() {
        return Ok(result);
    }
    let tmp = tarball.with_extension("tmp");
    {
        let f = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let z = zstd::Encoder::new(f, 19)?;
        let mut t = tar::Builder::new(z);
        for (name, src) in &debug_files {
            let data = std::fs::read(src)?;
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(epoch);
            h.set_entry_type(tar::EntryType::Regular);
            t.append_data(&mut h, name, data.as_slice())?;
        }
        t.into_inner()?.finish()?;
    }
    std::fs::rename(&tmp, tarball)?;
    Ok(result)
}
