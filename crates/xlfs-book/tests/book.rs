use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xlfs_book::{Book, BookFile};

const AUTOTOOLS: &str = include_str!("../../../book/templates/autotools.toml");
const SHA: &str = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb";

fn files(list: &[(&str, &str)]) -> Vec<BookFile> {
    let mut v = vec![BookFile {
        path: "templates/autotools.toml".into(),
        text: AUTOTOOLS.into(),
    }];
    v.extend(list.iter().map(|(p, t)| BookFile {
        path: PathBuf::from(p),
        text: t.to_string(),
    }));
    v
}

fn load(list: &[(&str, &str)], extra: &[(&str, &[u8])]) -> Result<Book, String> {
    let extra: BTreeMap<PathBuf, Vec<u8>> = extra
        .iter()
        .map(|(p, b)| (PathBuf::from(p), b.to_vec()))
        .collect();
    let read = move |p: &Path| {
        extra
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"))
    };
    Book::from_files(Path::new("book"), files(list), &read).map_err(|e| e.to_string())
}

fn recipe(name: &str, build: &[&str], extra: &str) -> String {
    let deps: Vec<String> = build.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"[package]
name = "{name}"
version = "1.0"
license = "MIT"

[[source]]
file = "{name}-1.0.tar.gz"
sha256 = "{SHA}"

[depends]
build = [{}]

[build]
template = "autotools"
{extra}"#,
        deps.join(", ")
    )
}

#[test]
fn a_good_book_loads_and_renders_templates() {
    let zlib = recipe("zlib", &[], "configure = [\"--prefix=/usr\", \"--shared\"]\n");
    let book = load(&[("base/zlib.toml", &zlib)], &[]).unwrap();
    let r = book.get("zlib").unwrap();
    assert_eq!(r.steps["configure"], "./configure --prefix=/usr --shared");
    assert_eq!(r.steps["install"], "make DESTDIR=\"$DESTDIR\" install");
    assert_eq!(r.sources[0].sha256, SHA);
}

#[test]
fn every_problem_is_reported_at_once() {
    let a = recipe("a", &["zlbi", "b"], "configur = \"--x\"\n");
    let b = recipe("b", &["c"], "");
    let c = recipe("c", &["a"], "");
    let bad_hash = r#"[package]
name = "d"
version = "1.0"
license = "MIT"
colour = "blue"

[[source]]
file = "d.tar.gz"
sha256 = "ef268c6fda8701834db2d8322b0ccf4e"

[[patch]]
file = "missing.patch"
sha256 = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb"

[build]
template = "autotool"
"#;
    let dup = recipe("zlib", &[], "");
    let zlib = recipe("zlib", &[], "");
    let err = load(
        &[
            ("a.toml", &a),
            ("b.toml", &b),
            ("c.toml", &c),
            ("d.toml", bad_hash),
            ("base/zlib.toml", &zlib),
            ("extra/zlib.toml", &dup),
        ],
        &[],
    )
    .unwrap_err();
    insta::assert_snapshot!(err);
}

#[test]
fn syntax_and_type_errors_have_positions() {
    let broken = "[package]\nname = \"x\"\nversion = 1\nlicense = \"MIT\"\n[build\n";
    let err = load(&[("x.toml", broken)], &[]).unwrap_err();
    insta::assert_snapshot!("syntax", err);
    let typed = "[package]\nname = \"x\"\nversion = 1\nlicense = \"MIT\"\n[depends]\nbuild = \"zlib\"\nrun = [1]\n[build.steps]\ninstall = \"true\"\n[[file]]\npath = \"usr/bin/x\"\nmode = 755\n";
    let err = load(&[("x.toml", typed)], &[]).unwrap_err();
    insta::assert_snapshot!("types", err);
}

