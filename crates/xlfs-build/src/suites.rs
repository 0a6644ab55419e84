//! Test suites: after `xlfs build --check` has run a recipe's `check` step, its result files
//! (`[build.tests] results`, globs under the build directory) are read, and every failure must
//! be one the recipe knows (`[build.tests] allow`). DejaGNU's `.sum` files (binutils, gcc),
//! glibc's `tests.sum` and automake's `test-suite.log` all report a failed test as a line
//! `FAIL: NAME` (or `XPASS:`, `ERROR:`, `UNRESOLVED:`), which is all this reads.
//! Parsing and judging are pure; only [`collect`] reads files.

use globset::{Glob, GlobSetBuilder};
use std::collections::BTreeSet;
use std::path::Path;
use xlfs_book::TestSuite;

/// Which packages run their `check` step (`xlfs build --check[=PKG,...]`, a profile's
/// `[profile] tests`). Never in a key: a test suite decides whether a build passes, not its bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Checks {
    /// No check step runs (the default).
    #[default]
    None,
    /// Every package's check step runs.
    All,
    /// Only these packages' (by exact name: `glibc`, not its twin `glibc-boot`).
    Only(BTreeSet<String>),
}

impl Checks {
    pub fn wants(&self, name: &str) -> bool {
        match self {
            Checks::None => false,
            Checks::All => true,
            Checks::Only(names) => names.contains(name),
        }
    }

    /// These checks and `more` (a package list adds to `Only`, `All` stays all).
    pub fn with(self, more: impl IntoIterator<Item = String>) -> Checks {
        match self {
            Checks::All => Checks::All,
            Checks::None => {
                let names: BTreeSet<String> = more.into_iter().collect();
                if names.is_empty() {
                    Checks::None
                } else {
                    Checks::Only(names)
                }
            }
            Checks::Only(mut names) => {
                names.extend(more);
                Checks::Only(names)
            }
        }
    }
}

/// What the result files say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Results {
    pub passed: usize,
    /// Expected failures (`XFAIL:`) and skipped tests (`UNSUPPORTED:`, `SKIP:`).
    pub expected: usize,
    /// `KIND: NAME` of every failure, in file order, once each.
    pub failures: Vec<(String, String)>,
}

/// Read result lines from one file's text. An automake `test-suite.log` lists in detail only the
/// tests that did not pass, so its counts come from its summary (`# PASS:  70`), and only its
/// failures from the detail. Returns whether the text reports any test at all (a failure
/// already in `into` from another file counts too).
pub fn parse(text: &str, into: &mut Results) -> bool {
    let automake = text.lines().any(|l| l.starts_with("# TOTAL:"));
    let mut seen: BTreeSet<(String, String)> = into.failures.iter().cloned().collect();
    let mut any = false;
    for line in text.lines() {
        if automake {
            if let Some((kind, n)) = line.strip_prefix("# ").and_then(|l| l.split_once(':')) {
                match (kind, n.trim().parse::<usize>()) {
                    ("PASS", Ok(n)) => into.passed += n,
                    ("SKIP" | "XFAIL", Ok(n)) => into.expected += n,
                    _ => continue,
                }
                any |= n.trim() != "0";
                continue;
            }
        }
        let Some((kind, name)) = line.split_once(": ") else {
            continue;
        };
        let name = name.trim();
        match kind {
            "PASS" if !automake => into.passed += 1,
            "XFAIL" | "UNSUPPORTED" | "SKIP" if !automake => into.expected += 1,
            "FAIL" | "XPASS" | "ERROR" | "UNRESOLVED" if !name.is_empty() => {
                let f = (kind.to_string(), name.to_string());
                if seen.insert(f.clone()) {
                    into.failures.push(f);
                }
            }
            _ => continue,
        }
        any = true;
    }
    any
}

impl Results {
    /// No test at all: the suite ran nothing, or wrote a format this does not read.
    pub fn is_empty(&self) -> bool {
        self.passed == 0 && self.expected == 0 && self.failures.is_empty()
    }
}

/// The allowlist as one glob set (`*` matches any text, `/` included; entry `i` is match `i`),
/// or an error naming the bad entry.
fn allow_set(allow: &[String]) -> Result<globset::GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for a in allow {
        let g = globset::GlobBuilder::new(a)
            .literal_separator(false)
            .backslash_escape(false)
            .build()
            .map_err(|e| format!("[build.tests] allow: `{a}`: {e}"))?;
        set.add(g);
    }
    set.build().map_err(|e| e.to_string())
}

