//! Build templates: the common shapes of a build (autotools, plain make, meson, kernel-style...)
//! kept as data in `book/templates/NAME.toml`, so a typical recipe is a few lines.
//!
//! ```toml
//! [template]
//! summary = "configure; make; make check; make DESTDIR=... install"
//! [vars]
//! configure = { default = ["--prefix=/usr"], help = "arguments to ./configure" }
//! [steps]
//! configure = "./configure {{ configure }}"
//! build = "make"
//! install = 'make DESTDIR="$DESTDIR" install'
//! ```

use crate::diag::{Diagnostic, Sink};
use crate::reader::Reader;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The steps of a build, in the order they run.
pub const STEP_NAMES: [&str; 6] = [
    "prepare",
    "configure",
    "build",
    "check",
    "install",
    "post-install",
];

/// A template variable's value: a shell fragment, or a list of shell words joined by spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum VarValue {
    Str(String),
    List(Vec<String>),
}

impl VarValue {
    pub fn render(&self) -> String {
        match self {
            VarValue::Str(s) => s.clone(),
            VarValue::List(l) => l.join(" "),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VarDef {
    pub default: VarValue,
    pub help: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub name: String,
    pub summary: String,
    pub vars: BTreeMap<String, VarDef>,
    /// Step name → shell text with `{{ var }}` placeholders.
    pub steps: BTreeMap<String, String>,
    /// The steps compiled once (templates named after the steps).
    #[serde(skip)]
    compiled: std::sync::Arc<minijinja::Environment<'static>>,
}

impl Template {
    /// Render every step with the recipe's variables (falling back to the defaults).
    pub fn render(
        &self,
        vars: &BTreeMap<String, VarValue>,
        name: &str,
        version: &str,
    ) -> Result<BTreeMap<String, String>, (String, String)> {
        let mut ctx: BTreeMap<String, String> = self
            .vars
            .iter()
            .map(|(k, d)| {
                let v = vars.get(k).unwrap_or(&d.default);
                (k.clone(), v.render())
            })
            .collect();
        ctx.insert("name".into(), name.into());
        ctx.insert("version".into(), version.into());
        let mut out = BTreeMap::new();
        for step in self.steps.keys() {
            let rendered = self
                .compiled
                .get_template(step)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| (step.clone(), e.to_string()))?;
            out.insert(step.clone(), rendered);
        }
        Ok(out)
    }
}

pub(crate) fn parse_var_value(r: &mut Reader, sink: &mut Sink, key: &str) -> Option<VarValue> {
    // Try a string first, then a list; `Reader` reports a type error for anything else.
    if r.has(key) {
        let is_list = r.list_probe(key);
        if is_list {
            return r
                .string_list(sink, key)
                .map(|l| VarValue::List(l.into_iter().map(|a| a.value).collect()));
        }
        return r.string(sink, key).map(|s| VarValue::Str(s.value));
    }
    None
}

/// Parse `book/templates/NAME.toml`.
pub fn parse_template(path: &Path, name: &str, text: &str) -> (Option<Template>, Vec<Diagnostic>) {
    let mut sink = Sink::new(path, text);
    let Some(doc) = crate::reader::parse_document(&mut sink, text) else {
        return (None, sink.diags);
    };
    let mut top = Reader::new(doc.as_table(), None, "");
    let mut summary = String::new();
    if let Some(mut t) = top.table(&mut sink, "template") {
        if let Some(s) = t.string(&mut sink, "summary") {
            summary = s.value;
        }
        t.finish(&mut sink, &["summary"]);
    }
    let mut vars = BTreeMap::new();
    if let Some(mut v) = top.table(&mut sink, "vars") {
        for (key, _) in v.unread() {
            let Some(mut def) = v.table(&mut sink, &key) else {
                continue;
            };
            let default =
                parse_var_value(&mut def, &mut sink, "default").unwrap_or(VarValue::Str(String::new()));
            let help = def.string(&mut sink, "help").map(|s| s.value).unwrap_or_default();
            def.finish(&mut sink, &["default", "help"]);
            vars.insert(key, VarDef { default, help });
        }
    }
    let mut steps = BTreeMap::new();
    if let Some(mut s) = top.table(&mut sink, "steps") {
        for step in STEP_NAMES {
            if let Some(text) = s.string(&mut sink, step) {
                steps.insert(step.to_string(), text.value);
            }
        }
        s.finish(&mut sink, &STEP_NAMES);
    } else {
        sink.error(None, "steps", "a template needs a [steps] table", None);
    }
    top.finish(&mut sink, &["template", "vars", "steps"]);
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    for (step, text) in &steps {
        if let Err(e) = env.add_template_owned(step.clone(), text.clone()) {
            sink.error(
                None,
                format!("steps.{step}"),
                format!("invalid template syntax: {e}"),
                None,
            );
        }
    }
    let t = Template {
        name: name.to_string(),
        summary,
        vars,
        steps,
        compiled: std::sync::Arc::new(env),
    };
    (sink.diags.is_empty().then_some(t), sink.diags)
}
