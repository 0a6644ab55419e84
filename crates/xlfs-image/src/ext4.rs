//! Reproducible ext4 images built without root privileges or loop devices,
//! with e2fsprogs (`mke2fs -d`, `debugfs`, `e2fsck`).

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{ImageError, IoContext};
use crate::rootfs::{FileSource, NodeKind, RootFs};
use crate::util::{parent_dir, TempOutput};

const BLOCK_SIZE: u64 = 4096;
const INODE_RATIO: u64 = 16384;
const MIB: u64 = 1 << 20;

/// The mke2fs configuration used for every image, so that the host's
/// `/etc/mke2fs.conf` (which differs between distributions) does not leak
/// into the result. All usage types are defined (identically) so that
/// mke2fs does not warn about them.
const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 5.0
\thash_alg = half_md4
\tlazy_itable_init = false
\tlazy_journal_init = false

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tfloppy = {
\t}
\tsmall = {
\t}
\tdefault = {
\t}
\tbig = {
\t}
\thuge = {
\t}
";

/// Environment variables that change what e2fsprogs produce; removed from
/// the tools' environment.
const E2FS_ENV_REMOVE: &[&str] = &[
    "MKE2FS_SYNC",
    "MKE2FS_DEVICE_SECTSIZE",
    "MKE2FS_DEVICE_PHYS_SECTSIZE",
    "MKE2FS_FIRST_META_BG",
    "E2FSPROGS_LIBMAGIC_SUPPRESS",
    "E2FSCK_CONFIG",
    "DEBUGFS_PAGER",
    "PAGER",
];

/// Parameters of an ext4 image. Everything that would otherwise be random
/// or time-dependent is fixed here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ext4Options {
    /// Size of the image in MiB; 0 means automatic: contents (rounded to
    /// blocks, plus directories and long symlinks) + 30% + 16 MiB.
    pub size_mib: u64,
    /// Volume label (at most 16 bytes).
    pub label: String,
    /// File system UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`); see
    /// [`derive_uuid`].
    pub uuid: String,
    /// Directory hash seed, also a UUID.
    pub hash_seed: String,
    /// Time stamp of every inode (atime, mtime, ctime, crtime) and of the
    /// superblock (mkfs time, write time, last check). Must be in
    /// `1..=2^31-1`: e2fsprogs treats 0 as "use the current time".
    pub mtime: u64,
}

impl Default for Ext4Options {
    /// Automatic size, label `xlfs-root`, UUID and hash seed derived from
    /// fixed strings, mtime 1 (1970-01-01T00:00:01Z).
    fn default() -> Self {
        Ext4Options {
            size_mib: 0,
            label: "xlfs-root".into(),
            uuid: derive_uuid("xlfs-root uuid"),
            hash_seed: derive_uuid("xlfs-root hash_seed"),
            mtime: 1,
        }
    }
}

/// A version-4-formatted UUID derived deterministically from `seed`
/// (its sha256), for [`Ext4Options::uuid`] and [`Ext4Options::hash_seed`].
pub fn derive_uuid(seed: &str) -> String {
    let mut b: [u8; 16] = Sha256::digest(seed.as_bytes())[..16]
        .try_into()
        .expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// One inode of an ext4 image as listed by [`read_ext4`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ext4Entry {
    /// Path relative to the root (`.` for the root directory itself).
    pub path: String,
    /// Inode number (hard links share it).
    pub ino: u32,
    /// Full `st_mode` including the file type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files and symlinks; 0 for directories and others).
    pub size: u64,
    /// Symlink target, for symlinks.
    pub target: Option<String>,
    /// `(major, minor)` for character and block devices.
    pub rdev: Option<(u32, u32)>,
}

