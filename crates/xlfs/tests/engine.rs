//! End-to-end tests of the engine: real tarballs, the real compiler, the real sandbox.
//! They need root (mount and pid namespaces), like xlfs itself.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_dependency_is_visible_to_its_dependent_and_a_second_build_is_cached() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    let out = w.ok(&["build", "--check=hello"]);
    assert!(out.contains("built 2, cached 0, failed 0"), "{out}");
    // hello's check step ran the program against libgreet from its build root (`--check=hello`:
    // hello's suite, not libgreet's).
    let log = w.ok(&["log", "hello"]);
    assert!(log.contains("hello from libgreet"), "{log}");
    assert!(!w.ok(&["log", "libgreet"]).contains("==> xlfs: check"));
    let files = w.ok(&["files", "hello"]);
    assert!(files.contains("/usr/bin/hello"), "{files}");
    assert!(
        files.contains("libgreet.so"),
        "the manifest lists hello's ELF needs: {files}"
    );
    // Second run: nothing to do.
    let out = w.ok(&["build"]);
    assert!(out.contains("nothing to do"), "{out}");
    assert!(w.plan().iter().all(|(_, _, s)| s == "cached"));
    // A cached package's suite does not run again: the build says so, and how to run it.
    let out = w.ok(&["build", "--check=hello"]);
    assert!(
        out.contains("`hello` is already built") && out.contains("xlfs rebuild --compare --check hello"),
        "{out}"
    );
}

#[test]
fn a_named_environment_and_a_group_make_the_build_root() {
    let w = World::new();
    w.greet_and_hello(&[]);
    // A group: no sources, no steps, only what it brings at run time.
    w.write_recipe(
        "kit",
        "[package]\nname = \"kit\"\nversion = \"1\"\nlicense = \"MIT\"\n[depends]\nrun = [\"libgreet\"]\n",
    );
    let config = std::fs::read_to_string(w.book().join("book.toml")).unwrap();
    std::fs::write(
        w.book().join("book.toml"),
        format!("{config}[env.kit]\nbase = \"host\"\nbuild = [\"kit\"]\n"),
    )
    .unwrap();
    let hello = std::fs::read_to_string(w.book().join("hello.toml")).unwrap();
    w.write_recipe("hello", &format!("{hello}env = \"kit\"\n"));
    // hello declares nothing: the environment brings libgreet.
    let out = w.ok(&["build", "hello", "--check"]);
    assert!(out.contains("built 3, cached 0, failed 0"), "{out}");
    assert!(w.ok(&["log", "hello"]).contains("hello from libgreet"));
    assert!(
        w.ok(&["files", "kit"])
            .lines()
            .filter(|l| l.contains("/usr"))
            .count()
            == 0
    );
    // A package with steps that installs nothing is still an error.
    let bad = w.recipe(
        "libgreet",
        "libgreet-1.0.tar.gz",
        &common::sha256(&std::fs::read(w.mirror().join("libgreet-1.0.tar.gz")).unwrap()),
        &[],
        "",
    );
    w.write_recipe(
        "libgreet",
        &bad.replace(
            "install = \"install\"",
            "install = \"install\"\nsteps.install = \"true\"",
        ),
    );
    let out = w.fails(&["build", "libgreet"]);
    assert!(
        out.contains("the install step put nothing into $DESTDIR"),
        "{out}"
    );
}

/// The package `suite` (a tarball of one Makefile) in `w`'s sources, and a function giving its
/// recipe: `[build.tests]` with `results = ["t/*.sum"]` and the given lines (`allow`, `parts`).
fn suite_package<'a>(w: &'a World, makefile: &str) -> impl Fn(&str) -> String + 'a {
    let sha = w.add_tarball(
        "suite-1.0.tar.gz",
        &tarball("suite-1.0", &[("Makefile", makefile, 0o644)]),
    );
    move |tests| {
        w.recipe("suite", "suite-1.0.tar.gz", &sha, &[], "")
            + &format!("\n[build.tests]\nresults = [\"t/*.sum\"]\n{tests}\n")
    }
}

#[test]
fn a_test_suite_fails_the_build_only_for_failures_outside_its_allowlist() {
    let w = World::new();
    // A "test suite" that reports one pass and two failures the DejaGNU way, and exits 1. It
    // also makes a directory beside its sources (as a build in `../build` does): the tree's
    // steps ran in `suite-1.0`, which `src/` no longer shows by itself alone.
    let mk = "all:\n\ttrue\ncheck:\n\tmkdir -p t ../obj\n\
              \tprintf 'PASS: one\\nFAIL: two (flaky)\\nFAIL: three\\nXFAIL: four\\n' > t/suite.sum\n\
              \tfalse\ninstall:\n\tinstall -D -m 0644 Makefile $(DESTDIR)/usr/share/suite/Makefile\n";
    let recipe = suite_package(&w, mk);
    w.write_recipe("suite", &recipe("allow = [\"two *\"]"));
    let out = w.fails(&["build", "suite", "--check"]);
    assert!(
        out.contains("1 test(s) failed that [build.tests] allow does not list: FAIL: three"),
        "{out}"
    );
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("1 passed, 1 expected failures or skipped, 2 failed (1 known, 1 not)"),
        "{log}"
    );
    let status = w.ok(&["status"]);
    assert!(
        status.contains("FAILED suite") && status.contains("(the next build goes on in it after its check)"),
        "{status}"
    );
    // gc leaves that tree alone: the suite's results are in it.
    let gc = w.ok(&["gc"]);
    assert!(
        gc.contains("keep build tree") && gc.contains("the next build goes on in it"),
        "{gc}"
    );
    // The kept tree judged again: still one unknown failure; then none, once `three` is allowed.
    let out = w.fails(&["tests", "suite"]);
    assert!(
        out.contains("2 failed (1 known, 1 not)") && out.contains("unexpected FAIL: three"),
        "{out}"
    );
    // The allowlist these results measure, as TOML: the recipe's entry, then `three`; the
    // verdict on stderr. Written into the recipe, it makes the same results pass.
    let measured = w.cmd(&["tests", "suite", "--allow-toml"]).output().unwrap();
    assert_eq!(measured.status.code(), Some(1));
    let (toml_out, err) = (
        String::from_utf8(measured.stdout).unwrap(),
        String::from_utf8(measured.stderr).unwrap(),
    );
    assert!(err.contains("2 failed (1 known, 1 not)"), "{err}");
    let doc: toml_edit::DocumentMut = toml_out.parse().unwrap();
    let allow: Vec<&str> = doc["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allow, ["two *", "three"], "{toml_out}");
    w.write_recipe("suite", &recipe(&toml_out));
    let out = w.ok(&["tests", "suite"]);
    assert!(
        out.contains(
            "suite: tests (t/suite.sum): 1 passed, 1 expected failures or skipped, 2 failed (2 known, 0 not)"
        ),
        "{out}"
    );
    let out = w.fails(&["tests", "suite", "--tree", "/nonexistent"]);
    assert!(out.contains("/nonexistent is not a build tree"), "{out}");
    // Both known: the build passes although `make check` exited 1. The kept tree goes on
    // after its check: the suite does not run again, its results are judged again.
    let out = w.ok(&["build", "suite", "--check"]);
    assert!(out.contains("built 1"), "{out}");
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("check ended in an earlier run; its results are judged again")
            && log.matches("==> xlfs: check (").count() == 1,
        "{log}"
    );
    // Its tree is gone with the failure.
    let out = w.fails(&["tests", "suite"]);
    assert!(out.contains("no kept build tree of `suite`"), "{out}");
    // Without --check the suite does not run at all.
    w.write_recipe("suite", &recipe("allow = [\"two *\"]"));
    w.ok(&["gc"]);
    let out = w.ok(&["build", "suite"]);
    assert!(out.contains("built 1") || out.contains("nothing to do"), "{out}");
}

