//! `env = "host"` builds in the pinned toolchain root: what the engine provides to every build,
//! and keys that do not depend on where the book and the home are.

mod common;
use common::*;
use std::process::Command;

/// liba, libb (links liba; runs with it), app (links -lb only): ld must find liba.so, libb's
/// DT_NEEDED, in /sysroot without any -rpath-link from the recipe.
#[test]
fn ld_resolves_a_dependency_libraries_dt_needed_in_the_sysroot() {
    let w = World::new();
    let a_mk = "all:\n\t$(CC) -shared -fPIC -o liba.so.1 -Wl,-soname,liba.so.1 a.c\n\
install:\n\tinstall -D liba.so.1 $(DESTDIR)/usr/lib/liba.so.1\n\tln -s liba.so.1 $(DESTDIR)/usr/lib/liba.so\n";
    let b_mk = "all:\n\t$(CC) -shared -fPIC -o libb.so b.c -la\n\
install:\n\tinstall -D libb.so $(DESTDIR)/usr/lib/libb.so\n";
    let app_mk = "all:\n\t$(CC) -o app m.c -lb\n\
install:\n\tinstall -D app $(DESTDIR)/usr/bin/app\n";
    let pkgs = [
        (
            "liba",
            "int a(void) { return 42; }\n",
            "a.c",
            a_mk,
            vec![],
            vec![],
        ),
        (
            "libb",
            "int a(void); int b(void) { return a(); }\n",
            "b.c",
            b_mk,
            vec!["liba"],
            vec!["liba"],
        ),
        (
            "app",
            "int b(void); int main(void) { return b() != 42; }\n",
            "m.c",
            app_mk,
            vec!["libb"],
            vec![],
        ),
    ];
    for (name, c, cfile, mk, build, run) in pkgs {
        let t = tarball(
            &format!("{name}-1.0"),
            &[(cfile, c, 0o644), ("Makefile", mk, 0o644)],
        );
        let sha = w.add_tarball(&format!("{name}-1.0.tar.gz"), &t);
        let runs: Vec<String> = run.iter().map(|d| format!("\"{d}\"")).collect();
        let text = w
            .recipe(name, &format!("{name}-1.0.tar.gz"), &sha, &build, "")
            .replace(
                "[depends]\n",
                &format!("[depends]\nrun = [{}]\n", runs.join(", ")),
            );
        w.write_recipe(name, &text);
    }
    let out = w.ok(&["build", "app"]);
    assert!(out.contains("failed 0"), "{out}");
    let log = w.ok(&["log", "app"]);
    assert!(!log.contains("not found (try using -rpath"), "{log}");
}

#[test]
fn moving_the_book_and_the_home_keeps_every_key() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    w.ok(&["build"]);
    let before = w.plan();
    assert!(before.iter().all(|(_, _, s)| s == "cached"), "{before:?}");
    let moved = tempfile::tempdir().unwrap();
    let (book, home) = (
        moved.path().join("elsewhere/book"),
        moved.path().join("other/home"),
    );
    std::fs::create_dir_all(book.parent().unwrap()).unwrap();
    std::fs::create_dir_all(home.parent().unwrap()).unwrap();
    std::fs::rename(w.book(), &book).unwrap();
    std::fs::rename(w.home(), &home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
        .arg("--book")
        .arg(&book)
        .arg("--home")
        .arg(&home)
        .arg("--toolchains")
        .arg(toolchains())
        .args(["plan", "--json"])
        .env_remove("XLFS_HOME")
        .env_remove("XLFS_BOOK")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let after = plan_steps(&t);
    assert_eq!(
        before, after,
        "same keys, still cached, after moving the book and the home"
    );
}
