//! The user-id mapping of a build's user namespace.
//!
//! Root inside a build is never root outside. A build sees 65,536 user and group ids (0–65535);
//! they map to ids outside like this:
//!
//! | xlfs runs as   | inside 0                  | inside 1–65535                               | written by |
//! |----------------|---------------------------|----------------------------------------------|------------|
//! | root           | the first id of the range | the rest of the range                         | xlfs (`/proc/PID/uid_map`) |
//! | ordinary user  | the user's own uid/gid    | the user's `/etc/subuid` / `/etc/subgid` range | `newuidmap`/`newgidmap` (package `uidmap`) |
//!
//! The range for root is root's own entry in `/etc/subuid` and `/etc/subgid` (`root:START:COUNT`,
//! COUNT ≥ 65536) if there is one, otherwise [`DEFAULT_ROOT_BASE`]`..+65536`.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// How many ids a build sees (0–65535): enough for any package's own `chown`.
pub const IDS: u32 = 65536;

/// First outside id of the range used when xlfs runs as root and `/etc/subuid` has no entry for
/// root: 0x7000_0000 = 1,879,048,192. It lies above Debian's `adduser` subordinate ranges
/// (100000 upwards, 65536 each), above systemd's dynamic users (61184–65519) and container
/// range (524288–1879048191), below systemd's "foreign" range (0x7FFE0000) and below 2^31, so
/// tools that treat ids as signed see them as positive.
pub const DEFAULT_ROOT_BASE: u32 = 0x7000_0000;

/// One line of a `uid_map`: `count` ids from `inside` map to `count` ids from `outside`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Extent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid mapping of a build's user namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<Extent>,
    pub gids: Vec<Extent>,
    /// The maps are written by `newuidmap`/`newgidmap` (xlfs is not root).
    pub helper: bool,
}

fn find(map: &[Extent], id: u32, inside: bool) -> Option<u32> {
    map.iter().find_map(|e| {
        let (from, to) = if inside {
            (e.outside, e.inside)
        } else {
            (e.inside, e.outside)
        };
        (id >= from && id - from < e.count).then(|| to + (id - from))
    })
}

/// The first `START` of `NAME:START:COUNT` in a subordinate id file whose NAME is one of `names`
/// and COUNT is at least `need`.
fn subordinate(text: &str, names: &[String], need: u32) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (name, start, count) = (f.next()?, f.next()?, f.next()?);
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        (names.iter().any(|n| n == name) && count >= need).then_some(start)
    })
}

impl IdMap {
    /// The mapping for builds started by the current user (see the module documentation).
    pub fn for_current_user() -> Result<IdMap, String> {
        Self::for_user(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
            Path::new("/etc/subuid"),
            Path::new("/etc/subgid"),
        )
    }

    /// The mapping for `uid`/`gid`, with subordinate ranges read from these files.
    pub fn for_user(uid: u32, gid: u32, subuid: &Path, subgid: &Path) -> Result<IdMap, String> {
        let mut names = vec![uid.to_string()];
        if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            names.push(u.name);
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        if uid == 0 {
            let ubase = subordinate(&read(subuid), &names, IDS).unwrap_or(DEFAULT_ROOT_BASE);
            let gbase = subordinate(&read(subgid), &names, IDS).unwrap_or(DEFAULT_ROOT_BASE);
            let one = |outside| {
                vec![Extent {
                    inside: 0,
                    outside,
                    count: IDS,
                }]
            };
            return Ok(IdMap {
                uids: one(ubase),
                gids: one(gbase),
                helper: false,
            });
        }
        let user = names.last().cloned().unwrap_or_default();
        let range = |file: &Path, kind: &str| {
            subordinate(&read(file), &names, IDS - 1).ok_or_else(|| {
                format!(
                    "{} has no range of at least {} {kind} ids for user {user}, which builds need as an ordinary user; \
                     add one as root: usermod --add-sub{kind}s 100000-165535 {user}",
                    file.display(),
                    IDS - 1
                )
            })
        };
        let (su, sg) = (range(subuid, "uid")?, range(subgid, "gid")?);
        let two = |own, sub| {
            vec![
                Extent {
                    inside: 0,
                    outside: own,
                    count: 1,
                },
                Extent {
                    inside: 1,
                    outside: sub,
                    count: IDS - 1,
                },
            ]
        };
        Ok(IdMap {
            uids: two(uid, su),
            gids: two(gid, sg),
            helper: true,
        })
    }