/// `suite`: a test suite in three parts (the second sleeps on its first run in a tree, long
/// enough to be killed in), with one known failure.
fn suite_in_parts(w: &World) {
    let mk = "all:\n\techo built >> stamp\n\tsleep 1\n\
              p1:\n\tmkdir -p t\n\techo 'PASS: p1' >> t/p1.sum\n\
              p2:\n\tif [ ! -e slept ]; then touch slept; sleep 10; fi\n\techo 'PASS: p2' > t/p2.sum\n\
              p3:\n\techo 'FAIL: p3 known' > t/p3.sum; false\n\
              install:\n\tinstall -D -m 0644 stamp $(DESTDIR)/usr/share/suite/stamp\n";
    let sha = w.add_tarball(
        "suite-1.0.tar.gz",
        &tarball("suite-1.0", &[("Makefile", mk, 0o644)]),
    );
    w.write_recipe(
        "suite",
        &(w.recipe(
            "suite",
            "suite-1.0.tar.gz",
            &sha,
            &[],
            "steps.check = \"export LC_ALL=C\"\n",
        ) + "\n[build.tests]\nresults = [\"t/*.sum\"]\nallow = [\"p3 *\"]\n\
               parts = [\"make -k p1\", \"make -k p2\", \"make -k p3\"]\n"),
    );
}

#[test]
fn a_part_added_after_the_check_ended_runs_without_the_check_step_again() {
    let w = World::new();
    // A check that stops before it writes any result (as glibc's `make check` on a file its
    // source lacks), and a target that runs the rest of the suite.
    let mk = "all:\n\ttrue\ncheck:\n\t@echo CHECK-STEP-RAN\n\tfalse\n\
              rest:\n\t@echo REST-RAN\n\tmkdir -p t\n\techo 'FAIL: rest' > t/rest.sum\n\
              install:\n\tinstall -D -m 0644 Makefile $(DESTDIR)/usr/share/suite/Makefile\n";
    let recipe = suite_package(&w, mk);
    w.write_recipe("suite", &recipe("allow = []"));
    let out = w.fails(&["build", "suite", "--check"]);
    assert!(
        out.contains("the test suite wrote none of its result files")
            && out.contains("a `[build.tests] parts` command added to the recipe runs in it"),
        "{out}"
    );
    // The recipe gains a part: the tree goes on with it alone (the check step had ended).
    w.write_recipe("suite", &recipe("allow = []\nparts = [\"make rest\"]"));
    let out = w.fails(&["build", "suite", "--check"]);
    assert!(out.contains("FAIL: rest"), "{out}");
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("the check step ended in an earlier run; its parts go on")
            && log.contains("==> xlfs: check part 1/1 (")
            && log.matches("\nCHECK-STEP-RAN").count() == 1
            && log.matches("\nREST-RAN").count() == 1,
        "{log}"
    );
    // Every part ran: the next build judges the results again and runs nothing of the suite.
    w.write_recipe("suite", &recipe("allow = [\"rest\"]\nparts = [\"make rest\"]"));
    let out = w.ok(&["build", "suite", "--check"]);
    assert!(out.contains("built 1"), "{out}");
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("check ended in an earlier run; its results are judged again")
            && log.matches("\nCHECK-STEP-RAN").count() == 1
            && log.matches("\nREST-RAN").count() == 1,
        "{log}"
    );
}

