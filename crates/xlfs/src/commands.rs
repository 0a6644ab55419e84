//! The commands.

use crate::app::App;
use crate::args::{BookCommand, BuildArgs, Cli, Command};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use xlfs_build::package::source_ref;
use xlfs_build::run::{human_bytes, Options};
use xlfs_plan::{Plan, Status};
use xlfs_store::ArtifactStore;

pub fn run(cli: Cli) -> Result<i32> {
    let app = App::new(cli.global.clone());
    match cli.command {
        Command::Book { command } => book(&app, command),
        Command::Plan {
            mut targets,
            profile,
            json,
        } => {
            let mut march = None;
            if let Some(p) = profile {
                let profile = app.profile(&p)?.1;
                targets.extend(profile.targets());
                march = profile.host.machine.march;
            }
            plan(&app, &targets, march.as_deref(), json)
        }
        Command::Fetch {
            targets,
            parallel,
            no_runtime,
        } => fetch(&app, &targets, !no_runtime, parallel).map(|_| 0),
        Command::Build(args) => build(&app, args),
        Command::Status => status(&app),
        Command::Log { package, tail } => log(&app, &package, tail),
        Command::Files { package, json } => files(&app, &package, json),
        Command::Why { package } => why(&app, &package),
        Command::Tests {
            package,
            tree,
            allow_toml,
        } => tests(&app, &package, tree.as_deref(), allow_toml),
        Command::Toolchain { packages } => toolchain(&app, packages),
        Command::Gc { dry_run } => gc(&app, dry_run),
        Command::Verify => verify(&app),
        Command::Report { json, html } => report(&app, json, html.as_deref()),
        Command::Image { profile } => {
            let images = crate::system::image(&app, &profile)?;
            crate::system::print_images(&images);
            Ok(0)
        }
        Command::Boot {
            profile,
            check,
            accel,
        } => {
            if check {
                let r = crate::system::boot_check(&app, &profile, accel.as_deref())?;
                println!(
                    "all checks passed ({:?}); console log {}",
                    r.accel,
                    r.log.display()
                );
                Ok(0)
            } else {
                crate::system::boot_interactive(&app, &profile, accel.as_deref())
            }
        }
        Command::Rebuild {
            compare: _,
            packages,
            jobs,
            keep,
            check,
        } => crate::rebuild::rebuild_compare(
            &app,
            &packages,
            jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
            keep,
            check,
        ),
        Command::Guest { command } => crate::guest::run(&app, command),
        Command::Up { profile, jobs } => crate::system::up(&app, &profile, jobs),
        Command::Cache { command } => crate::cache::cache_command(&app, command),
        Command::Key { command } => crate::cache::key_command(&app, command),
        Command::Doctor { fix } => {
            let ok = crate::doctor::doctor(fix, &app.home.root, app.global.quiet)?;
            if ok {
                println!("this machine is ready");
            }
            Ok(if ok { 0 } else { 1 })
        }
    }
}

fn book(app: &App, cmd: BookCommand) -> Result<i32> {
    match cmd {
        BookCommand::Check => match xlfs_book::Book::load(&app.book_dir()) {
            Ok(b) => {
                // Every profile of the book, against it (packages, tests, machine config).
                let profiles = xlfs_book::profile::list_profiles(&b.root);
                let mut problems = Vec::new();
                for p in &profiles {
                    if let Err(e) = xlfs_book::profile::Profile::load(&b, p) {
                        problems.extend(e.0);
                    }
                }
                if !problems.is_empty() {
                    println!("{}", xlfs_book::BookErrors(problems));
                    return Ok(1);
                }
                let warnings = xlfs_book::lint::lint_book(&b.root, b.recipes.values());
                for w in &warnings {
                    println!("warning: {w}");
                }
                println!(
                    "{}: {} recipes, {} templates, {} profile{}, no problems{}",
                    app.book_dir().display(),
                    b.recipes.len(),
                    b.templates.len(),
                    profiles.len(),
                    if profiles.len() == 1 { "" } else { "s" },
                    match warnings.len() {
                        0 => String::new(),
                        n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
                    }
                );
                Ok(0)
            }
            Err(e) => {
                println!("{e}");
                Ok(1)
            }
        },
        BookCommand::List => {
            let b = app.book()?;
            for r in b.recipes.values() {
                println!("{:<24} {:<14} {:<22} {}", r.name, r.version, r.license, r.summary);
            }
            Ok(0)
        }
    }
}

