//! Finding the Debian archive from apt's configuration, and paths inside it.

use std::fs;
use std::path::{Path, PathBuf};

/// Components that the Debian archive itself has (third-party repositories
/// usually use others, such as `stable`).
const DEBIAN_COMPONENTS: &[&str] = &["main", "contrib", "non-free", "non-free-firmware"];

/// Read apt's source lists under `apt_etc` (normally `/etc/apt`) and return
/// the base URI of the first Debian archive that is not the security archive,
/// without a trailing `/` (e.g. `http://HOST/debian`).
///
/// `apt_etc/sources.list` (one-line format) is read first, then the files in
/// `apt_etc/sources.list.d` in name order: `*.list` (one-line format) and
/// `*.sources` (deb822 format). Other files (e.g. `x.sources.disabled`),
/// disabled stanzas (`Enabled: no`), non-HTTP URIs, security archives and
/// third-party repositories are skipped. An entry counts as the Debian archive
/// when its URI has a `debian` path segment (`/debian`, `/archive/debian/DATE`)
/// or it is signed by `debian-archive-keyring`, and its components are all
/// Debian's (`main`, `contrib`, `non-free`, `non-free-firmware`). Both `deb` and `deb-src` entries count,
/// as both share the archive's `pool/`.
pub fn debian_base_from_apt(apt_etc: &Path) -> Option<String> {
    source_files(apt_etc)
        .into_iter()
        .flat_map(|path| {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "sources") {
                parse_deb822(&text)
            } else {
                parse_one_line(&text)
            }
        })
        .find_map(|entry| entry.debian_base())
}

/// Path of a Debian source package's file inside the archive, e.g.
/// `pool/main/z/zlib/zlib_1.3.1.orig.tar.gz`. Packages whose name starts
/// with `lib` are filed under a four-letter prefix (`pool/main/libx/libxml2/…`).
pub fn debian_pool_path(package: &str, file: &str) -> String {
    let prefix_len = if package.starts_with("lib") && package.len() > 3 {
        4
    } else {
        1
    };
    let prefix: String = package.chars().take(prefix_len).collect();
    format!("pool/main/{prefix}/{package}/{file}")
}

/// The source list files apt would read, in apt's order.
fn source_files(apt_etc: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let main = apt_etc.join("sources.list");
    if main.is_file() {
        files.push(main);
    }
    if let Ok(dir) = fs::read_dir(apt_etc.join("sources.list.d")) {
        let mut parts: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        parts.sort();
        files.extend(parts);
    }
    files
}

/// One apt source entry (a deb822 stanza or a one-line entry).
#[derive(Debug, Default, PartialEq)]
struct Entry {
    types: Vec<String>,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: String,
    enabled: bool,
}

impl Entry {
    /// The entry's first URI if it is a (non-security) Debian archive.
    fn debian_base(&self) -> Option<String> {
        if !self.enabled
            || !self.types.iter().any(|t| t == "deb" || t == "deb-src")
            || self.components.is_empty()
            || !self
                .components
                .iter()
                .all(|c| DEBIAN_COMPONENTS.contains(&c.as_str()))
            || self
                .suites
                .iter()
                .any(|s| s.ends_with("-security") || s.ends_with("/updates"))
        {
            return None;
        }
        self.uris.iter().find_map(|uri| {
            let uri = uri.trim_end_matches('/');
            let rest = uri
                .strip_prefix("http://")
                .or_else(|| uri.strip_prefix("https://"))?;
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.contains("security") || path.contains("security") {
                return None;
            }
            let debian_like = path.split('/').any(|seg| seg == "debian")
                || self.signed_by.contains("debian-archive-keyring");
            debian_like.then(|| uri.to_string())
        })
    }
}

