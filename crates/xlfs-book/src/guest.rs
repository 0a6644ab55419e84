//! Guest templates: a service VM as data, in `book/guests/NAME.toml`.
//!
//! A template names the packages of the guest's root filesystem, declares the settings an
//! instance may (or must) give, and says what the guest is made of besides packages: users and
//! groups, configuration files rendered with minijinja from the settings, services (command,
//! order, user, what "ready" means), first-boot steps (run once on the guest; this is where
//! secrets are made, so they never sit in an image) and checks run from the build machine with
//! the text each must print.
//!
//! ```toml
//! [template]
//! summary = "A static page served by BusyBox httpd"
//! packages = ["filesystem", "busybox"]
//!
//! [settings.title]
//! type = "string"              # string, integer, boolean or list (of strings)
//! default = "Hello from xlfs"
//! regex = "^[^<>]+$"           # also: required = true, enum = [..], min/max (integers)
//! help = "the page's heading"
//!
//! [[group]]
//! name = "www"
//! gid = 80
//! [[user]]
//! name = "www"
//! uid = 80
//! group = "www"
//!
//! [[file]]
//! path = "/srv/www/index.html"
//! owner = "www"
//! mode = "0644"
//! content = "<h1>{{ settings.title }}</h1>\n"
//!
//! [[service]]
//! name = "httpd"
//! command = "httpd -f -p 8080 -h /srv/www"
//! user = "www"
//! ready = { tcp = 8080 }
//!
//! [[first-boot]]
//! name = "session-secret"
//! run = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/www-secret"
//! secrets = ["/etc/www-secret"]
//!
//! [[check]]
//! name = "the page is served"
//! port = 8080
//! run = "curl -fsS http://{{ address }}/"
//! expect = "{{ settings.title }}"
//!
//! [[check]]                    # on the guest's console, as root: what works only inside
//! name = "the server answers locally"
//! on = "guest"
//! run = "wget -qO- http://127.0.0.1:8080/"
//! expect = "{{ settings.title }}"
//! save = "page"                # its output is `{{ saved.page }}` in the build machine's checks
//! ```
//!
//! Pure: parsing, validation and rendering only; the caller reads the files.

use crate::diag::{suggest, Diagnostic, Sink};
use crate::reader::{At, Reader};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml_edit::{Item, Value};

/// The book directory of guest templates.
pub const GUESTS_DIR: &str = "guests";

/// The type of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    String,
    Integer,
    Boolean,
    /// A list of strings.
    List,
}

impl SettingType {
    fn parse(s: &str) -> Option<SettingType> {
        Some(match s {
            "string" => SettingType::String,
            "integer" => SettingType::Integer,
            "boolean" => SettingType::Boolean,
            "list" => SettingType::List,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SettingType::String => "string",
            SettingType::Integer => "integer",
            SettingType::Boolean => "boolean",
            SettingType::List => "list",
        }
    }
}

/// A setting's value, as a profile or `--set` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    Boolean(bool),
    Integer(i64),
    String(String),
    List(Vec<String>),
}

impl SettingValue {
    /// A TOML value as a setting value (`None`: a type settings cannot have).
    pub fn from_toml(v: &Value) -> Option<SettingValue> {
        Some(match v {
            Value::String(s) => SettingValue::String(s.value().clone()),
            Value::Integer(i) => SettingValue::Integer(*i.value()),
            Value::Boolean(b) => SettingValue::Boolean(*b.value()),
            Value::Array(a) => SettingValue::List(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        })
    }

    /// The value as TOML (for writing a profile).
    pub fn to_toml(&self) -> Value {
        match self {
            SettingValue::Boolean(b) => Value::from(*b),
            SettingValue::Integer(i) => Value::from(*i),
            SettingValue::String(s) => Value::from(s.as_str()),
            SettingValue::List(l) => Value::Array(l.iter().map(|s| s.as_str()).collect()),
        }
    }

    pub fn kind(&self) -> SettingType {
        match self {
            SettingValue::Boolean(_) => SettingType::Boolean,
            SettingValue::Integer(_) => SettingType::Integer,
            SettingValue::String(_) => SettingType::String,
            SettingValue::List(_) => SettingType::List,
        }
    }
}

impl std::fmt::Display for SettingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_toml().to_string().trim())
    }
}

/// A declared setting of a template.
#[derive(Debug, Clone, Serialize)]
pub struct SettingDef {
    pub name: String,
    pub kind: SettingType,
    pub default: Option<SettingValue>,
    pub required: bool,
    /// `enum`: the only values allowed (strings, or each item of a list).
    pub choices: Vec<String>,
    /// `regex`: every string (or list item) must match it, anchored at both ends.
    pub regex: Option<String>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub help: String,
}

/// Why a value does not fit a setting: the message and the fix.
pub type Misfit = (String, String);

/// A setting an instance got wrong: (setting name, message, fix).
pub type SettingError = (String, String, String);