fn print_plan(plan: &Plan) {
    let build = plan.to_build().count();
    println!(
        "{} packages: {} to build, {} cached",
        plan.steps.len(),
        build,
        plan.steps.len() - build
    );
    for s in &plan.steps {
        let (status, why) = match &s.status {
            Status::Cached | Status::Remote { .. } => ("cached", String::new()),
            Status::Build { why } => ("build", why.to_string()),
        };
        println!(
            "  {status:<6} {:<24} {:<14} {:<13} {:<12} {why}",
            s.name,
            s.version,
            &s.key[..12],
            s.status.origin(),
        );
    }
}

fn plan(app: &App, targets: &[String], march: Option<&str>, json: bool) -> Result<i32> {
    let book = app.book()?;
    let (db, store) = (app.db()?, app.store()?);
    let plan = app.plan_tuned(&book, targets, true, march, &db, &store)?;
    let plan = crate::cache::Caches::open(app)?.plan(plan);
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print_plan(&plan);
    }
    Ok(0)
}

/// Fetch the sources of the packages of `plan` that must build (all of them with `all`).
fn fetch_plan(app: &App, book: &xlfs_book::Book, plan: &Plan, all: bool, parallel: usize) -> Result<()> {
    let fetcher = app.fetcher();
    let mut seen = BTreeSet::new();
    let srcs: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| all || !s.is_cached())
        .flat_map(|s| book.recipes[&s.name].sources.iter())
        .filter(|s| seen.insert((s.file.clone(), s.sha256.clone())))
        .map(source_ref)
        .collect();
    let missing: Vec<_> = srcs
        .iter()
        .filter(|s| fetcher.cached(s).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !app.global.quiet {
        eprintln!(
            "   fetch {} source file(s) into {}",
            missing.len(),
            fetcher.cache_dir().display()
        );
    }
    let fetched = fetcher.fetch_all(&missing, parallel.max(1))?;
    if !app.global.quiet {
        for f in fetched {
            eprintln!("    got  {} from {}", f.file, f.from);
        }
    }
    Ok(())
}

pub(crate) fn fetch(app: &App, targets: &[String], runtime: bool, parallel: usize) -> Result<()> {
    let book = app.book()?;
    let (db, store) = (app.db()?, app.store()?);
    let plan = app.plan_with(&book, targets, runtime, &db, &store)?;
    fetch_plan(app, &book, &plan, true, parallel)?;
    if !app.global.quiet {
        eprintln!("every source of {} package(s) is in the cache", plan.steps.len());
    }
    Ok(())
}