/// The failures outside the allowlist (`*` in an entry matches any text), or an error for a bad
/// allowlist entry.
pub fn unexpected(results: &Results, allow: &[String]) -> Result<Vec<String>, String> {
    let set = allow_set(allow)?;
    Ok(results
        .failures
        .iter()
        .filter(|(_, name)| !set.is_match(name))
        .map(|(kind, name)| format!("{kind}: {name}"))
        .collect())
}

/// An allowlist entry matching exactly `name`: the glob's special characters in brackets.
pub fn literal_entry(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '*' | '?' | '[' | ']' | '{' | '}' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

/// An allowlist measured from `results` (`xlfs tests --allow-toml`): `allow` as it is, then an
/// exact entry for every failure no entry matches, in the order of the results; and the entries
/// of `allow` that match no failure here (kept: another machine may need them; the reader
/// decides).
pub fn measured_allowlist(results: &Results, allow: &[String]) -> Result<(Vec<String>, Vec<String>), String> {
    let set = allow_set(allow)?;
    let mut used = vec![false; allow.len()];
    let mut list = allow.to_vec();
    for (_, name) in &results.failures {
        let matched = set.matches(name);
        if matched.is_empty() {
            let entry = literal_entry(name);
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
        for i in matched {
            used[i] = true;
        }
    }
    let unused = allow
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(a, _)| a.clone())
        .collect();
    Ok((list, unused))
}

/// What to do about a failure outside the allowlist (the build's error and `xlfs tests` say it).
pub const UNEXPECTED_FIX: &str =
    "fix the package, or add the test's name to `allow` with a comment saying why it may fail";

pub const MISSING_FIX: &str =
    "read how the part ended in the build's log (`xlfs log PKG`): a part that stopped early, or \
     whose patterns match no test file, is mended in its `run`";

/// A test suite's verdict: what its result files say, and the failures its allowlist lacks.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub results: Results,
    /// The result files read, relative to the build directory.
    pub files: Vec<String>,
    /// `KIND: NAME` of each failure outside the allowlist.
    pub unexpected: Vec<String>,
    /// The parts that keep a result file (`[[build.tests.parts]] keep`) and left none, or one
    /// without a single result: a hole in the suite, which fails it like a failure outside the
    /// allowlist.
    pub missing: Vec<String>,
}

impl Verdict {
    /// One line: the files and the counts.
    pub fn summary(&self) -> String {
        let holes = match self.missing.len() {
            0 => String::new(),
            n => format!("; {n} part(s) left no results"),
        };
        format!(
            "tests ({}): {} passed, {} expected failures or skipped, {} failed ({} known, {} not){holes}",
            self.files.join(", "),
            self.results.passed,
            self.results.expected,
            self.results.failures.len(),
            self.results.failures.len() - self.unexpected.len(),
            self.unexpected.len()
        )
    }

    /// Whether the suite passes: no failure outside the allowlist, no part without results.
    pub fn passed(&self) -> bool {
        self.unexpected.is_empty() && self.missing.is_empty()
    }

    /// What fails the suite, one line each: the unexpected failures, then the parts that left
    /// no results.
    pub fn problems(&self) -> Vec<String> {
        let unexpected = self.unexpected.iter().map(|u| format!("unexpected {u}"));
        let missing = self.missing.iter().map(|m| format!("no results: {m}"));
        unexpected.chain(missing).collect()
    }

    /// How to mend what fails the suite (empty when it passes).
    pub fn fixes(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.unexpected.is_empty() {
            out.push(UNEXPECTED_FIX);
        }
        if !self.missing.is_empty() {
            out.push(MISSING_FIX);
        }
        out
    }
}

/// Read `suite`'s result files under `workdir` and judge them against its allowlist.
pub fn judge(suite: &TestSuite, workdir: &Path) -> Result<Verdict, String> {
    let (results, files, reporting) = collect(suite, workdir)?;
    let unexpected = unexpected(&results, &suite.allow)?;
    let missing = missing_parts(suite, &files, &reporting);
    Ok(Verdict {
        results,
        files,
        unexpected,
        missing,
    })
}