impl SettingDef {
    /// Check a value against the declaration.
    pub fn check(&self, v: &SettingValue) -> Result<(), Misfit> {
        if v.kind() != self.kind {
            return Err((
                format!(
                    "setting `{}` is a {}, not a {}",
                    self.name,
                    self.kind.as_str(),
                    v.kind().as_str()
                ),
                self.example(),
            ));
        }
        let strings: Vec<&str> = match v {
            SettingValue::String(s) => vec![s.as_str()],
            SettingValue::List(l) => l.iter().map(|s| s.as_str()).collect(),
            _ => Vec::new(),
        };
        for s in &strings {
            if !self.choices.is_empty() && !self.choices.iter().any(|c| c == s) {
                let near = suggest(s, self.choices.iter().map(|c| c.as_str()))
                    .map(|c| format!("did you mean \"{c}\"? "))
                    .unwrap_or_default();
                return Err((
                    format!("\"{s}\" is not one of the values of setting `{}`", self.name),
                    format!("{near}use one of: {}", self.choices.join(", ")),
                ));
            }
            if let Some(re) = &self.regex {
                let ok = regex::Regex::new(&format!("^(?:{re})$"))
                    .map(|r| r.is_match(s))
                    .unwrap_or(false);
                if !ok {
                    return Err((
                        format!("\"{s}\" does not match setting `{}`'s pattern `{re}`", self.name),
                        if self.help.is_empty() {
                            format!("give a value matching {re}")
                        } else {
                            format!("{} (pattern {re})", self.help)
                        },
                    ));
                }
            }
        }
        if let SettingValue::Integer(i) = v {
            let (lo, hi) = (self.min.unwrap_or(i64::MIN), self.max.unwrap_or(i64::MAX));
            if *i < lo || *i > hi {
                return Err((
                    format!("{i} is out of range for setting `{}`", self.name),
                    format!(
                        "use a value between {} and {}",
                        self.min.map(|m| m.to_string()).unwrap_or("-∞".into()),
                        self.max.map(|m| m.to_string()).unwrap_or("∞".into())
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parse the text of `--set NAME=TEXT` as this setting's type (lists: comma-separated).
    pub fn parse_text(&self, text: &str) -> Result<SettingValue, Misfit> {
        let v = match self.kind {
            SettingType::String => SettingValue::String(text.to_string()),
            SettingType::Integer => SettingValue::Integer(text.trim().parse().map_err(|_| {
                (
                    format!("`{text}` is not an integer (setting `{}`)", self.name),
                    self.example(),
                )
            })?),
            SettingType::Boolean => match text.trim() {
                "true" | "yes" | "on" => SettingValue::Boolean(true),
                "false" | "no" | "off" => SettingValue::Boolean(false),
                _ => {
                    return Err((
                        format!("`{text}` is not true or false (setting `{}`)", self.name),
                        self.example(),
                    ))
                }
            },
            SettingType::List => SettingValue::List(
                text.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
        };
        self.check(&v)?;
        Ok(v)
    }

    fn example(&self) -> String {
        let ex = match self.kind {
            SettingType::String => format!(
                "\"{}\"",
                self.choices.first().map(|s| s.as_str()).unwrap_or("text")
            ),
            SettingType::Integer => self.min.unwrap_or(1).to_string(),
            SettingType::Boolean => "true".into(),
            SettingType::List => "[\"a\", \"b\"]".into(),
        };
        format!("write it as `{} = {ex}`", self.name)
    }

    /// A value for trial renderings of the template (`xlfs book check`).
    fn sample(&self) -> SettingValue {
        if let Some(d) = &self.default {
            return d.clone();
        }
        match self.kind {
            SettingType::String => {
                SettingValue::String(self.choices.first().cloned().unwrap_or("example".into()))
            }
            SettingType::Integer => SettingValue::Integer(self.min.unwrap_or(1)),
            SettingType::Boolean => SettingValue::Boolean(false),
            SettingType::List => {
                SettingValue::List(vec![self.choices.first().cloned().unwrap_or("example".into())])
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDef {
    pub name: String,
    pub gid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserDef {
    pub name: String,
    pub uid: u32,
    /// Its primary group (a group of the template, or `root`).
    pub group: String,
    pub home: String,
    pub shell: String,
}

/// A configuration file; `content` is a minijinja template.
#[derive(Debug, Clone, Serialize)]
pub struct FileDef {
    /// Relative to the guest's root (a leading `/` in the template is dropped).
    pub path: String,
    pub owner: String,
    pub mode: u32,
    pub content: String,
}

/// What "ready" means for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ready {
    /// Started is enough.
    Started,
    /// Something listens on this TCP port.
    Tcp(u16),
    /// This command (run as root on the guest) succeeds.
    Command(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceDef {
    pub name: String,
    /// A minijinja template of a shell command line; it runs in the foreground (no daemonising).
    pub command: String,
    /// Run as this user (a user of the template, or `root`).
    pub user: String,
    /// Services started before this one.
    pub after: Vec<String>,
    pub ready: Ready,
    pub ready_timeout_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstBootStep {
    pub name: String,
    /// A minijinja template of a shell script, run once, as root, on the guest's first boot.
    pub run: String,
    /// Files the step makes that are secret (keys, passwords): never in an image.
    pub secrets: Vec<String>,
}

/// Where a check's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckOn {
    /// On the build machine, a real client reaching the guest through forwarded ports.
    Build,
    /// On the guest itself, as root on its console (what only works from inside).
    Guest,
}

/// A check run against a running guest, from the build machine (default) or on the guest.
#[derive(Debug, Clone, Serialize)]
pub struct CheckDef {
    pub name: String,
    pub on: CheckOn,
    /// A check on the guest may keep its output (trimmed) for the build machine's checks, which
    /// see it as `{{ saved.NAME }}` (e.g. a public key the guest made on its first boot).
    pub save: Option<String>,
    /// The guest's TCP port the command reaches; `{{ address }}` is where the build machine
    /// reaches it (`HOST:PORT`).
    pub port: Option<u16>,
    /// A minijinja template of a shell command run on the build machine.
    pub run: String,
    /// A minijinja template of the text its output must contain.
    pub expect: String,
    pub timeout_s: u64,
}

/// A guest template (`book/guests/NAME.toml`).
#[derive(Debug, Clone, Serialize)]
pub struct GuestTemplate {
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub summary: String,
    pub packages: Vec<String>,
    pub kernel: String,
    pub settings: Vec<SettingDef>,
    pub groups: Vec<GroupDef>,
    pub users: Vec<UserDef>,
    pub files: Vec<FileDef>,
    /// In start order (dependencies first).
    pub services: Vec<ServiceDef>,
    pub first_boot: Vec<FirstBootStep>,
    pub checks: Vec<CheckDef>,
    /// Template name (e.g. `file[0].content`) → line of the file where its text starts.
    #[serde(skip)]
    lines: BTreeMap<String, usize>,
    #[serde(skip)]
    env: Arc<minijinja::Environment<'static>>,
}

/// A rendered configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A rendered service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedService {
    pub name: String,
    pub command: String,
    pub user: String,
    pub ready: Ready,
    pub ready_timeout_s: u64,
}

/// A rendered check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedCheck {
    pub name: String,
    pub on: CheckOn,
    pub save: Option<String>,
    pub port: Option<u16>,
    pub run: String,
    pub expect: String,
    pub timeout_s: u64,
}

/// Everything of a template rendered for one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    pub services: Vec<RenderedService>,
    /// (name, script) in order.
    pub first_boot: Vec<(String, String)>,
}

/// Names no template may give a user or group: the base system's (package `filesystem`).
pub const RESERVED_NAMES: [&str; 7] = ["root", "bin", "daemon", "nobody", "nogroup", "sys", "wheel"];

fn valid_account(n: &str) -> bool {
    let mut c = n.chars();
    n.len() <= 32
        && matches!(c.next(), Some(x) if x.is_ascii_lowercase() || x == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_' || x == '-')
}

impl GuestTemplate {
    /// The setting declared as `name`.
    pub fn setting(&self, name: &str) -> Option<&SettingDef> {
        self.settings.iter().find(|s| s.name == name)
    }

    /// Every declared user's (uid, gid); `root` is (0, 0).
    pub fn ids(&self, user: &str) -> Option<(u32, u32)> {
        if user == "root" {
            return Some((0, 0));
        }
        let u = self.users.iter().find(|u| u.name == user)?;
        Some((u.uid, self.gid(&u.group)?))
    }

    fn gid(&self, group: &str) -> Option<u32> {
        if group == "root" {
            return Some(0);
        }
        self.groups.iter().find(|g| g.name == group).map(|g| g.gid)
    }

    /// Every secret path of the first-boot steps, without the leading `/`.
    pub fn secret_paths(&self) -> Vec<String> {
        self.first_boot
            .iter()
            .flat_map(|s| s.secrets.iter().map(|p| p.trim_start_matches('/').to_string()))
            .collect()
    }

    /// Apply defaults to the settings an instance gives and check them. Errors: (setting name,
    /// message, fix); the caller knows where each value was written.
    pub fn resolve_settings(
        &self,
        given: &BTreeMap<String, SettingValue>,
    ) -> Result<BTreeMap<String, SettingValue>, Vec<SettingError>> {
        let mut out = BTreeMap::new();
        let mut errs = Vec::new();
        for (k, v) in given {
            match self.setting(k) {
                None => errs.push((
                    k.clone(),
                    format!("template `{}` has no setting `{k}`", self.name),
                    match suggest(k, self.settings.iter().map(|s| s.name.as_str())) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if self.settings.is_empty() => "this template takes no settings".into(),
                        None => format!(
                            "its settings: {}",
                            self.settings
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                )),
                Some(d) => match d.check(v) {
                    Ok(()) => {
                        out.insert(k.clone(), v.clone());
                    }
                    Err((m, h)) => errs.push((k.clone(), m, h)),
                },
            }
        }
        for d in &self.settings {
            if given.contains_key(&d.name) {
                continue;
            }
            match &d.default {
                Some(v) => {
                    out.insert(d.name.clone(), v.clone());
                }
                None if d.required => errs.push((
                    d.name.clone(),
                    format!("template `{}` needs setting `{}`", self.name, d.name),
                    format!(
                        "add it to the guest's settings (or --set {}=…){}",
                        d.name,
                        if d.help.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", d.help)
                        }
                    ),
                )),
                None => {}
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    fn render_one(&self, name: &str, ctx: &minijinja::Value) -> Result<String, Diagnostic> {
        let t = self.env.get_template(name).map_err(|e| self.diag(name, &e))?;
        t.render(ctx).map_err(|e| self.diag(name, &e))
    }

    fn diag(&self, name: &str, e: &minijinja::Error) -> Diagnostic {
        let base = self.lines.get(name).copied().unwrap_or(0);
        let line = match (base, e.line()) {
            (0, _) => 0,
            (b, Some(l)) => b + l - 1,
            (b, None) => b,
        };
        let mut msg = e.kind().to_string();
        if let Some(d) = e.detail() {
            msg = format!("{msg}: {d}");
        }
        Diagnostic {
            file: self.path.clone(),
            line,
            col: 0,
            field: name.to_string(),
            message: msg,
            help: Some(
                "the context has `settings.NAME` (declared settings), `guest` (name, hostname, address, prefix, netmask, gateway, dns, mac, memory, vcpus) and `host` (hostname, address)"
                    .into(),
            ),
        }
    }

    /// Render files, services and first-boot steps for one guest (`ctx`: see
    /// [`crate::profile::Guest::context`]).
    pub fn render(&self, ctx: &serde_json::Value) -> Result<Rendered, Vec<Diagnostic>> {
        let ctx = minijinja::Value::from_serialize(ctx);
        let mut errs = Vec::new();
        let mut files = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            match self.render_one(&format!("file[{i}].content"), &ctx) {
                Ok(content) => {
                    let (uid, gid) = self.ids(&f.owner).unwrap_or((0, 0));
                    files.push(RenderedFile {
                        path: f.path.clone(),
                        content,
                        mode: f.mode,
                        uid,
                        gid,
                    })
                }
                Err(e) => errs.push(e),
            }
        }
        let mut services = Vec::new();
        for s in &self.services {
            match self.render_one(&format!("service.{}.command", s.name), &ctx) {
                Ok(command) => services.push(RenderedService {
                    name: s.name.clone(),
                    command: command.trim().to_string(),
                    user: s.user.clone(),
                    ready: s.ready.clone(),
                    ready_timeout_s: s.ready_timeout_s,
                }),
                Err(e) => errs.push(e),
            }
        }
        let mut first_boot = Vec::new();
        for (i, s) in self.first_boot.iter().enumerate() {
            match self.render_one(&format!("first-boot[{i}].run"), &ctx) {
                Ok(run) => first_boot.push((s.name.clone(), run)),
                Err(e) => errs.push(e),
            }
        }
        if errs.is_empty() {
            Ok(Rendered {
                files,
                services,
                first_boot,
            })
        } else {
            Err(errs)
        }
    }

    /// Render the checks for one guest; `address(port)` is where the build machine reaches the
    /// guest's TCP `port` (`HOST:PORT`). The build machine's checks see `saved` (the outputs the
    /// guest's checks kept): give it in `ctx`, or render only the guest's checks with
    /// [`GuestTemplate::render_checks_on`].
    pub fn render_checks(
        &self,
        ctx: &serde_json::Value,
        address: &dyn Fn(u16) -> String,
    ) -> Result<Vec<RenderedCheck>, Vec<Diagnostic>> {
        self.render_checks_where(ctx, address, None)
    }

    /// Render only the checks that run `on` the guest or the build machine.
    pub fn render_checks_on(
        &self,
        ctx: &serde_json::Value,
        address: &dyn Fn(u16) -> String,
        on: CheckOn,
    ) -> Result<Vec<RenderedCheck>, Vec<Diagnostic>> {
        self.render_checks_where(ctx, address, Some(on))
    }

    /// The names the guest's checks save their output under.
    pub fn saved_names(&self) -> Vec<String> {
        self.checks.iter().filter_map(|c| c.save.clone()).collect()
    }

    fn render_checks_where(
        &self,
        ctx: &serde_json::Value,
        address: &dyn Fn(u16) -> String,
        on: Option<CheckOn>,
    ) -> Result<Vec<RenderedCheck>, Vec<Diagnostic>> {
        let mut errs = Vec::new();
        let mut out = Vec::new();
        for (i, c) in self.checks.iter().enumerate() {
            if on.is_some_and(|o| o != c.on) {
                continue;
            }
            let mut ctx = ctx.clone();
            if let (Some(p), Some(o)) = (c.port, ctx.as_object_mut()) {
                o.insert("address".into(), serde_json::Value::String(address(p)));
            }
            let ctx = minijinja::Value::from_serialize(&ctx);
            let run = self.render_one(&format!("check[{i}].run"), &ctx);
            let expect = self.render_one(&format!("check[{i}].expect"), &ctx);
            match (run, expect) {
                (Ok(run), Ok(expect)) => out.push(RenderedCheck {
                    name: c.name.clone(),
                    on: c.on,
                    save: c.save.clone(),
                    port: c.port,
                    run: run.trim().to_string(),
                    expect,
                    timeout_s: c.timeout_s,
                }),
                (r, e) => errs.extend(r.err().into_iter().chain(e.err())),
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    /// A context with sample values, for trial renderings.
    pub fn sample_context(&self) -> serde_json::Value {
        let settings: BTreeMap<String, SettingValue> = self
            .settings
            .iter()
            .map(|s| (s.name.clone(), s.sample()))
            .collect();
        let saved: BTreeMap<String, String> = self
            .saved_names()
            .into_iter()
            .map(|n| (n, "saved output".to_string()))
            .collect();
        serde_json::json!({
            "saved": saved,
            "settings": settings,
            "guest": {
                "name": "example", "hostname": "example", "address": "10.0.0.2", "prefix": 24,
                "netmask": "255.255.255.0", "gateway": "10.0.0.1", "dns": ["10.0.0.1"],
                "mac": "00:16:3e:00:00:02", "memory": 128, "vcpus": 1,
            },
            "host": { "hostname": "xlfs-host", "address": "10.0.0.1" },
        })
    }
}

/// The first line of a string value's text: the line after `'''`/`"""` when the value starts
/// with a newline there.
fn text_line(sink: &Sink, span: &Option<std::ops::Range<usize>>, raw_text: &str) -> usize {
    let Some(s) = span else { return 0 };
    let (line, _) = sink.line_col(s.start);
    let raw = raw_text.get(s.start..).unwrap_or("");
    if (raw.starts_with("'''") || raw.starts_with("\"\"\"")) && raw[3..].starts_with('\n') {
        line + 1
    } else {
        line
    }
}

fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// Parse `book/guests/NAME.toml`.
pub fn parse_guest_template(path: &Path, name: &str, text: &str) -> (Option<GuestTemplate>, Vec<Diagnostic>) {
    let mut sink = Sink::new(path, text);
    let Some(doc) = crate::reader::parse_document(&mut sink, text) else {
        return (None, sink.diags);
    };
    let mut top = Reader::new(doc.as_table(), Some(0..0), "");
    let mut summary = String::new();
    let mut packages = Vec::new();
    let mut kernel = "linux".to_string();
    match top.table(&mut sink, "template") {
        Some(mut t) => {
            summary = t
                .string(&mut sink, "summary")
                .map(|s| s.value)
                .unwrap_or_default();
            packages = t
                .string_list(&mut sink, "packages")
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.value)
                .collect();
            if packages.is_empty() {
                t.missing(&mut sink, "packages", "[\"filesystem\", \"busybox\"]");
            }
            if let Some(k) = t.string(&mut sink, "kernel") {
                kernel = k.value;
            }
            t.finish(&mut sink, &["summary", "packages", "kernel"]);
        }
        None => sink.error(
            Some(0..0),
            "template",
            "missing [template] table",
            Some("start with [template] summary = \"…\" packages = [\"filesystem\", \"busybox\"]".into()),
        ),
    }

    // Templates to compile: (name, source, first line).
    let mut sources: Vec<(String, String, usize)> = Vec::new();
    let mut templated =
        |sink: &mut Sink, r: &mut Reader, key: &str, tname: String, required: bool| -> Option<String> {
            let v = if required {
                r.required_string(sink, key, "\"…\"")
            } else {
                r.string(sink, key)
            }?;
            let line = text_line(sink, &v.span, text);
            sources.push((tname, v.value.clone(), line));
            Some(v.value)
        };

    let mut settings: Vec<SettingDef> = Vec::new();
    if let Some(mut s) = top.table(&mut sink, "settings") {
        for key in s.keys() {
            let Some(mut d) = s.table(&mut sink, &key) else {
                continue;
            };
            if !valid_setting_name(&key) {
                sink.error(
                    d.span(),
                    d.field(""),
                    format!("`{key}` is not a valid setting name"),
                    Some("use letters, digits and '_', starting with a letter (names are used as `settings.NAME` in templates)".into()),
                );
            }
            let kind = match d.required_string(&mut sink, "type", "\"string\"") {
                Some(t) => match SettingType::parse(&t.value) {
                    Some(k) => k,
                    None => {
                        sink.error(
                            t.span,
                            d.field("type"),
                            format!("unknown setting type `{}`", t.value),
                            Some("use \"string\", \"integer\", \"boolean\" or \"list\"".into()),
                        );
                        continue;
                    }
                },
                None => continue,
            };
            let required = d.boolean(&mut sink, "required").unwrap_or(false);
            let help = d.string(&mut sink, "help").map(|h| h.value).unwrap_or_default();
            let choices: Vec<String> = d
                .string_list(&mut sink, "enum")
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.value)
                .collect();
            let regex = d.string(&mut sink, "regex");
            if let Some(re) = &regex {
                if let Err(e) = regex::Regex::new(&re.value) {
                    sink.error(
                        re.span.clone(),
                        d.field("regex"),
                        format!(
                            "invalid regular expression: {}",
                            e.to_string().lines().last().unwrap_or("")
                        ),
                        Some("see https://docs.rs/regex for the syntax".into()),
                    );
                }
            }
            let min = d.integer(&mut sink, "min").map(|a| a.value);
            let max = d.integer(&mut sink, "max").map(|a| a.value);
            let mut def = SettingDef {
                name: key.clone(),
                kind,
                default: None,
                required,
                choices,
                regex: regex.map(|r| r.value),
                min,
                max,
                help,
            };
            if let Some(item) = d.item("default") {
                match item.as_value().and_then(SettingValue::from_toml) {
                    Some(v) => match def.check(&v) {
                        Ok(()) => def.default = Some(v),
                        Err((m, h)) => sink.error(item.span(), d.field("default"), m, Some(h)),
                    },
                    None => sink.error(
                        item.span(),
                        d.field("default"),
                        "a default must be a string, an integer, a boolean or a list of strings",
                        None,
                    ),
                }
                if required {
                    sink.error(
                        item.span(),
                        d.field("required"),
                        "a setting with a default is never missing, so `required` means nothing here",
                        Some("drop `required = true` or the default".into()),
                    );
                }
            }
            d.finish(
                &mut sink,
                &[
                    "type", "default", "required", "enum", "regex", "min", "max", "help",
                ],
            );
            settings.push(def);
        }
        s.finish(&mut sink, &[]);
    }

    let mut groups: Vec<GroupDef> = Vec::new();
    for mut g in top.tables(&mut sink, "group") {
        let name = g.required_string(&mut sink, "name", "\"www\"");
        let gid = g.integer(&mut sink, "gid");
        if gid.is_none() {
            g.missing(&mut sink, "gid", "80");
        }
        if let (Some(n), Some(id)) = (name, gid) {
            if account(
                &mut sink,
                &g,
                &n,
                &id,
                "group",
                groups.iter().map(|x| (x.name.as_str(), x.gid)),
            ) {
                groups.push(GroupDef {
                    name: n.value,
                    gid: id.value as u32,
                });
            }
        }
        g.finish(&mut sink, &["name", "gid"]);
    }
    let mut users: Vec<UserDef> = Vec::new();
    for mut u in top.tables(&mut sink, "user") {
        let name = u.required_string(&mut sink, "name", "\"www\"");
        let uid = u.integer(&mut sink, "uid");
        if uid.is_none() {
            u.missing(&mut sink, "uid", "80");
        }
        let group = u.required_string(&mut sink, "group", "\"www\"");
        let home = u
            .string(&mut sink, "home")
            .map(|h| h.value)
            .unwrap_or("/nonexistent".into());
        let shell = u
            .string(&mut sink, "shell")
            .map(|h| h.value)
            .unwrap_or("/sbin/nologin".into());
        if let Some(g) = &group {
            if g.value != "root" && !groups.iter().any(|x| x.name == g.value) {
                sink.error(
                    g.span.clone(),
                    u.field("group"),
                    format!("no group `{}` in this template", g.value),
                    Some("declare it in a [[group]] table before the user".into()),
                );
            }
        }
        if let (Some(n), Some(id), Some(g)) = (name, uid, group) {
            if account(
                &mut sink,
                &u,
                &n,
                &id,
                "user",
                users.iter().map(|x| (x.name.as_str(), x.uid)),
            ) {
                users.push(UserDef {
                    name: n.value,
                    uid: id.value as u32,
                    group: g.value,
                    home,
                    shell,
                });
            }
        }
        u.finish(&mut sink, &["name", "uid", "group", "home", "shell"]);
    }
    let known_user = |sink: &mut Sink, r: &Reader, key: &str, v: &At<String>| {
        if v.value != "root" && !users.iter().any(|u| u.name == v.value) {
            sink.error(
                v.span.clone(),
                r.field(key),
                format!("no user `{}` in this template", v.value),
                Some(match suggest(&v.value, users.iter().map(|u| u.name.as_str())) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "declare it in a [[user]] table, or use \"root\"".into(),
                }),
            );
        }
    };

    let mut files = Vec::new();
    let mut file_at = Vec::new();
    for (i, mut f) in top.tables(&mut sink, "file").into_iter().enumerate() {
        let path = f.required_string(&mut sink, "path", "\"/etc/app.conf\"");
        let owner = f.string(&mut sink, "owner");
        if let Some(o) = &owner {
            known_user(&mut sink, &f, "owner", o);
        }
        let mode = match f.string(&mut sink, "mode") {
            None => 0o644,
            Some(m) => parse_mode(&m.value).unwrap_or_else(|| {
                sink.error(
                    m.span,
                    f.field("mode"),
                    format!("`{}` is not an octal file mode", m.value),
                    Some("write it as a string of octal digits, e.g. \"0640\"".into()),
                );
                0o644
            }),
        };
        let content = templated(&mut sink, &mut f, "content", format!("file[{i}].content"), true);
        let path_field = f.field("path");
        f.finish(&mut sink, &["path", "owner", "mode", "content"]);
        if let (Some(p), Some(content)) = (path, content) {
            let rel = p.value.trim_start_matches('/').to_string();
            if !crate::is_book_relative(&rel) {
                sink.error(
                    p.span,
                    path_field,
                    format!("`{}` is not a normal path inside the guest", p.value),
                    Some(
                        "write an absolute path without `..`, `.` or empty parts, e.g. \"/etc/app.conf\""
                            .into(),
                    ),
                );
                continue;
            }
            file_at.push((p.span.clone(), path_field.clone()));
            files.push(FileDef {
                path: rel,
                owner: owner.map(|o| o.value).unwrap_or("root".into()),
                mode,
                content,
            });
        }
    }

    let mut services: Vec<(ServiceDef, Option<std::ops::Range<usize>>, String)> = Vec::new();
    for mut s in top.tables(&mut sink, "service") {
        let name = s.required_string(&mut sink, "name", "\"httpd\"");
        let Some(name) = name else { continue };
        if !crate::is_valid_name(&name.value) {
            sink.error(
                name.span.clone(),
                s.field("name"),
                format!("`{}` is not a valid service name", name.value),
                Some("use lowercase letters, digits and '-'".into()),
            );
        }
        if services.iter().any(|(o, _, _)| o.name == name.value) {
            sink.error(
                name.span.clone(),
                s.field("name"),
                format!("two services are named `{}`", name.value),
                None,
            );
        }
        let command = templated(
            &mut sink,
            &mut s,
            "command",
            format!("service.{}.command", name.value),
            true,
        );
        let user = s.string(&mut sink, "user");
        if let Some(u) = &user {
            known_user(&mut sink, &s, "user", u);
        }
        let after: Vec<At<String>> = s.string_list(&mut sink, "after").unwrap_or_default();
        let mut ready = Ready::Started;
        let mut ready_timeout_s = 30;
        if let Some(mut r) = s.table(&mut sink, "ready") {
            if let Some(p) = r.integer(&mut sink, "tcp") {
                match u16::try_from(p.value) {
                    Ok(port) if port > 0 => ready = Ready::Tcp(port),
                    _ => sink.error(
                        p.span,
                        r.field("tcp"),
                        format!("{} is not a TCP port", p.value),
                        Some("use 1 to 65535".into()),
                    ),
                }
            }
            if let Some(c) = r.string(&mut sink, "command") {
                if ready != Ready::Started {
                    sink.error(
                        c.span.clone(),
                        r.field("command"),
                        "`ready` takes either `tcp` or `command`",
                        None,
                    );
                }
                ready = Ready::Command(c.value);
            }
            if let Some(t) = r.integer(&mut sink, "timeout") {
                ready_timeout_s = t.value.clamp(1, 3600) as u64;
            }
            r.finish(&mut sink, &["tcp", "command", "timeout"]);
        }
        let field = s.field("after");
        let span = s.span();
        if let Some(command) = command {
            services.push((
                ServiceDef {
                    name: name.value,
                    command,
                    user: user.map(|u| u.value).unwrap_or("root".into()),
                    after: after.iter().map(|a| a.value.clone()).collect(),
                    ready,
                    ready_timeout_s,
                },
                after.first().and_then(|a| a.span.clone()).or(span),
                field,
            ));
        }
        s.finish(&mut sink, &["name", "command", "user", "after", "ready"]);
    }
    let services = order_services(&mut sink, services);

    let mut first_boot = Vec::new();
    for (i, mut f) in top.tables(&mut sink, "first-boot").into_iter().enumerate() {
        let name = f.required_string(&mut sink, "name", "\"ssh-host-keys\"");
        let run = templated(&mut sink, &mut f, "run", format!("first-boot[{i}].run"), true);
        let secrets = f.string_list(&mut sink, "secrets").unwrap_or_default();
        for s in &secrets {
            if !s.value.starts_with('/') || !crate::is_book_relative(s.value.trim_start_matches('/')) {
                sink.error(
                    s.span.clone(),
                    f.field("secrets"),
                    format!("`{}` is not an absolute path", s.value),
                    Some("name the file the step writes, e.g. \"/etc/ssh/ssh_host_ed25519_key\"".into()),
                );
            }
        }
        f.finish(&mut sink, &["name", "run", "secrets"]);
        if let (Some(n), Some(run)) = (name, run) {
            first_boot.push(FirstBootStep {
                name: n.value,
                run,
                secrets: secrets.into_iter().map(|s| s.value).collect(),
            });
        }
    }

    let mut checks = Vec::new();
    // `address` alone (not `guest.address` or `host.address`) is the forwarded port's.
    let address_re = regex::Regex::new(r"(^|[^.\w])address\b").expect("a valid pattern");
    for (i, mut c) in top.tables(&mut sink, "check").into_iter().enumerate() {
        let name = c.required_string(&mut sink, "name", "\"the page is served\"");
        let port = c
            .integer(&mut sink, "port")
            .and_then(|p| match u16::try_from(p.value) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    sink.error(
                        p.span,
                        c.field("port"),
                        format!("{} is not a TCP port", p.value),
                        Some("use 1 to 65535".into()),
                    );
                    None
                }
            });
        let on = match c.string(&mut sink, "on") {
            None => CheckOn::Build,
            Some(o) => match o.value.as_str() {
                "build" => CheckOn::Build,
                "guest" => {
                    if let Some(p) = port {
                        sink.error(
                            o.span.clone(),
                            c.field("on"),
                            format!("a check on the guest reaches no forwarded port, but this one names port {p}"),
                            Some("drop `port` (the command runs on the guest's console), or run it on the build machine: on = \"build\"".into()),
                        );
                    }
                    CheckOn::Guest
                }
                other => {
                    sink.error(
                        o.span.clone(),
                        c.field("on"),
                        format!("`{other}` is not where a check can run"),
                        Some("use \"build\" (the build machine, the default) or \"guest\" (the guest's console, as root)".into()),
                    );
                    CheckOn::Build
                }
            },
        };
        let save = c.string(&mut sink, "save").and_then(|v| {
            if on != CheckOn::Guest {
                sink.error(
                    v.span.clone(),
                    c.field("save"),
                    "only a check on the guest saves its output (for the build machine's checks)",
                    Some("add on = \"guest\", or drop `save`".into()),
                );
                None
            } else if !valid_setting_name(&v.value) {
                sink.error(
                    v.span.clone(),
                    c.field("save"),
                    format!("`{}` is not a valid name", v.value),
                    Some("use letters, digits and '_', starting with a letter (it is `saved.NAME` in the build machine's checks)".into()),
                );
                None
            } else {
                Some(v.value)
            }
        });
        let run = templated(&mut sink, &mut c, "run", format!("check[{i}].run"), true);
        let expect = templated(&mut sink, &mut c, "expect", format!("check[{i}].expect"), true);
        let timeout_s = c
            .integer(&mut sink, "timeout")
            .map(|t| t.value.clamp(1, 3600) as u64)
            .unwrap_or(60);
        let uses_address = |r: &str| address_re.is_match(r);
        if on == CheckOn::Build && port.is_none() && run.as_deref().is_some_and(uses_address) {
            sink.error(c.span(), c.field("port"), "the command uses `address` but the check names no port", Some("add `port = N`: `{{ address }}` is where the build machine reaches that port of the guest".into()));
        }
        c.finish(
            &mut sink,
            &["name", "on", "save", "port", "run", "expect", "timeout"],
        );
        if let (Some(n), Some(run), Some(expect)) = (name, run, expect) {
            checks.push(CheckDef {
                name: n.value,
                on,
                save,
                port,
                run,
                expect,
                timeout_s,
            });
        }
    }
    top.finish(
        &mut sink,
        &[
            "template",
            "settings",
            "group",
            "user",
            "file",
            "service",
            "first-boot",
            "check",
        ],
    );

    // No configuration file may be a secret: secrets are made on the guest.
    let secrets: BTreeSet<String> = first_boot
        .iter()
        .flat_map(|s| s.secrets.iter().map(|p| p.trim_start_matches('/').to_string()))
        .collect();
    for (f, (span, field)) in files.iter().zip(&file_at) {
        if secrets.contains(&f.path) {
            sink.error(
                span.clone(),
                field.clone(),
                format!("/{} is a secret made by a first-boot step; it cannot also be a file of the image", f.path),
                Some("drop the [[file]]: secrets are generated on the guest's first boot, never baked into an image".into()),
            );
        }
    }

    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let mut lines = BTreeMap::new();
    for (tname, src, line) in sources {
        lines.insert(tname.clone(), line);
        if let Err(e) = env.add_template_owned(tname.clone(), src) {
            let l = e.line().map(|l| line + l - 1).unwrap_or(line);
            sink.diags.push(Diagnostic {
                file: path.to_path_buf(),
                line: l,
                col: 0,
                field: tname,
                message: format!(
                    "invalid template syntax: {}",
                    e.detail().unwrap_or(&e.kind().to_string())
                ),
                help: Some(
                    "see https://docs.rs/minijinja for the syntax: {{ settings.NAME }}, {% if %}, {% for %}"
                        .into(),
                ),
            });
        }
    }
    let t = GuestTemplate {
        name: name.to_string(),
        path: path.to_path_buf(),
        summary,
        packages,
        kernel,
        settings,
        groups,
        users,
        files,
        services,
        first_boot,
        checks,
        lines,
        env: Arc::new(env),
    };
    if sink.diags.is_empty() {
        // A trial rendering with sample values finds unknown variables now, not at image time.
        let ctx = t.sample_context();
        if let Err(d) = t.render(&ctx) {
            sink.diags.extend(d);
        }
        if let Err(d) = t.render_checks(&ctx, &|p| format!("127.0.0.1:{p}")) {
            sink.diags.extend(d);
        }
    }
    (sink.diags.is_empty().then_some(t), sink.diags)
}

fn valid_setting_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic()) && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Check a user or group: a valid, unreserved, unique name and an id in 100..=59999.
fn account<'a>(
    sink: &mut Sink,
    r: &Reader,
    name: &At<String>,
    id: &At<i64>,
    what: &str,
    mut others: impl Iterator<Item = (&'a str, u32)>,
) -> bool {
    let idkey = if what == "user" { "uid" } else { "gid" };
    if !valid_account(&name.value) {
        sink.error(
            name.span.clone(),
            r.field("name"),
            format!("`{}` is not a valid {what} name", name.value),
            Some("use lowercase letters, digits, '_' and '-', at most 32".into()),
        );
        return false;
    }
    if RESERVED_NAMES.contains(&name.value.as_str()) {
        sink.error(
            name.span.clone(),
            r.field("name"),
            format!("`{}` is a {what} of the base system", name.value),
            Some("pick a name of the service's own, e.g. \"www\"".into()),
        );
        return false;
    }
    if !(20..=59999).contains(&id.value) {
        sink.error(
            id.span.clone(),
            r.field(idkey),
            format!("{} is outside the ids templates may use", id.value),
            Some("use 20–99 (well-known service ids) or 100–59999".into()),
        );
        return false;
    }
    let mut ok = true;
    for (n, i) in &mut others {
        if n == name.value {
            sink.error(
                name.span.clone(),
                r.field("name"),
                format!("two {what}s are named `{n}`"),
                None,
            );
            ok = false;
        } else if i as i64 == id.value {
            sink.error(
                id.span.clone(),
                r.field(idkey),
                format!("{idkey} {i} is also `{n}`'s"),
                Some(format!("give each {what} its own {idkey}")),
            );
            ok = false;
        }
    }
    ok
}

/// Start order: every service after the ones it names in `after`, otherwise in file order.
fn order_services(
    sink: &mut Sink,
    services: Vec<(ServiceDef, Option<std::ops::Range<usize>>, String)>,
) -> Vec<ServiceDef> {
    let names: Vec<String> = services.iter().map(|(s, _, _)| s.name.clone()).collect();
    for (s, span, field) in &services {
        for a in &s.after {
            if !names.contains(a) {
                sink.error(
                    span.clone(),
                    field.clone(),
                    format!(
                        "service `{}` starts after `{a}`, which is not a service of this template",
                        s.name
                    ),
                    suggest(a, names.iter().map(|n| n.as_str())).map(|n| format!("did you mean `{n}`?")),
                );
            }
        }
    }
    let mut done: Vec<ServiceDef> = Vec::new();
    let mut left: Vec<_> = services;
    while !left.is_empty() {
        let pos = left.iter().position(|(s, _, _)| {
            s.after
                .iter()
                .all(|a| done.iter().any(|d| &d.name == a) || !names.contains(a))
        });
        match pos {
            Some(i) => done.push(left.remove(i).0),
            None => {
                let (s, span, field) = &left[0];
                sink.error(
                    span.clone(),
                    field.clone(),
                    format!(
                        "services wait for each other in a cycle: {}",
                        left.iter()
                            .map(|(s, _, _)| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(format!("drop one `after` entry, e.g. of `{}`", s.name)),
                );
                done.extend(left.drain(..).map(|(s, _, _)| s));
            }
        }
    }
    done
}

/// A setting value of a profile with where it was written.
#[derive(Debug, Clone)]
pub struct SettingAt {
    pub value: SettingValue,
    pub line: usize,
    pub col: usize,
}

/// Read a `settings = { … }` table of a profile guest.
pub(crate) fn read_settings(sink: &mut Sink, r: &mut Reader) -> BTreeMap<String, SettingAt> {
    let mut out = BTreeMap::new();
    for key in r.keys() {
        let Some(item) = r.item(&key) else { continue };
        let span = item.span();
        let (line, col) = span.clone().map(|s| sink.line_col(s.start)).unwrap_or((0, 0));
        match item {
            Item::Value(v) => match SettingValue::from_toml(v) {
                Some(value) => {
                    out.insert(key, SettingAt { value, line, col });
                }
                None => sink.error(
                    span,
                    r.field(&key),
                    "a setting is a string, an integer, a boolean or a list of strings",
                    None,
                ),
            },
            _ => sink.error(
                span,
                r.field(&key),
                "a setting is a string, an integer, a boolean or a list of strings",
                None,
            ),
        }
    }
    out
}