#[test]
fn patches_are_verified_against_their_hash() {
    let body = b"--- a/x\n+++ b/x\n";
    let sha = xlfs_book::sha256_hex(body);
    let text = format!(
        "{}[[patch]]\nfile = \"fix.patch\"\nsha256 = \"{sha}\"\n",
        recipe("p", &[], "")
    );
    // The patch table must come before [build] for TOML; put it in a fresh recipe instead.
    let text =
        text.replace("[build]\ntemplate = \"autotools\"\n", "") + "[build]\ntemplate = \"autotools\"\n";
    assert!(load(&[("base/p.toml", &text)], &[("base/fix.patch", body)]).is_ok());
    let err = load(&[("base/p.toml", &text)], &[("base/fix.patch", b"changed")]).unwrap_err();
    assert!(err.contains("patch[0].sha256"), "{err}");
    assert!(err.contains("base/p.toml:"), "{err}");
}

#[test]
fn patch_and_input_paths_stay_inside_the_book() {
    let text = recipe("p", &[], "inputs = [\"../../etc/shadow\", \"ok.config\"]\n")
        + &format!("[[patch]]\nfile = \"/etc/passwd\"\nsha256 = \"{SHA}\"\n");
    let err = load(&[("base/p.toml", &text)], &[("base/ok.config", b"x")]).unwrap_err();
    assert!(
        err.contains("build.inputs: `../../etc/shadow` is not a path inside the recipe's directory"),
        "{err}"
    );
    assert!(
        err.contains("patch[0].file: `/etc/passwd` is not a path inside the recipe's directory"),
        "{err}"
    );
    assert_eq!(err.matches("is not a path inside").count(), 2, "{err}");
}

#[test]
fn subdir_must_stay_inside_the_sources() {
    for (subdir, why) in [
        ("/etc", "it is absolute"),
        ("../../..", "it climbs out with `..`"),
        ("a/../../b", "it climbs out with `..`"),
        ("./src", "it is not normalised"),
        ("src//lib", "it is not normalised"),
        ("a\\u0000b", "it holds a NUL byte"),
        ("", "it is empty"),
    ] {
        let text = recipe("p", &[], &format!("subdir = \"{subdir}\"\n"));
        let err = load(&[("base/p.toml", &text)], &[]).unwrap_err();
        assert!(
            err.contains("base/p.toml:15:10: build.subdir: `")
                && err.contains("` is not a path inside the unpacked sources: ")
                && err.contains(why),
            "{subdir}: {err}"
        );
        assert!(
            err.contains("help: name a directory below the unpacked sources"),
            "{err}"
        );
    }
    let text = recipe("p", &[], "subdir = \"gcc-14.2.0/libgcc\"\n");
    let book = load(&[("base/p.toml", &text)], &[]).unwrap();
    assert_eq!(
        book.get("p").unwrap().subdir.as_deref(),
        Some("gcc-14.2.0/libgcc")
    );
}

#[test]
fn nul_in_a_patch_path_is_refused() {
    let text = recipe("p", &[], "inputs = [\"a\\u0000b\"]\n");
    let err = load(&[("base/p.toml", &text)], &[]).unwrap_err();
    assert!(
        err.contains(
            "build.inputs: `a\\0b` is not a path inside the recipe's directory: it holds a NUL byte"
        ),
        "{err}"
    );
}

/// A book on disk with one recipe `p` in `base/`, whose patch and input are the given files.
fn book_on_disk(top: &Path) -> PathBuf {
    let root = top.join("book");
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::create_dir_all(root.join("base")).unwrap();
    std::fs::write(root.join("templates/autotools.toml"), AUTOTOOLS).unwrap();
    root
}

