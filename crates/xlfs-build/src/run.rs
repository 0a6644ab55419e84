//! The scheduler: builds the plan's packages in parallel, as soon as their build roots are ready,
//! longest chain of dependents first, under one jobserver. Stays correct under Ctrl-C: running
//! sandboxes are killed, finished packages stay finished, and nothing half-built is recorded.
//!
//! The scheduler shows nothing itself: it emits [`Event`]s to a [`Reporter`] (as nextest
//! separates its reporter from its runner); the terminal display is [`crate::display`].

use crate::events::{Event, Reporter};
use crate::package::{self, BuildFailure, Ctx, Progress};
use crate::state::BuildRecord;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xlfs_plan::{Plan, Step};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep building what does not depend on a failed package.
    pub keep_going: bool,
    /// Only failures and the summary.
    pub quiet: bool,
    /// Progress bars (a TTY); otherwise plain lines.
    pub bars: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub built: Vec<BuildRecord>,
    pub cached: Vec<String>,
    pub failed: Vec<BuildFailure>,
    /// Not built because something they need failed (or the run stopped).
    pub skipped: Vec<String>,
    pub interrupted: bool,
    pub wall: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.interrupted
    }
}

enum Msg {
    Token(std::io::Result<jobserver::Acquired>),
    Done(String, Box<Result<BuildRecord, Box<BuildFailure>>>),
}

pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Forwards a package's phases to the reporter.
struct Phases(Arc<dyn Reporter>);

impl Progress for Phases {
    fn phase(&self, name: &str, phase: &str) {
        self.0.event(Event::Phase { name, phase });
    }
}

/// Build every package of `plan` that is not cached, shown on the terminal
/// ([`crate::display::Display`]: bars on a TTY, plain lines otherwise).
pub fn run(ctx: Arc<Ctx>, plan: &Plan, opts: &Options) -> Outcome {
    let total = plan.to_build().count();
    let display: Arc<dyn Reporter> = Arc::new(crate::display::Display::new(opts.bars, opts.quiet, total));
    run_with(ctx, plan, opts, display)
}

