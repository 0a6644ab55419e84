use std::path::{Path, PathBuf};
use xlfs_book::{Book, BookFile};
use xlfs_plan::{plan, plan_tuned, EnvIds, Inputs, Previous, Reason, Status};

const SHA: &str = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb";

fn recipe(name: &str, build: &[&str], run: &[&str], step: &str) -> BookFile {
    let q = |l: &[&str]| {
        l.iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    BookFile {
        path: PathBuf::from(format!("{name}.toml")),
        text: format!(
            "[package]\nname = \"{name}\"\nversion = \"1\"\nlicense = \"MIT\"\n[[source]]\nfile = \"{name}.tar\"\nsha256 = \"{SHA}\"\n[depends]\nbuild = [{}]\nrun = [{}]\n[build.steps]\ninstall = \"{step}\"\n",
            q(build),
            q(run)
        ),
    }
}

fn book(files: Vec<BookFile>) -> Book {
    Book::from_files(Path::new("b"), files, &|_| {
        Err(std::io::ErrorKind::NotFound.into())
    })
    .unwrap()
}

fn envs() -> EnvIds {
    EnvIds {
        host: "host-1".into(),
        chroot: "chroot-1".into(),
    }
}

/// libc <- libz (run: libc); app builds with libz, runs with libz; tool is independent.
fn sample(app_step: &str) -> Book {
    book(vec![
        recipe("libc", &[], &[], "true"),
        recipe("libz", &["libc"], &["libc"], "true"),
        recipe("app", &["libz"], &["libz"], app_step),
        recipe("tool", &[], &[], "true"),
    ])
}

#[test]
fn order_is_deterministic_and_respects_build_roots() {
    let b = sample("true");
    let p = plan(&b, &[], &envs(), &|_| None, &|_| false).unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["libc", "libz", "app", "tool"]);
    // app's build root holds libz and its runtime closure (libc), not app's own run deps.
    assert_eq!(p.get("app").unwrap().build_root, ["libc", "libz"]);
    assert!(p
        .steps
        .iter()
        .all(|s| s.status == Status::Build { why: Reason::New }));
    let again = plan(&b, &[], &envs(), &|_| None, &|_| false).unwrap();
    let keys = |p: &xlfs_plan::Plan| p.steps.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&p), keys(&again));
}

#[test]
fn targets_pull_in_only_what_they_need() {
    let b = sample("true");
    let p = plan(&b, &["libz".into()], &envs(), &|_| None, &|_| false).unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["libc", "libz"]);
    // Without runtime dependencies: app needs libz (and its runtime closure) to build, but
    // app's own runtime dependencies are not planned.
    let b2 = book(vec![
        recipe("libc", &[], &[], "true"),
        recipe("libz", &["libc"], &["libc"], "true"),
        recipe("app", &["libc"], &["libz"], "true"),
    ]);
    let p = xlfs_plan::plan_with(&b2, &["app".into()], false, &envs(), &|_| None, &|_| false).unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["libc", "app"]);
    let err = plan(&b, &["libzz".into()], &envs(), &|_| None, &|_| false).unwrap_err();
    assert_eq!(err.to_string(), "unknown package `libzz` (did you mean `libz`?)");
}

#[test]
fn a_change_rebuilds_the_package_and_its_dependents_only() {
    let before = plan(&sample("true"), &[], &envs(), &|_| None, &|_| false).unwrap();
    let libc_changed = book(vec![
        recipe("libc", &[], &[], "echo changed"),
        recipe("libz", &["libc"], &["libc"], "true"),
        recipe("app", &["libz"], &["libz"], "true"),
        recipe("tool", &[], &[], "true"),
    ]);
    let stored: Vec<String> = before.steps.iter().map(|s| s.key.clone()).collect();
    let prev = |n: &str| {
        before.get(n).map(|s| Previous {
            key: s.key.clone(),
            inputs: s.inputs.clone(),
        })
    };
    let after = plan(&libc_changed, &[], &envs(), &prev, &|k| {
        stored.iter().any(|s| s == k)
    })
    .unwrap();
    let status = |n: &str| after.get(n).unwrap().status.clone();
    assert_eq!(
        status("libc"),
        Status::Build {
            why: Reason::RecipeChanged
        }
    );
    assert_eq!(
        status("libz"),
        Status::Build {
            why: Reason::DependencyChanged(vec!["libc".into()])
        }
    );
    assert_eq!(
        status("app"),
        Status::Build {
            why: Reason::DependencyChanged(vec!["libc".into(), "libz".into()])
        }
    );
    assert_eq!(status("tool"), Status::Cached);
}

