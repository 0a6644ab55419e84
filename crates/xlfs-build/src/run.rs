//! The scheduler: builds the plan's packages in parallel, as soon as their build roots are ready,
//! longest chain of dependents first, under one jobserver. Stays correct under Ctrl-C: running
//! sandboxes are killed, finished packages stay finished, and nothing half-built is recorded.

use crate::package::{self, BuildFailure, Ctx, Progress};
use crate::state::BuildRecord;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xlfs_plan::{Plan, Status, Step};

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

/// How the run shows itself: progress bars, or plain lines.
pub struct Display {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl Display {
    fn new(opts: &Options, total: usize) -> Display {
        if opts.bars && !opts.quiet {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("{prefix:>10.bold} [{bar:30}] {pos}/{len} {elapsed_precise}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            overall.set_prefix("Building");
            Display {
                multi: Some(multi),
                overall: Some(overall),
                bars: Mutex::new(HashMap::new()),
                quiet: false,
            }
        } else {
            Display {
                multi: None,
                overall: None,
                bars: Mutex::new(HashMap::new()),
                quiet: opts.quiet,
            }
        }
    }

    fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn start(&self, step: &Step) {
        let why = match &step.status {
            Status::Build { why } => why.to_string(),
            Status::Cached => "cached".into(),
        };
        match &self.multi {
            Some(m) => {
                let pb = m.insert_from_back(1, ProgressBar::new_spinner());
                pb.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg} {elapsed}")
                        .expect("template"),
                );
                pb.set_prefix(format!("{} {}", step.name, step.version));
                pb.set_message(why);
                pb.enable_steady_tick(Duration::from_millis(200));
                self.bars.lock().unwrap().insert(step.name.clone(), pb);
            }
            None if !self.quiet => eprintln!("   build {} {} ({why})", step.name, step.version),
            None => {}
        }
    }

    fn finish(&self, name: &str, res: &Result<BuildRecord, Box<BuildFailure>>) {
        if let Some(pb) = self.bars.lock().unwrap().remove(name) {
            pb.finish_and_clear();
        }
        if let Some(o) = &self.overall {
            o.inc(1);
        }
        match res {
            Ok(r) => {
                if !self.quiet {
                    self.println(&format!(
                        "    done {} {} in {:.1}s (cpu {:.1}s, {} installed)",
                        r.name,
                        r.version,
                        r.wall_ms as f64 / 1000.0,
                        r.cpu_ms as f64 / 1000.0,
                        human_bytes(r.installed_size)
                    ))
                }
            }
            Err(f) if f.interrupted => self.println(&format!(" stopped {}", f.name)),
            Err(f) => {
                let mut msg = format!("  FAILED {}: {}\n", f.name, f.message);
                for l in &f.tail {
                    msg.push_str(&format!("  | {l}\n"));
                }
                msg.push_str(&format!(
                    "  log: {}\n  build tree kept for inspection: {}",
                    f.log.display(),
                    f.build_dir.display()
                ));
                self.println(&msg);
            }
        }
    }

    fn clear(&self) {
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
    }
}

impl Progress for Display {
    fn phase(&self, name: &str, phase: &str) {
        if let Some(pb) = self.bars.lock().unwrap().get(name) {
            pb.set_message(phase.to_string());
        }
    }
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

/// Build every package of `plan` that is not cached.
pub fn run(ctx: Arc<Ctx>, plan: &Plan, opts: &Options) -> Outcome {
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
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, step) in &todo {
        let deps: BTreeSet<&str> = step
            .build_root
            .iter()
            .map(|s| s.as_str())
            .filter(|d| todo.contains_key(d))
            .collect();
        for d in &deps {
            dependents.entry(d).or_default().push(name);
        }
        waiting.insert(name, deps);
    }
    let history: HashMap<String, u64> = ctx
        .db
        .lock()
        .ok()
        .and_then(|db| db.all_latest().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.name, r.wall_ms.max(1)))
        .collect();
    let priority = priorities(&todo, &dependents, &|n| history.get(n).copied().unwrap_or(1000));

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
    let (tx, rx) = mpsc::channel::<Msg>();
    let token_tx = tx.clone();
    let helper = client
        .into_helper_thread(move |t| {
            let _ = token_tx.send(Msg::Token(t));
        })
        .expect("jobserver helper thread");

    let display = Arc::new(Display::new(opts, todo.len()));
    let mut tokens: Vec<jobserver::Acquired> = Vec::new();
    let mut requested = 0usize;
    let mut running = 0usize;
    let mut stop = false;
    let mut done: BTreeSet<String> = BTreeSet::new();

    loop {
        let cancelled = ctx.cancel.load(Ordering::SeqCst);
        // Ready: not started, everything it waits for is built.
        let mut ready: Vec<&str> = if stop || cancelled {
            Vec::new()
        } else {
            waiting
                .iter()
                .filter(|(_, deps)| deps.is_empty())
                .map(|(n, _)| *n)
                .collect()
        };
        ready.sort_by_key(|n| (std::cmp::Reverse(priority[n]), *n));
        let mut ready = ready.into_iter();
        while running < 1 + tokens.len() {
            let Some(name) = ready.next() else { break };
            waiting.remove(name);
            let step = todo[name].clone();
            display.start(&step);
            running += 1;
            let (ctx, tx, display) = (ctx.clone(), tx.clone(), display.clone());
            std::thread::spawn(move || {
                let res = package::build(&ctx, &step, &*display);
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
                display.finish(&name, &res);
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
    if ctx.cancel.load(Ordering::SeqCst) {
        out.interrupted = true;
    }
    out.skipped.extend(waiting.keys().map(|s| s.to_string()));
    out.skipped.sort();
    out.skipped.dedup();
    display.clear();
    out.wall = started.elapsed();
    out
}

/// The expected cost of the longest chain that starts at each package (its own expected build
/// time plus that of its most expensive chain of dependents): the longest chains go first, as
/// in cargo's job queue. A package's expected time is its last recorded build time, or one unit
/// for a package never built here.
fn priorities<'a>(
    todo: &BTreeMap<&'a str, &Step>,
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
    todo.keys()
        .map(|n| (*n, chain(n, dependents, cost, &mut memo)))
        .collect()
}

/// Ctrl-C: stop starting builds and kill the running sandboxes (whole process groups).
pub fn interrupt(ctx: &Ctx) {
    ctx.cancel.store(true, Ordering::SeqCst);
    if let Ok(running) = ctx.running.lock() {
        for pgid in running.iter() {
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
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
        let step = |n: &str| Step {
            name: n.into(),
            version: "1".into(),
            key: "k".repeat(64),
            env: xlfs_book::BuildEnv::Host,
            status: Status::Cached,
            build_root: vec![],
            inputs: xlfs_plan::Inputs {
                recipe: String::new(),
                sources: String::new(),
                deps: Default::default(),
                env: String::new(),
            },
        };
        let steps = [step("a"), step("b"), step("c")];
        let todo: BTreeMap<&str, &Step> = steps.iter().map(|s| (s.name.as_str(), s)).collect();
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
}