pub(crate) fn build(app: &App, mut args: BuildArgs) -> Result<i32> {
    // A profile's host tuning (`host.march`) goes into the keys of everything it builds.
    let mut march = None;
    // `--check` alone: every package's suite; `--check=PKG,...`: those, with the profile's.
    let check = args.check.take();
    let asked: &[String] = check.as_deref().unwrap_or_default();
    let mut checks = match &check {
        None => xlfs_build::suites::Checks::None,
        Some(names) if names.is_empty() => xlfs_build::suites::Checks::All,
        Some(names) => xlfs_build::suites::Checks::None.with(names.iter().cloned()),
    };
    if let Some(p) = args.profile.take() {
        let (_, profile) = app.profile(&p)?;
        args.targets.extend(profile.targets());
        march = profile.host.machine.march.clone();
        checks = checks.with(profile.test_names().map(str::to_string));
    }
    app.prepare_home()?;
    let quiet = app.global.quiet;
    let _lock = xlfs_build::lock::lock(&app.home.lock(), "build", !args.no_wait, &|holder| {
        eprintln!(
            "waiting for the lock on {} (held by {holder})",
            app.home.root.display()
        )
    })?;
    // Read the book only once the lock is held, so that a queued build uses the recipes as they
    // are when it starts, not as they were when it began waiting.
    let book = app.book()?;
    if let xlfs_build::suites::Checks::Only(names) = &checks {
        for n in names {
            let r = recipe_named(&book, n).context("--check")?;
            if !r.has_suite() {
                bail!(
                    "--check: `{n}` has no check step and no [build.tests] parts (its recipe, {}, has no test suite to run)",
                    r.path.display()
                );
            }
        }
    }
    let (db, store) = (app.db()?, app.store()?);
    let caches = crate::cache::Caches::open(app)?;
    let replan = || {
        app.plan_tuned(
            &book,
            &args.targets,
            !args.no_runtime,
            march.as_deref(),
            &db,
            &store,
        )
    };
    let mut plan = replan()?;
    // `host` builds run in the pinned toolchain root: create it (once) and plan with its identity
    // (the keys looked up in the caches depend on it).
    if plan.to_build().any(|s| s.env == xlfs_book::BuildEnv::Host) {
        app.toolchain(&book)?;
        plan = replan()?;
    }
    // Shared caches second: fetch (checked) what they have, then plan again: what could not be
    // fetched builds here.
    plan = caches.plan(plan);
    if plan.to_fetch().next().is_some() {
        caches.fetch(app, &plan, &store, &db)?;
        plan = replan()?;
    }
    crate::cache::adopt(&plan, &store, &db)?;
    // A suite named with --check=PKG that will not run says so, and how to run it.
    for n in asked {
        match plan.get(n) {
            None => eprintln!("--check: `{n}` is not part of this build: name it as a target too"),
            Some(s) if s.is_cached() => eprintln!(
                "--check: `{n}` is already built (a test suite is not in the key, so it does not \
                 rebuild): run its suite with `xlfs rebuild --compare --check {n}`"
            ),
            Some(_) => {}
        }
    }
    let to_build = plan.to_build().count();
    if to_build == 0 {
        if !quiet {
            eprintln!("nothing to do: {} package(s), all cached", plan.steps.len());
        }
        caches.push(&plan, &store, args.push)?;
        return Ok(0);
    }
    fetch_plan(app, &book, &plan, false, 4)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .max(1);
    let cc = cc_options(app, &book, &args.cc, jobs)?;
    let ctx = Arc::new(xlfs_build::Ctx {
        home: app.home.clone(),
        book,
        store,
        fetcher: app.fetcher(),
        db: Mutex::new(db),
        jobs,
        checks,
        sandbox_exe: std::env::current_exe().context("cannot find the xlfs binary")?,
        cancel: AtomicBool::new(false),
        drain: AtomicBool::new(false),
        running: Mutex::new(Vec::new()),
        cc,
    });
    // A first Ctrl-C lets the running builds end (hours of a long build step are not thrown
    // away by one key press); a second one, SIGTERM or SIGHUP stops them now. For this build
    // only: `up`'s later phases get the default again.
    let _signals = {
        let ctx = ctx.clone();
        crate::signals::scope(move |sig| {
            if ctx.cancel.load(Ordering::SeqCst) {
                return;
            }
            if sig == crate::signals::SIGINT && !ctx.drain.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "\nCtrl-C: no package starts now; the running builds go on to their end and are \
                     kept. Ctrl-C again stops them now (a build stopped before the end of its \
                     build step starts that step again next time)"
                );
            } else {
                eprintln!("\ninterrupted: stopping the running builds (finished packages are kept)");
                xlfs_build::run::interrupt(&ctx);
            }
        })?
    };
    if !quiet {
        eprintln!(
            "building {to_build} of {} package(s) with -j{jobs}; logs in {}",
            plan.steps.len(),
            app.home.logs().display()
        );
    }
    let opts = Options {
        keep_going: args.keep_going,
        quiet,
        bars: std::io::stderr().is_terminal(),
    };
    let out = xlfs_build::run::run(ctx.clone(), &plan, &opts);
    if let Some(ic) = &ctx.cc.icecc {
        let _ = std::fs::remove_file(&ic.relay);
    }
    let cpu: u64 = out.built.iter().map(|b| b.cpu_ms).sum();
    // A build stopped by Ctrl-C did not fail: it is counted apart.
    let stopped = out.failed.iter().filter(|f| f.interrupted).count();
    eprintln!(
        "built {}, cached {}, failed {}{}, skipped {} in {:.1}s (cpu {:.1}s)",
        out.built.len(),
        out.cached.len(),
        out.failed.len() - stopped,
        if stopped > 0 {
            format!(", stopped {stopped}")
        } else {
            String::new()
        },
        out.skipped.len(),
        out.wall.as_secs_f64(),
        cpu as f64 / 1000.0
    );
    if !out.skipped.is_empty() {
        eprintln!("not built: {}", out.skipped.join(", "));
    }
    if !out.built.is_empty() {
        caches.push(&plan, &ctx.store, args.push)?;
    }
    if out.interrupted {
        eprintln!("interrupted: run the same command again to resume (finished packages are kept)");
        return Ok(130);
    }
    Ok(if out.ok() { 0 } else { 1 })
}