/// Build every package of `plan` that is not cached, reporting to `reporter`.
pub fn run_with(ctx: Arc<Ctx>, plan: &Plan, opts: &Options, reporter: Arc<dyn Reporter>) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        cached: plan
            .steps
            .iter()
            .filter(|s| s.is_cached())
            .map(|s| s.name.clone())
            .collect(),
        ..Default::default()
    };
    let todo: BTreeMap<&str, &Step> = plan.to_build().map(|s| (s.name.as_str(), s)).collect();
    if todo.is_empty() {
        out.wall = started.elapsed();
        return out;
    }
    // What each package waits for, and who waits for it.
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = todo
        .iter()
        .map(|(name, step)| {
            let deps = step
                .build_root
                .iter()
                .map(|s| s.as_str())
                .filter(|d| todo.contains_key(d))
                .collect();
            (*name, deps)
        })
        .collect();
    let dependents = dependents_of(&waiting);
    let history: HashMap<String, u64> = ctx
        .db
        .lock()
        .ok()
        .and_then(|db| db.all_latest().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.name, r.wall_ms.max(1)))
        .collect();
    let inputs = cost_inputs(&ctx.book, &history, ctx.fetcher.cache_dir(), todo.keys().copied());
    let costs = expected_costs(&inputs, ctx.book.config.sbu_reference.as_deref());
    let priority = priorities(&waiting, &dependents, &|n| {
        costs.get(n).copied().unwrap_or(MIN_COST_MS)
    });

    // The machine's CPU use over the run, for `xlfs report --html`.
    let _sampler = CpuSampler::start(ctx.clone());

    let client = match crate::jobs::init(ctx.jobs) {
        Ok(c) => c.clone(),
        Err(e) => {
            out.failed.push(BuildFailure {
                name: "jobserver".into(),
                message: format!("cannot create the jobserver: {e}"),
                log: Default::default(),
                build_dir: Default::default(),
                tail: vec![],
                interrupted: false,
            });
            return out;
        }
    };
    if ctx.cc.icecc.is_some() {
        // Compile jobs that lend their slot reach the pool on descriptors of their own.
        if let Err(e) = crate::jobs::init_local_dup() {
            tracing::warn!("icecream: compile jobs will not lend their local slot: {e}");
        }
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    let token_tx = tx.clone();
    let helper = client
        .into_helper_thread(move |t| {
            let _ = token_tx.send(Msg::Token(t));
        })
        .expect("jobserver helper thread");

    let phases = Arc::new(Phases(reporter.clone()));
    let mut tokens: Vec<jobserver::Acquired> = Vec::new();
    let mut requested = 0usize;
    let mut running = 0usize;
    let mut stop = false;
    let mut done: BTreeSet<String> = BTreeSet::new();

    loop {
        let cancelled = ctx.cancel.load(Ordering::SeqCst) || ctx.drain.load(Ordering::SeqCst);
        // Ready: not started, everything it waits for is built.
        let ready: Vec<&str> = if stop || cancelled {
            Vec::new()
        } else {
            ready_order(&waiting, &priority)
        };
        let mut ready = ready.into_iter();
        while running < 1 + tokens.len() {
            let Some(name) = ready.next() else { break };
            waiting.remove(name);
            let step = todo[name].clone();
            reporter.event(Event::Started { step: &step });
            running += 1;
            let (ctx, tx, phases) = (ctx.clone(), tx.clone(), phases.clone());
            std::thread::spawn(move || {
                let res = package::build(&ctx, &step, &*phases);
                let _ = tx.send(Msg::Done(step.name.clone(), Box::new(res)));
            });
        }
        let more_ready = ready.next().is_some();
        if more_ready && requested == 0 {
            helper.request_token();
            requested += 1;
        }
        if !more_ready {
            // Keep one token per running package beyond the first; give back the rest so the
            // makes of the running builds can use them.
            while tokens.len() > running.saturating_sub(1) {
                tokens.pop();
            }
        }
        if running == 0 {
            break;
        }
        match rx.recv() {
            Ok(Msg::Token(t)) => {
                requested = requested.saturating_sub(1);
                if let Ok(t) = t {
                    tokens.push(t);
                }
            }
            Ok(Msg::Done(name, res)) => {
                running -= 1;
                match &*res {
                    Ok(rec) => reporter.event(Event::Finished { record: rec }),
                    Err(f) => reporter.event(Event::Failed { failure: f }),
                }
                match *res {
                    Ok(rec) => {
                        done.insert(name.clone());
                        for d in dependents.get(name.as_str()).into_iter().flatten() {
                            if let Some(w) = waiting.get_mut(d) {
                                w.remove(name.as_str());
                            }
                        }
                        out.built.push(rec);
                    }
                    Err(f) => {
                        if f.interrupted {
                            out.interrupted = true;
                        } else if !opts.keep_going {
                            stop = true;
                        }
                        // Everything that needs it cannot build.
                        let mut stack = vec![name.clone()];
                        while let Some(n) = stack.pop() {
                            for d in dependents.get(n.as_str()).into_iter().flatten() {
                                if waiting.remove(d).is_some() {
                                    out.skipped.push(d.to_string());
                                    stack.push(d.to_string());
                                }
                            }
                        }
                        out.failed.push(*f);
                    }
                }
            }
            Err(_) => break,
        }
    }
    drop(tokens);
    // Stopped, or drained with packages left unstarted.
    if ctx.cancel.load(Ordering::SeqCst) || (ctx.drain.load(Ordering::SeqCst) && !waiting.is_empty()) {
        out.interrupted = true;
    }
    out.skipped.extend(waiting.keys().map(|s| s.to_string()));
    out.skipped.sort();
    out.skipped.dedup();
    reporter.event(Event::End);
    out.wall = started.elapsed();
    out
}