#[test]
fn symlinks_out_of_the_recipe_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = book_on_disk(tmp.path());
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"--- a/x\n+++ b/x\n").unwrap();
    let sha = xlfs_book::sha256_hex(b"--- a/x\n+++ b/x\n");
    std::fs::create_dir_all(root.join("kernel")).unwrap();
    std::fs::write(root.join("kernel/other.config"), b"y").unwrap();
    // A link out of the book, and one to another recipe's directory inside the book.
    std::os::unix::fs::symlink(&secret, root.join("base/fix.patch")).unwrap();
    std::os::unix::fs::symlink("../kernel/other.config", root.join("base/in.config")).unwrap();
    std::fs::write(root.join("base/z.config"), b"z").unwrap();
    let text = recipe("p", &[], "inputs = [\"z.config\", \"in.config\"]\n").replace(
        "[build]\n",
        &format!("[[patch]]\nfile = \"fix.patch\"\nsha256 = \"{sha}\"\n\n[build]\n"),
    );
    std::fs::write(root.join("base/p.toml"), &text).unwrap();
    let err = Book::load(&root).unwrap_err().to_string();
    assert!(
        err.contains(
            "base/p.toml:14:8: patch[0].file: patch file `base/fix.patch` cannot be read: it leads to"
        ) && err.contains("outside the book"),
        "{err}"
    );
    std::fs::remove_file(root.join("base/fix.patch")).unwrap();
    std::fs::copy(&secret, root.join("base/fix.patch")).unwrap();
    let err = Book::load(&root).unwrap_err().to_string();
    assert!(
        err.contains("base/p.toml:19:23: build.inputs: `in.config` leads through a symbolic link to")
            && err.contains("kernel/other.config, outside the recipe's directory"),
        "{err}"
    );
    assert!(err.ends_with("1 problem found"), "{err}");

    // A link that stays in the recipe's directory is fine.
    std::fs::remove_file(root.join("base/fix.patch")).unwrap();
    std::fs::remove_file(root.join("base/in.config")).unwrap();
    std::fs::copy(&secret, root.join("base/real.patch")).unwrap();
    std::os::unix::fs::symlink("real.patch", root.join("base/fix.patch")).unwrap();
    std::fs::write(root.join("base/in.config"), b"y").unwrap();
    Book::load(&root).unwrap();
}

#[test]
fn overlays_stay_inside_the_profile_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = book_on_disk(tmp.path());
    std::fs::create_dir_all(root.join("profiles/host-files")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("profiles/etc")).unwrap();
    let profile = |host: &str, guest: &str| {
        format!(
            "[host]\nxen = \"x\"\nkernel = \"k\"\nxen-cmdline = \"console=com1\"\noverlay = \"{host}\"\n\n[[guest]]\nname = \"g\"\nkernel = \"k\"\noverlay = \"{guest}\"\n"
        )
    };
    let path = root.join("profiles/t.toml");
    let parse = |text: &str| {
        let (_, d) = xlfs_book::profile::parse_profile(&path, "t", text);
        d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
    };
    let err = parse(&profile("/etc", "../../../root"));
    assert!(
        err.contains(
            ":5:11: host.overlay: `/etc` is not a path inside the profile's directory: it is absolute"
        ),
        "{err}"
    );
    assert!(err.contains(":10:11: guest[0].overlay: `../../../root` is not a path inside the profile's directory: it climbs out with `..`"), "{err}");
    let err = parse(&profile("etc", "host-files"));
    assert!(
        err.contains(
            "host.overlay: `etc` leads through a symbolic link to /etc, outside the profile's directory"
        ),
        "{err}"
    );
    assert!(!err.contains("guest[0].overlay"), "{err}");
    assert_eq!(parse(&profile("host-files", "host-files/sub")), "");
}

/// A recipe with build and run dependencies.
fn recipe_with_run(name: &str, build: &[&str], run: &[&str]) -> String {
    let run: Vec<String> = run.iter().map(|d| format!("\"{d}\"")).collect();
    recipe(name, build, "").replace(
        "\n\n[build]\n",
        &format!("\nrun = [{}]\n\n[build]\n", run.join(", ")),
    )
}