fn status(app: &App) -> Result<i32> {
    let book = app.book()?;
    let (db, store) = (app.db()?, app.store()?);
    let plan = app.plan(&book, &[], &db, &store)?;
    let failures = db.failures()?;
    let (mut built, mut outdated, mut never) = (0, Vec::new(), Vec::new());
    for s in &plan.steps {
        match &s.status {
            Status::Cached | Status::Remote { .. } => built += 1,
            Status::Build { why } => {
                if db.latest(&s.name)?.is_some() {
                    outdated.push(format!("{} ({why})", s.name));
                } else {
                    never.push(s.name.clone());
                }
            }
        }
    }
    println!(
        "book     {} ({} recipes)",
        app.book_dir().display(),
        book.recipes.len()
    );
    println!("home     {}", app.home.root.display());
    println!("sources  {}", app.home.sources.display());
    println!("up to date  {built}");
    println!("outdated    {}{}", outdated.len(), list(&outdated));
    println!("never built {}{}", never.len(), list(&never));
    let store_keys = store.keys()?;
    let store_bytes: u64 = store_keys
        .iter()
        .filter_map(|k| store.packed(k).ok())
        .map(|p| p.size)
        .sum();
    println!(
        "store       {} artifacts, {}",
        store_keys.len(),
        human_bytes(store_bytes)
    );
    for f in failures {
        let tree = std::path::Path::new(&f.build_dir);
        let goes_on = match xlfs_build::package::resume_point(tree) {
            xlfs_build::package::Resume::Fresh => "",
            xlfs_build::package::Resume::AfterBuild { checked: false } => {
                " (the next build goes on in it after its build step)"
            }
            xlfs_build::package::Resume::AfterBuild { checked: true } => {
                " (the next build goes on in it after its check)"
            }
        };
        println!(
            "FAILED {}: {}\n  log: {}\n  build tree: {}{goes_on}",
            f.name, f.message, f.log, f.build_dir
        );
    }
    Ok(0)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(": {}", items.join(", "))
    }
}

fn log(app: &App, package: &str, tail: Option<usize>) -> Result<i32> {
    let db = app.db()?;
    let path = match db.failures()?.into_iter().find(|f| f.name == package) {
        Some(f) => std::path::PathBuf::from(f.log),
        None => match db.latest(package)? {
            Some(b) => std::path::PathBuf::from(b.log),
            None => {
                let link = app.home.logs().join(format!("{package}.log"));
                if !link.exists() {
                    bail!(
                        "no build log for `{package}`: it has not been built in {}",
                        app.home.root.display()
                    );
                }
                link
            }
        },
    };
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    for l in &lines[from..] {
        println!("{l}");
    }
    eprintln!("({})", path.display());
    Ok(0)
}

fn current_key(
    app: &App,
    package: &str,
) -> Result<(xlfs_plan::Step, xlfs_build::StateDb, xlfs_store::LocalStore)> {
    let book = app.book()?;
    let (db, store) = (app.db()?, app.store()?);
    let plan = app.plan(&book, &[package.to_string()], &db, &store)?;
    let step = plan.get(package).cloned().expect("target is in its plan");
    Ok((step, db, store))
}