#[test]
fn named_parts_keep_the_summary_each_writes_and_a_part_without_results_fails_the_suite() {
    let w = World::new();
    // Like DejaGNU, every part writes the same summary file, which the next would overwrite.
    // Part `c`'s first target runs no test (a pattern that matches no test file).
    let mk = "all:\n\ttrue\ncheck:\n\ttrue\n\
              p1:\n\tmkdir -p t\n\techo 'PASS: one' > t/x.sum\n\
              p2:\n\tmkdir -p t\n\tprintf 'PASS: two\\nFAIL: three (flaky)\\n' > t/x.sum\n\
              none:\n\techo 'Test run by root' > t/x.sum\n\
              p4:\n\techo 'PASS: four' > t/x.sum\n\
              install:\n\tinstall -D -m 0644 Makefile $(DESTDIR)/usr/share/suite/Makefile\n";
    let recipe = suite_package(&w, mk);
    let parts = |c: &str| {
        format!(
            "allow = [\"three *\"]\n\
             [[build.tests.parts]]\nname = \"a\"\nrun = \"make p1\"\nkeep = \"t/x.sum\"\n\
             [[build.tests.parts]]\nname = \"b\"\nrun = \"make p2\"\nkeep = \"t/x.sum\"\n\
             [[build.tests.parts]]\nname = \"c\"\nrun = \"make {c}\"\nkeep = \"t/x.sum\"\n"
        )
    };
    w.write_recipe("suite", &recipe(&parts("none")));
    let out = w.fails(&["build", "suite", "--check"]);
    assert!(
        out.contains("1 part(s) of the suite left no results: part `c` left no results in t/x-c.sum: it reports no test")
            && out.contains("read how the part ended in the build's log"),
        "{out}"
    );
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("==> xlfs: check part 1/3 (a) (")
            && log.contains("tests (t/x-a.sum, t/x-b.sum, t/x-c.sum): 2 passed, 0 expected failures or skipped, 1 failed (1 known, 0 not); 1 part(s) left no results"),
        "{log}"
    );
    // `xlfs tests` judges the same way.
    let out = w.fails(&["tests", "suite"]);
    assert!(
        out.contains("  no results: part `c` left no results") && out.contains("is mended in its `run` (in "),
        "{out}"
    );
    // Part `c` mended: it alone runs again (its mark changed with it), and the suite passes.
    w.write_recipe("suite", &recipe(&parts("p4")));
    let out = w.ok(&["build", "suite", "--check"]);
    assert!(out.contains("built 1"), "{out}");
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("check part 1/3 (a) ended in an earlier run")
            && log.contains("check part 2/3 (b) ended in an earlier run")
            && log.contains("tests (t/x-a.sum, t/x-b.sum, t/x-c.sum): 3 passed, 0 expected failures or skipped, 1 failed (1 known, 0 not)\n"),
        "{log}"
    );
}

/// Wait until `log` (a path) says that part 2 of the suite has started.
fn wait_for_part_2(log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("==> xlfs: check part 2/3 (")
    {
        assert!(
            Instant::now() < deadline,
            "part 2 never started: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_test_suite_killed_in_a_part_goes_on_from_that_part() {
    let reference = World::new();
    suite_in_parts(&reference);
    reference.ok(&["build", "suite", "--check"]);

    let w = World::new();
    suite_in_parts(&w);
    let mut child = w.cmd(&["build", "suite", "--check"]).spawn().unwrap();
    wait_for_part_2(&w.home().join("logs/suite.log"));
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed build's tree (no failure recorded) is judged as it is: part 1's result so far.
    let out = w.ok(&["tests", "suite"]);
    assert!(
        out.contains("judging the tree of an unfinished build")
            && out.contains("suite: tests (t/p1.sum): 1 passed, 0 expected failures or skipped, 0 failed"),
        "{out}"
    );
    let out = w.ok(&["build", "suite", "--check"]);
    assert!(out.contains("built 1"), "{out}");
    let log = w.ok(&["log", "suite"]);
    // One log for both runs; the build step ran once, part 1 once (its `>>` left one line).
    assert!(log.contains("resuming this build tree"), "{log}");
    assert_eq!(log.matches("==> xlfs: build (").count(), 1, "{log}");
    assert!(
        log.contains("check part 1/3 ended in an earlier run: make -k p1"),
        "{log}"
    );
    assert!(log.contains("check part 3/3 exited with status 2"), "{log}");
    assert!(
        log.contains("2 passed, 0 expected failures or skipped, 1 failed (1 known, 0 not)"),
        "{log}"
    );
    // Same key, same bytes as the build that was never interrupted.
    assert_eq!(w.artifacts(), reference.artifacts());
    // The package's time includes the killed run's, up to the end of part 1 (at least the build
    // step's second of sleep); the timeline shows the run that finished it.
    assert!(log.contains("s of it in earlier runs, artifact"), "{log}");
    let report: serde_json::Value = serde_json::from_str(&w.ok(&["report", "--json"])).unwrap();
    let row = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "suite")
        .unwrap();
    let (wall, earlier) = (
        row["wall_s"].as_f64().unwrap(),
        row["earlier_s"].as_f64().unwrap(),
    );
    assert!(earlier >= 1.0 && wall > earlier, "{row}");
    let span = row["finished_at"].as_f64().unwrap() - row["started_at"].as_f64().unwrap();
    assert!((span - (wall - earlier)).abs() < 0.01, "{row}");
    assert!(w
        .ok(&["report"])
        .contains("1 build(s) went on in the tree of an earlier run (suite)"));
}

#[test]
fn a_killed_rebuild_compare_goes_on_in_its_scratch_home() {
    let w = World::new();
    suite_in_parts(&w);
    w.ok(&["build", "suite"]);
    use std::os::unix::process::CommandExt;
    let mut child = w
        .cmd(&["rebuild", "--compare", "--check", "suite"])
        .process_group(0)
        .spawn()
        .unwrap();
    let scratch = w.home().join("rebuild/compare-suite-check");
    wait_for_part_2(&scratch.join("logs/suite.log"));
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let out = w.ok(&["rebuild", "--compare", "--check", "suite"]);
    assert!(
        out.contains("resuming the unfinished rebuild in") && out.contains("suite: identical"),
        "{out}"
    );
    // Identical: the scratch home is gone, and the next rebuild starts anew.
    assert!(!scratch.exists());
    let out = w.ok(&["rebuild", "--compare", "suite"]);
    assert!(
        !out.contains("resuming") && out.contains("suite: identical"),
        "{out}"
    );
}

#[test]
fn a_check_step_runs_apart_and_still_fails_the_build() {
    let w = World::new();
    w.greet_and_hello(&[]);
    let lib = std::fs::read_to_string(w.book().join("libgreet.toml")).unwrap();
    // A check that changes directory: the install step still runs in the source directory.
    w.write_recipe(
        "libgreet",
        &format!("{lib}steps.check = \"mkdir -p t && cd t && test ! -e Makefile\"\n"),
    );
    let out = w.ok(&["build", "libgreet", "--check"]);
    assert!(out.contains("built 1"), "{out}");
    // A failing check (no [build.tests]) fails the build.
    w.write_recipe(
        "libgreet",
        &format!("{lib}steps.check = \"cd t 2>/dev/null; false\"\n"),
    );
    let out = w.fails(&["build", "libgreet", "--check"]);
    assert!(out.contains("FAILED libgreet"), "{out}");
    // `--check=PKG,...`: only those suites run; libgreet's failing one does not.
    let out = w.ok(&["build", "libgreet", "--check=hello"]);
    assert!(out.contains("built 1"), "{out}");
    assert!(
        out.contains("--check: `hello` is not part of this build"),
        "{out}"
    );
    // The failed build's tree went on after its build step, this time without the check.
    let log = w.ok(&["log", "libgreet"]);
    let (_, resumed) = log
        .split_once("==> xlfs: resuming the tree of an earlier run")
        .unwrap_or_else(|| panic!("not resumed: {log}"));
    assert!(!resumed.contains("==> xlfs: check"), "{log}");
    let out = w.fails(&["build", "hello", "--check=helo"]);
    assert!(
        out.contains("--check: no package `helo` in the book (did you mean `hello`?)"),
        "{out}"
    );
}

#[test]
fn rebuild_compare_finds_identical_and_differing_artifacts() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    // A package whose output changes on every build.
    let mk = "all:\n\tdate +%s%N > stamp\ninstall:\n\tinstall -D -m 0644 stamp $(DESTDIR)/usr/share/stamp\n\
              \tinstall -D -m 0644 Makefile $(DESTDIR)/usr/share/Makefile\n";
    let sha = w.add_tarball(
        "stamp-1.0.tar.gz",
        &tarball("stamp-1.0", &[("Makefile", mk, 0o644)]),
    );
    w.write_recipe("stamp", &w.recipe("stamp", "stamp-1.0.tar.gz", &sha, &[], ""));
    let out = w.fails(&["rebuild", "--compare", "hello"]);
    assert!(out.contains("`hello` is not built"), "{out}");
    w.ok(&["build"]);
    let out = w.ok(&["rebuild", "--compare", "hello"]);
    assert!(out.contains("hello: identical"), "{out}");
    let out = w.fails(&["rebuild", "--compare", "hello", "stamp"]);
    assert!(out.contains("hello: identical"), "{out}");
    assert!(out.contains("stamp: DIFFERS"), "{out}");
    assert!(out.contains("changed usr/share/stamp"), "{out}");
    assert!(!out.contains("usr/share/Makefile"), "{out}");
    assert!(out.contains("scratch home kept for inspection"), "{out}");
    // The home's own artifacts are untouched.
    let out = w.ok(&["build"]);
    assert!(out.contains("nothing to do"), "{out}");

    // --check runs a cached package's test suite in the rebuild: a failing one fails it.
    let lib = std::fs::read_to_string(w.book().join("libgreet.toml")).unwrap();
    w.write_recipe(
        "libgreet",
        &format!("{lib}steps.check = \"echo the test suite ran; false\"\n"),
    );
    w.ok(&["build", "libgreet"]);
    let out = w.ok(&["rebuild", "--compare", "libgreet"]);
    assert!(out.contains("libgreet: identical"), "{out}");
    let out = w.fails(&["rebuild", "--compare", "--check", "libgreet"]);
    assert!(out.contains("FAILED libgreet"), "{out}");
    assert!(out.contains("libgreet: FAILED to rebuild"), "{out}");
    // A failed rebuild goes on in its scratch home: the tree after its build step, the failed
    // check run again (it has no [build.tests], so it had not ended).
    let out = w.fails(&["rebuild", "--compare", "--check", "libgreet"]);
    assert!(
        out.contains("resuming the unfinished rebuild in") && out.contains("libgreet: FAILED to rebuild"),
        "{out}"
    );
    let log =
        std::fs::read_to_string(w.home().join("rebuild/compare-libgreet-check/logs/libgreet.log")).unwrap();
    assert!(
        log.contains("resuming this build tree") && log.matches("the test suite ran").count() >= 2,
        "{log}"
    );
}

