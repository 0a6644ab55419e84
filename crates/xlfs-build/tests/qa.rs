//! The contamination check on crafted packages: small programs and libraries built with the
//! real `cc` into a DESTDIR, as a recipe's install step would leave them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use xlfs_build::qa::{check, library_names, Qa};

/// Run `cc ARGS` in `dir`; panics with its output on failure.
fn cc(dir: &Path, args: &[&str]) {
    let out = Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A DESTDIR with `usr/lib/libown.so.1` and `usr/bin/prog` linked against it and `extra` libs
/// (`-L` `libdir`), built with `flags`.
fn package(top: &Path, libdir: &Path, extra: &[&str], flags: &[&str]) -> std::path::PathBuf {
    let dest = top.join("destdir");
    fs::create_dir_all(dest.join("usr/lib")).unwrap();
    fs::create_dir_all(dest.join("usr/bin")).unwrap();
    fs::write(top.join("own.c"), "int own(void) { return 1; }\n").unwrap();
    fs::write(
        top.join("prog.c"),
        "int own(void);\nint main(void) { return own() - 1; }\n",
    )
    .unwrap();
    cc(
        top,
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libown.so.1",
            "-o",
            "libown.so.1",
            "own.c",
        ],
    );
    fs::copy(top.join("libown.so.1"), dest.join("usr/lib/libown.so.1")).unwrap();
    std::os::unix::fs::symlink("libown.so.1", dest.join("usr/lib/libown.so")).unwrap();
    let mut args = vec![
        "-o".to_string(),
        dest.join("usr/bin/prog").display().to_string(),
        "prog.c".into(),
        format!("-L{}", dest.join("usr/lib").display()),
        format!("-L{}", libdir.display()),
        "-lown".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(flags.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    cc(top, &args);
    dest
}

/// `libdep.so.2` in `dir`, standing for a library of some package.
fn dep_lib(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("dep.c"), "int dep(void) { return 0; }\n").unwrap();
    cc(
        dir,
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libdep.so.2",
            "-o",
            "libdep.so.2",
            "dep.c",
        ],
    );
    std::os::unix::fs::symlink("libdep.so.2", dir.join("libdep.so")).unwrap();
}

/// The toolchain: the C library's sonames, as the build machine's root has them.
fn toolchain() -> BTreeSet<String> {
    let libs = library_names(Path::new("/"), Some(&["lib", "lib64", "usr/lib", "usr/lib64"]));
    assert!(libs.contains("libc.so.6"), "{libs:?}");
    libs
}

fn qa(dep_libs: BTreeSet<String>, build_paths: Vec<String>) -> Qa {
    Qa {
        dep_libs,
        toolchain_libs: toolchain(),
        build_paths,
        dep_links: Default::default(),
        skip: BTreeSet::new(),
    }
}

#[test]
fn a_clean_package_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let deps = tmp.path().join("dep/usr/lib");
    dep_lib(&deps);
    let dest = package(
        tmp.path(),
        &deps,
        &["-Wl,--no-as-needed", "-ldep"],
        &["-Wl,-rpath,$ORIGIN/../lib/xen"],
    );
    fs::write(dest.join("usr/bin/script"), "#!/bin/sh\nexec /usr/bin/prog\n").unwrap();
    let dep_libs = library_names(&tmp.path().join("dep"), None);
    assert_eq!(
        dep_libs,
        BTreeSet::from(["libdep.so".to_string(), "libdep.so.2".to_string()])
    );
    let home = tmp.path().join("home").display().to_string();
    let problems = check(&dest, &qa(dep_libs, vec![home, "/build/src/".into()])).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn an_undeclared_library_fails() {
    let tmp = tempfile::tempdir().unwrap();
    // libdep is there at link time (as the build machine's own library would be), but no
    // declared dependency installs it.
    let host = tmp.path().join("host-lib");
    dep_lib(&host);
    let dest = package(tmp.path(), &host, &["-Wl,--no-as-needed", "-ldep"], &[]);
    let problems = check(&dest, &qa(BTreeSet::new(), vec![])).unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = &problems[0];
    assert_eq!(
        (p.check.as_str(), p.file.as_str(), p.value.as_str()),
        ("needed", "/usr/bin/prog", "libdep.so.2")
    );
    let msg = p.to_string();
    assert!(
        msg.starts_with("needed: /usr/bin/prog: `libdep.so.2`; no declared dependency"),
        "{msg}"
    );
    assert!(
        msg.contains("add the package that provides it to depends.build"),
        "{msg}"
    );

    // Declared: fine. Skipped by the recipe: fine.
    let declared = BTreeSet::from(["libdep.so.2".to_string()]);
    assert!(check(&dest, &qa(declared, vec![])).unwrap().is_empty());
    let mut skipped = qa(BTreeSet::new(), vec![]);
    skipped.skip.insert("needed".into());
    assert!(check(&dest, &skipped).unwrap().is_empty());
}

