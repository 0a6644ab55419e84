//! `xlfs report`: per package wall and CPU time, SBU, build-tree and installed sizes, per chapter
//! totals, and (`--html FILE`) a page with the build's timeline, the machine's CPU use over it,
//! and the sizes, drawn as plain SVG.
//!
//! An SBU (Standard Build Unit) is, as in the LFS book, the wall time of one reference package's
//! build on this machine (`sbu-reference` in book.toml); other times are shown as multiples of it.
//! A package's chapter is its recipe's directory in the book (`lfs/ch5`, `base`, ...); the
//! bootstrap twins of chapter 8 are `lfs/ch8 (boot)`.

use crate::run::human_bytes;
use crate::state::BuildRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub version: String,
    pub chapter: String,
    /// Wall time, earlier runs of the same build tree included (`earlier_s` of it).
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Seconds of `wall_s` spent in earlier runs of the build tree, before the run that finished
    /// it (which alone is on the timeline).
    pub earlier_s: f64,
    pub sbu: Option<f64>,
    pub build_tree_bytes: u64,
    pub installed_bytes: u64,
    pub artifact_bytes: u64,
    pub artifact_sha256: String,
    /// When the build started and ended (Unix seconds).
    pub started_at: f64,
    pub finished_at: f64,
}

impl Row {
    /// Whether the package was built in this home: one fetched from a shared cache has no build
    /// time (`finished_at` 0) and no place on the timeline.
    fn built_here(&self) -> bool {
        self.finished_at > 0.0
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub sbu_reference: Option<String>,
    pub sbu_seconds: Option<f64>,
    pub packages: Vec<Row>,
    /// Totals per chapter, in the order chapters first started building.
    pub chapters: Vec<Row>,
    pub total: Row,
    /// Seconds during which at least one of these builds ran: the union of their intervals, so
    /// the parallel builds count once and the pauses between runs (a resumed build) not at all.
    pub busy_s: f64,
}

/// The length of the union of the intervals `(start, end)`.
pub fn union_length(intervals: &[(f64, f64)]) -> f64 {
    let mut v: Vec<(f64, f64)> = intervals.iter().copied().filter(|(a, b)| b > a).collect();
    v.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (a, b) in v {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + current.map(|(a, b)| b - a).unwrap_or(0.0)
}

/// One CPU sample: Unix milliseconds, busy fraction of all cores, number of cores.
pub type CpuSample = (i64, f64, u32);

fn sum(name: &str, chapter: &str, rows: &[&Row], sbu: Option<f64>) -> Row {
    let wall: f64 = rows.iter().map(|r| r.wall_s).sum();
    Row {
        name: name.into(),
        version: String::new(),
        chapter: chapter.into(),
        wall_s: wall,
        cpu_s: rows.iter().map(|r| r.cpu_s).sum(),
        earlier_s: rows.iter().map(|r| r.earlier_s).sum(),
        sbu: sbu.map(|s| wall / s),
        build_tree_bytes: rows.iter().map(|r| r.build_tree_bytes).sum(),
        installed_bytes: rows.iter().map(|r| r.installed_bytes).sum(),
        artifact_bytes: rows.iter().map(|r| r.artifact_bytes).sum(),
        artifact_sha256: String::new(),
        started_at: rows
            .iter()
            .filter(|r| r.built_here())
            .map(|r| r.started_at)
            .fold(f64::INFINITY, f64::min),
        finished_at: rows.iter().map(|r| r.finished_at).fold(0.0, f64::max),
    }
}

/// A package's chapter: its recipe's directory in the book (`lfs/ch5`, `base`); bootstrap twins
/// are `DIR (boot)`.
pub fn chapter_of(book: &xlfs_book::Book, name: &str) -> String {
    let Some(r) = book.get(name) else {
        return String::new();
    };
    let dir = r
        .path
        .parent()
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default();
    let dir = if dir.is_empty() { "(top)".to_string() } else { dir };
    if r.twin_of.is_some() {
        format!("{dir} (boot)")
    } else {
        dir
    }
}

/// The report of `records`; `chapter_of` names each package's chapter.
pub fn report(
    records: &[BuildRecord],
    sbu_reference: Option<&str>,
    chapter_of: &dyn Fn(&str) -> String,
) -> Report {
    let sbu = sbu_reference
        .and_then(|r| records.iter().find(|b| b.name == r))
        .map(|b| b.wall_ms as f64 / 1000.0)
        .filter(|s| *s > 0.0);
    let row = |b: &BuildRecord| Row {
        name: b.name.clone(),
        version: b.version.clone(),
        chapter: chapter_of(&b.name),
        wall_s: b.wall_ms as f64 / 1000.0,
        cpu_s: b.cpu_ms as f64 / 1000.0,
        earlier_s: b.earlier_wall_ms.min(b.wall_ms) as f64 / 1000.0,
        sbu: sbu.map(|s| b.wall_ms as f64 / 1000.0 / s),
        build_tree_bytes: b.build_tree_size,
        installed_bytes: b.installed_size,
        artifact_bytes: b.artifact_size,
        artifact_sha256: b.artifact_sha256.clone(),
        // The run that finished the build.
        started_at: b.finished_at as f64 - b.wall_ms.saturating_sub(b.earlier_wall_ms) as f64 / 1000.0,
        finished_at: b.finished_at as f64,
    };
    let mut packages: Vec<Row> = records.iter().map(row).collect();
    packages.sort_by(|a, b| a.started_at.total_cmp(&b.started_at).then(a.name.cmp(&b.name)));
    let mut by_chapter: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in &packages {
        match by_chapter.iter_mut().find(|(c, _)| *c == r.chapter) {
            Some((_, v)) => v.push(r),
            None => by_chapter.push((r.chapter.clone(), vec![r])),
        }
    }
    let chapters = by_chapter.iter().map(|(c, rows)| sum(c, c, rows, sbu)).collect();
    let all: Vec<&Row> = packages.iter().collect();
    let total = sum("total", "", &all, sbu);
    let intervals: Vec<(f64, f64)> = packages.iter().map(|r| (r.started_at, r.finished_at)).collect();
    let busy_s = union_length(&intervals);
    Report {
        busy_s,
        sbu_reference: sbu_reference.map(str::to_string),
        sbu_seconds: sbu,
        packages,
        chapters,
        total,
    }
}

impl Report {
    pub fn table(&self) -> String {
        let header = |first: &str| {
            format!(
                "{:<24} {:>12} {:>9} {:>9} {:>7} {:>11} {:>11}\n",
                first, "version", "wall s", "cpu s", "SBU", "build tree", "installed"
            )
        };
        let fmt_row = |r: &Row| {
            format!(
                "{:<24} {:>12} {:>9.1} {:>9.1} {:>7} {:>11} {:>11}\n",
                r.name,
                r.version,
                r.wall_s,
                r.cpu_s,
                r.sbu.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
                human_bytes(r.build_tree_bytes),
                human_bytes(r.installed_bytes)
            )
        };
        let mut s = header("package");
        for r in &self.packages {
            s.push_str(&fmt_row(r));
        }
        s.push_str(&fmt_row(&self.total));
        if self.total.built_here() {
            s.push_str(&format!(
                "elapsed: {:.1} s with a build running ({:.1} s from the first start to the last end)\n",
                self.busy_s,
                self.total.finished_at - self.total.started_at
            ));
        }
        let resumed: Vec<&Row> = self.packages.iter().filter(|r| r.earlier_s > 0.0).collect();
        if !resumed.is_empty() {
            s.push_str(&format!(
                "{} build(s) went on in the tree of an earlier run ({}): their times include {:.1} s \
                 of those runs, up to the last step each ended (not on the timeline, nor in `elapsed`)\n",
                resumed.len(),
                resumed
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.total.earlier_s
            ));
        }
        s.push('\n');
        s.push_str(&header("chapter"));
        for r in &self.chapters {
            s.push_str(&fmt_row(r));
        }
        match (&self.sbu_reference, self.sbu_seconds) {
            (Some(r), Some(t)) => s.push_str(&format!("1 SBU = {t:.1} s (the build of {r})\n")),
            (Some(r), None) => s.push_str(&format!(
                "SBU: the reference package {r} has not been built yet\n"
            )),
            _ => s.push_str("SBU: set book.sbu-reference in book.toml\n"),
        }
        s
    }

    /// A self-contained HTML page: the tables, the timeline (one bar per package, coloured by
    /// chapter, with the machine's CPU use under it) and the installed sizes, as inline SVG.
    pub fn html(&self, cpu: &[CpuSample]) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xlfs build report</title>\n\
             <style>body{{font-family:monospace;margin:1em}}table{{border-collapse:collapse}}\
             td,th{{padding:2px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
             tr:nth-child(even){{background:#f4f4f4}}</style></head><body>\n<h1>xlfs build report</h1>\n"
        );
        let _ = writeln!(
            h,
            "<p>{} packages, {} wall (sum of builds), {} with a build running, {} CPU{}</p>",
            self.packages.len(),
            hms(self.total.wall_s),
            hms(self.busy_s),
            hms(self.total.cpu_s),
            match (&self.sbu_reference, self.sbu_seconds) {
                (Some(r), Some(t)) => format!("; 1 SBU = {t:.1} s ({})", esc(r)),
                _ => String::new(),
            }
        );
        h.push_str("<h2>Timeline</h2>\n");
        h.push_str(&self.timeline_svg(cpu));
        h.push_str("<h2>Per chapter</h2>\n");
        h.push_str(&rows_table(&self.chapters, "chapter"));
        h.push_str("<h2>Installed size per package</h2>\n");
        h.push_str(&self.sizes_svg());
        h.push_str("<h2>Per package</h2>\n");
        h.push_str(&rows_table(&self.packages, "package"));
        h.push_str("</body></html>\n");
        h
    }

    fn colours(&self) -> BTreeMap<&str, &'static str> {
        const PALETTE: [&str; 10] = [
            "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
            "#9c755f", "#bab0ac",
        ];
        self.chapters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.chapter.as_str(), PALETTE[i % PALETTE.len()]))
            .collect()
    }

    fn timeline_svg(&self, cpu: &[CpuSample]) -> String {
        let mut s = String::new();
        let packages: Vec<&Row> = self.packages.iter().filter(|r| r.built_here()).collect();
        if packages.is_empty() {
            return "<p>nothing built yet</p>\n".into();
        }
        let t0 = self.total.started_at;
        let span = (self.total.finished_at - t0).max(1.0);
        let (left, width, bar, gap) = (200.0, 900.0, 12.0, 2.0);
        let bars_h = packages.len() as f64 * (bar + gap);
        let cpu_h = 100.0;
        let height = bars_h + cpu_h + 60.0;
        let x = |t: f64| left + (t - t0) / span * width;
        let colours = self.colours();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-size=\"10\">",
            left + width + 20.0
        );
        for (i, r) in packages.iter().enumerate() {
            let y = i as f64 * (bar + gap);
            let w = (x(r.finished_at) - x(r.started_at)).max(1.0);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
                 <rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar}\" fill=\"{}\">\
                 <title>{} {} ({}): {} wall, {} CPU</title></rect>",
                left - 4.0,
                y + bar - 2.0,
                esc(&r.name),
                x(r.started_at),
                colours.get(r.chapter.as_str()).unwrap_or(&"#888"),
                esc(&r.name),
                esc(&r.version),
                esc(&r.chapter),
                hms(r.wall_s),
                hms(r.cpu_s)
            );
        }
        // CPU use under the bars: 0-100 % of all cores.
        let base = bars_h + cpu_h + 10.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">CPU use</text>\
             <line x1=\"{left}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#000\"/>\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/>",
            left - 4.0,
            base - cpu_h / 2.0,
            left + width,
            base - cpu_h,
            left + width,
            base - cpu_h
        );
        let points: Vec<String> = cpu
            .iter()
            .map(|(ms, busy, _)| (*ms as f64 / 1000.0, busy.clamp(0.0, 1.0)))
            .filter(|(t, _)| *t >= t0 && *t <= t0 + span)
            .map(|(t, b)| format!("{:.1},{:.1}", x(t), base - b * cpu_h))
            .collect();
        if points.is_empty() {
            let _ = writeln!(
                s,
                "<text x=\"{left}\" y=\"{:.1}\">no CPU samples recorded for these builds</text>",
                base - 4.0
            );
        } else {
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"#333\" points=\"{}\"/>",
                points.join(" ")
            );
        }
        // Time axis.
        for i in 0..=4 {
            let t = span * i as f64 / 4.0;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                left + width * i as f64 / 4.0,
                base + 14.0,
                hms(t)
            );
        }
        // Legend.
        let mut lx = left;
        for (c, colour) in &colours {
            let _ = writeln!(
                s,
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                base + 24.0,
                lx + 14.0,
                base + 33.0,
                esc(c)
            );
            lx += 20.0 + 7.0 * c.len() as f64;
        }
        s.push_str("</svg>\n");
        s
    }

    fn sizes_svg(&self) -> String {
        let mut rows: Vec<&Row> = self.packages.iter().collect();
        rows.sort_by(|a, b| {
            b.installed_bytes
                .cmp(&a.installed_bytes)
                .then(a.name.cmp(&b.name))
        });
        let max = rows.first().map(|r| r.installed_bytes).unwrap_or(0).max(1) as f64;
        let (left, width, bar, gap) = (200.0, 700.0, 12.0, 2.0);
        let colours = self.colours();
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-size=\"10\">\n",
            left + width + 100.0,
            rows.len() as f64 * (bar + gap) + 4.0
        );
        for (i, r) in rows.iter().enumerate() {
            let y = i as f64 * (bar + gap);
            let w = (r.installed_bytes as f64 / max * width).max(1.0);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
                 <rect x=\"{left}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                left - 4.0,
                y + bar - 2.0,
                esc(&r.name),
                colours.get(r.chapter.as_str()).unwrap_or(&"#888"),
                left + w + 4.0,
                y + bar - 2.0,
                human_bytes(r.installed_bytes)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn rows_table(rows: &[Row], first: &str) -> String {
    let mut s = format!(
        "<table><tr><th>{first}</th><th>version</th><th>chapter</th><th>wall</th><th>CPU</th>\
         <th>SBU</th><th>build tree</th><th>installed</th></tr>\n"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&r.version),
            esc(&r.chapter),
            if r.earlier_s > 0.0 {
                format!("{} ({} in earlier runs)", hms(r.wall_s), hms(r.earlier_s))
            } else {
                hms(r.wall_s)
            },
            hms(r.cpu_s),
            r.sbu.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into()),
            human_bytes(r.build_tree_bytes),
            human_bytes(r.installed_bytes)
        );
    }
    s.push_str("</table>\n");
    s
}

fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `cpu` line of /proc/stat: (busy, total) jiffies since boot.
pub fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat(&text)
}

pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal ...
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle, total))
}

/// The busy fraction between two /proc/stat readings.
pub fn busy_fraction(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, finished_at: i64, wall_ms: u64, cpu_ms: u64, installed: u64) -> BuildRecord {
        BuildRecord {
            key: format!("k-{name}"),
            name: name.into(),
            version: "1".into(),
            inputs: xlfs_plan::Inputs::default(),
            artifact_sha256: String::new(),
            artifact_size: 0,
            installed_size: installed,
            build_tree_size: 0,
            wall_ms,
            cpu_ms,
            earlier_wall_ms: 0,
            finished_at,
            log: String::new(),
            sources: vec![],
        }
    }

    fn sample() -> Report {
        let recs = [
            rec("binutils-pass1", 1_000_100, 100_000, 150_000, 10 << 20),
            rec("gcc-pass1", 1_000_400, 300_000, 500_000, 100 << 20),
            rec("bash-temp", 1_000_500, 100_000, 80_000, 5 << 20),
        ];
        let chapter = |n: &str| {
            if n.ends_with("-temp") {
                "lfs/ch6"
            } else {
                "lfs/ch5"
            }
            .to_string()
        };
        report(&recs, Some("binutils-pass1"), &chapter)
    }

    #[test]
    fn elapsed_time_counts_parallel_builds_once_and_no_pause() {
        assert_eq!(union_length(&[]), 0.0);
        // Two builds side by side, then a pause (the build was resumed later), then one more.
        assert_eq!(
            union_length(&[(50.0, 150.0), (0.0, 100.0), (300.0, 400.0)]),
            250.0
        );
        assert_eq!(union_length(&[(0.0, 100.0), (10.0, 20.0)]), 100.0);
        let r = sample();
        assert_eq!(r.busy_s, 500.0);
        // A package fetched from a shared cache was not built here: no time, no bar.
        let recs = [
            rec("fetched", 0, 0, 0, 1 << 20),
            rec("built", 2_000_000, 60_000, 90_000, 1 << 20),
        ];
        let r2 = report(&recs, None, &|_| "base".to_string());
        assert_eq!(
            (r2.total.started_at, r2.total.finished_at),
            (1_999_940.0, 2_000_000.0)
        );
        assert_eq!(r2.busy_s, 60.0);
        assert_eq!(
            r2.html(&[]).matches("<rect x=").count(),
            1 + 1 + 2,
            "one bar, one legend entry, two sizes"
        );
        assert!(r
            .table()
            .contains("elapsed: 500.0 s with a build running (500.0 s from the first start"));
    }

    #[test]
    fn a_build_that_went_on_counts_its_earlier_runs_but_draws_its_last() {
        let mut gcc = rec("gcc", 2_000_000, 5_000_000, 9_000_000, 1 << 20);
        gcc.earlier_wall_ms = 4_000_000;
        let r = report(&[gcc, rec("zlib", 2_000_100, 100_000, 90_000, 1)], None, &|_| {
            "lfs/ch8".into()
        });
        let g = &r.packages[0];
        assert_eq!(
            (g.wall_s, g.earlier_s, g.started_at),
            (5000.0, 4000.0, 1_999_000.0)
        );
        assert_eq!((r.total.wall_s, r.total.earlier_s), (5100.0, 4000.0));
        // The earlier runs are not in the elapsed time: their start is not known.
        assert_eq!(r.busy_s, 1100.0);
        assert!(r.table().contains(
            "1 build(s) went on in the tree of an earlier run (gcc): their times include 4000.0 s"
        ));
        assert!(r.html(&[]).contains("1h23m (1h06m in earlier runs)"));
    }

    #[test]
    fn chapters_sum_their_packages_in_build_order() {
        let r = sample();
        assert_eq!(r.packages[0].name, "binutils-pass1");
        assert_eq!(r.packages[0].started_at, 1_000_000.0);
        let names: Vec<_> = r.chapters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["lfs/ch5", "lfs/ch6"]);
        assert_eq!(r.chapters[0].wall_s, 400.0);
        assert_eq!(r.chapters[0].sbu, Some(4.0));
        assert_eq!(r.total.cpu_s, 730.0);
        assert!(r.table().contains("lfs/ch6"));
    }

    #[test]
    fn the_html_page_has_a_bar_per_package_the_cpu_line_and_sizes() {
        let r = sample();
        let cpu = [(1_000_050_000, 0.5, 2), (1_000_200_000, 1.0, 2), (5, 0.1, 2)];
        let html = r.html(&cpu);
        assert_eq!(html.matches("<rect x=").count(), 3 + 2 + 3, "bars, legend, sizes");
        assert!(html.contains("<polyline"), "the CPU line");
        // Only the samples inside the build's time span.
        let line = html.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(line.split(' ').count(), 2);
        assert!(html.contains("gcc-pass1 1 (lfs/ch5): 5m00s wall, 8m20s CPU"));
        let no_samples = r.html(&[]);
        assert!(no_samples.contains("no CPU samples recorded"));
    }

    #[test]
    fn cpu_use_comes_from_proc_stat_differences() {
        let a = parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = parse_proc_stat("cpu  250 0 150 900 0 0 0 0 0 0\n").unwrap();
        assert_eq!(a, (200, 1000));
        assert!((busy_fraction(a, b) - 200.0 / 300.0).abs() < 1e-9);
        assert_eq!(busy_fraction(b, b), 0.0);
        assert!(parse_proc_stat("intr 1 2").is_none());
    }
}