/// The parts that were to keep a result file and left none with a result in it (one line each),
/// from the result files read (`files`; the book makes sure `results` names every kept file)
/// and those of them that report a test.
fn missing_parts(suite: &TestSuite, files: &[String], reporting: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for p in &suite.parts {
        let (Some(name), Some(kept)) = (&p.name, p.kept()) else {
            continue;
        };
        let why = if reporting.contains(&kept) {
            continue;
        } else if files.contains(&kept) {
            "it reports no test: the part ran none (a pattern that matches no test file?)"
        } else {
            "it is not there: the part has not ended, or wrote no summary"
        };
        out.push(format!("part `{name}` left no results in {kept}: {why}"));
    }
    out
}

/// Read every result file of `suite` under `workdir`: what they say, their names (relative to
/// `workdir`), and the names of those that report a test. No result file at all is an error:
/// the test suite did not run where the recipe says.
pub fn collect(
    suite: &TestSuite,
    workdir: &Path,
) -> Result<(Results, Vec<String>, BTreeSet<String>), String> {
    let mut set = GlobSetBuilder::new();
    for r in &suite.results {
        set.add(Glob::new(r).map_err(|e| format!("[build.tests] results: `{r}`: {e}"))?);
    }
    let set = set.build().map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(workdir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() {
            continue;
        }
        let Ok(rel) = e.path().strip_prefix(workdir) else {
            continue;
        };
        if set.is_match(rel) {
            files.push(rel.to_string_lossy().to_string());
        }
    }
    if files.is_empty() {
        return Err(format!(
            "the test suite wrote none of its result files ({}) in the build directory: it \
             stopped before it wrote them (its end is in the build's log), or `results` names \
             other files. The tree is kept: a `[build.tests] parts` command added to the recipe \
             runs in it and can carry the suite on",
            suite.results.join(", ")
        ));
    }
    let mut results = Results::default();
    let mut reporting = BTreeSet::new();
    for f in &files {
        let bytes = std::fs::read(workdir.join(f)).map_err(|e| format!("cannot read {f}: {e}"))?;
        if parse(&String::from_utf8_lossy(&bytes), &mut results) {
            reporting.insert(f.clone());
        }
    }
    if results.is_empty() {
        return Err(format!(
            "the test suite's result files ({}) report no test: it ran none, or they are not \
             DejaGNU `.sum`, glibc `tests.sum` or automake `test-suite.log` files",
            files.join(", ")
        ));
    }
    Ok((results, files, reporting))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "Test run by root\n\
        PASS: gcc.dg/a.c (test for excess errors)\n\
        FAIL: gcc.dg/b.c execution test\n\
        XFAIL: gcc.dg/c.c\n\
        UNSUPPORTED: gcc.dg/d.c\n\
        XPASS: g++.dg/e.C\n\
        FAIL: gcc.dg/b.c execution test\n\
        # of expected passes 1\n";

    #[test]
    fn checks_name_packages_exactly_and_lists_add_up() {
        assert!(!Checks::None.wants("glibc"));
        assert!(Checks::All.wants("glibc-boot"));
        let c = Checks::None.with(["glibc".to_string()]);
        assert!(c.wants("glibc") && !c.wants("glibc-boot") && !c.wants("gcc"));
        let c = c.with(["gcc".to_string()]);
        assert!(c.wants("glibc") && c.wants("gcc"));
        assert_eq!(Checks::All.with(["gcc".to_string()]), Checks::All);
        assert_eq!(Checks::None.with(Vec::new()), Checks::None);
    }

    #[test]
    fn failures_are_read_once_each_with_their_kind() {
        let mut r = Results::default();
        parse(SUM, &mut r);
        assert_eq!(r.passed, 1);
        assert_eq!(r.expected, 2);
        assert_eq!(
            r.failures,
            [
                ("FAIL".to_string(), "gcc.dg/b.c execution test".to_string()),
                ("XPASS".to_string(), "g++.dg/e.C".to_string())
            ]
        );
    }

    /// As automake writes it (mpfr's tests/Makefile.in: the summary, then a section per test
    /// that did not pass, with its log).
    const AUTOMAKE: &str = "==============================================\n\
        \x20  MPFR 4.2.2: tests/test-suite.log\n\
        ==============================================\n\n\
        # TOTAL: 72\n# PASS:  69\n# SKIP:  1\n# XFAIL: 1\n# FAIL:  1\n# XPASS: 0\n# ERROR: 0\n\n\
        .. contents:: :depth: 2\n\n\
        SKIP: tfpif\n===========\n\nSKIP tfpif (exit status: 77)\n\n\
        XFAIL: tget_flt\n===============\n\nXFAIL tget_flt (exit status: 1)\n\n\
        FAIL: tversion\n==============\n\nFAIL tversion (exit status: 1)\n";

    #[test]
    fn automake_logs_count_from_their_summary_and_fail_by_their_sections() {
        let mut r = Results::default();
        parse(AUTOMAKE, &mut r);
        assert_eq!((r.passed, r.expected), (69, 2));
        assert_eq!(r.failures, [("FAIL".to_string(), "tversion".to_string())]);
        // A second directory's log adds to the counts.
        parse(AUTOMAKE, &mut r);
        assert_eq!((r.passed, r.expected, r.failures.len()), (138, 4, 1));
    }

    #[test]
    fn result_files_without_a_single_test_are_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("test-suite.log"),
            "make: Nothing to be done for 'check'.\n",
        )
        .unwrap();
        let suite = TestSuite {
            results: vec!["test-suite.log".into()],
            allow: vec![],
            parts: vec![],
        };
        let e = collect(&suite, d.path()).unwrap_err();
        assert!(e.contains("(test-suite.log) report no test"), "{e}");
    }

    #[test]
    fn a_measured_allowlist_knows_every_failure_and_nothing_more() {
        let mut r = Results::default();
        parse(
            "FAIL: gcc.dg/a.c (test for excess errors)\n\
             FAIL: g++.dg/x[1].C  -std=c++17 {target *}\n\
             XPASS: gcc.dg/b.c execution test\n\
             FAIL: gcc.dg/b.c scan-assembler a?b\n",
            &mut r,
        );
        let allow = vec!["gcc.dg/b.c *".to_string(), "io/tst-gone".to_string()];
        let (list, unused) = measured_allowlist(&r, &allow).unwrap();
        assert_eq!(
            list,
            [
                "gcc.dg/b.c *",
                "io/tst-gone",
                "gcc.dg/a.c (test for excess errors)",
                "g++.dg/x[[]1[]].C  -std=c++17 [{]target [*][}]",
            ]
        );
        assert_eq!(unused, ["io/tst-gone"]);
        assert!(unexpected(&r, &list).unwrap().is_empty());
        // The new entries match their test exactly, not its neighbours.
        let mut other = Results::default();
        parse(
            "FAIL: g++.dg/x1.C  -std=c++17 {target a}\nFAIL: gcc.dg/a.c\n",
            &mut other,
        );
        assert_eq!(unexpected(&other, &list[2..]).unwrap().len(), 2);
        // Measuring again adds nothing.
        assert_eq!(
            measured_allowlist(&r, &list).unwrap(),
            (list.clone(), vec!["io/tst-gone".to_string()])
        );
    }

    #[test]
    fn only_failures_outside_the_allowlist_count() {
        let mut r = Results::default();
        parse(SUM, &mut r);
        assert_eq!(
            unexpected(&r, &["gcc.dg/b.c *".into()]).unwrap(),
            ["XPASS: g++.dg/e.C"]
        );
        assert!(unexpected(&r, &["gcc.dg/b.c*".into(), "g++.dg/*".into()])
            .unwrap()
            .is_empty());
        assert_eq!(unexpected(&r, &[]).unwrap().len(), 2);
        assert!(unexpected(&r, &["a[".into()]).unwrap_err().contains("`a[`"));
    }

    #[test]
    fn result_files_are_found_by_glob_and_missing_ones_are_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("build/gcc/testsuite/gcc")).unwrap();
        std::fs::write(d.path().join("build/gcc/testsuite/gcc/gcc.sum"), SUM).unwrap();
        std::fs::write(d.path().join("build/tests.sum"), "FAIL: elf/tst-x\n").unwrap();
        let suite = TestSuite {
            results: vec!["build/gcc/testsuite/*/*.sum".into(), "build/tests.sum".into()],
            allow: vec![],
            parts: vec![],
        };
        let (r, files, _) = collect(&suite, d.path()).unwrap();
        assert_eq!(files, ["build/gcc/testsuite/gcc/gcc.sum", "build/tests.sum"]);
        assert_eq!(r.failures.len(), 3);
        let none = TestSuite {
            results: vec!["nowhere/*.sum".into()],
            allow: vec![],
            parts: vec![],
        };
        assert!(collect(&none, d.path()).unwrap_err().contains("nowhere/*.sum"));
    }
}