/// What the scheduler knows about one package to estimate its build time.
#[derive(Debug, Clone, Default)]
pub struct CostInput {
    /// Wall time of its last recorded build here.
    pub recorded_ms: Option<u64>,
    /// Total size of its pinned source files in the download cache (when they are there).
    pub source_bytes: Option<u64>,
    /// The recipe's `[build] cost`, in SBU.
    pub hint_sbu: Option<u32>,
}

/// A package with nothing to go on (no sources, no hint, never built): a trivial build.
pub const MIN_COST_MS: u64 = 1_000;
/// Build time per MiB of (compressed) source, until this home has recorded times to calibrate.
pub const DEFAULT_MS_PER_MIB: u64 = 10_000;
/// One SBU, until the reference package has been built or can be estimated.
pub const DEFAULT_SBU_MS: u64 = 60_000;

/// Expected build time (ms) of each package: its last recorded time; else its recipe's hint
/// (`[build] cost`, in SBU: the reference package's recorded or estimated time); else an
/// estimate from its source size, at the rate of the packages built here (total recorded time
/// over total source size), or [`DEFAULT_MS_PER_MIB`] on a cold home.
pub fn expected_costs(
    inputs: &BTreeMap<String, CostInput>,
    sbu_reference: Option<&str>,
) -> HashMap<String, u64> {
    let (mut ms, mut bytes) = (0u128, 0u128);
    for c in inputs.values() {
        if let (Some(t), Some(b)) = (c.recorded_ms, c.source_bytes) {
            if b > 0 {
                ms += t as u128;
                bytes += b as u128;
            }
        }
    }
    let by_size = |b: u64| -> u64 {
        let est = (b as u128 * ms)
            .checked_div(bytes)
            .unwrap_or(b as u128 * DEFAULT_MS_PER_MIB as u128 / (1 << 20));
        (est.min(u64::MAX as u128) as u64).max(MIN_COST_MS)
    };
    let sbu_ms = sbu_reference
        .and_then(|r| inputs.get(r))
        .and_then(|c| c.recorded_ms.or(c.source_bytes.map(by_size)))
        .unwrap_or(DEFAULT_SBU_MS)
        .max(1);
    inputs
        .iter()
        .map(|(name, c)| {
            let cost = c
                .recorded_ms
                .or(c.hint_sbu.map(|h| h as u64 * sbu_ms))
                .or(c.source_bytes.map(by_size))
                .unwrap_or(MIN_COST_MS)
                .max(1);
            (name.clone(), cost)
        })
        .collect()
}

/// The cost inputs of `names` (and of the book's SBU reference): recorded times (`history`,
/// from the state database), source sizes from the download cache `cache` (a stat, no hashing:
/// an estimate needs no verified bytes), hints from the recipes.
pub fn cost_inputs<'a>(
    book: &xlfs_book::Book,
    history: &HashMap<String, u64>,
    cache: &std::path::Path,
    names: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, CostInput> {
    let names = names
        .map(|n| n.to_string())
        .chain(book.config.sbu_reference.clone());
    names
        .filter_map(|name| {
            let r = book.get(&name)?;
            let mut total = 0u64;
            let mut known = !r.sources.is_empty();
            for s in &r.sources {
                let size = std::iter::once(s.file.as_str())
                    .chain(s.debian.as_ref().map(|d| d.file.as_str()))
                    .find_map(|f| std::fs::metadata(cache.join(f)).ok().filter(|m| m.is_file()))
                    .map(|m| m.len());
                match size {
                    Some(b) => total += b,
                    None => known = false,
                }
            }
            let input = CostInput {
                recorded_ms: history.get(&name).copied(),
                source_bytes: known.then_some(total),
                hint_sbu: r.cost,
            };
            Some((name, input))
        })
        .collect()
}