#[test]
fn runtime_only_cycles_are_allowed_build_cycles_are_not() {
    // bash and readline need each other at run time; a shell-using tool builds with bash.
    let bash = recipe_with_run("bash", &["ncurses"], &["readline"]);
    let readline = recipe_with_run("readline", &["ncurses"], &["bash", "ncurses"]);
    let ncurses = recipe_with_run("ncurses", &[], &[]);
    let tool = recipe_with_run("tool", &["bash"], &[]);
    let ok = [
        ("bash.toml", bash.as_str()),
        ("readline.toml", readline.as_str()),
        ("ncurses.toml", ncurses.as_str()),
        ("tool.toml", tool.as_str()),
    ];
    load(&ok, &[]).unwrap();

    // ncurses builds with tool, whose build root holds bash (whose runtime closure holds ncurses).
    let ncurses = recipe_with_run("ncurses", &["tool"], &[]);
    let mut bad = ok;
    bad[2].1 = &ncurses;
    let err = load(&bad, &[]).unwrap_err();
    assert!(
        err.contains("bash.toml:2:8: depends: build dependency cycle: bash -> ncurses -> tool -> bash "),
        "{err}"
    );
    assert!(
        err.contains("cycles through `depends.run` alone are allowed"),
        "{err}"
    );
    assert!(err.ends_with("1 problem found"), "{err}");

    // A package that is in its own build root through a build dependency's runtime closure.
    let a = recipe_with_run("a", &["b"], &[]);
    let b = recipe_with_run("b", &[], &["a"]);
    let err = load(&[("a.toml", &a), ("b.toml", &b)], &[]).unwrap_err();
    assert!(
        err.contains("a.toml:2:8: depends: build dependency cycle: a -> a "),
        "{err}"
    );
}

#[test]
fn qa_skip_names_known_checks_with_reasons() {
    let good = recipe("p", &[], "").replace(
        "template = \"autotools\"\n",
        "template = \"autotools\"\nqa-skip = { buildpaths = \"the test data holds /build/src/ on purpose\" }\n",
    );
    let book = load(&[("p.toml", &good)], &[]).unwrap();
    assert_eq!(
        book.get("p").unwrap().qa_skip["buildpaths"],
        "the test data holds /build/src/ on purpose"
    );
    let bad = recipe("p", &[], "").replace(
        "template = \"autotools\"\n",
        "template = \"autotools\"\nqa-skip = { rpath = \"x\", needed = \" \" }\n",
    );
    let err = load(&[("p.toml", &bad)], &[]).unwrap_err();
    assert!(
        err.contains("p.toml:15:35: build.qa-skip.needed: a skipped check needs a reason"),
        "{err}"
    );
    assert!(err.contains("build.qa-skip.rpath: unknown key `rpath`"), "{err}");
    assert!(err.contains("did you mean `rpaths`?"), "{err}");
}

#[test]
fn a_cost_hint_is_read_validated_and_not_part_of_the_recipe_hash() {
    let plain = recipe("z", &[], "");
    let hinted = recipe("z", &[], "cost = 40\n");
    let a = load(&[("base/z.toml", &plain)], &[]).unwrap();
    let b = load(&[("base/z.toml", &hinted)], &[]).unwrap();
    assert_eq!(a.get("z").unwrap().cost, None);
    assert_eq!(b.get("z").unwrap().cost, Some(40));
    assert_eq!(
        serde_json::to_string(a.get("z").unwrap()).unwrap(),
        serde_json::to_string(b.get("z").unwrap()).unwrap(),
        "a scheduling hint changes no artifact, so no key"
    );
    for bad in ["cost = 0\n", "cost = -3\n", "cost = 1000000\n"] {
        let err = load(&[("base/z.toml", &recipe("z", &[], bad))], &[]).unwrap_err();
        assert!(
            err.contains("build.cost") && err.contains("out of range"),
            "{err}"
        );
        assert!(err.contains("base/z.toml:"), "names file and line: {err}");
    }
    let err = load(&[("base/z.toml", &recipe("z", &[], "cost = \"big\"\n"))], &[]).unwrap_err();
    assert!(err.contains("cost"), "{err}");
}

