//! A small world for end-to-end tests: a book written on the fly, real C packages packed into
//! real tarballs in a local mirror directory, and the real `xlfs` binary.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MAKE_TEMPLATE: &str = include_str!("../../../../book/templates/make.toml");

pub struct World {
    pub dir: tempfile::TempDir,
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A deterministic .tar.gz of `files` (path, contents, mode) under `top/`.
pub fn tarball(top: &str, files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(0);
    dir.set_size(0);
    tar.append_data(&mut dir, format!("{top}/"), std::io::empty())
        .unwrap();
    for (path, body, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("{top}/{path}"), body.as_bytes())
            .unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

pub const GREET_H: &str = "const char *greet(void);\n";
pub const GREET_C: &str =
    "#include \"greet.h\"\nconst char *greet(void) { return \"hello from libgreet\"; }\n";
pub const GREET_MK: &str = "all: libgreet.so\n\
libgreet.so: greet.c greet.h\n\t$(CC) -shared -fPIC -O2 -o $@ greet.c\n\
check: libgreet.so\n\ttest -s libgreet.so\n\
install:\n\tinstall -D -m 0755 libgreet.so $(DESTDIR)/usr/lib/libgreet.so\n\
\tinstall -D -m 0644 greet.h $(DESTDIR)/usr/include/greet.h\n";
pub const HELLO_C: &str =
    "#include <stdio.h>\n#include <greet.h>\nint main(void) { puts(greet()); return 0; }\n";
pub const HELLO_MK: &str = "all: hello\n\
hello: hello.c\n\t$(CC) -O2 -o hello hello.c -lgreet\n\
check: hello\n\tLD_LIBRARY_PATH=/sysroot/usr/lib ./hello\n\
install:\n\tinstall -D -m 0755 hello $(DESTDIR)/usr/bin/hello\n";

/// Where the tests keep the pinned toolchain roots (`--toolchains`), across runs: creating one
/// takes a minute and downloads from the Debian mirror, so it is made once per machine.
/// `XLFS_TEST_TOOLCHAINS` overrides; the default is `/var/cache/xlfs-test/toolchains` for root,
/// `~/.cache/xlfs-test/toolchains` otherwise.
pub fn toolchains() -> PathBuf {
    if let Some(d) = std::env::var_os("XLFS_TEST_TOOLCHAINS") {
        return PathBuf::from(d);
    }
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/cache/xlfs-test/toolchains")
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/xlfs-test/toolchains")
    }
}

/// Create the toolchain root of the book at `book` in [`toolchains`] if missing (through the
/// Debian mirror apt is configured with), so that tests which block the network find it.
pub fn ensure_toolchain(book: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
        .arg("--book")
        .arg(book)
        .arg("--home")
        .arg(tempfile::tempdir().unwrap().path())
        .arg("--toolchains")
        .arg(toolchains())
        .args(["--quiet", "toolchain"])
        .env_remove("XLFS_DEBIAN_MIRROR")
        .output()
        .unwrap();
    assert!(out.status.success(), "xlfs toolchain:\n{}", text(&out));
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> World {
        let w = World {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(w.book().join("templates")).unwrap();
        std::fs::create_dir_all(w.mirror()).unwrap();
        std::fs::write(w.book().join("templates/make.toml"), MAKE_TEMPLATE).unwrap();
        std::fs::write(
            w.book().join("book.toml"),
            "[book]\nname = \"test\"\nsource-date-epoch = 1700000000\n",
        )
        .unwrap();
        ensure_toolchain(&w.book());
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn book(&self) -> PathBuf {
        self.path().join("book")
    }
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }
    pub fn mirror(&self) -> PathBuf {
        self.path().join("mirror")
    }

    /// Put a tarball in the mirror; returns its sha256.
    pub fn add_tarball(&self, file: &str, bytes: &[u8]) -> String {
        std::fs::write(self.mirror().join(file), bytes).unwrap();
        sha256(bytes)
    }

    pub fn write_recipe(&self, name: &str, text: &str) {
        std::fs::write(self.book().join(format!("{name}.toml")), text).unwrap();
    }

    /// A recipe for a package built from `file` with the make template.
    pub fn recipe(&self, name: &str, file: &str, sha: &str, build_deps: &[&str], extra: &str) -> String {
        let deps: Vec<String> = build_deps.iter().map(|d| format!("\"{d}\"")).collect();
        format!(
            "[package]\nname = \"{name}\"\nversion = \"1.0\"\nlicense = \"MIT\"\n\n\
             [[source]]\nfile = \"{file}\"\nsha256 = \"{sha}\"\n\n\
             [depends]\nbuild = [{}]\n\n[build]\ntemplate = \"make\"\ninstall = \"install\"\n{extra}",
            deps.join(", ")
        )
    }

    /// libgreet (a shared library) and hello (a program linking it).
    pub fn greet_and_hello(&self, hello_deps: &[&str]) {
        let lib = tarball(
            "libgreet-1.0",
            &[
                ("greet.h", GREET_H, 0o644),
                ("greet.c", GREET_C, 0o644),
                ("Makefile", GREET_MK, 0o644),
            ],
        );
        let sha = self.add_tarball("libgreet-1.0.tar.gz", &lib);
        self.write_recipe(
            "libgreet",
            &self.recipe("libgreet", "libgreet-1.0.tar.gz", &sha, &[], ""),
        );
        let hello = tarball(
            "hello-1.0",
            &[("hello.c", HELLO_C, 0o644), ("Makefile", HELLO_MK, 0o644)],
        );
        let sha = self.add_tarball("hello-1.0.tar.gz", &hello);
        self.write_recipe(
            "hello",
            &self.recipe("hello", "hello-1.0.tar.gz", &sha, hello_deps, ""),
        );
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xlfs"));
        c.arg("--book")
            .arg(self.book())
            .arg("--home")
            .arg(self.home())
            .arg("--mirror-dir")
            .arg(self.mirror())
            .arg("--toolchains")
            .arg(toolchains())
            .arg("--debian-mirror")
            .arg("http://127.0.0.1:9/debian")
            .args(args)
            .env_remove("XLFS_HOME")
            .env_remove("XLFS_BOOK");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run and require success; returns stdout + stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = text(&out);
        assert!(out.status.success(), "xlfs {args:?} failed:\n{text}");
        text
    }

    /// Run and require failure; returns stdout + stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = text(&out);
        assert!(!out.status.success(), "xlfs {args:?} should have failed:\n{text}");
        text
    }

    /// name -> (key, status) from `xlfs plan --json`.
    pub fn plan(&self) -> Vec<(String, String, String)> {
        plan_steps(&self.ok(&["plan", "--json"]))
    }

    /// name -> artifact sha256 from `xlfs report --json`.
    pub fn artifacts(&self) -> std::collections::BTreeMap<String, String> {
        let out = self.ok(&["report", "--json"]);
        let start = out.find('{').unwrap();
        let v: serde_json::Value = serde_json::from_str(&out[start..]).unwrap();
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["artifact_sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (name, key, status) of each step in the output of `xlfs plan --json`.
pub fn plan_steps(out: &str) -> Vec<(String, String, String)> {
    let start = out.find('{').unwrap();
    let v: serde_json::Value = serde_json::from_str(&out[start..]).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["key"].as_str().unwrap().to_string(),
                s["status"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