#[test]
fn an_undeclared_dependency_fails_the_build() {
    let w = World::new();
    w.greet_and_hello(&[]);
    let out = w.fails(&["build", "hello", "libgreet"]);
    assert!(out.contains("FAILED hello"), "{out}");
    assert!(
        out.contains("greet.h"),
        "the compiler's complaint is shown: {out}"
    );
    assert!(out.contains("build tree kept for inspection"), "{out}");
    let status = w.ok(&["status"]);
    assert!(status.contains("FAILED hello"), "{status}");
}

/// A build gets the run's jobserver and nothing else its caller held open: xlfs is started here
/// with descriptor 251 open (as a harness or a shell may leave one), and the build's make sees
/// the jobserver's two descriptors of MAKEFLAGS but not 251. glibc's io/tst-close_range and
/// support/tst-support_descriptors fail on such a leak.
#[test]
fn a_build_inherits_the_jobserver_and_no_other_descriptor_of_its_caller() {
    use std::os::unix::io::AsRawFd;
    use std::os::unix::process::CommandExt;
    let w = World::new();
    let mk = "all:\n\
        \t+fds=$$(echo \"$$MAKEFLAGS\" | sed -n 's/.*--jobserver-auth=\\([0-9]*\\),\\([0-9]*\\).*/\\1 \\2/p'); \
        test -n \"$$fds\" || exit 1; for fd in $$fds; do test -e /proc/self/fd/$$fd || exit 1; done; \
        echo \"jobserver descriptors $$fds open\"\n\
        \tif test -e /proc/self/fd/251; then echo 'descriptor 251 leaked'; exit 1; fi\n\
        \techo built > out.txt\n\
        install:\n\tinstall -D -m 0644 out.txt $(DESTDIR)/usr/share/fds/out.txt\n";
    let tb = tarball("fds-1.0", &[("Makefile", mk, 0o644)]);
    let sha = w.add_tarball("fds-1.0.tar.gz", &tb);
    w.write_recipe("fds", &w.recipe("fds", "fds-1.0.tar.gz", &sha, &[], ""));
    let null = std::fs::File::open("/dev/null").unwrap();
    let null_fd = null.as_raw_fd();
    let mut cmd = w.cmd(&["build", "-j2", "fds"]);
    // SAFETY: dup2 only, between fork and exec; the copy is not close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(null_fd, 251) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let log = std::fs::read_to_string(w.home().join("logs/fds.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", text(&out));
    assert!(log.contains("jobserver descriptors "), "{log}");
    assert!(!log.contains("jobserver unavailable"), "{log}");
}