#[test]
fn named_environments_add_their_packages_to_the_build_root() {
    let config = "[book]\nname = \"t\"\n[env.guest]\nbase = \"chroot\"\nbuild = [\"cc\", \"libc\"]\n";
    let book = load(
        &[
            ("book.toml", config),
            ("base/cc.toml", &recipe("cc", &[], "")),
            ("base/libc.toml", &recipe("libc", &[], "")),
            ("base/zlib.toml", &recipe("zlib", &[], "")),
            (
                "svc/web.toml",
                &recipe("web", &["zlib", "libc"], "env = \"guest\"\n"),
            ),
        ],
        &[],
    )
    .unwrap();
    let web = book.get("web").unwrap();
    assert_eq!(web.env, xlfs_book::BuildEnv::Chroot);
    assert_eq!(web.env_name.as_deref(), Some("guest"));
    // The environment's packages first, then the declared ones, each once.
    assert_eq!(web.build_deps, ["cc", "libc", "zlib"]);
    // A recipe that names a plain environment gets nothing added.
    assert!(book.get("zlib").unwrap().build_deps.is_empty());
}

#[test]
fn named_environment_errors_name_book_toml_and_the_fix() {
    let config = "[env.guest]\nbase = \"hots\"\nbuild = [\"ccc\"]\n[env.host]\nbase = \"host\"\n";
    let err = load(
        &[
            ("book.toml", config),
            ("base/cc.toml", &recipe("cc", &[], "")),
            ("svc/web.toml", &recipe("web", &[], "env = \"gest\"\n")),
        ],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("unknown base environment `hots`"), "{err}");
    assert!(err.contains("env.host"), "{err}");
    assert!(err.contains("unknown build environment `gest`"), "{err}");
    // `guest` has a bad base, so it is not defined; the suggestion comes from what is.
    assert!(err.contains("book.toml"), "{err}");

    let config = "[env.guest]\nbase = \"host\"\nbuild = [\"ccc\"]\n";
    let err = load(
        &[("book.toml", config), ("base/cc.toml", &recipe("cc", &[], ""))],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("env.guest.build"), "{err}");
    assert!(err.contains("did you mean `cc`?"), "{err}");
}

#[test]
fn a_recipe_in_its_own_environment_is_a_build_cycle() {
    let config = "[env.lfs]\nbase = \"chroot\"\nbuild = [\"gcc\"]\n";
    let err = load(
        &[
            ("book.toml", config),
            ("ch8/gcc.toml", &recipe("gcc", &[], "env = \"lfs\"\n")),
        ],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("build dependency cycle: gcc -> gcc"), "{err}");
}

#[test]
fn bootstrap_twins_are_built_in_their_environment_from_twins() {
    let config = "[env.temp]\nbase = \"chroot\"\nbuild = [\"tools\"]\n\
                  [env.final]\nbase = \"chroot\"\nbuild = [\"gmp-boot\"]\n";
    let boot = "[bootstrap]\nenv = \"temp\"\n";
    let gcc = format!("{}{boot}", recipe("gcc", &["gmp", "zlib"], "env = \"final\"\n"));
    let book = load(
        &[
            ("book.toml", config),
            ("t/tools.toml", &recipe("tools", &[], "")),
            ("t/zlib.toml", &recipe("zlib", &[], "")),
            (
                "c/gmp.toml",
                &format!("{}{boot}", recipe("gmp", &[], "env = \"final\"\n")),
            ),
            ("c/gcc.toml", &gcc),
        ],
        &[],
    )
    .unwrap();
    let twin = book.get("gcc-boot").expect("the twin exists");
    assert_eq!(twin.twin_of.as_deref(), Some("gcc"));
    assert_eq!(twin.env_name.as_deref(), Some("temp"));
    // The twin's dependencies are twins where they have one; its environment's packages first.
    assert_eq!(twin.build_deps, ["tools", "gmp-boot", "zlib"]);
    let gcc = book.get("gcc").unwrap();
    assert_eq!(gcc.build_deps, ["gmp-boot", "gmp", "zlib"]);
    assert_eq!(twin.steps, gcc.steps);
    // Twin and original differ in their keys' recipe part.
    assert_ne!(
        serde_json::to_string(twin).unwrap(),
        serde_json::to_string(gcc).unwrap()
    );
}