impl Ext4Entry {
    /// The file type bits of [`Ext4Entry::mode`] (`libc::S_IFREG`, ...).
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// Writes `fs` as an ext4 image to `out`, without root privileges and
/// without loop devices or mounting.
///
/// 1. The tree is staged in a temporary directory next to `out`, as the
///    current user: directories, symlinks, and regular files — hard-linked
///    from their source when possible (same file system, permitted),
///    copied otherwise. Files that were hard links of each other in one
///    artifact and have identical mode and owner are staged as hard links,
///    so they are hard links in the image too. Device nodes and fifos are
///    not staged.
/// 2. `mke2fs -t ext4 -d STAGE` creates and populates the image, with a
///    private mke2fs.conf (4 KiB blocks, 256-byte inodes, fixed feature
///    set), the fixed UUID, hash seed and label of `opts`, inode tables and
///    journal fully initialised (no host-dependent lazy init), and
///    `E2FSPROGS_FAKE_TIME`/`SOURCE_DATE_EPOCH` = `opts.mtime`; `LC_ALL=C`
///    makes mke2fs add directory entries in bytewise order.
/// 3. One `debugfs -w -f SCRIPT` run creates the device nodes and fifos
///    (`mknod`) and sets uid, gid, mode, atime, mtime, ctime (with their
///    nanosecond fields zeroed) of every inode from the [`RootFs`]: the
///    stage's ownership and times (whoever ran the build) never reach the
///    image. mke2fs copies extended attributes, so staged files must have
///    none: sources with attributes are copied (never hard-linked) and the
///    attributes removed from the copy; those that cannot be removed (an
///    SELinux label of the staging directory) are removed from the image
///    with `debugfs ea_rm`.
/// 4. `e2fsck -fn` must find the image clean.
///
/// The image is written to a temporary file next to `out`, synced and
/// renamed at the end; on error nothing is left behind.
///
/// Reproducibility: the same `RootFs` (same file contents) and options give
/// a byte-identical image, whoever runs the build and whenever (tested:
/// twice in a row, after touching the sources, and root vs. uid 65534).
/// It depends on the e2fsprogs version (tested with 1.47.0). One known
/// host dependence remains: on hosts that force extended attributes on new
/// files (SELinux labels), `ea_rm` leaves an empty in-inode attribute
/// header, so such images differ from those of other hosts (while staying
/// reproducible on that host).
///
/// `lost+found` (0700 root) is always present; a `lost+found` directory in
/// `fs` sets its attributes and content. Requires `mke2fs`, `debugfs` and
/// `e2fsck` (found in `PATH` or `/usr/sbin`, `/sbin`).
pub fn write_ext4(fs: &RootFs, out: &Path, opts: &Ext4Options) -> Result<(), ImageError> {
    validate_options(opts)?;
    if let Some(n) = fs.get("lost+found") {
        if !n.is_dir() {
            return Err(ImageError::unsupported(
                "lost+found",
                "must be a directory in an ext4 image",
            ));
        }
    }
    let (size_mib, inodes) = geometry(fs, opts.size_mib);

    let work = tempfile::Builder::new()
        .prefix(".xlfs-ext4-")
        .tempdir_in(parent_dir(out))
        .at(parent_dir(out))?;
    let stage = work.path().join("root");
    fs::create_dir(&stage).at(&stage)?;
    let mut script = String::with_capacity(fs.len() * 400);
    stage_tree(fs, &stage, &mut script)?;
    let conf = work.path().join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).at(&conf)?;

    let tmp = TempOutput::new(out)?;
    let image = tmp.path().to_path_buf();
    let mtime = opts.mtime.to_string();

    let ext_opts = format!(
        "hash_seed={},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
        opts.hash_seed
    );
    let args: Vec<OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        "ext4".into(),
        "-b".into(),
        BLOCK_SIZE.to_string().into(),
        "-I".into(),
        "256".into(),
        "-N".into(),
        inodes.to_string().into(),
        "-L".into(),
        opts.label.clone().into(),
        "-U".into(),
        opts.uuid.clone().into(),
        "-E".into(),
        ext_opts.into(),
        "-d".into(),
        stage.clone().into(),
        image.clone().into(),
        (size_mib * MIB / BLOCK_SIZE).to_string().into(),
    ];
    let output = e2fs_command("mke2fs", &mtime)
        .env("MKE2FS_CONFIG", &conf)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_missing("mke2fs", e))?;
    check_status("mke2fs", &image, &output, true)?;

    // Fix every inode's ownership, mode and times (and create special files).
    write_attr_script(fs, opts.mtime, &mut script);
    run_debugfs(&image, &script, true, &mtime)?;

    // The result must be clean.
    let output = e2fs_command("e2fsck", &mtime)
        .arg("-fn")
        .arg(&image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_missing("e2fsck", e))?;
    check_status("e2fsck", &image, &output, true)?;

    drop(work);
    tmp.finish()
}