#[test]
fn changing_one_recipe_rebuilds_only_it_and_its_dependents() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    let other = tarball("other-1.0", &[("Makefile", "all:\ninstall:\n\tmkdir -p $(DESTDIR)/usr/share/other && echo 1 > $(DESTDIR)/usr/share/other/x\n", 0o644)]);
    let sha = w.add_tarball("other-1.0.tar.gz", &other);
    w.write_recipe("other", &w.recipe("other", "other-1.0.tar.gz", &sha, &[], ""));
    w.ok(&["build"]);

    // A comment is not a change.
    let path = w.book().join("hello.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# a comment\n{text}")).unwrap();
    assert!(w.plan().iter().all(|(_, _, s)| s == "cached"));

    // Changing hello rebuilds hello only.
    std::fs::write(
        &path,
        text.replace("install = \"install\"", "install = \"install CFLAGS=-O1\""),
    )
    .unwrap();
    assert_eq!(to_build(&w), ["hello"]);
    let why = w.ok(&["why", "hello"]);
    assert!(why.contains("recipe changed"), "{why}");

    // Changing libgreet rebuilds libgreet and hello, not other.
    let lpath = w.book().join("libgreet.toml");
    let ltext = std::fs::read_to_string(&lpath).unwrap();
    std::fs::write(
        &lpath,
        ltext.replace("install = \"install\"", "install = \"install V=1\""),
    )
    .unwrap();
    assert_eq!(to_build(&w), ["libgreet", "hello"]);
    let out = w.ok(&["build"]);
    assert!(out.contains("built 2, cached 1"), "{out}");
    let why = w.ok(&["why", "hello"]);
    assert!(why.contains("cached"), "{why}");

    // The replaced artifacts of libgreet and hello are garbage now; the current ones are kept.
    let dry = w.ok(&["gc", "--dry-run"]);
    assert!(dry.contains("would remove 2 artifact(s)"), "{dry}");
    let gc = w.ok(&["gc"]);
    assert!(gc.contains("removed 2 artifact(s)"), "{gc}");
    assert!(
        w.plan().iter().all(|(_, _, s)| s == "cached"),
        "gc kept what the book needs"
    );
    let report = w.ok(&["report"]);
    assert!(
        report.contains("libgreet") && report.contains("total"),
        "{report}"
    );
}

/// The packages `xlfs plan` would build, in its order.
fn to_build(w: &World) -> Vec<String> {
    w.plan()
        .into_iter()
        .filter(|(_, _, s)| s == "build")
        .map(|(n, _, _)| n)
        .collect()
}

fn slow_book(w: &World) {
    // Three independent packages, the third slow, then one that needs all three.
    for (name, extra) in [("a", ""), ("b", ""), ("slow", "sleep 4; ")] {
        let mk = format!(
            "all:\n\t{extra}echo built-{name} > out.txt\ninstall:\n\tinstall -D -m 0644 out.txt $(DESTDIR)/usr/share/{name}/out.txt\n"
        );
        let tb = tarball(&format!("{name}-1.0"), &[("Makefile", &mk, 0o644)]);
        let sha = w.add_tarball(&format!("{name}-1.0.tar.gz"), &tb);
        w.write_recipe(
            name,
            &w.recipe(name, &format!("{name}-1.0.tar.gz"), &sha, &[], ""),
        );
    }
    let mk = "all:\n\tcat /sysroot/usr/share/*/out.txt > all.txt\ninstall:\n\tinstall -D -m 0644 all.txt $(DESTDIR)/usr/share/top/all.txt\n";
    let tb = tarball("top-1.0", &[("Makefile", mk, 0o644)]);
    let sha = w.add_tarball("top-1.0.tar.gz", &tb);
    w.write_recipe(
        "top",
        &w.recipe("top", "top-1.0.tar.gz", &sha, &["a", "b", "slow"], ""),
    );
}