#[test]
fn a_recipe_named_like_a_twin_is_refused() {
    let config = "[env.temp]\nbase = \"chroot\"\nbuild = []\n";
    let err = load(
        &[
            ("book.toml", config),
            (
                "c/gmp.toml",
                &format!("{}[bootstrap]\nenv = \"temp\"\n", recipe("gmp", &[], "")),
            ),
            ("c/gmp-boot.toml", &recipe("gmp-boot", &[], "")),
        ],
        &[],
    )
    .unwrap_err();
    assert!(err.contains("also the bootstrap twin of `gmp`"), "{err}");
}

#[test]
fn uefi_needs_a_disk_and_adds_grub_efi() {
    let path = std::path::Path::new("profiles/u.toml");
    let base = "[host]\nhostname = \"h\"\nxen = \"xen\"\nkernel = \"linux\"\npackages = [\"busybox\"]\nxen-cmdline = \"console=com1\"\n";
    let (p, d) =
        xlfs_book::profile::parse_profile(path, "u", &format!("{base}disk-image = true\nuefi = true\n"));
    assert!(d.is_empty(), "{d:?}");
    let p = p.unwrap();
    assert!(p.host.uefi);
    let t = p.targets();
    assert!(
        t.iter().any(|t| t == "grub") && t.iter().any(|t| t == "grub-efi"),
        "{t:?}"
    );
    let (_, d) = xlfs_book::profile::parse_profile(path, "u", &format!("{base}uefi = true\n"));
    let err = d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n");
    assert!(
        err.contains("profiles/u.toml:7:8: host.uefi: UEFI boots a disk, but the profile writes none"),
        "{err}"
    );
    assert!(
        err.contains("add `disk-image = true` to [host], or remove `uefi`"),
        "{err}"
    );
    let (_, d) =
        xlfs_book::profile::parse_profile(path, "u", &format!("{base}disk-image = true\nuefi = \"yes\"\n"));
    let err = d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n");
    assert!(err.contains("host.uefi"), "{err}");
}

#[test]
fn profile_tests_name_packages_with_a_check_step() {
    let book = load(
        &[
            ("base/gmp.toml", &recipe("gmp", &[], "")),
            (
                "base/data.toml",
                &recipe("data", &[], "[build.steps]\ninstall = \"true\"\n")
                    .replace("template = \"autotools\"\n", ""),
            ),
            (
                // A suite in parts needs no check step.
                "base/parted.toml",
                &recipe(
                    "parted",
                    &[],
                    "[build.steps]\ninstall = \"true\"\n[build.tests]\nresults = [\"t.log\"]\nparts = [\"make check\"]\n",
                )
                .replace("template = \"autotools\"\n", ""),
            ),
        ],
        &[],
    )
    .unwrap();
    assert!(book.get("gmp").unwrap().steps.contains_key("check"));
    assert!(!book.get("data").unwrap().steps.contains_key("check"));
    assert!(!book.get("parted").unwrap().steps.contains_key("check"));
    assert!(book.get("parted").unwrap().has_suite());
    assert!(!book.get("data").unwrap().has_suite());
    let path = std::path::Path::new("profiles/t.toml");
    let host = "[host]\nhostname = \"h\"\nxen = \"gmp\"\nkernel = \"gmp\"\npackages = []\nxen-cmdline = \"console=com1\"\n";
    let text =
        format!("[profile]\nsummary = \"s\"\ntests = [\"gmp\", \"gmpp\", \"data\", \"parted\"]\n{host}");
    let (p, d) = xlfs_book::profile::parse_profile(path, "t", &text);
    assert!(d.is_empty(), "{d:?}");
    let p = p.unwrap();
    assert_eq!(
        p.test_names().collect::<Vec<_>>(),
        ["gmp", "gmpp", "data", "parted"]
    );
    let err = p
        .check(&book)
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        err.contains("profiles/t.toml:3:17: profile.tests: unknown package `gmpp`"),
        "{err}"
    );
    assert!(err.contains("did you mean `gmp`?"), "{err}");
    assert!(
        err.contains("profiles/t.toml:3:25: profile.tests: `data` has no check step"),
        "{err}"
    );
    assert!(err.contains("remove `data` from profile.tests"), "{err}");
    assert!(!err.contains("`gmp`:"), "{err}");
    assert!(!err.contains("parted"), "{err}");
    // Not a list of strings: an error at the field.
    let (_, d) = xlfs_book::profile::parse_profile(path, "t", &format!("[profile]\ntests = 3\n{host}"));
    let err = d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n");
    assert!(err.contains("profile.tests"), "{err}");
}

