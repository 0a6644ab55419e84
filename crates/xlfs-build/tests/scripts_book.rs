//! Every recipe of the book becomes a script bash can read, as a fresh build and as one that goes
//! on in its kept tree (`package::script`); a suite in parts marks each part.

use std::path::Path;
use xlfs_build::package::{script, Resume, Spent};

fn bash_reads(text: &str) -> Result<(), String> {
    let out = std::process::Command::new("bash")
        .args(["-n", "-c", text])
        .output()
        .expect("bash runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_recipe_script_parses_fresh_and_resumed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    let book = xlfs_book::Book::load(&root).unwrap_or_else(|e| panic!("the book has problems:\n{e}"));
    let modes = [
        Resume::Fresh,
        Resume::AfterBuild { checked: false },
        Resume::AfterBuild { checked: true },
    ];
    let env = [("MAKEFLAGS".to_string(), " -j2 --jobserver-auth=3,4".to_string())];
    let mut bad = Vec::new();
    for r in book.recipes.values() {
        for resume in modes {
            for checks in [false, true] {
                let s = script(r, "/build/src/x", checks, resume, &env, Spent::default());
                if let Err(e) = bash_reads(&s) {
                    bad.push(format!("{} ({resume:?}, checks {checks}): {e}", r.name));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    // gcc's suite in parts: fresh, the steps run in order, the tree is marked after the build
    // step, and each part is skipped when its mark is there.
    let gcc = book.get("gcc").unwrap();
    let parts = &gcc.tests.as_ref().unwrap().parts;
    // C in five parts, C++ in seven, libstdc++ in seven, libgomp, then the rest of `make -k check`.
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_deref().unwrap_or("?")).collect();
    let expected =
        "c1 c2 c3 c4 c5 cxx1 cxx2 cxx3 cxx4 cxx5 cxx6 cxx7 lib1 lib2 lib3 lib4 lib5 lib6 lib7 gomp rest";
    assert_eq!(names.join(" "), expected);
    let n = parts.len();
    let gcc_script = |resume| {
        script(
            gcc,
            "/build/src/gcc-15-15.2.0",
            true,
            resume,
            &env,
            Spent::default(),
        )
    };
    let fresh = gcc_script(Resume::Fresh);
    let at = |s: &str, what: &str| s.find(what).unwrap_or_else(|| panic!("no `{what}` in:\n{s}"));
    assert!(at(&fresh, "../configure") < at(&fresh, "xlfs_mark /build/.xlfs/built"));
    let c1 = "make -k check-gcc-c RUNTESTFLAGS=\"compile.exp dg-torture.exp\"";
    assert!(at(&fresh, "xlfs_mark /build/.xlfs/built") < at(&fresh, c1));
    assert!(at(&fresh, c1) < at(&fresh, "make -k check-gcc-c++"));
    assert!(at(&fresh, "make -k check-gcc-c++") < at(&fresh, "make -k check-target-libstdc++-v3"));
    assert_eq!(fresh.matches("if [ -e /build/.xlfs/part-").count(), n);
    // Each DejaGNU part keeps its summary under its own name, after its commands.
    let t = "'/build/src/gcc-15-15.2.0/gcc-15.2.0/build/gcc/testsuite/gcc";
    let keep_c1 = format!("mv -fv -- {t}/gcc.sum' {t}/gcc-c1.sum'");
    let c1_runs = format!("\n{c1}\n");
    assert!(at(&fresh, &format!("rm -f -- {t}/gcc-c1.sum'")) < at(&fresh, &c1_runs));
    assert!(at(&fresh, &c1_runs) < at(&fresh, &keep_c1));
    assert!(at(&fresh, &format!("==> xlfs: check part 1/{n} (c1) (")) < at(&fresh, &keep_c1));
    assert_eq!(fresh.matches("mv -fv -- ").count(), n - 1);
    assert!(at(&fresh, "xlfs_mark /build/.xlfs/checked") < at(&fresh, "make DESTDIR=\"$DESTDIR\" install"));
    // Resumed: no configure, the saved directory and variables first, the parts still there.
    let resumed = gcc_script(Resume::AfterBuild { checked: false });
    assert!(!resumed.contains("../configure"), "{resumed}");
    assert!(at(&resumed, ". /build/.xlfs/env") < at(&resumed, c1));
    // ... and this run's environment over the earlier run's (its jobserver, not the old one).
    assert!(
        at(&resumed, ". /build/.xlfs/env") < at(&resumed, "export MAKEFLAGS=' -j2 --jobserver-auth=3,4'")
    );
    // Past a check that had ended: its step does not run again, nor does a part with a mark;
    // with every part marked, the results are only judged again (a part added or changed since
    // has no mark, and runs).
    let judged = gcc_script(Resume::AfterBuild { checked: true });
    assert!(!judged.contains("ulimit -S -s"), "{judged}");
    let all_marked = at(&judged, "if [ -e /build/.xlfs/part-1-");
    assert!(judged[all_marked..].starts_with(&format!(
        "if {}; then\nprintf '\\n==> xlfs: check ended in an earlier run; its results are judged again\\n'\nelse\n",
        (1..=n)
            .map(|i| {
                let m = at(&fresh, &format!("xlfs_mark /build/.xlfs/part-{i}-"));
                format!("[ -e {} ]", fresh[m + "xlfs_mark ".len()..].lines().next().unwrap())
            })
            .collect::<Vec<_>>()
            .join(" && ")
    )));
    assert_eq!(judged.matches("if [ -e /build/.xlfs/part-").count(), n + 1);
    assert!(judged.contains("make DESTDIR=\"$DESTDIR\" install"));
}