    /// Ids 0–65535 mapped to themselves: how a process inside a build's user namespace sees
    /// the owners of the build's files.
    pub fn identity() -> IdMap {
        let one = vec![Extent {
            inside: 0,
            outside: 0,
            count: IDS,
        }];
        IdMap {
            uids: one.clone(),
            gids: one,
            helper: false,
        }
    }

    /// The id inside the namespace of an outside uid (`None`: unmapped, shown as `nobody`).
    pub fn inside_uid(&self, outside: u32) -> Option<u32> {
        find(&self.uids, outside, true)
    }
    pub fn inside_gid(&self, outside: u32) -> Option<u32> {
        find(&self.gids, outside, true)
    }
    /// The outside id of an inside uid.
    pub fn outside_uid(&self, inside: u32) -> Option<u32> {
        find(&self.uids, inside, false)
    }
    pub fn outside_gid(&self, inside: u32) -> Option<u32> {
        find(&self.gids, inside, false)
    }

    /// Give `dir` and everything under it (symlinks themselves, never followed) to root inside
    /// the namespace, so that the build can use the tree the parent prepared. Nothing to do when
    /// root inside is the caller itself (xlfs runs as an ordinary user).
    pub fn give_to_root(&self, dir: &Path) -> std::io::Result<()> {
        let (uid, gid) = (self.outside_uid(0), self.outside_gid(0));
        if uid == Some(nix::unistd::geteuid().as_raw()) {
            return Ok(());
        }
        let (uid, gid) = (uid.unwrap_or(0), gid.unwrap_or(0));
        fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                .map_err(|e| std::io::Error::new(e.kind(), format!("chown {}: {e}", p.display())))?;
            if std::fs::symlink_metadata(p)?.is_dir() {
                for e in std::fs::read_dir(p)? {
                    walk(&e?.path(), uid, gid)?;
                }
            }
            Ok(())
        }
        walk(dir, uid, gid)
    }

    fn line(map: &[Extent]) -> String {
        map.iter()
            .map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count))
            .collect()
    }

    fn args(map: &[Extent]) -> Vec<String> {
        map.iter()
            .flat_map(|e| [e.inside, e.outside, e.count])
            .map(|n| n.to_string())
            .collect()
    }

    /// Write the maps of process `pid`, which has just created its user namespace.
    pub(crate) fn write(&self, pid: i32) -> Result<(), String> {
        if self.helper {
            for (tool, map) in [("newuidmap", &self.uids), ("newgidmap", &self.gids)] {
                let out = std::process::Command::new(tool)
                    .arg(pid.to_string())
                    .args(Self::args(map))
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| format!("cannot run {tool} (Debian package uidmap): {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "{tool} {pid} {}: {}",
                        Self::args(map).join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            return Ok(());
        }
        for (file, map) in [("uid_map", &self.uids), ("gid_map", &self.gids)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, Self::line(map)).map_err(|e| format!("write {path}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_without_subuid_uses_the_default_range_and_translates_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none");
        let m = IdMap::for_user(0, 0, &none, &none).unwrap();
        assert_eq!(m.outside_uid(0), Some(DEFAULT_ROOT_BASE));
        assert_eq!(m.inside_uid(DEFAULT_ROOT_BASE + 1000), Some(1000));
        assert_eq!(m.inside_uid(0), None);
        assert_eq!(m.inside_gid(DEFAULT_ROOT_BASE + IDS), None);
        assert!(!m.helper);
    }

    #[test]
    fn subordinate_ranges_are_read_by_name_or_number() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("subuid");
        std::fs::write(&f, "alice:100000:65536\nroot:200000:1000\n0:300000:65536\n").unwrap();
        let m = IdMap::for_user(0, 0, &f, &f).unwrap();
        assert_eq!(m.outside_uid(0), Some(300000), "root's short range is skipped");
        let m = IdMap::for_user(4242, 4343, &f, &f);
        let err = m.unwrap_err();
        assert!(err.contains("usermod --add-subuids"), "{err}");
        std::fs::write(&f, "4242:500000:65536\n").unwrap();
        let m = IdMap::for_user(4242, 4242, &f, &f).unwrap();
        assert!(m.helper);
        assert_eq!(m.outside_uid(0), Some(4242));
        assert_eq!(m.outside_uid(1), Some(500000));
        assert_eq!(m.inside_uid(500000 + 999), Some(1000));
        assert_eq!(m.outside_uid(IDS), None);
    }
}
