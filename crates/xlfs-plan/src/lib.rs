//! The plan: which packages a target needs, in which order, each one's key, and whether it is
//! cached or must build and why. Pure: the store and the previous builds come in as functions.
//!
//! A package's **key** hashes its recipe (with the template applied), its sources' and patches'
//! sha256, the keys of everything in its build root (its build dependencies and their runtime
//! closure), and the identity of the build environment. Same key, same artifact.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use xlfs_book::{Book, BuildEnv, Recipe};

/// The identity of each build environment: the engine's version plus, for `host`, the build
/// machine's toolchain (compiler and binutils versions). Computed by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvIds {
    pub host: String,
    pub chroot: String,
}

impl EnvIds {
    pub fn get(&self, env: BuildEnv) -> &str {
        match env {
            BuildEnv::Host => &self.host,
            BuildEnv::Chroot => &self.chroot,
        }
    }
}

/// What went into a key, kept with each build so that `why` can tell what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub recipe: String,
    pub sources: String,
    /// Packages in the build root → their keys.
    pub deps: BTreeMap<String, String>,
    pub env: String,
    /// The target CPU (`-march=`) of a profile's host, when it sets one (`host.march`). Absent,
    /// it adds nothing to the key, so untuned keys stay what they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub march: Option<String>,
}

impl Inputs {
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"xlfs-key-v1\n");
        h.update(format!(
            "recipe {}\nsources {}\nenv {}\n",
            self.recipe, self.sources, self.env
        ));
        for (name, key) in &self.deps {
            h.update(format!("dep {name} {key}\n"));
        }
        if let Some(m) = &self.march {
            h.update(format!("march {m}\n"));
        }
        hex::encode(h.finalize())
    }
}

/// The last successful build of a package (by name), as recorded in the state database.
#[derive(Debug, Clone)]
pub struct Previous {
    pub key: String,
    pub inputs: Inputs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "kebab-case")]