fn files(app: &App, package: &str, json: bool) -> Result<i32> {
    let (step, db, store) = current_key(app, package)?;
    let key = if step.is_cached() {
        step.key.clone()
    } else {
        match db.latest(package)? {
            Some(b) if store.contains(&b.key)? => {
                eprintln!("note: {package} is outdated; showing its last build");
                b.key
            }
            _ => bail!("`{package}` has not been built; run `xlfs build {package}`"),
        }
    };
    let manifest = store.manifest(&key)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(0);
    }
    for e in &manifest.entries {
        let kind = match e.kind {
            xlfs_store::Kind::File => "-",
            xlfs_store::Kind::Dir => "d",
            xlfs_store::Kind::Symlink => "l",
            xlfs_store::Kind::Hardlink => "h",
        };
        let mut line = format!(
            "{kind} {:04o} {:>5}:{:<5} {:>10} /{}",
            e.mode, e.uid, e.gid, e.size, e.path
        );
        if let Some(t) = &e.target {
            line.push_str(&format!(" -> {t}"));
        }
        if !e.needed.is_empty() {
            line.push_str(&format!("  [needs {}]", e.needed.join(" ")));
        }
        println!("{line}");
    }
    println!(
        "{} entries, {} installed",
        manifest.entries.len(),
        human_bytes(manifest.installed_size())
    );
    Ok(0)
}

/// The recipe of `name`, or an error that suggests the closest name.
fn recipe_named<'b>(book: &'b xlfs_book::Book, name: &str) -> Result<&'b xlfs_book::Recipe> {
    book.get(name).with_context(|| {
        format!(
            "no package `{name}` in the book{}",
            xlfs_book::suggest(name, book.recipes.keys().map(|s| s.as_str()))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default()
        )
    })
}

/// The newest build tree of `package` in `home` whose build step ended and that no build
/// finished: one that was interrupted (killed or stopped) in its check or install, or is still in
/// them. Its suite's results so far are there.
fn unfinished_tree(home: &xlfs_build::home::Home, package: &str) -> Option<std::path::PathBuf> {
    home.build_dirs_of(package)
        .into_iter()
        .filter(|d| xlfs_build::package::resume_point(d) != xlfs_build::package::Resume::Fresh)
        .max_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok())
}