#[test]
fn an_rpath_outside_usr_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let deps = tmp.path().join("dep/usr/lib");
    dep_lib(&deps);
    let dest = package(
        tmp.path(),
        &deps,
        &["-Wl,--no-as-needed", "-ldep"],
        &["-Wl,-rpath,/build/x:/usr/lib/xen", "-Wl,--disable-new-dtags"],
    );
    let problems = check(&dest, &qa(library_names(&deps, None), vec![])).unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        (
            problems[0].check.as_str(),
            problems[0].file.as_str(),
            problems[0].value.as_str()
        ),
        ("rpaths", "/usr/bin/prog", "/build/x")
    );
    assert!(problems[0].fix.contains("must lie under /usr"), "{}", problems[0]);

    // RUNPATH (the default with new dtags) is checked the same way.
    let tmp = tempfile::tempdir().unwrap();
    let deps = tmp.path().join("dep/usr/lib");
    dep_lib(&deps);
    let dest = package(
        tmp.path(),
        &deps,
        &["-Wl,--no-as-needed", "-ldep"],
        &["-Wl,-rpath,$ORIGIN/../../../tmp", "-Wl,--enable-new-dtags"],
    );
    let problems = check(&dest, &qa(library_names(&deps, None), vec![])).unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].value, "$ORIGIN/../../../tmp");
}

#[test]
fn a_build_path_in_any_file_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let deps = tmp.path().join("dep/usr/lib");
    dep_lib(&deps);
    let dest = package(tmp.path(), &deps, &[], &[]);
    let home = "/home/someone/.cache/xlfs".to_string();
    let outside = format!("{home}/builds/prog-0123456789ab");
    fs::create_dir_all(dest.join("usr/lib/pkgconfig")).unwrap();
    fs::write(
        dest.join("usr/lib/pkgconfig/own.pc"),
        format!("prefix={outside}/destdir/usr\n"),
    )
    .unwrap();
    // A binary that embeds the sandbox's source directory (as __FILE__ or debug info would).
    fs::write(
        tmp.path().join("file.c"),
        "#include <stdio.h>\nint main(void) { puts(__FILE__); return 0; }\n",
    )
    .unwrap();
    let src = tmp.path().join("build/src/pkg-1.0");
    fs::create_dir_all(&src).unwrap();
    fs::copy(tmp.path().join("file.c"), src.join("file.c")).unwrap();
    cc(
        &src,
        &[
            "-o",
            &dest.join("usr/bin/where").display().to_string(),
            &format!("{}/file.c", src.display()),
        ],
    );
    let sandbox_src = format!("{}/", tmp.path().join("build/src").display());
    let paths = vec![outside.clone(), home.clone(), sandbox_src.clone(), "/x".into()];
    let problems = check(&dest, &qa(BTreeSet::new(), paths.clone())).unwrap();
    let found: Vec<(&str, &str, &str)> = problems
        .iter()
        .map(|p| (p.check.as_str(), p.file.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("buildpaths", "/usr/bin/where", sandbox_src.as_str()),
            ("buildpaths", "/usr/lib/pkgconfig/own.pc", outside.as_str()),
            ("buildpaths", "/usr/lib/pkgconfig/own.pc", home.as_str()),
        ],
        "{problems:#?}"
    );
    assert!(
        problems[0].to_string().contains("-ffile-prefix-map"),
        "{}",
        problems[0]
    );
    let mut skipped = qa(BTreeSet::new(), paths);
    skipped.skip.insert("buildpaths".into());
    assert!(check(&dest, &skipped).unwrap().is_empty());
}