/// Parse the deb822 format of `*.sources` files: stanzas separated by blank lines.
fn parse_deb822(text: &str) -> Vec<Entry> {
    fn finish(fields: &mut Vec<(String, String)>, out: &mut Vec<Entry>) {
        if fields.is_empty() {
            return;
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let words = |name: &str| get(name).split_whitespace().map(String::from).collect();
        let enabled = !matches!(
            get("enabled").trim().to_ascii_lowercase().as_str(),
            "no" | "false" | "0"
        );
        out.push(Entry {
            types: words("types"),
            uris: words("uris"),
            suites: words("suites"),
            components: words("components"),
            signed_by: get("signed-by").to_string(),
            enabled,
        });
        fields.clear();
    }

    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            finish(&mut fields, &mut out);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    finish(&mut fields, &mut out);
    out
}

/// Parse the one-line format of `sources.list` and `*.list` files:
/// `deb [option=value ...] URI SUITE [COMPONENT...]`.
fn parse_one_line(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let (kind, rest) = line.split_once(char::is_whitespace)?;
            if kind != "deb" && kind != "deb-src" {
                return None;
            }
            let mut rest = rest.trim_start();
            let mut signed_by = String::new();
            if let Some(opts) = rest.strip_prefix('[') {
                let (opts, after) = opts.split_once(']')?;
                for opt in opts.split_whitespace() {
                    if let Some(v) = opt.strip_prefix("signed-by=") {
                        signed_by = v.to_string();
                    }
                }
                rest = after;
            }
            let mut words = rest.split_whitespace().map(String::from);
            let uri = words.next()?;
            let suite = words.next()?;
            Some(Entry {
                types: vec![kind.to_string()],
                uris: vec![uri],
                suites: vec![suite],
                components: words.collect(),
                signed_by,
                enabled: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sources.list.d")).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn pool_path_plain_package() {
        assert_eq!(
            debian_pool_path("zlib", "zlib_1.3.1.orig.tar.gz"),
            "pool/main/z/zlib/zlib_1.3.1.orig.tar.gz"
        );
        assert_eq!(
            debian_pool_path("gcc-14", "gcc-14_14.2.0.orig.tar.gz"),
            "pool/main/g/gcc-14/gcc-14_14.2.0.orig.tar.gz"
        );
    }

    #[test]
    fn pool_path_lib_package() {
        assert_eq!(
            debian_pool_path("libxml2", "libxml2_2.9.14.orig.tar.xz"),
            "pool/main/libx/libxml2/libxml2_2.9.14.orig.tar.xz"
        );
        assert_eq!(debian_pool_path("libcap2", "f"), "pool/main/libc/libcap2/f");
        // "lib" alone is not a lib* package.
        assert_eq!(debian_pool_path("lib", "f"), "pool/main/l/lib/f");
        assert_eq!(debian_pool_path("less", "f"), "pool/main/l/less/f");
    }

    #[test]
    fn deb822_with_security_stanza_first() {
        let dir = apt_dir(&[(
            "sources.list.d/debian.sources",
            "# Security first, to make sure it is skipped\n\
             Types: deb\n\
             URIs: http://mirror.example/debian-security/\n\
             Suites: bookworm-security\n\
             Components: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
             \n\
             Types: deb\n\
             # http://snapshot.example/archive/debian/20250520T000000Z\n\
             URIs: http://mirror.example/debian/\n\
             Suites: bookworm bookworm-updates\n\
             Components: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
             \n\
             Types: deb\n\
             URIs: http://other.example/debian\n\
             Suites: trixie\n\
             Components: main\n",
        )]);
        assert_eq!(
            debian_base_from_apt(dir.path()).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn deb822_skips_disabled_and_third_party() {
        let dir = apt_dir(&[
            (
                "sources.list.d/a-docker.sources",
                "Types: deb\nURIs: https://download.example/linux/debian\n\
                 Suites: bookworm\nComponents: stable\n",
            ),
            (
                "sources.list.d/b-node.sources",
                "Types: deb\nURIs: https://deb.node.example/node_20.x\n\
                 Suites: nodistro\nComponents: main\n",
            ),
            (
                "sources.list.d/c-off.sources",
                "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n\
                 Suites: bookworm\nComponents: main\n",
            ),
            (
                "sources.list.d/d-real.sources",
                "Types: deb-src\nURIs: https://real.example/mirror/debian\n\
                 Suites: sid\nComponents: main contrib\n\
                 Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n",
            ),
            (
                "sources.list.d/e-ignored.sources.disabled",
                "Types: deb\nURIs: http://ignored.example/debian\n\
                 Suites: bookworm\nComponents: main\n",
            ),
        ]);
        assert_eq!(
            debian_base_from_apt(dir.path()).as_deref(),
            Some("https://real.example/mirror/debian")
        );
    }

    #[test]
    fn one_line_list() {
        let dir = apt_dir(&[(
            "sources.list.d/debian.list",
            "# comment\n\
             deb http://security.example/debian-security bookworm-security main\n\
             deb-src [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://one.example/debian/ bookworm main contrib # trailing\n\
             deb http://two.example/debian bookworm main\n",
        )]);
        assert_eq!(
            debian_base_from_apt(dir.path()).as_deref(),
            Some("http://one.example/debian")
        );
    }

    #[test]
    fn sources_list_comes_first() {
        let dir = apt_dir(&[
            ("sources.list", "deb http://first.example/debian bookworm main\n"),
            (
                "sources.list.d/debian.sources",
                "Types: deb\nURIs: http://second.example/debian\n\
                 Suites: bookworm\nComponents: main\n",
            ),
        ]);
        assert_eq!(
            debian_base_from_apt(dir.path()).as_deref(),
            Some("http://first.example/debian")
        );
    }

    #[test]
    fn snapshot_style_uri_is_accepted() {
        let dir = apt_dir(&[(
            "sources.list",
            "deb http://snap.example/archive/debian/20250520T000000Z bookworm main\n",
        )]);
        assert_eq!(
            debian_base_from_apt(dir.path()).as_deref(),
            Some("http://snap.example/archive/debian/20250520T000000Z")
        );
    }

    #[test]
    fn nothing_configured() {
        let dir = apt_dir(&[]);
        assert_eq!(debian_base_from_apt(dir.path()), None);
        assert_eq!(debian_base_from_apt(&dir.path().join("missing")), None);
        let only_security = apt_dir(&[(
            "sources.list",
            "deb http://mirror.example/debian-security bookworm-security main\n\
             deb http://mirror.example/debian buster/updates main\n",
        )]);
        assert_eq!(debian_base_from_apt(only_security.path()), None);
    }
}