fn validate_options(opts: &Ext4Options) -> Result<(), ImageError> {
    if opts.mtime == 0 || opts.mtime > i32::MAX as u64 {
        return Err(ImageError::unsupported(
            format!("ext4 mtime {}", opts.mtime),
            "must be in 1..=2147483647 (e2fsprogs treats 0 as 'now')",
        ));
    }
    if opts.label.len() > 16
        || opts
            .label
            .bytes()
            .any(|b| b == 0 || b == b',' || b.is_ascii_control())
    {
        return Err(ImageError::unsupported(
            format!("ext4 label {:?}", opts.label),
            "at most 16 bytes, no control characters or commas",
        ));
    }
    for (what, u) in [("uuid", &opts.uuid), ("hash_seed", &opts.hash_seed)] {
        if !is_uuid(u) {
            return Err(ImageError::unsupported(
                format!("ext4 {what} {u:?}"),
                "must be a fixed UUID like 01234567-89ab-cdef-0123-456789abcdef",
            ));
        }
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Image size in MiB and inode count.
fn geometry(fs: &RootFs, size_mib: u64) -> (u64, u64) {
    let round = |n: u64| n.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    let mut data = 2 * BLOCK_SIZE; // root and lost+found
    let mut dirent_bytes = 0u64;
    for (path, slot) in fs.slots() {
        let name_len = path.rsplit('/').next().map_or(0, str::len) as u64;
        dirent_bytes += 8 + name_len.div_ceil(4) * 4;
        data += match &slot.node.kind {
            NodeKind::Dir => BLOCK_SIZE,
            NodeKind::File { .. } => round(slot.size),
            NodeKind::Symlink { target } if target.len() >= 60 => BLOCK_SIZE,
            _ => 0,
        };
    }
    data += round(dirent_bytes);
    let size_mib = if size_mib == 0 {
        (data + data * 3 / 10 + 16 * MIB).div_ceil(MIB)
    } else {
        size_mib
    };
    let needed = fs.len() as u64 + 16;
    let inodes = (size_mib * MIB / INODE_RATIO).max(needed + needed / 4 + 64);
    (size_mib, inodes)
}

/// Creates the staging tree; appends `ea_rm` commands for extended
/// attributes the stage picked up.
fn stage_tree(fs: &RootFs, stage: &Path, script: &mut String) -> Result<(), ImageError> {
    // Link group -> (first staged path, mode/uid/gid).
    let mut groups: HashMap<u64, (PathBuf, (u32, u32, u32))> = HashMap::new();
    // Source inodes already hard-linked into the stage.
    let mut used: HashSet<(u64, u64)> = HashSet::new();
    for (path, slot) in fs.slots() {
        let sp = stage.join(path);
        let node = &slot.node;
        // The source the staged file is a hard link of, if any.
        let mut linked_source: Option<&Path> = None;
        match &node.kind {
            NodeKind::Dir => fs::create_dir(&sp).at(&sp)?,
            NodeKind::Symlink { target } => symlink(target, &sp).at(&sp)?,
            NodeKind::File { source } => match source {
                FileSource::Bytes(b) => fs::write(&sp, b).at(&sp)?,
                FileSource::Path(src) => {
                    let attrs = (node.mode, node.uid, node.gid);
                    let group = slot.link_group.and_then(|g| groups.get(&g).map(|v| (g, v)));
                    if let Some((_, (first, _))) = group.filter(|(_, (_, a))| *a == attrs) {
                        fs::hard_link(first, &sp).at(&sp)?;
                    } else {
                        // link(2) does not follow symlinks: only link regular files.
                        let meta = fs::symlink_metadata(src).at(src)?;
                        let key = (meta.dev(), meta.ino());
                        if meta.is_file() && !used.contains(&key) && fs::hard_link(src, &sp).is_ok() {
                            used.insert(key);
                            linked_source = Some(src);
                        } else {
                            fs::copy(src, &sp).at(src)?;
                        }
                        if let Some(g) = slot.link_group {
                            groups.entry(g).or_insert((sp.clone(), attrs));
                        }
                    }
                }
            },
            NodeKind::CharDev { .. } | NodeKind::BlockDev { .. } | NodeKind::Fifo => continue,
        }
        // mke2fs -d copies extended attributes: drop them.
        let mut names = list_xattrs(&sp)?;
        if let Some(src) = linked_source.filter(|_| !names.is_empty()) {
            // Never modify a source: stage a private copy instead.
            fs::remove_file(&sp).at(&sp)?;
            fs::copy(src, &sp).at(src)?;
            names = list_xattrs(&sp)?;
        }
        for name in names {
            if !remove_xattr(&sp, &name) {
                // E.g. security.selinux: remove it from the image instead.
                let _ = writeln!(script, "ea_rm {} {}", quote(&format!("/{path}")), quote(&name));
            }
        }
    }
    Ok(())
}

/// Removes an extended attribute (not following symlinks); whether it worked.
fn remove_xattr(path: &Path, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (CString::new(path.as_os_str().as_bytes()), CString::new(name)) else {
        return false;
    };
    // SAFETY: both arguments are NUL-terminated strings.
    unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) == 0 }
}