/// The expected cost of the longest chain that starts at each package (its own expected build
/// time plus that of its most expensive chain of dependents): the longest chains go first, as
/// in cargo's job queue. A package's expected time comes from [`expected_costs`].
fn priorities<'a>(
    waiting: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    dependents: &BTreeMap<&'a str, Vec<&'a str>>,
    cost: &dyn Fn(&str) -> u64,
) -> HashMap<&'a str, u64> {
    fn chain<'a>(
        n: &'a str,
        dependents: &BTreeMap<&'a str, Vec<&'a str>>,
        cost: &dyn Fn(&str) -> u64,
        memo: &mut HashMap<&'a str, u64>,
    ) -> u64 {
        if let Some(c) = memo.get(n) {
            return *c;
        }
        let rest = dependents
            .get(n)
            .into_iter()
            .flatten()
            .map(|d| chain(d, dependents, cost, memo))
            .max()
            .unwrap_or(0);
        let c = cost(n) + rest;
        memo.insert(n, c);
        c
    }
    let mut memo = HashMap::new();
    waiting
        .keys()
        .map(|n| (*n, chain(n, dependents, cost, &mut memo)))
        .collect()
}

/// Who waits for each package.
fn dependents_of<'a>(waiting: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, deps) in waiting {
        for d in deps {
            dependents.entry(d).or_default().push(name);
        }
    }
    dependents
}

/// The packages that can start now (everything they wait for is built), highest priority first.
fn ready_order<'a>(
    waiting: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    priority: &HashMap<&'a str, u64>,
) -> Vec<&'a str> {
    let mut ready: Vec<&str> = waiting
        .iter()
        .filter(|(_, deps)| deps.is_empty())
        .map(|(n, _)| *n)
        .collect();
    ready.sort_by_key(|n| (std::cmp::Reverse(priority[n]), *n));
    ready
}

/// The order in which a run would start the packages `names` of `book` that are ready at once,
/// given recorded times and the download cache: for tests and `xlfs plan`-like tools.
pub fn start_order(
    book: &xlfs_book::Book,
    names: &[String],
    history: &HashMap<String, u64>,
    cache: &std::path::Path,
) -> Vec<String> {
    let todo: BTreeSet<&str> = names.iter().map(|s| s.as_str()).collect();
    let waiting: BTreeMap<&str, BTreeSet<&str>> = names
        .iter()
        .filter_map(|n| book.get(n))
        .map(|r| {
            let deps = xlfs_plan::build_root(book, r)
                .into_iter()
                .filter_map(|d| todo.get(d.as_str()).copied())
                .collect();
            (r.name.as_str(), deps)
        })
        .collect();
    let dependents = dependents_of(&waiting);
    let inputs = cost_inputs(book, history, cache, todo.iter().copied());
    let costs = expected_costs(&inputs, book.config.sbu_reference.as_deref());
    let priority = priorities(&waiting, &dependents, &|n| {
        costs.get(n).copied().unwrap_or(MIN_COST_MS)
    });
    ready_order(&waiting, &priority)
        .into_iter()
        .map(String::from)
        .collect()
}

/// How long a running build has to stop after SIGTERM before it is killed.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Stop now (a second Ctrl-C, SIGTERM, SIGHUP; a first Ctrl-C only sets [`Ctx::drain`]): stop
/// starting builds, and stop the running sandboxes (whole process groups): SIGTERM first, as a
/// terminal would, so that make deletes the targets it was writing (a test's partial
/// output, say, which the tree's next run would take for a result); SIGKILL to those still
/// running after [`STOP_GRACE`].
pub fn interrupt(ctx: &Arc<Ctx>) {
    ctx.cancel.store(true, Ordering::SeqCst);
    signal_running(ctx, libc::SIGTERM);
    let ctx = ctx.clone();
    std::thread::spawn(move || {
        std::thread::sleep(STOP_GRACE);
        signal_running(&ctx, libc::SIGKILL);
    });
}

