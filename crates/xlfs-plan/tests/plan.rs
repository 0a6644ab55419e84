use std::path::{Path, PathBuf};
use xlfs_book::{Book, BookFile};
use xlfs_plan::{plan, EnvIds, Previous, Reason, Status};

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