#[test]
fn a_suite_in_parts_is_read_and_an_empty_part_is_refused_with_a_fix() {
    let tests = "[build.tests]\nresults = [\"t/*.sum\"]\nallow = []\n";
    let good = recipe("p", &[], "") + tests + "parts = [\"make -k check-a\", \"make -k check-b\"]\n";
    let book = load(&[("p.toml", &good)], &[]).unwrap();
    assert_eq!(
        book.get("p").unwrap().tests.as_ref().unwrap().parts,
        [
            xlfs_book::Part::command("make -k check-a"),
            xlfs_book::Part::command("make -k check-b")
        ]
    );
    // Parts are how the suite runs, not what is built: not in the recipe's key.
    let plain = load(&[("p.toml", &(recipe("p", &[], "") + tests))], &[]).unwrap();
    assert_eq!(
        serde_json::to_string(book.get("p").unwrap()).unwrap(),
        serde_json::to_string(plain.get("p").unwrap()).unwrap()
    );
    let bad = recipe("p", &[], "") + tests + "parts = [\"make -k check-a\", \"  \"]\n";
    let err = load(&[("p.toml", &bad)], &[]).unwrap_err();
    assert!(
        err.contains("p.toml:18:29: build.tests.parts: a part of the test suite is an empty command"),
        "{err}"
    );
    assert!(err.contains("e.g. \"make -k check-gcc-c\""), "{err}");
}

#[test]
fn named_parts_keep_a_result_file_that_results_must_name() {
    let tests = "[build.tests]\nresults = [\"t/**/*.sum\"]\nallow = []\n";
    let part = |name: &str, keep: &str| {
        format!("[[build.tests.parts]]\nname = \"{name}\"\nrun = \"make -k check-{name}\"\n{keep}")
    };
    let good = recipe("p", &[], "") + tests + &part("c1", "keep = \"t/gcc/gcc.sum\"\n") + &part("rest", "");
    let book = load(&[("p.toml", &good)], &[]).unwrap();
    let parts = &book.get("p").unwrap().tests.as_ref().unwrap().parts;
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].name.as_deref(), Some("c1"));
    assert_eq!(parts[0].kept().as_deref(), Some("t/gcc/gcc-c1.sum"));
    assert_eq!(parts[1].keep, None);
    assert_eq!(parts[1].kept(), None);
    // Each mistake names its field, and says how to mend it.
    let bad = recipe("p", &[], "")
        + tests
        + &part("c1", "keep = \"../gcc.sum\"\n")
        + &part("c1", "")
        + &part("c 2", "")
        + &part("c3", "keep = \"t/gcc.log\"\n")
        + "[[build.tests.parts]]\nname = \"c4\"\nrun = \" \"\nkeeps = \"t/x.sum\"\n"
        + "[[build.tests.parts]]\nrun = \"make\"\n";
    let err = load(&[("p.toml", &bad)], &[]).unwrap_err();
    for want in [
        "build.tests.parts[0].keep: `../gcc.sum` is not a path inside the build directory",
        "build.tests.parts[1].name: two parts are named `c1`",
        "build.tests.parts[2].name: `c 2` is not a part name",
        "build.tests.parts[3].keep: the part keeps its results as `t/gcc-c3.log`, which no `results` glob names",
        "build.tests.parts[4].run: a part of the test suite is an empty command",
        "build.tests.parts[4].keeps: unknown key `keeps`",
        "did you mean `keep`?",
        "build.tests.parts[5].name: missing required field `name`",
    ] {
        assert!(err.contains(want), "no `{want}` in:\n{err}");
    }
}