pub enum Reason {
    /// Never built before.
    New,
    RecipeChanged,
    SourceChanged,
    /// These dependencies have new keys.
    DependencyChanged(Vec<String>),
    EnvironmentChanged,
    /// Built before with the same inputs, but the artifact is not in the store (removed by gc?).
    NotInStore,
    /// An older build of these exact inputs exists but a different key was recorded (engine upgrade).
    KeyChanged,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => write!(f, "new"),
            Reason::RecipeChanged => write!(f, "recipe changed"),
            Reason::SourceChanged => write!(f, "source changed"),
            Reason::DependencyChanged(d) => write!(f, "dependency changed: {}", d.join(", ")),
            Reason::EnvironmentChanged => write!(f, "build environment changed"),
            Reason::NotInStore => write!(f, "artifact missing from the store"),
            Reason::KeyChanged => write!(f, "key scheme changed"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    /// In the local store.
    Cached,
    /// Not in the local store but in the shared cache `cache`: fetched, not built.
    Remote {
        cache: String,
    },
    Build {
        why: Reason,
    },
}

impl Status {
    /// Where the artifact comes from: `local`, `cache NAME` or `build`.
    pub fn origin(&self) -> String {
        match self {
            Status::Cached => "local".into(),
            Status::Remote { cache } => format!("cache {cache}"),
            Status::Build { .. } => "build".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub version: String,
    pub key: String,
    pub env: BuildEnv,
    pub status: Status,
    /// Packages whose outputs make up the build root, in plan order.
    pub build_root: Vec<String>,
    #[serde(skip)]
    pub inputs: Inputs,
}

impl Step {
    /// In the local store or in a shared cache: not built.
    pub fn is_cached(&self) -> bool {
        matches!(self.status, Status::Cached | Status::Remote { .. })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Every needed package in build order: a package comes after everything in its build root.
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn get(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
    pub fn to_build(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| !s.is_cached())
    }
    /// The steps whose artifact comes from a shared cache.
    pub fn to_fetch(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .filter(|s| matches!(s.status, Status::Remote { .. }))
    }

    /// The plan with the artifacts found in shared caches: `found` maps a key that is not in
    /// the local store to the first configured cache that has it (looked up by the caller, see
    /// [`Plan::to_look_up`]). Keys do not depend on where artifacts come from, so only the
    /// statuses change.
    pub fn with_remote(mut self, found: &BTreeMap<String, String>) -> Plan {
        for s in &mut self.steps {
            if let (Status::Build { .. }, Some(cache)) = (&s.status, found.get(&s.key)) {
                s.status = Status::Remote { cache: cache.clone() };
            }
        }
        self
    }

    /// The keys to look up in shared caches: those not in the local store.
    pub fn to_look_up(&self) -> Vec<String> {
        self.to_build().map(|s| s.key.clone()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}", .0.join("\n"))]
    UnknownTargets(Vec<String>),
}

/// sha256 of the recipe as built: fields, resolved steps, environment, inputs' hashes
/// (comments and formatting of the TOML file do not count).
pub fn recipe_hash(r: &Recipe) -> String {
    let json = serde_json::to_vec(r).expect("recipes serialise");
    hex::encode(Sha256::digest(&json))
}

/// sha256 over the sources' bytes that are built (the chosen copy's name and sha256, see
/// `Source::used`) and the patches' pinned hashes.
pub fn sources_hash(r: &Recipe) -> String {
    let mut h = Sha256::new();
    for s in &r.sources {
        let (file, sha256) = s.used();
        h.update(format!(
            "source {file} {} unpack={}\n",
            sha256.to_ascii_lowercase(),
            s.unpack
        ));
    }
    for p in &r.patches {
        h.update(format!("patch {} {} -p{}\n", p.file, p.sha256, p.strip));
    }
    hex::encode(h.finalize())
}

/// The build environment part of a key: the environment's identity and `SOURCE_DATE_EPOCH`,
/// which every build sees and every artifact's timestamps carry.
pub fn env_identity(env_id: &str, source_date_epoch: u64) -> String {
    format!("{env_id} source-date-epoch={source_date_epoch}")
}

/// The runtime closure of `names`: them and everything they need at run time, transitively.
pub fn runtime_closure(book: &Book, names: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = names.to_vec();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(r) = book.get(&n) {
            stack.extend(r.run_deps.iter().cloned());
        }
    }
    seen
}

/// Everything in a package's build root: its build dependencies and their runtime closure.
/// In the `host` environment, what the build machine's toolchain provides (book.toml
/// `toolchain.host.provides`, e.g. the C library) is left out: the toolchain has its own.
pub fn build_root(book: &Book, r: &Recipe) -> BTreeSet<String> {
    let mut root = runtime_closure(book, &r.build_deps);
    if r.env == BuildEnv::Host {
        for p in &book.config.host_provides {
            root.remove(p);
        }
    }
    root
}

/// Plan the builds needed for `targets` (all packages of the book when empty): the targets,
/// what they need to build and what they need at run time, transitively.
pub fn plan(
    book: &Book,
    targets: &[String],
    envs: &EnvIds,
    previous: &dyn Fn(&str) -> Option<Previous>,
    in_store: &dyn Fn(&str) -> bool,
) -> Result<Plan, PlanError> {
    plan_with(book, targets, true, envs, previous, in_store)
}

/// Like [`plan`]; with `runtime = false` the targets' own runtime dependencies are left out
/// (only what building the targets needs is planned).
pub fn plan_with(
    book: &Book,
    targets: &[String],
    runtime: bool,
    envs: &EnvIds,
    previous: &dyn Fn(&str) -> Option<Previous>,
    in_store: &dyn Fn(&str) -> bool,
) -> Result<Plan, PlanError> {
    plan_tuned(book, targets, runtime, envs, None, previous, in_store)
}

/// Like [`plan_with`], for a host tuned to a CPU: `march` (a profile's `host.march`) goes into
/// every planned package's key and build flags.
pub fn plan_tuned(
    book: &Book,
    targets: &[String],
    runtime: bool,
    envs: &EnvIds,
    march: Option<&str>,
    previous: &dyn Fn(&str) -> Option<Previous>,
    in_store: &dyn Fn(&str) -> bool,
) -> Result<Plan, PlanError> {
    let unknown = book.unknown(targets);
    if !unknown.is_empty() {
        return Err(PlanError::UnknownTargets(unknown));
    }
    let roots: Vec<String> = if targets.is_empty() {
        book.recipes.keys().cloned().collect()
    } else {
        targets.to_vec()
    };

    // Everything needed: the targets, their build roots and runtime closures, transitively.
    let mut needed = BTreeSet::new();
    let mut stack = roots;
    while let Some(n) = stack.pop() {
        if !needed.insert(n.clone()) {
            continue;
        }
        let r = &book.recipes[&n];
        if runtime {
            stack.extend(r.build_deps.iter().cloned());
            stack.extend(r.run_deps.iter().cloned());
        } else {
            // Only build roots, transitively: a dependency's runtime needs count where they are
            // in a build root (what the toolchain provides is not).
            stack.extend(build_root(book, r));
        }
    }

    let roots_of: BTreeMap<&str, BTreeSet<String>> = needed
        .iter()
        .map(|n| (n.as_str(), build_root(book, &book.recipes[n])))
        .collect();

    // Kahn's algorithm, alphabetical among the ready ones, so the order is deterministic.
    let mut waiting_on: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, root) in &roots_of {
        waiting_on.insert(n, root.len());
        for d in root {
            dependents.entry(d.as_str()).or_default().push(n);
        }
    }
    let mut ready: BTreeSet<&str> = waiting_on
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut order = Vec::with_capacity(needed.len());
    while let Some(n) = ready.pop_first() {
        order.push(n);
        for d in dependents.get(n).into_iter().flatten() {
            let c = waiting_on.get_mut(d).expect("known");
            *c -= 1;
            if *c == 0 {
                ready.insert(d);
            }
        }
    }
    // The book has no cycles (checked on load), so everything got an order.
    assert_eq!(order.len(), needed.len(), "dependency cycle in the plan");

    let position: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut keys: BTreeMap<&str, String> = BTreeMap::new();
    let mut steps = Vec::new();
    for name in order {
        let r = &book.recipes[name];
        // The build root in plan order.
        let mut root: Vec<String> = roots_of[name].iter().cloned().collect();
        root.sort_by_key(|n| position[n.as_str()]);
        let inputs = Inputs {
            recipe: recipe_hash(r),
            sources: sources_hash(r),
            deps: root
                .iter()
                .map(|d| (d.clone(), keys[d.as_str()].clone()))
                .collect(),
            env: env_identity(envs.get(r.env), book.config.source_date_epoch),
            march: march.map(str::to_string),
        };
        let key = inputs.key();
        let status = if in_store(&key) {
            Status::Cached
        } else {
            Status::Build {
                why: reason(&inputs, &key, previous(name)),
            }
        };
        keys.insert(name, key.clone());
        steps.push(Step {
            name: name.to_string(),
            version: r.version.clone(),
            key,
            env: r.env,
            status,
            build_root: root,
            inputs,
        });
    }
    Ok(Plan { steps })
}

/// Why a package whose key is not in the store must build, compared with its last build.
pub fn reason(inputs: &Inputs, key: &str, prev: Option<Previous>) -> Reason {
    let Some(prev) = prev else {
        return Reason::New;
    };
    if prev.key == key {
        return Reason::NotInStore;
    }
    let p = &prev.inputs;
    if p.recipe != inputs.recipe {
        Reason::RecipeChanged
    } else if p.sources != inputs.sources {
        Reason::SourceChanged
    } else if p.env != inputs.env || p.march != inputs.march {
        Reason::EnvironmentChanged
    } else if p.deps != inputs.deps {
        let mut changed: Vec<String> = inputs
            .deps
            .iter()
            .filter(|(n, k)| p.deps.get(*n) != Some(k))
            .map(|(n, _)| n.clone())
            .collect();
        changed.extend(
            p.deps
                .keys()
                .filter(|n| !inputs.deps.contains_key(*n))
                .map(|n| format!("-{n}")),
        );
        Reason::DependencyChanged(changed)
    } else {
        Reason::KeyChanged
    }
}