#[test]
fn the_environment_is_part_of_the_key() {
    let b = sample("true");
    let a = plan(&b, &[], &envs(), &|_| None, &|_| false).unwrap();
    let other = EnvIds {
        host: "host-2".into(),
        chroot: "chroot-1".into(),
    };
    let c = plan(&b, &[], &other, &|_| None, &|_| false).unwrap();
    assert_ne!(a.get("libc").unwrap().key, c.get("libc").unwrap().key);
    let prev = |n: &str| {
        a.get(n).map(|s| Previous {
            key: s.key.clone(),
            inputs: s.inputs.clone(),
        })
    };
    let c = plan(&b, &[], &other, &prev, &|_| false).unwrap();
    assert_eq!(
        c.get("libc").unwrap().status,
        Status::Build {
            why: Reason::EnvironmentChanged
        }
    );
}

#[test]
fn runtime_cycles_plan_and_share_one_build_root() {
    // bash and readline need each other at run time (as in LFS); both build with ncurses;
    // tool builds with bash, so its build root is bash's runtime closure, cycle included.
    let b = book(vec![
        recipe("ncurses", &[], &[], "true"),
        recipe("bash", &["ncurses"], &["readline"], "true"),
        recipe("readline", &["ncurses"], &["bash", "ncurses"], "true"),
        recipe("tool", &["bash"], &[], "true"),
    ]);
    assert_eq!(
        xlfs_plan::runtime_closure(&b, &["bash".into()])
            .into_iter()
            .collect::<Vec<_>>(),
        ["bash", "ncurses", "readline"]
    );
    let p = plan(&b, &["tool".into()], &envs(), &|_| None, &|_| false).unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ncurses", "bash", "readline", "tool"]);
    assert_eq!(p.get("bash").unwrap().build_root, ["ncurses"]);
    assert_eq!(p.get("tool").unwrap().build_root, ["ncurses", "bash", "readline"]);
    // Each key covers its own build root only, so the cycle does not make keys depend on
    // themselves: bash's key does not change with readline's recipe.
    let b2 = book(vec![
        recipe("ncurses", &[], &[], "true"),
        recipe("bash", &["ncurses"], &["readline"], "true"),
        recipe("readline", &["ncurses"], &["bash", "ncurses"], "make"),
        recipe("tool", &["bash"], &[], "true"),
    ]);
    let p2 = plan(&b2, &["tool".into()], &envs(), &|_| None, &|_| false).unwrap();
    assert_eq!(p.get("bash").unwrap().key, p2.get("bash").unwrap().key);
    assert_ne!(p.get("readline").unwrap().key, p2.get("readline").unwrap().key);
    assert_ne!(p.get("tool").unwrap().key, p2.get("tool").unwrap().key);
}

// Key inputs (issue 6 §3): each of these changes the key; where a package is built from does not.

fn key_of(b: &Book, name: &str) -> String {
    plan(b, &[], &envs(), &|_| None, &|_| false)
        .unwrap()
        .get(name)
        .unwrap()
        .key
        .clone()
}

fn one(text: &str, read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>) -> Book {
    one_at(Path::new("b"), text, read)
}

fn one_at(root: &Path, text: &str, read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>) -> Book {
    let files = vec![
        BookFile {
            path: PathBuf::from("book.toml"),
            text: "[book]\nname = \"t\"\nsource-date-epoch = 1700000000\n".into(),
        },
        BookFile {
            path: PathBuf::from("p.toml"),
            text: text.into(),
        },
    ];
    Book::from_files(root, files, read).unwrap()
}

const OTHER: &str = "9a93b2b7dfdac77ceba5a558a580e74667dd6fede4585b91eefb60f03b72df23";

fn with_debian(choice: &str) -> String {
    format!(
        "[package]\nname = \"p\"\nversion = \"1\"\nlicense = \"MIT\"\n[[source]]\nfile = \"p-1.tar.gz\"\nsha256 = \"{OTHER}\"\n\
         debian = {{ package = \"p\", file = \"p_1.orig.tar.gz\", sha256 = \"{SHA}\" }}\n{choice}\n\
         [build.steps]\ninstall = \"true\"\n"
    )
}