/// Wait until the slow package is inside its sandbox.
fn wait_until_slow_is_building(w: &World) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(w.home().join("logs/slow.log")).unwrap_or_default();
        if log.contains("==> xlfs: build") {
            return;
        }
        assert!(Instant::now() < deadline, "the slow build never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sandboxes_of(home: &std::path::Path) -> usize {
    // Sandbox helpers are `xlfs __sandbox HOME/builds/.../spec.json`.
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("__sandbox") && cmd.contains(&*home.to_string_lossy()) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn after_a_kill_during_a_build_resuming_gives_the_same_artifacts() {
    let reference = World::new();
    slow_book(&reference);
    reference.ok(&["build"]);
    let expected = reference.artifacts();
    assert_eq!(expected.len(), 4);

    let w = World::new();
    slow_book(&w);
    let mut child = w.cmd(&["build", "-j2"]).spawn().unwrap();
    // Wait until the slow package is inside its sandbox, then kill xlfs without warning.
    wait_until_slow_is_building(&w);
    // ... and `a` and `b`, which run beside it, have finished (under load they can still be
    // building when slow starts).
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = |name: &str| w.plan().iter().any(|(n, _, s)| n == name && s == "cached");
    while !(finished("a") && finished("b")) {
        assert!(Instant::now() < deadline, "a and b never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The sandbox dies with xlfs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sandboxes_of(&w.home()) > 0 {
        assert!(Instant::now() < deadline, "a sandbox outlived the killed xlfs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let plan = w.plan();
    let slow = plan.iter().find(|(n, _, _)| n == "slow").unwrap();
    assert_eq!(
        slow.2, "build",
        "the interrupted package is not recorded as built"
    );
    let out = w.ok(&["build"]);
    assert!(
        !out.contains("build a 1.0"),
        "a finished package was rebuilt: {out}"
    );
    assert_eq!(w.artifacts(), expected);
}

/// A first Ctrl-C starts nothing more, and lets the running builds end: slow's build is kept,
/// and top, which waits for it, is left for the next run.
#[test]
fn a_first_ctrl_c_lets_the_running_builds_end_and_starts_no_more() {
    let w = World::new();
    slow_book(&w);
    let child = w
        .cmd(&["build", "-j2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_slow_is_building(&w);
    // ... and a and b have ended (with -j2, one of them can start after slow).
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = |name: &str| w.plan().iter().any(|(n, _, s)| n == name && s == "cached");
    while !(finished("a") && finished("b")) {
        assert!(Instant::now() < deadline, "a and b never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.contains("the running builds go on to their end"), "{text}");
    assert!(text.contains("run the same command again to resume"), "{text}");
    assert!(
        text.contains("failed 0, skipped 1") && text.contains("not built: top"),
        "{text}"
    );
    let plan = w.plan();
    for (name, _, state) in &plan {
        let want = if name == "top" { "build" } else { "cached" };
        assert_eq!(state, want, "{name}: {plan:?}");
    }
    assert_eq!(sandboxes_of(&w.home()), 0);
    let out = w.ok(&["build"]);
    assert!(out.contains("build top") && out.contains("built 1,"), "{out}");
}

/// A second Ctrl-C stops the running builds now; the next run builds them again.
#[test]
fn a_second_ctrl_c_stops_the_running_builds_and_the_next_run_resumes() {
    let w = World::new();
    slow_book(&w);
    let mut child = w
        .cmd(&["build", "-j2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // stderr as it comes, to see the first Ctrl-C taken before the second is sent (two pending
    // SIGINTs would be one).
    let stderr = child.stderr.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    wait_until_slow_is_building(&w);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap().contains("Ctrl-C again stops them now") {
        assert!(Instant::now() < deadline, "{}", seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let took = started.elapsed();
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{text}");
    // Stopped, not let end: slow sleeps 4 s.
    assert!(took < Duration::from_secs(3), "{took:?}\n{text}");
    assert!(text.contains("stopping the running builds"), "{text}");
    // The summary counts the stopped build apart from the failed ones.
    assert!(text.contains("failed 0, stopped "), "{text}");
    assert_eq!(
        sandboxes_of(&w.home()),
        0,
        "no sandbox outlives the interrupted build"
    );
    let status = w.ok(&["status"]);
    assert!(
        !status.contains("FAILED"),
        "an interruption is not a failure: {status}"
    );
    let out = w.ok(&["build"]);
    assert!(out.contains("build slow"), "{out}");
    assert!(w.plan().iter().all(|(_, _, s)| s == "cached"));
}

/// Stopping a test suite (SIGTERM to xlfs, or a second Ctrl-C): the build's processes get SIGTERM
/// first, so make deletes the result it was writing, and the tree's next run runs that test again instead of taking its half-written
/// output for a result (glibc's `make check` writes each test's `.out` so).
#[test]
fn stopping_a_suite_lets_make_delete_its_half_written_result() {
    let w = World::new();
    let mk = "all:\n\ttrue\n\
              t/p.out:\n\tmkdir -p t\n\techo 'half written' > $@\n\
              \tif [ ! -e slept ]; then touch slept; sleep 60; fi\n\techo 'PASS: p' > $@\n\
              check: t/p.out\n\tcp t/p.out t/p.sum\n\
              install:\n\tinstall -D -m 0644 Makefile $(DESTDIR)/usr/share/suite/Makefile\n";
    let child = start_suite_check(&w, mk);
    // The test is in its sleep, its output half written.
    let slept = wait_for_tree_file(&w, "slept");
    let out_file = slept.with_file_name("t/p.out");
    while !out_file.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    // It stopped at the SIGTERM, well before the grace period's SIGKILL.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sandboxes_of(&w.home()), 0);
    assert!(!out_file.exists(), "make left its half-written target");
    let log = w.ok(&["log", "suite"]);
    assert!(log.contains("Deleting file 't/p.out'"), "{log}");
    // The tree goes on: the test runs again, and passes.
    let out = w.ok(&["build", "suite", "--check"]);
    assert!(out.contains("built 1"), "{out}");
    let log = w.ok(&["log", "suite"]);
    assert!(
        log.contains("resuming this build tree")
            && log.contains("tests (t/p.sum): 1 passed, 0 expected failures or skipped, 0 failed"),
        "{log}"
    );
}

/// `suite` (its Makefile `mk`, no allowlist) starts building with `--check`.
fn start_suite_check(w: &World, mk: &str) -> std::process::Child {
    let recipe = suite_package(w, mk);
    w.write_recipe("suite", &recipe("allow = []"));
    w.cmd(&["build", "suite", "--check"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the file `name` appears in the source directory of suite's build tree.
fn wait_for_tree_file(w: &World, name: &str) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = std::fs::read_dir(w.home().join("builds"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("src/suite-1.0").join(name))
            .find(|p| p.exists());
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never appeared in the build tree"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A build that ignores SIGTERM is killed once the grace period is over: stopping never hangs.
#[test]
fn stopping_kills_a_build_that_ignores_sigterm_after_the_grace_period() {
    let w = World::new();
    let mk = "all:\n\ttrue\n\
              check:\n\ttouch started; trap '' TERM; sleep 120\n\
              install:\n\tinstall -D -m 0644 Makefile $(DESTDIR)/usr/share/suite/Makefile\n";
    let child = start_suite_check(&w, mk);
    wait_for_tree_file(&w, "started");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(60),
        "{took:?}"
    );
    assert_eq!(sandboxes_of(&w.home()), 0);
}

#[test]
fn ctrl_c_during_rebuild_compare_removes_the_scratch_home() {
    // As Ctrl-C in a terminal: the signal reaches xlfs and its scratch build together.
    interrupt_rebuild_compare(|pid| unsafe { libc::kill(-pid, libc::SIGINT) });
}

/// `kill PID` (SIGTERM to xlfs alone, as a service manager sends it): xlfs passes it on to its
/// scratch build, which stops; before, the scratch build went on and xlfs waited for it.
#[test]
fn a_terminated_rebuild_compare_stops_its_scratch_build() {
    interrupt_rebuild_compare(|pid| unsafe { libc::kill(pid, libc::SIGTERM) });
}

/// Start `rebuild --compare slow` in a process group of its own, `signal` it (given its pid)
/// once the scratch build of slow runs; it must exit 130 and leave no scratch home.
fn interrupt_rebuild_compare(signal: impl Fn(i32) -> i32) {
    let w = World::new();
    slow_book(&w);
    w.ok(&["build"]);
    use std::os::unix::process::CommandExt;
    let child = w
        .cmd(&["rebuild", "--compare", "slow"])
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rebuild = w.home().join("rebuild");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let building = std::fs::read_dir(&rebuild)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                std::fs::read_to_string(d.path().join("logs/slow.log"))
                    .is_ok_and(|l| l.contains("==> xlfs: build"))
            });
        if building {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scratch build of slow never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(signal(child.id() as i32), 0);
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.contains("interrupted: scratch home removed"), "{text}");
    // (The per-rebuild locks stay, in rebuild/.locks.)
    let left: Vec<_> = std::fs::read_dir(&rebuild)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != ".locks")
        .collect();
    assert!(left.is_empty(), "scratch homes left: {left:?}");
    assert!(w.plan().iter().all(|(_, _, s)| s == "cached"));
}

#[test]
fn a_corrupt_or_truncated_source_is_refused_and_never_unpacked() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    let good = std::fs::read(w.mirror().join("libgreet-1.0.tar.gz")).unwrap();
    std::fs::write(w.mirror().join("libgreet-1.0.tar.gz"), &good[..good.len() / 2]).unwrap();
    let out = w.fails(&["build", "libgreet"]);
    assert!(out.contains("cannot get libgreet-1.0.tar.gz"), "{out}");
    assert!(out.contains("sha256"), "{out}");
    assert!(
        out.contains(&w.mirror().display().to_string()),
        "the places tried are listed: {out}"
    );
    assert!(!w.home().join("sources/libgreet-1.0.tar.gz").exists());
    let builds: Vec<_> = std::fs::read_dir(w.home().join("builds"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(builds.is_empty(), "nothing was unpacked");
}

#[test]
fn a_malicious_tarball_is_refused() {
    type Case = (&'static str, fn() -> Vec<u8>, &'static str);
    let cases: [Case; 3] = [
        (
            "dotdot",
            || raw_tar("evil/../../escaped", b"x", tar::EntryType::Regular, None),
            "..",
        ),
        (
            "absolute",
            || raw_tar("/tmp/xlfs-absolute-escape", b"x", tar::EntryType::Regular, None),
            "absolute",
        ),
        (
            "symlink",
            || raw_tar("evil/link", b"", tar::EntryType::Symlink, Some("/etc")),
            "symlink",
        ),
    ];
    for (name, make, why) in cases {
        let w = World::new();
        let sha = w.add_tarball(&format!("{name}.tar.gz"), &make());
        w.write_recipe(name, &w.recipe(name, &format!("{name}.tar.gz"), &sha, &[], ""));
        let out = w.fails(&["build"]);
        assert!(out.contains("FAILED"), "{name}: {out}");
        assert!(
            out.to_lowercase().contains(why),
            "{name}: expected `{why}` in: {out}"
        );
        assert!(!std::path::Path::new("/tmp/xlfs-absolute-escape").exists());
        assert!(!w.path().join("escaped").exists() && !w.home().join("escaped").exists());
    }
}

/// A gzipped tar with one member whose name is written raw (bypassing the tar crate's checks).
fn raw_tar(name: &str, body: &[u8], kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(body);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

#[test]
fn two_concurrent_builds_on_one_store_wait_or_refuse() {
    let w = World::new();
    slow_book(&w);
    let mut first = w.cmd(&["build", "slow"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(w.home().join("lock"))
        .unwrap_or_default()
        .contains("pid")
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // --no-wait refuses cleanly, naming the holder.
    let out = w.fails(&["build", "slow", "--no-wait"]);
    assert!(out.contains("another xlfs"), "{out}");
    assert!(out.contains(&format!("pid {}", first.id())), "{out}");
    // Without it, the second waits and then finds everything built.
    let out = w.ok(&["build", "slow"]);
    assert!(out.contains("waiting for the lock"), "{out}");
    assert!(out.contains("nothing to do"), "{out}");
    assert!(first.wait().unwrap().success());
}

#[test]
fn book_errors_name_file_line_and_fix() {
    let w = World::new();
    w.greet_and_hello(&["libgret"]);
    let out = w.fails(&["plan"]);
    assert!(out.contains("hello.toml:"), "{out}");
    assert!(out.contains("unknown package `libgret`"), "{out}");
    assert!(out.contains("did you mean `libgreet`?"), "{out}");
    let out = w.run(&["book", "check"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn book_check_reads_every_profile_against_the_book() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    std::fs::create_dir_all(w.book().join("profiles")).unwrap();
    let profile = |tests: &str| {
        format!(
            "[profile]\ntests = [{tests}]\n[host]\nhostname = \"h\"\nxen = \"hello\"\n\
             kernel = \"hello\"\npackages = [\"hello\"]\nxen-cmdline = \"console=com1\"\n"
        )
    };
    std::fs::write(w.book().join("profiles/p.toml"), profile("\"helo\"")).unwrap();
    let out = w.run(&["book", "check"]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("profiles/p.toml:2:10: profile.tests: unknown package `helo`")
            && text.contains("did you mean `hello`?"),
        "{text}"
    );
    std::fs::write(w.book().join("profiles/p.toml"), profile("\"hello\"")).unwrap();
    let out = w.ok(&["book", "check"]);
    assert!(out.contains("1 profile, no problems"), "{out}");
}

#[test]
fn a_package_that_records_its_build_directory_fails_the_contamination_check() {
    let w = World::new();
    let leak = tarball(
        "leak-1.0",
        &[(
            "Makefile",
            "all:\ninstall:\n\tmkdir -p $(DESTDIR)/usr/share/leak && echo $(CURDIR) > $(DESTDIR)/usr/share/leak/where\n",
            0o644,
        )],
    );
    let sha = w.add_tarball("leak-1.0.tar.gz", &leak);
    let recipe = w.recipe("leak", "leak-1.0.tar.gz", &sha, &[], "");
    w.write_recipe("leak", &recipe);
    let out = w.fails(&["build", "leak"]);
    assert!(out.contains("FAILED leak"), "{out}");
    assert!(
        out.contains("contamination check failed (1 problem, all in the log); first: buildpaths: /usr/share/leak/where: `/build/src/`"),
        "{out}"
    );
    let log = w.ok(&["log", "leak"]);
    assert!(
        log.contains("==> xlfs: contamination: buildpaths: /usr/share/leak/where"),
        "{log}"
    );

    // A recipe that knows better turns the check off, with a reason.
    w.write_recipe(
        "leak",
        &format!("{recipe}\n[build.qa-skip]\nbuildpaths = \"the file exists to show where it was built\"\n"),
    );
    w.ok(&["build", "leak"]);
}

#[test]
fn a_bit_flip_in_a_stored_object_is_caught_by_verify_and_rebuilt() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    w.ok(&["build"]);
    assert!(w.ok(&["verify"]).contains("verified 2 artifact(s), 0 corrupt"));
    let key = w.plan().into_iter().find(|(n, _, _)| n == "libgreet").unwrap().1;
    let obj = w
        .home()
        .join("store/objects")
        .join(&key[..2])
        .join(format!("{key}.tar.zst"));
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    std::fs::write(&obj, &bytes).unwrap();

    let out = w.fails(&["verify"]);
    assert!(
        out.contains(&format!("CORRUPT artifact {key} (libgreet)")),
        "{out}"
    );
    assert!(
        out.contains("expected sha256") && out.contains("found sha256"),
        "{out}"
    );
    assert!(!obj.exists(), "the corrupt object is removed");
    let status = w.ok(&["status"]);
    assert!(status.contains("corrupt artifact"), "{status}");
    // The next build makes it again (and only it: hello's key is unchanged).
    let out = w.ok(&["build"]);
    assert!(out.contains("built 1, cached 1"), "{out}");
    assert!(w.ok(&["verify"]).contains("verified 2 artifact(s), 0 corrupt"));
}

#[test]
fn gc_waits_while_an_image_or_boot_holds_the_store_lock() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    w.ok(&["build"]);
    // What `image` and `boot` take: the store lock, shared.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(w.home().join("store.lock"))
        .unwrap();
    held.lock_shared().unwrap();
    let mut gc = w
        .cmd(&["gc"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(gc.try_wait().unwrap().is_none(), "gc must wait for the image");
    held.unlock().unwrap();
    let out = gc.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("waiting for"), "{text}");
}

/// A recipe whose steps install `usr/bin/x`, then run `extra_install`; `files` is appended.
fn install_recipe(w: &World, name: &str, extra_install: &str, files: &str) {
    let tb = tarball(&format!("{name}-1.0"), &[("x", "#!/bin/sh\necho x\n", 0o755)]);
    let sha = w.add_tarball(&format!("{name}-1.0.tar.gz"), &tb);
    w.write_recipe(
        name,
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"1.0\"\nlicense = \"MIT\"\n\n\
             [[source]]\nfile = \"{name}-1.0.tar.gz\"\nsha256 = \"{sha}\"\n\n\
             [build.steps]\ninstall = '''\ninstall -D -m 0755 x \"$DESTDIR/usr/bin/x\"\n{extra_install}\n'''\n{files}"
        ),
    );
}

fn manifest_line<'a>(files: &'a str, path: &str) -> &'a str {
    files
        .lines()
        .find(|l| l.ends_with(&format!(" /{path}")))
        .unwrap_or_else(|| panic!("{path} not in:\n{files}"))
}

#[test]
fn an_undeclared_setuid_file_fails_the_build_and_a_declared_one_keeps_its_bit() {
    let w = World::new();
    install_recipe(&w, "suid", "chmod 4755 \"$DESTDIR/usr/bin/x\"", "");
    let out = w.fails(&["build"]);
    assert!(out.contains("FAILED suid"), "{out}");
    assert!(
        out.contains("/destdir/usr/bin/x: the build installed it setuid/setgid (mode 4755) but the recipe does not declare it"),
        "names the file: {out}"
    );
    assert!(
        out.contains("declare it in the recipe: [[file]] path = \"usr/bin/x\" mode = \"4755\""),
        "names the fix: {out}"
    );
    assert!(w.fails(&["files", "suid"]).contains("has not been built"));

    // The fix, as the error says it.
    install_recipe(
        &w,
        "suid",
        "chmod 4755 \"$DESTDIR/usr/bin/x\"",
        "\n[[file]]\npath = \"usr/bin/x\"\nmode = \"4755\"\n",
    );
    w.ok(&["build"]);
    let files = w.ok(&["files", "suid"]);
    assert!(
        manifest_line(&files, "usr/bin/x").starts_with("- 4755     0:0     "),
        "{files}"
    );
}

#[test]
fn chown_in_the_install_step_is_recorded_in_the_manifest() {
    let w = World::new();
    install_recipe(
        &w,
        "owned",
        "mkdir -p \"$DESTDIR/var/lib/owned\"\nchown 1000:1000 \"$DESTDIR/usr/bin/x\"\nchown 0:1000 \"$DESTDIR/var/lib/owned\"",
        "",
    );
    w.ok(&["build"]);
    let files = w.ok(&["files", "owned"]);
    assert!(
        manifest_line(&files, "usr/bin/x").starts_with("- 0755  1000:1000  "),
        "{files}"
    );
    assert!(
        manifest_line(&files, "var/lib/owned").starts_with("d 0755     0:1000  "),
        "{files}"
    );
    assert!(
        manifest_line(&files, "usr/bin").starts_with("d 0755     0:0     "),
        "{files}"
    );
}
