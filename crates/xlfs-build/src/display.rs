//! The terminal display of a run: a [`Reporter`] that shows the scheduler's events as progress
//! bars (on a TTY) or plain lines.

use crate::events::{Event, Reporter};
use crate::package::BuildFailure;
use crate::run::human_bytes;
use crate::state::BuildRecord;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;
use xlfs_plan::{Status, Step};

/// How a run shows itself on the terminal: progress bars, or plain lines.
pub struct Display {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
    /// Where plain lines go (stderr; a buffer in tests).
    out: Mutex<Box<dyn Write + Send>>,
}

impl Display {
    /// `bars`: progress bars (a TTY); otherwise plain lines. `quiet`: only failures.
    /// `total`: how many packages the run builds.
    pub fn new(bars: bool, quiet: bool, total: usize) -> Display {
        Self::with_output(bars, quiet, total, Box::new(std::io::stderr()))
    }

    /// Like [`Display::new`], plain lines going to `out`.
    pub fn with_output(bars: bool, quiet: bool, total: usize, out: Box<dyn Write + Send>) -> Display {
        let out = Mutex::new(out);
        if bars && !quiet {
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
                out,
            }
        } else {
            Display {
                multi: None,
                overall: None,
                bars: Mutex::new(HashMap::new()),
                quiet,
                out,
            }
        }
    }

    fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => {
                let _ = writeln!(self.out.lock().unwrap(), "{line}");
            }
        }
    }

    fn start(&self, step: &Step) {
        let why = match &step.status {
            Status::Build { why } => why.to_string(),
            Status::Cached | Status::Remote { .. } => step.status.origin(),
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
            None if !self.quiet => self.println(&format!("   build {} {} ({why})", step.name, step.version)),
            None => {}
        }
    }

    fn finish(&self, name: &str, res: Result<&BuildRecord, &BuildFailure>) {
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

impl Reporter for Display {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { step } => self.start(step),
            Event::Phase { name, phase } => {
                if let Some(pb) = self.bars.lock().unwrap().get(name) {
                    pb.set_message(phase.to_string());
                }
            }
            Event::Finished { record } => self.finish(&record.name, Ok(record)),
            Event::Failed { failure } => self.finish(&failure.name, Err(failure)),
            Event::End => self.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn step(name: &str) -> Step {
        Step {
            name: name.into(),
            version: "1.0".into(),
            key: "k".repeat(64),
            env: xlfs_book::BuildEnv::Host,
            status: Status::Build {
                why: xlfs_plan::Reason::New,
            },
            build_root: vec![],
            inputs: xlfs_plan::Inputs::default(),
        }
    }

    fn record(name: &str) -> BuildRecord {
        BuildRecord {
            key: "k".repeat(64),
            name: name.into(),
            version: "1.0".into(),
            inputs: step(name).inputs,
            artifact_sha256: String::new(),
            artifact_size: 0,
            installed_size: 2048,
            build_tree_size: 0,
            wall_ms: 1500,
            cpu_ms: 500,
            earlier_wall_ms: 0,
            finished_at: 0,
            log: String::new(),
            sources: vec![],
        }
    }

    /// The display turns events into lines without any scheduler: it can be driven (and
    /// replaced) on its own.
    #[test]
    fn plain_lines_from_events() {
        let buf = Buf::default();
        let d: Box<dyn Reporter> = Box::new(Display::with_output(false, false, 2, Box::new(buf.clone())));
        let (a, b) = (step("a"), step("b"));
        d.event(Event::Started { step: &a });
        d.event(Event::Phase {
            name: "a",
            phase: "building",
        });
        d.event(Event::Started { step: &b });
        d.event(Event::Finished { record: &record("a") });
        let failure = BuildFailure {
            name: "b".into(),
            message: "exit status 2".into(),
            log: "/logs/b.log".into(),
            build_dir: "/builds/b".into(),
            tail: vec!["make: *** [all] Error 2".into()],
            interrupted: false,
        };
        d.event(Event::Failed { failure: &failure });
        d.event(Event::End);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let want = "   build a 1.0 (new)\n   build b 1.0 (new)\n    done a 1.0 in 1.5s (cpu 0.5s, 2.0 KiB installed)\n  FAILED b: exit status 2\n  | make: *** [all] Error 2\n  log: /logs/b.log\n  build tree kept for inspection: /builds/b\n";
        assert_eq!(text, want);

        // Quiet: only failures.
        let buf = Buf::default();
        let d = Display::with_output(false, true, 1, Box::new(buf.clone()));
        d.event(Event::Started { step: &a });
        d.event(Event::Finished { record: &record("a") });
        d.event(Event::Failed { failure: &failure });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("  FAILED b"), "{text}");
    }
}