fn no_files(_: &Path) -> std::io::Result<Vec<u8>> {
    Err(std::io::ErrorKind::NotFound.into())
}

#[test]
fn source_date_epoch_is_part_of_the_key() {
    let text = recipe("p", &[], &[], "true").text;
    let mut a = one(&text, &no_files);
    let before = key_of(&a, "p");
    a.config.source_date_epoch += 1;
    assert_ne!(before, key_of(&a, "p"));
}

#[test]
fn the_chosen_copy_of_a_source_is_part_of_the_key() {
    let upstream = key_of(&one(&with_debian("use = \"upstream\""), &no_files), "p");
    let debian = key_of(&one(&with_debian("use = \"debian\""), &no_files), "p");
    assert_ne!(
        upstream, debian,
        "Debian's repack and upstream's tarball are different bytes"
    );
    // Without a choice, differing copies are an error that says how to fix it.
    let files = vec![BookFile {
        path: PathBuf::from("p.toml"),
        text: with_debian(""),
    }];
    let err = Book::from_files(Path::new("b"), files, &no_files)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source[0].use") && err.contains("use = \"debian\""),
        "{err}"
    );
    // Where the bytes are the same, a Debian copy under another name changes nothing.
    let same = |debian: &str| {
        format!(
            "[package]\nname = \"p\"\nversion = \"1\"\nlicense = \"MIT\"\n[[source]]\nfile = \"p-1.tar.gz\"\nsha256 = \"{SHA}\"\n{debian}\n\
             [build.steps]\ninstall = \"true\"\n"
        )
    };
    assert_eq!(
        key_of(&one(&same(""), &no_files), "p"),
        key_of(
            &one(
                &same(&format!(
                    "debian = {{ package = \"p\", file = \"p_1.orig.tar.gz\", sha256 = \"{SHA}\" }}"
                )),
                &no_files
            ),
            "p"
        )
    );
}

#[test]
fn the_content_of_an_input_is_part_of_the_key() {
    let text = "[package]\nname = \"p\"\nversion = \"1\"\nlicense = \"MIT\"\n[build]\ninputs = [\"p.config\"]\n[build.steps]\ninstall = \"true\"\n";
    let a = key_of(&one(text, &|_| Ok(b"CONFIG_A=y\n".to_vec())), "p");
    let b = key_of(&one(text, &|_| Ok(b"CONFIG_A=n\n".to_vec())), "p");
    assert_ne!(a, b);
}

#[test]
fn the_toolchain_is_part_of_the_key_of_host_builds_only() {
    let text = recipe("p", &[], &[], "true").text;
    let b = one(&text, &no_files);
    let chroot = "[package]\nname = \"p\"\nversion = \"1\"\nlicense = \"MIT\"\n[build]\nenv = \"chroot\"\n[build.steps]\ninstall = \"true\"\n";
    let c = one(chroot, &no_files);
    let other = EnvIds {
        host: "host-2".into(),
        chroot: "chroot-1".into(),
    };
    let k = |b: &Book, e: &EnvIds| {
        plan(b, &[], e, &|_| None, &|_| false)
            .unwrap()
            .get("p")
            .unwrap()
            .key
            .clone()
    };
    assert_ne!(
        k(&b, &envs()),
        k(&b, &other),
        "a host build follows the toolchain root"
    );
    assert_eq!(k(&c, &envs()), k(&c, &other), "a chroot build does not");
}

#[test]
fn moving_the_book_does_not_change_keys() {
    let text = "[package]\nname = \"p\"\nversion = \"1\"\nlicense = \"MIT\"\n[build]\ninputs = [\"p.config\"]\n[build.steps]\ninstall = \"true\"\n";
    let read = |_: &Path| Ok(b"CONFIG_A=y\n".to_vec());
    let a = one_at(Path::new("/home/alice/xlfs/book"), text, &read);
    let b = one_at(Path::new("/srv/ci/checkout/book"), text, &read);
    assert_eq!(key_of(&a, "p"), key_of(&b, "p"));
}