/// `xlfs tests PKG`: the verdict of `[build.tests]` on the result files a kept build tree holds.
fn tests(app: &App, package: &str, tree: Option<&std::path::Path>, allow_toml: bool) -> Result<i32> {
    let book = app.book()?;
    let r = recipe_named(&book, package)?;
    let Some(suite) = &r.tests else {
        bail!(
            "`{package}` has no [build.tests] in {}: add `results` (the suite's result files) and \
             `allow` (its known failures) to judge its suite",
            r.path.display()
        );
    };
    let tree = match tree {
        Some(t) => t.to_path_buf(),
        None => match app.db()?.failures()?.into_iter().find(|f| f.name == package) {
            Some(f) => std::path::PathBuf::from(f.build_dir),
            None => match unfinished_tree(&app.home, package) {
                Some(t) => {
                    eprintln!(
                        "judging the tree of an unfinished build (its suite may not have ended): {}",
                        t.display()
                    );
                    t
                }
                None => bail!(
                    "no kept build tree of `{package}` in {}: a tree is kept when a build fails \
                     or stops after its build step (e.g. `xlfs build --check={package}`, or the \
                     scratch home of `xlfs rebuild --compare --check`: pass it with --home); or \
                     give one with --tree DIR",
                    app.home.root.display()
                ),
            },
        },
    };
    let src = tree.join("src");
    if !src.is_dir() {
        bail!("{} is not a build tree: it has no src/", tree.display());
    }
    // Where the tree's steps ran, as its own mark says; a tree without one (kept by an older
    // xlfs) is found again from the recipe.
    let workdir = src.join(
        xlfs_build::package::recorded_workdir(&tree)
            .unwrap_or_else(|| xlfs_build::package::workdir_in(r, &src)),
    );
    let verdict = xlfs_build::suites::judge(suite, &workdir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", workdir.display()))?;
    if allow_toml {
        // The verdict on stderr, the TOML alone on stdout (`> allow.toml`).
        let (list, unused) = xlfs_build::suites::measured_allowlist(&verdict.results, &suite.allow)
            .map_err(|e| anyhow::anyhow!("{}: {e}", r.path.display()))?;
        eprintln!("{package}: {}", verdict.summary());
        for u in &unused {
            eprintln!("  allow entry `{u}` matches no failure of these results (kept)");
        }
        println!(
            "# {package} {}: measured in {} ({} failures, {} of them new)\nallow = [",
            r.version,
            tree.display(),
            verdict.results.failures.len(),
            verdict.unexpected.len()
        );
        for entry in list {
            println!("    {},", toml_edit::Value::from(entry));
        }
        println!("]");
        for m in &verdict.missing {
            eprintln!("  {m}");
        }
        return Ok(if verdict.passed() { 0 } else { 1 });
    }
    println!("{package}: {}", verdict.summary());
    for p in verdict.problems() {
        println!("  {p}");
    }
    if verdict.passed() {
        return Ok(0);
    }
    for fix in verdict.fixes() {
        println!("  {fix} (in {})", r.path.display());
    }
    Ok(1)
}

fn why(app: &App, package: &str) -> Result<i32> {
    let (step, db, _store) = current_key(app, package)?;
    let prev = db.latest(package)?;
    match &step.status {
        Status::Cached | Status::Remote { .. } => {
            println!("{package} is cached (key {})", step.key);
            if let Some(b) = db.build(&step.key)? {
                println!("  built {} (unix time), log {}", b.finished_at, b.log);
            }
        }
        Status::Build { why } => {
            println!("{package} would build: {why}");
            println!("  key now   {}", step.key);
            if let Some(p) = prev {
                println!("  last key  {}", p.key);
                let (a, b) = (&p.inputs, &step.inputs);
                let diff = |what: &str, x: &str, y: &str| {
                    if x != y {
                        println!(
                            "  {what:<9} {} -> {}",
                            &x[..x.len().min(16)],
                            &y[..y.len().min(16)]
                        );
                    }
                };
                diff("recipe", &a.recipe, &b.recipe);
                diff("sources", &a.sources, &b.sources);
                diff("env", &a.env, &b.env);
                if a.env != b.env {
                    match (app.toolchain_packages(&a.env), app.toolchain_packages(&b.env)) {
                        (Some(old), Some(new)) => {
                            println!("  toolchain changed:");
                            for line in xlfs_build::toolchain::diff(&old, &new) {
                                println!("    {line}");
                            }
                        }
                        _ => println!("  environment {} -> {}", a.env, b.env),
                    }
                }
                for (dep, key) in &b.deps {
                    match a.deps.get(dep) {
                        Some(old) if old == key => {}
                        Some(old) => println!("  dep {dep}: {} -> {}", &old[..12], &key[..12]),
                        None => println!("  dep {dep}: added"),
                    }
                }
                for dep in a.deps.keys().filter(|d| !b.deps.contains_key(*d)) {
                    println!("  dep {dep}: removed");
                }
            }
        }
    }
    Ok(0)
}

fn toolchain(app: &App, packages: bool) -> Result<i32> {
    let book = app.book()?;
    let tc = app.toolchain(&book)?;
    println!("toolchain root {}", tc.root.display());
    println!("  identity {}", tc.id);
    println!("  target   {}", tc.triple);
    println!("  packages {}", tc.packages.len());
    if packages {
        for p in &tc.packages {
            println!("    {p}");
        }
    }
    Ok(0)
}

fn gc(app: &App, dry_run: bool) -> Result<i32> {
    app.prepare_home()?;
    let _lock = xlfs_build::lock::lock(&app.home.lock(), "gc", true, &|holder| {
        eprintln!(
            "waiting for the lock on {} (held by {holder})",
            app.home.root.display()
        )
    })?;
    let _store_lock = store_lock_exclusive(app, "gc")?;
    let book = app.book()?;
    let (db, store) = (app.db()?, app.store()?);
    let plan = app.plan(&book, &[], &db, &store)?;
    let live: BTreeSet<&str> = plan.steps.iter().map(|s| s.key.as_str()).collect();
    let mut freed = 0u64;
    let mut removed = 0;
    for key in store.keys()? {
        if live.contains(key.as_str()) {
            continue;
        }
        let size = store.packed(&key).map(|p| p.size).unwrap_or(0);
        println!(
            "{} artifact {key} ({})",
            if dry_run { "would remove" } else { "remove" },
            human_bytes(size)
        );
        if !dry_run {
            store.remove(&key)?;
            db.forget(&key)?;
        }
        freed += size;
        removed += 1;
    }
    // Build trees of failed or interrupted builds; but not one the next build goes on in (its
    // build step ended, for a key the book still builds: a long suite's hours are in it).
    let live_trees: BTreeSet<std::path::PathBuf> = plan
        .steps
        .iter()
        .map(|s| app.home.build_dir(&s.name, &s.key))
        .collect();
    if let Ok(entries) = std::fs::read_dir(app.home.builds()) {
        for e in entries.flatten() {
            if live_trees.contains(&e.path())
                && xlfs_build::package::resume_point(&e.path()) != xlfs_build::package::Resume::Fresh
            {
                println!(
                    "keep build tree {} (the next build goes on in it; remove it by hand to start over)",
                    e.path().display()
                );
                continue;
            }
            let size = xlfs_build::package::disk_usage(&e.path());
            println!(
                "{} build tree {} ({})",
                if dry_run { "would remove" } else { "remove" },
                e.path().display(),
                human_bytes(size)
            );
            if !dry_run {
                let exe = std::env::current_exe().context("cannot find the xlfs binary")?;
                xlfs_build::package::remove_build_tree(&exe, &e.path()).map_err(anyhow::Error::msg)?;
            }
            freed += size;
        }
    }
    if !dry_run {
        store.clean_temps(std::time::Duration::from_secs(0))?;
    }
    println!(
        "{} {removed} artifact(s), {} {}",
        if dry_run { "would remove" } else { "removed" },
        human_bytes(freed),
        if dry_run { "would be freed" } else { "freed" }
    );
    Ok(0)
}

/// The store lock, exclusively: waits for every `image` and `boot` holding it shared.
fn store_lock_exclusive(app: &App, what: &str) -> Result<xlfs_build::lock::HomeLock> {
    let path = app.home.store_lock();
    Ok(xlfs_build::lock::lock(&path, what, true, &|holder| {
        eprintln!(
            "waiting for `xlfs image`/`xlfs boot` to finish with the store (lock {}, last held by {holder})",
            path.display()
        )
    })?)
}

/// `xlfs verify`: every stored artifact re-hashed against its manifest and the database.
fn verify(app: &App) -> Result<i32> {
    app.prepare_home()?;
    let _lock = xlfs_build::lock::lock(&app.home.lock(), "verify", true, &|holder| {
        eprintln!(
            "waiting for the lock on {} (held by {holder})",
            app.home.root.display()
        )
    })?;
    let _store_lock = store_lock_exclusive(app, "verify")?;
    let (db, store) = (app.db()?, app.store()?);
    let keys = store.keys()?.len();
    let bad = xlfs_build::verify::check_all(&store, &db).map_err(anyhow::Error::msg)?;
    for c in &bad {
        println!("CORRUPT {c}: removed, the next build makes it again");
        xlfs_build::verify::discard(&store, &db, c).map_err(anyhow::Error::msg)?;
    }
    println!("verified {keys} artifact(s), {} corrupt", bad.len());
    Ok(if bad.is_empty() { 0 } else { 1 })
}

fn report(app: &App, json: bool, html: Option<&std::path::Path>) -> Result<i32> {
    let book = app.book()?;
    let db = app.db()?;
    let records: Vec<_> = db
        .all_latest()?
        .into_iter()
        .filter(|r| book.recipes.contains_key(&r.name))
        .collect();
    let chapter_of = |name: &str| xlfs_build::report::chapter_of(&book, name);
    let rep = xlfs_build::report::report(&records, book.config.sbu_reference.as_deref(), &chapter_of);
    if let Some(file) = html {
        let from = (rep.total.started_at * 1000.0) as i64;
        let to = (rep.total.finished_at * 1000.0) as i64;
        let cpu = if records.is_empty() {
            Vec::new()
        } else {
            db.cpu_samples(from, to)?
        };
        xlfs_util::write_atomic(file, rep.html(&cpu).as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!(
            "wrote {} ({} packages, {} CPU samples)",
            file.display(),
            rep.packages.len(),
            cpu.len()
        );
    }
    let images = crate::system::home_images(app)?;
    let guests = crate::system::guest_reports(&images);
    let dom0s = crate::system::dom0_reports(&images);
    if json {
        let mut v = serde_json::to_value(&rep)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("guests".into(), serde_json::to_value(&guests)?);
            o.insert("dom0".into(), serde_json::to_value(&dom0s)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", rep.table());
        print!("{}", crate::system::dom0_report_table(&dom0s));
        print!("{}", crate::system::guest_report_table(&guests));
    }
    Ok(0)
}

/// ccache and icecream for a build run (`--ccache`, `--icecc`): the tools root (created once),
/// and icecream only when its scheduler answers; its slots beyond `-j` become the remote pool.
fn cc_options(
    app: &App,
    book: &xlfs_book::Book,
    args: &crate::args::CcArgs,
    jobs: usize,
) -> Result<xlfs_build::cctools::CcOptions> {
    use xlfs_build::cctools;
    if !args.ccache && !args.icecc {
        return Ok(Default::default());
    }
    let quiet = app.global.quiet;
    let spec = &book.config.build_tools;
    let tools = match cctools::load(&app.home.toolchains, spec) {
        Some(t) => t,
        None => {
            let mirror = app.fetcher().mirrors().debian_base.clone().context(
                "no Debian mirror for the build tools root: none in /etc/apt; pass --debian-mirror URL",
            )?;
            cctools::ensure(&app.home.toolchains, spec, &mirror, &|m| {
                if !quiet {
                    eprintln!("{m}")
                }
            })
            .map_err(anyhow::Error::msg)?
        }
    };
    let mut icecc = None;
    if args.icecc {
        let socket = args
            .icecc_socket
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("/var/run/icecc/iceccd.socket"));
        let scheduler = args
            .icecc_scheduler
            .clone()
            .or_else(|| std::env::var("ICECC_SCHEDULER").ok())
            .unwrap_or_else(|| "localhost".into());
        let addr = if scheduler.contains(':') {
            scheduler.clone()
        } else {
            format!("{scheduler}:8766")
        };
        use std::os::unix::fs::FileTypeExt;
        let socket_ok = std::fs::metadata(&socket)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        let node = args.icecc_node.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().to_string())
                .unwrap_or_default()
        });
        match cctools::scheduler_nodes(&addr, &node, std::time::Duration::from_secs(3)) {
            _ if !socket_ok => eprintln!(
                "warning: --icecc: no iceccd socket at {} (start iceccd, or pass --icecc-socket): building locally",
                socket.display()
            ),
            None => eprintln!(
                "warning: --icecc: no icecream scheduler answers at {addr} (pass --icecc-scheduler HOST): building locally"
            ),
            Some((remote, daemons)) => {
                if !quiet {
                    eprintln!(
                        "icecream: scheduler {addr}: -j{jobs} local + {remote} remote job slot(s) on {}",
                        daemons.join(", ")
                    );
                }
                xlfs_build::jobs::init_remote(remote).context("cannot create the remote job pool")?;
                let envs = app.home.root.join("icecc");
                std::fs::create_dir_all(&envs).with_context(|| format!("cannot create {}", envs.display()))?;
                let relay = envs.join(format!("relay-{}.socket", std::process::id()));
                cctools::start_relay(&relay, daemons)
                    .with_context(|| format!("cannot serve the icecream relay at {}", relay.display()))?;
                icecc = Some(cctools::Icecc {
                    socket,
                    remote_slots: remote,
                    envs,
                    relay,
                });
            }
        }
    }
    Ok(cctools::CcOptions {
        tools: Some(tools),
        ccache: args.ccache.then(|| app.home.root.join("ccache")),
        icecc,
    })
}