/// Extended attribute names of `path` (not following symlinks).
fn list_xattrs(path: &Path) -> Result<Vec<String>, ImageError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ImageError::unsupported(path.display().to_string(), "NUL in path"))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `c` is NUL-terminated and `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(ImageError::io(path, err)),
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

/// Appends the debugfs commands that give the inode at `/path` its owner, mode and times.
fn set_inode_attrs(script: &mut String, path: &str, node: &crate::Node, mtime: u64) {
    let p = quote(&format!("/{path}"));
    let _ = writeln!(script, "sif {p} uid {}", node.uid);
    let _ = writeln!(script, "sif {p} gid {}", node.gid);
    let _ = writeln!(script, "sif {p} mode 0{:o}", node.st_mode());
    for field in ["atime", "mtime", "ctime"] {
        let _ = writeln!(script, "sif {p} {field} {mtime}");
        let _ = writeln!(script, "sif {p} {field}_extra 0");
    }
}

/// Appends the `mknod` commands for special files and the attribute
/// commands for every inode.
fn write_attr_script(fs: &RootFs, mtime: u64, script: &mut String) {
    for (path, node) in fs.iter() {
        let spec = match node.kind {
            NodeKind::CharDev { major, minor } => format!("c {major} {minor}"),
            NodeKind::BlockDev { major, minor } => format!("b {major} {minor}"),
            NodeKind::Fifo => "p".into(),
            _ => continue,
        };
        let (parent, name) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        let _ = writeln!(script, "cd {}", quote(&format!("/{parent}")));
        let _ = writeln!(script, "mknod {} {spec}", quote(name));
    }
    let _ = writeln!(script, "cd /");
    let root = std::iter::once(("", fs.root()));
    for (path, node) in root.chain(fs.iter()) {
        set_inode_attrs(script, path, node, mtime);
    }
}

/// Quotes an argument for debugfs' command parser (libss): inside double
/// quotes, a double quote is written twice.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Finds an e2fsprogs tool in `PATH`, then in the sbin directories that
/// unprivileged users often lack in `PATH`.
fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/sbin", "/usr/local/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// A command for an e2fsprogs tool with a deterministic environment.
fn e2fs_command(tool: &str, mtime: &str) -> Command {
    let mut cmd = Command::new(find_tool(tool));
    for var in E2FS_ENV_REMOVE {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("E2FSPROGS_FAKE_TIME", mtime)
        .env("SOURCE_DATE_EPOCH", mtime)
        .env("DEBUGFS_PAGER", "__none__")
        .env("E2FSPROGS_SKIP_PROGRESS", "1");
    cmd
}

fn tool_missing(tool: &str, source: std::io::Error) -> ImageError {
    ImageError::ToolMissing {
        tool: tool.into(),
        source,
    }
}

/// Lines of debugfs' stderr that are not its version banner.
fn debugfs_errors(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| {
            let l = l.trim();
            let banner = l.starts_with("debugfs ") && l[8..].starts_with(|c: char| c.is_ascii_digit());
            !(l.is_empty() || banner)
        })
        .map(str::to_string)
        .collect()
}

/// Fails unless the tool exited successfully.
fn check_status(tool: &str, image: &Path, output: &Output, with_stdout: bool) -> Result<(), ImageError> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    if with_stdout {
        text.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    Err(ImageError::Tool {
        tool: tool.into(),
        image: image.to_path_buf(),
        status: output.status.to_string(),
        stderr: text.trim_end().to_string(),
    })
}

/// Runs a debugfs script (one process for all commands) and returns its
/// stdout (each command echoed as `debugfs: CMD` before its output); with
/// `write` the file system is opened read-write and stdout is discarded
/// (empty result). Any message on stderr besides the version banner is an
/// error: debugfs exits with status 0 even when commands fail.
fn run_debugfs(image: &Path, script: &str, write: bool, mtime: &str) -> Result<Vec<u8>, ImageError> {
    let mut file = tempfile::Builder::new()
        .prefix(".xlfs-debugfs-")
        .tempfile()
        .at(std::env::temp_dir())?;
    std::io::Write::write_all(&mut file, script.as_bytes()).at(file.path())?;
    let mut cmd = e2fs_command("debugfs", mtime);
    if write {
        cmd.arg("-w").stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped());
    }
    let output = cmd
        .arg("-f")
        .arg(file.path())
        .arg(image)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| tool_missing("debugfs", e))?;
    check_status("debugfs", image, &output, false)?;
    let errors = debugfs_errors(&output.stderr);
    if !errors.is_empty() {
        return Err(ImageError::Tool {
            tool: "debugfs".into(),
            image: image.to_path_buf(),
            status: "reported errors".into(),
            stderr: errors.join("\n"),
        });
    }
    Ok(output.stdout)
}

/// Splits the stdout of a `debugfs -f` run into the outputs of the
/// individual commands (the echoed `debugfs: ` lines separate them).
fn split_sections(out: &[u8]) -> Vec<&[u8]> {
    const ECHO: &[u8] = b"debugfs: ";
    let mut starts = Vec::new();
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(ECHO) {
            starts.push(i);
        }
        match out[i..].iter().position(|b| *b == b'\n') {
            Some(n) => i += n + 1,
            None => break,
        }
    }
    let mut sections = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(out.len());
        let body_start = out[s..end]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(end, |n| s + n + 1);
        sections.push(&out[body_start..end]);
    }
    sections
}

/// Parses one line of `ls -p`: `/ino/mode/uid/gid/name/size/`.
fn parse_ls_line(line: &str) -> Option<(u32, u32, u32, u32, String, u64)> {
    let l = line.strip_prefix('/')?.strip_suffix('/')?;
    let mut left = l.splitn(5, '/');
    let ino = left.next()?.parse().ok()?;
    let mode = u32::from_str_radix(left.next()?, 8).ok()?;
    let uid = left.next()?.parse().ok()?;
    let gid = left.next()?.parse().ok()?;
    let rest = left.next()?;
    let (name, size) = rest.rsplit_once('/')?;
    let size = if size.is_empty() { 0 } else { size.parse().ok()? };
    Some((ino, mode, uid, gid, name.to_string(), size))
}

/// Lists every inode reachable from the root of an ext4 image: path, inode
/// number, mode, owner, size, symlink target and device numbers.
///
/// Uses `debugfs` only (no mounting, no privileges): one `ls -p` run per
/// directory depth, one `stat` run for symlinks and devices, one `dump`
/// run for slow symlinks. The root is listed as `.`; entries are sorted by
/// path. Names containing newlines are not supported.
pub fn read_ext4(image: &Path) -> Result<Vec<Ext4Entry>, ImageError> {
    let bad = |reason: String| ImageError::malformed(image, "debugfs output", reason);
    let mut entries: Vec<Ext4Entry> = Vec::new();
    let mut level: Vec<String> = vec![String::new()];
    let mut first = true;
    while !level.is_empty() {
        let mut script = String::new();
        for dir in &level {
            let _ = writeln!(script, "ls -p {}", quote(&format!("/{dir}")));
        }
        let out = run_debugfs(image, &script, false, "1")?;
        let sections = split_sections(&out);
        if sections.len() != level.len() {
            return Err(bad(format!(
                "{} sections for {} commands",
                sections.len(),
                level.len()
            )));
        }
        let mut next = Vec::new();
        for (dir, section) in level.iter().zip(sections) {
            for line in String::from_utf8_lossy(section).lines() {
                if line.trim().is_empty() {
                    continue;
                }
                let (ino, mode, uid, gid, name, size) =
                    parse_ls_line(line).ok_or_else(|| bad(format!("unexpected ls line {line:?}")))?;
                if ino == 0 || name.is_empty() || name == ".." {
                    continue;
                }
                let path = if name == "." {
                    if !(first && dir.is_empty()) {
                        continue;
                    }
                    ".".to_string()
                } else if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
                if is_dir && path != "." {
                    next.push(path.clone());
                }
                entries.push(Ext4Entry {
                    path,
                    ino,
                    mode,
                    uid,
                    gid,
                    size,
                    target: None,
                    rdev: None,
                });
            }
        }
        first = false;
        level = next;
    }

    // Symlink targets and device numbers.
    let special: Vec<usize> = (0..entries.len())
        .filter(|&i| {
            let t = entries[i].file_type();
            t == libc::S_IFLNK || t == libc::S_IFCHR || t == libc::S_IFBLK
        })
        .collect();
    if !special.is_empty() {
        let mut script = String::new();
        for &i in &special {
            let _ = writeln!(script, "stat {}", quote(&format!("/{}", entries[i].path)));
        }
        let out = run_debugfs(image, &script, false, "1")?;
        let sections = split_sections(&out);
        if sections.len() != special.len() {
            return Err(bad(format!(
                "{} stat sections for {} commands",
                sections.len(),
                special.len()
            )));
        }
        let mut slow = Vec::new();
        for (&i, section) in special.iter().zip(sections) {
            let e = &mut entries[i];
            if e.file_type() == libc::S_IFLNK {
                const FAST: &[u8] = b"Fast link dest: \"";
                match find(section, FAST) {
                    Some(pos) => {
                        let start = pos + FAST.len();
                        let t = section
                            .get(start..start + e.size as usize)
                            .ok_or_else(|| bad(format!("truncated link target of {}", e.path)))?;
                        e.target = Some(String::from_utf8_lossy(t).into_owned());
                    }
                    None => slow.push(i),
                }
            } else {
                let text = String::from_utf8_lossy(section);
                let rdev = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Device major/minor number:"))
                    .and_then(|r| {
                        let (maj, min) = r.split_whitespace().next()?.split_once(':')?;
                        Some((maj.parse().ok()?, min.parse().ok()?))
                    })
                    .ok_or_else(|| bad(format!("no device numbers for {}", e.path)))?;
                e.rdev = Some(rdev);
            }
        }
        if !slow.is_empty() {
            let dir = tempfile::tempdir().at(std::env::temp_dir())?;
            let mut script = String::new();
            for (k, &i) in slow.iter().enumerate() {
                let dest = dir.path().join(k.to_string());
                let _ = writeln!(
                    script,
                    "dump {} {}",
                    quote(&format!("/{}", entries[i].path)),
                    quote(&dest.to_string_lossy())
                );
            }
            run_debugfs(image, &script, false, "1")?;
            for (k, &i) in slow.iter().enumerate() {
                let dest = dir.path().join(k.to_string());
                let t = fs::read(&dest).at(&dest)?;
                entries[i].target = Some(String::from_utf8_lossy(&t).into_owned());
            }
        }
    }
    entries.sort_by(|a, b| {
        let key = |e: &Ext4Entry| {
            if e.path == "." {
                String::new()
            } else {
                e.path.clone()
            }
        };
        key(a).cmp(&key(b))
    });
    Ok(entries)
}

/// Put the directories and regular files of `edits` into the ext4 file system that starts
/// `offset` bytes into `image` (0 for an ext4 image, a partition's first byte for a disk),
/// in place, with `debugfs -w`: a regular file replaces the file of that path, a directory is
/// made when it is missing (an existing one keeps its attributes), each with the mode, owner
/// and time stamps (`mtime`) of `edits`. Anything else in `edits` (links, devices) and a file
/// where the image has a directory, or the reverse, is an error. `e2fsck -fn` checks the
/// result. For a variant of an image that differs in a few files (see
/// [`crate::write_disk_variant`]) without writing it again.
pub fn ext4_put(image: &Path, offset: u64, edits: &RootFs, mtime: u64) -> Result<(), ImageError> {
    validate_options(&Ext4Options {
        mtime,
        ..Ext4Options::default()
    })?;
    if image.to_string_lossy().contains('?') {
        return Err(ImageError::unsupported(
            image.display().to_string(),
            "a `?` in the file name (e2fsprogs reads options after it)",
        ));
    }
    let target = if offset == 0 {
        image.to_path_buf()
    } else {
        PathBuf::from(format!("{}?offset={offset}", image.display()))
    };
    let stamp = mtime.to_string();
    let nodes: Vec<(&str, &crate::rootfs::Node)> = edits.iter().collect();
    // What the image has at each path: `stat` prints nothing on stdout for a missing one.
    let mut query = String::new();
    for (path, _) in &nodes {
        let _ = writeln!(query, "stat {}", quote(&format!("/{path}")));
    }
    let output = e2fs_command("debugfs", &stamp)
        .arg("-f")
        .arg("-")
        .arg(&target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().expect("piped stdin"), query.as_bytes())?;
            drop(c.stdin.take());
            c.wait_with_output()
        })
        .map_err(|e| tool_missing("debugfs", e))?;
    check_status("debugfs", image, &output, false)?;
    let sections = split_sections(&output.stdout);
    if sections.len() != nodes.len() {
        return Err(ImageError::malformed(
            image,
            "debugfs output",
            format!("{} stat sections for {} paths", sections.len(), nodes.len()),
        ));
    }
    let work = tempfile::Builder::new()
        .prefix(".xlfs-ext4-put-")
        .tempdir_in(parent_dir(image))
        .at(parent_dir(image))?;
    let mut script = String::new();
    let mut changed = Vec::new();
    for (k, ((path, node), section)) in nodes.iter().zip(sections).enumerate() {
        let text = String::from_utf8_lossy(section);
        let first = text.lines().next().unwrap_or("");
        let (is_dir, is_file) = (first.contains("Type: directory"), first.contains("Type: regular"));
        let exists = !text.trim().is_empty();
        let (parent, name) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", *path),
        };
        let clash = |what: &str| ImageError::NotADirectory {
            path: path.to_string(),
            reason: format!("the image has {what} there"),
        };
        let _ = writeln!(script, "cd {}", quote(&format!("/{parent}")));
        match &node.kind {
            NodeKind::Dir if is_dir => continue,
            NodeKind::Dir if exists => return Err(clash("something else than a directory")),
            NodeKind::Dir => {
                let _ = writeln!(script, "mkdir {}", quote(name));
            }
            NodeKind::File { source } => {
                if exists && !is_file {
                    return Err(clash("something else than a regular file"));
                }
                let staged = work.path().join(k.to_string());
                match source {
                    FileSource::Bytes(b) => fs::write(&staged, b).at(&staged)?,
                    FileSource::Path(p) => {
                        fs::copy(p, &staged).at(p)?;
                    }
                }
                if exists {
                    let _ = writeln!(script, "rm {}", quote(name));
                }
                let _ = writeln!(
                    script,
                    "write {} {}",
                    quote(&staged.to_string_lossy()),
                    quote(name)
                );
            }
            _ => {
                return Err(ImageError::unsupported(
                    path.to_string(),
                    "ext4_put writes directories and regular files only",
                ))
            }
        }
        changed.push((*path, *node));
    }
    let _ = writeln!(script, "cd /");
    for (path, node) in &changed {
        set_inode_attrs(&mut script, path, node, mtime);
    }
    // `write` prints "Allocated inode: N" on stdout, not an error.
    run_debugfs(&target, &script, true, &stamp)?;
    let output = e2fs_command("e2fsck", &stamp)
        .arg("-fn")
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_missing("e2fsck", e))?;
    check_status("e2fsck", image, &output, true)?;
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads the content of the regular file `file` (path relative to the
/// root, a leading `/` is accepted) from an ext4 image with `debugfs cat`.
/// Symlinks are not followed; anything but a regular file is an error.
pub fn ext4_cat(image: &Path, file: &str) -> Result<Vec<u8>, ImageError> {
    let path = crate::rootfs::norm(file)?;
    let quoted = quote(&format!("/{path}"));
    let stat = debugfs_request(image, &format!("stat {quoted}"), &path)?;
    let is_file = String::from_utf8_lossy(&stat)
        .lines()
        .next()
        .is_some_and(|l| l.contains("Type: regular"));
    if !is_file {
        return Err(ImageError::unsupported(
            format!("{}:{path}", image.display()),
            "not a regular file",
        ));
    }
    debugfs_request(image, &format!("cat {quoted}"), &path)
}

/// Runs one read-only debugfs request (`-R`) and returns its stdout.
fn debugfs_request(image: &Path, request: &str, path: &str) -> Result<Vec<u8>, ImageError> {
    let output = e2fs_command("debugfs", "1")
        .arg("-R")
        .arg(request)
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_missing("debugfs", e))?;
    check_status("debugfs", image, &output, false)?;
    let errors = debugfs_errors(&output.stderr);
    if !errors.is_empty() {
        return Err(ImageError::Tool {
            tool: "debugfs".into(),
            image: image.to_path_buf(),
            status: format!("cannot read {path}"),
            stderr: errors.join("\n"),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = derive_uuid("x");
        assert!(is_uuid(&u), "{u}");
        assert_eq!(u, derive_uuid("x"));
        assert_ne!(u, derive_uuid("y"));
        assert!(!is_uuid("not-a-uuid"));
    }

    #[test]
    fn ls_lines() {
        assert_eq!(
            parse_ls_line("/12/040755/0/0/dev//"),
            Some((12, 0o40755, 0, 0, "dev".into(), 0))
        );
        assert_eq!(
            parse_ls_line("/15/120777/1/2/l l/100/"),
            Some((15, 0o120777, 1, 2, "l l".into(), 100))
        );
    }

    #[test]
    fn sections() {
        let out = b"debugfs: ls /\na\nb\ndebugfs: ls /x\ndebugfs: cat y\nxyz";
        let s = split_sections(out);
        assert_eq!(s, vec![&b"a\nb\n"[..], &b""[..], &b"xyz"[..]]);
    }

    #[test]
    fn debugfs_errors_are_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("x.ext4");
        write_ext4(&RootFs::new(), &img, &Ext4Options::default()).unwrap();
        run_debugfs(&img, "sif / uid 0\n", true, "1").unwrap();
        let err = run_debugfs(&img, "sif / uid 0\nsif /nonexistent uid 0\n", true, "1").unwrap_err();
        assert!(err.to_string().contains("nonexistent"), "{err}");
        assert!(debugfs_errors(b"debugfs 1.47.0 (5-Feb-2023)\n").is_empty());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/a \"b\""), "\"/a \"\"b\"\"\"");
    }
}