#[test]
fn without_runtime_what_the_toolchain_provides_is_not_planned() {
    // xen-tools builds with zlib, which runs with glibc; in `host` builds the toolchain root
    // provides glibc, so building xen-tools does not need glibc built.
    let mut files = vec![
        recipe("glibc", &[], &[], "true"),
        recipe("zlib", &[], &["glibc"], "true"),
        recipe("tools", &["zlib"], &["glibc", "zlib"], "true"),
    ];
    files.push(BookFile {
        path: PathBuf::from("book.toml"),
        text: "[book]\nname = \"t\"\n[toolchain.host]\nprovides = [\"glibc\"]\n".into(),
    });
    let b = book(files);
    let p = xlfs_plan::plan_with(&b, &["tools".into()], false, &envs(), &|_| None, &|_| false).unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zlib", "tools"]);
    let p = plan(&b, &["tools".into()], &envs(), &|_| None, &|_| false).unwrap();
    assert_eq!(p.steps.len(), 3, "with runtime dependencies, glibc is planned");
}

#[test]
fn artifacts_in_a_shared_cache_count_as_cached_and_say_where_they_come_from() {
    let b = sample("true");
    let local = plan(&b, &[], &envs(), &|_| None, &|_| false).unwrap();
    let key = |n: &str| local.get(n).unwrap().key.clone();
    let libc = key("libc");
    let p = plan(&b, &[], &envs(), &|_| None, &|k| k == libc).unwrap();
    // Only what is not local is looked up.
    assert_eq!(p.to_look_up(), vec![key("libz"), key("app"), key("tool")]);
    let found = [
        (key("libz"), "team".to_string()),
        (key("libc"), "team".to_string()),
    ]
    .into_iter()
    .collect();
    let p = p.with_remote(&found);
    let origin = |n: &str| p.get(n).unwrap().status.origin();
    assert_eq!(
        [origin("libc"), origin("libz"), origin("app"), origin("tool")],
        ["local", "cache team", "build", "build"]
    );
    assert!(p.get("libz").unwrap().is_cached());
    assert_eq!(
        p.to_build().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["app", "tool"]
    );
    assert_eq!(
        p.to_fetch().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["libz"]
    );
    // Where an artifact comes from does not change any key.
    let keys = |p: &xlfs_plan::Plan| p.steps.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&p), keys(&local));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json["steps"][1]["status"],
        serde_json::json!({"status": "remote", "cache": "team"})
    );
}

#[test]
fn a_hosts_march_is_part_of_every_key_and_absent_changes_nothing() {
    let b = sample("true");
    let plain = plan(&b, &[], &envs(), &|_| None, &|_| false).unwrap();
    let none = plan_tuned(&b, &[], true, &envs(), None, &|_| None, &|_| false).unwrap();
    let v3 = plan_tuned(&b, &[], true, &envs(), Some("x86-64-v3"), &|_| None, &|_| false).unwrap();
    let v2 = plan_tuned(&b, &[], true, &envs(), Some("x86-64-v2"), &|_| None, &|_| false).unwrap();
    for s in &plain.steps {
        assert_eq!(none.get(&s.name).unwrap().key, s.key);
        assert_ne!(v3.get(&s.name).unwrap().key, s.key);
        assert_ne!(v3.get(&s.name).unwrap().key, v2.get(&s.name).unwrap().key);
        assert_eq!(
            v3.get(&s.name).unwrap().inputs.march.as_deref(),
            Some("x86-64-v3")
        );
    }
    // Tuning an untuned build is a change of environment.
    let prev = |n: &str| {
        plain.get(n).map(|s| Previous {
            key: s.key.clone(),
            inputs: s.inputs.clone(),
        })
    };
    let t = plan_tuned(&b, &[], true, &envs(), Some("x86-64-v3"), &prev, &|_| false).unwrap();
    assert_eq!(
        t.get("libc").unwrap().status,
        Status::Build {
            why: Reason::EnvironmentChanged
        }
    );

    // The untuned key is the v1 formula, byte for byte, and inputs recorded before `march`
    // existed still read.
    let old = r#"{"recipe":"r","sources":"s","deps":{"a":"k"},"env":"e"}"#;
    let inputs: Inputs = serde_json::from_str(old).unwrap();
    assert_eq!(inputs.march, None);
    assert_eq!(serde_json::to_string(&inputs).unwrap(), old);
    use sha2::Digest;
    let v1 = hex::encode(sha2::Sha256::digest(
        b"xlfs-key-v1\nrecipe r\nsources s\nenv e\ndep a k\n",
    ));
    assert_eq!(inputs.key(), v1);
}