/// Send `sig` to the process group of every running sandbox (a sandbox leaves the list before it
/// is reaped: no group id here can be another's).
fn signal_running(ctx: &Ctx, sig: libc::c_int) {
    if let Ok(running) = ctx.running.lock() {
        for pgid in running.iter() {
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }
}

/// Samples the machine's CPU use (from /proc/stat) every two seconds into the state database
/// while a run builds; stops when dropped.
struct CpuSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CpuSampler {
    fn start(ctx: Arc<Ctx>) -> CpuSampler {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1);
            let mut last = crate::report::read_proc_stat();
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let now = crate::report::read_proc_stat();
                if let (Some(a), Some(b)) = (last, now) {
                    let busy = crate::report::busy_fraction(a, b);
                    let at_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(0);
                    if let Ok(db) = ctx.db.lock() {
                        let _ = db.add_cpu_sample(at_ms, busy, cores);
                    }
                }
                last = now;
            }
        });
        CpuSampler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_expensive_chain_goes_first() {
        // b waits for a; c is alone but long.
        let dependents: BTreeMap<&str, Vec<&str>> = [("a", vec!["b"])].into_iter().collect();
        let todo: BTreeMap<&str, BTreeSet<&str>> = [
            ("a", BTreeSet::new()),
            ("b", ["a"].into()),
            ("c", BTreeSet::new()),
        ]
        .into_iter()
        .collect();
        assert_eq!(dependents_of(&todo), dependents);
        let cost = |n: &str| match n {
            "c" => 100,
            _ => 10,
        };
        let p = priorities(&todo, &dependents, &cost);
        assert_eq!(p["a"], 20, "a's chain is a then b");
        assert_eq!(p["b"], 10);
        assert_eq!(p["c"], 100);
        // Unknown costs: the longer chain first.
        let p = priorities(&todo, &dependents, &|_| 1);
        assert!(p["a"] > p["c"]);
    }

    fn recipe(name: &str, build: &[&str], files: &[&str], extra: &str) -> xlfs_book::BookFile {
        let deps: Vec<String> = build.iter().map(|d| format!("\"{d}\"")).collect();
        let sources: String = files
            .iter()
            .map(|f| format!("[[source]]\nfile = \"{f}\"\nsha256 = \"{}\"\n", "0".repeat(64)))
            .collect();
        xlfs_book::BookFile {
            path: format!("{name}.toml").into(),
            text: format!(
                "[package]\nname = \"{name}\"\nversion = \"1\"\nlicense = \"MIT\"\n{sources}\
                 [depends]\nbuild = [{}]\n[build]\n{extra}[build.steps]\ninstall = \"true\"\n",
                deps.join(", ")
            ),
        }
    }

    /// A synthetic book shaped like the quick profile: six small packages, three of which feed a
    /// medium one, and one huge package that nothing waits for.
    fn synthetic_book(hint: bool) -> xlfs_book::Book {
        let gcc_extra = if hint { "cost = 90\n" } else { "" };
        let files = vec![
            recipe("filesystem", &[], &[], ""),
            recipe("zlib", &[], &["zlib.tar.gz"], ""),
            recipe("libuuid", &[], &["util-linux.tar.xz"], ""),
            recipe("yajl", &[], &["yajl.tar.gz"], ""),
            recipe("busybox", &[], &["busybox.tar.bz2"], ""),
            recipe("bash", &[], &["bash.tar.xz"], ""),
            recipe("xen-tools", &["zlib", "libuuid", "yajl"], &["xen.tar.xz"], ""),
            recipe("gcc-libs", &[], &["gcc.tar.gz", "gmp.tar.xz"], gcc_extra),
        ];
        let mut files = files;
        files.push(xlfs_book::BookFile {
            path: "book.toml".into(),
            text: "[book]\nname = \"t\"\nsbu-reference = \"zlib\"\nsource-date-epoch = 1\n".into(),
        });
        xlfs_book::Book::from_files(std::path::Path::new("/nonexistent"), files, &|p| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                p.display().to_string(),
            ))
        })
        .expect("synthetic book")
    }

    const MIB: u64 = 1 << 20;

    fn cache_with(sizes: &[(&str, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (f, size) in sizes {
            let file = std::fs::File::create(dir.path().join(f)).unwrap();
            file.set_len(*size).unwrap();
        }
        dir
    }

    fn all(book: &xlfs_book::Book) -> Vec<String> {
        book.recipes.keys().cloned().collect()
    }

    #[test]
    fn on_a_cold_home_the_biggest_source_starts_first() {
        let book = synthetic_book(false);
        let cache = cache_with(&[
            ("zlib.tar.gz", 1500 * 1024),
            ("util-linux.tar.xz", 9 * MIB),
            ("yajl.tar.gz", 80 * 1024),
            ("busybox.tar.bz2", 2 * MIB),
            ("bash.tar.xz", 11 * MIB),
            ("xen.tar.xz", 5 * MIB),
            ("gcc.tar.gz", 95 * MIB),
            ("gmp.tar.xz", 2 * MIB),
        ]);
        let order = start_order(&book, &all(&book), &HashMap::new(), cache.path());
        assert_eq!(order[0], "gcc-libs", "{order:?}");
        // Without the sources' sizes (nothing fetched) every package costs the same, and the
        // longest chain (zlib, libuuid or yajl, then xen-tools) goes first.
        let empty = tempfile::tempdir().unwrap();
        let order = start_order(&book, &all(&book), &HashMap::new(), empty.path());
        assert_ne!(order[0], "gcc-libs", "{order:?}");
    }

    #[test]
    fn on_a_cold_home_a_cost_hint_wins_without_sources() {
        let book = synthetic_book(true);
        let empty = tempfile::tempdir().unwrap();
        let order = start_order(&book, &all(&book), &HashMap::new(), empty.path());
        assert_eq!(order[0], "gcc-libs", "{order:?}");
        // Recorded times beat every estimate.
        let history: HashMap<String, u64> =
            [("gcc-libs".to_string(), 10), ("xen-tools".to_string(), 500_000)]
                .into_iter()
                .collect();
        let order = start_order(&book, &all(&book), &history, empty.path());
        assert_ne!(order[0], "gcc-libs", "{order:?}");
    }

    #[test]
    fn estimates_calibrate_on_recorded_builds() {
        let inputs: BTreeMap<String, CostInput> = [
            (
                "a".to_string(),
                CostInput {
                    recorded_ms: Some(20_000),
                    source_bytes: Some(2 * MIB),
                    hint_sbu: None,
                },
            ),
            (
                "b".to_string(),
                CostInput {
                    recorded_ms: None,
                    source_bytes: Some(10 * MIB),
                    hint_sbu: None,
                },
            ),
            (
                "c".to_string(),
                CostInput {
                    recorded_ms: None,
                    source_bytes: None,
                    hint_sbu: Some(3),
                },
            ),
            ("d".to_string(), CostInput::default()),
        ]
        .into_iter()
        .collect();
        let c = expected_costs(&inputs, Some("a"));
        assert_eq!(c["a"], 20_000);
        assert_eq!(c["b"], 100_000, "10 MiB at the rate a was built at");
        assert_eq!(c["c"], 60_000, "3 SBU of 20 s");
        assert_eq!(c["d"], MIN_COST_MS);
    }

    /// The real book: on a cold home (nothing recorded, nothing fetched), the quick profile
    /// starts gcc-libs first, by far the longest build.
    #[test]
    fn the_quick_profile_starts_gcc_libs_first_on_a_cold_home() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
        let book = xlfs_book::Book::load(&root).expect("the book loads");
        let profile = xlfs_book::profile::Profile::load(&book, "quick").expect("quick profile");
        let mut names: BTreeSet<String> = xlfs_plan::runtime_closure(&book, &profile.targets());
        loop {
            let more: BTreeSet<String> = names
                .iter()
                .filter_map(|n| book.get(n))
                .flat_map(|r| xlfs_plan::build_root(&book, r))
                .filter(|d| !names.contains(d))
                .collect();
            if more.is_empty() {
                break;
            }
            names.extend(more);
        }
        let names: Vec<String> = names.into_iter().collect();
        assert!(names.contains(&"gcc-libs".to_string()), "{names:?}");
        let empty = tempfile::tempdir().unwrap();
        let order = start_order(&book, &names, &HashMap::new(), empty.path());
        assert_eq!(order[0], "gcc-libs", "{order:?}");
    }
}
