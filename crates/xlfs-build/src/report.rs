//! `xlfs report`: per package wall and CPU time, SBU, build-tree and installed sizes, and totals.
//!
//! An SBU (Standard Build Unit) is, as in the LFS book, the wall time of one reference package's
//! build on this machine (`sbu-reference` in book.toml); other times are shown as multiples of it.

use crate::run::human_bytes;
use crate::state::BuildRecord;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub version: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub sbu: Option<f64>,
    pub build_tree_bytes: u64,
    pub installed_bytes: u64,
    pub artifact_bytes: u64,
    pub artifact_sha256: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub sbu_reference: Option<String>,
    pub sbu_seconds: Option<f64>,
    pub packages: Vec<Row>,
    pub total: Row,
}

pub fn report(records: &[BuildRecord], sbu_reference: Option<&str>) -> Report {
    let sbu = sbu_reference
        .and_then(|r| records.iter().find(|b| b.name == r))
        .map(|b| b.wall_ms as f64 / 1000.0)
        .filter(|s| *s > 0.0);
    let row = |b: &BuildRecord| Row {
        name: b.name.clone(),
        version: b.version.clone(),
        wall_s: b.wall_ms as f64 / 1000.0,
        cpu_s: b.cpu_ms as f64 / 1000.0,
        sbu: sbu.map(|s| b.wall_ms as f64 / 1000.0 / s),
        build_tree_bytes: b.build_tree_size,
        installed_bytes: b.installed_size,
        artifact_bytes: b.artifact_size,
        artifact_sha256: b.artifact_sha256.clone(),
    };
    let packages: Vec<Row> = records.iter().map(row).collect();
    let wall: f64 = packages.iter().map(|r| r.wall_s).sum();
    let total = Row {
        name: "total".into(),
        version: String::new(),
        wall_s: wall,
        cpu_s: packages.iter().map(|r| r.cpu_s).sum(),
        sbu: sbu.map(|s| wall / s),
        build_tree_bytes: packages.iter().map(|r| r.build_tree_bytes).sum(),
        installed_bytes: packages.iter().map(|r| r.installed_bytes).sum(),
        artifact_bytes: packages.iter().map(|r| r.artifact_bytes).sum(),
        artifact_sha256: String::new(),
    };
    Report {
        sbu_reference: sbu_reference.map(str::to_string),
        sbu_seconds: sbu,
        packages,
        total,
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<24} {:>12} {:>9} {:>9} {:>7} {:>11} {:>11}\n",
            "package", "version", "wall s", "cpu s", "SBU", "build tree", "installed"
        );
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
        for r in &self.packages {
            s.push_str(&fmt_row(r));
        }
        s.push_str(&fmt_row(&self.total));
        match (&self.sbu_reference, self.sbu_seconds) {
            (Some(r), Some(t)) => s.push_str(&format!("1 SBU = {t:.1} s (the build of {r})\n")),
            (Some(r), None) => s.push_str(&format!(
                "SBU: the reference package {r} has not been built yet\n"
            )),
            _ => s.push_str("SBU: set book.sbu-reference in book.toml\n"),
        }
        s
    }
}
