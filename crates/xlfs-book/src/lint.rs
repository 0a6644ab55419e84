//! Lints: recipes that load but hold a likely mistake. Warnings, not errors, so that a recipe
//! already built keeps its key until it is rebuilt anyway; `xlfs book check` prints them.

use std::path::Path;

use crate::diag::Diagnostic;
use crate::recipe::Recipe;
use crate::template::STEP_NAMES;

/// The warnings for one recipe. `text` is the recipe file's text (for line numbers); a step that
/// comes from a template is reported at line 0 of the recipe.
pub fn lint_recipe(recipe: &Recipe, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for step in STEP_NAMES {
        let Some(script) = recipe.steps.get(step) else {
            continue;
        };
        for cmd in negated_commands(script) {
            out.push(Diagnostic {
                file: recipe.path.clone(),
                line: line_of(text, &cmd),
                col: 1,
                field: format!("build.steps.{step}"),
                message: format!(
                    "`{cmd}` can never fail the build: bash's `set -e` ignores a command negated with `!`"
                ),
                help: Some("end the command with `|| exit 1`, or test it with `if`".into()),
            });
        }
    }
    out
}

/// The lint warnings of every recipe of a book, reading the recipe files under `root`.
pub fn lint_book(
    root: &Path,
    recipes: impl IntoIterator<Item = impl std::borrow::Borrow<Recipe>>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for r in recipes {
        let r = r.borrow();
        let text = std::fs::read_to_string(root.join(&r.path)).unwrap_or_default();
        out.extend(lint_recipe(r, &text));
    }
    out.sort();
    out
}

/// The commands of a script that start with `!` and are not followed by `||` or `&&`: under
/// `set -e` their status is ignored. Continuation lines (`\` at the end) are joined; `if ! …`,
/// `while ! …` and `! … || exit 1` are fine.
fn negated_commands(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for line in script.lines() {
        let t = line.trim();
        if let Some(head) = t.strip_suffix('\\') {
            logical.push_str(head.trim_end());
            logical.push(' ');
            continue;
        }
        logical.push_str(t);
        let cmd = std::mem::take(&mut logical);
        if let Some(rest) = cmd.strip_prefix("! ") {
            let rest = strip_comment(rest);
            if !rest.contains("||") && !rest.contains("&&") {
                out.push(first_line(&cmd));
            }
        }
    }
    out
}

/// The text before an unquoted `#` comment (good enough for the one-liners this lint reads).
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || s[..i].ends_with(' ') => return &s[..i],
            _ => {}
        }
    }
    s
}

fn first_line(cmd: &str) -> String {
    let c = cmd.trim();
    if c.chars().count() > 60 {
        format!("{}…", c.chars().take(60).collect::<String>())
    } else {
        c.to_string()
    }
}

/// The 1-based line of the file where the command starts, or 0.
fn line_of(text: &str, cmd: &str) -> usize {
    let start: String = cmd.trim_end_matches('…').chars().take(30).collect();
    text.lines()
        .position(|l| l.trim_start().starts_with(start.as_str()))
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_negation_is_reported_and_the_guarded_forms_are_not() {
        let s = "set -x\n! grep -q foo Makefile\nif ! grep -q bar x; then exit 1; fi\n\
                 ! grep -q baz y || exit 1\n! test -e a && echo\nwhile ! true; do :; done\n";
        assert_eq!(negated_commands(s), vec!["! grep -q foo Makefile".to_string()]);
    }

    #[test]
    fn continuation_lines_are_joined() {
        let bad = "! grep -rn x a \\\n    b c\n";
        assert_eq!(negated_commands(bad), vec!["! grep -rn x a b c".to_string()]);
        let good = "! grep -rn x a \\\n    b c || exit 1\n";
        assert!(negated_commands(good).is_empty());
    }

    #[test]
    fn a_comment_mentioning_or_does_not_hide_the_problem() {
        assert_eq!(negated_commands("! grep -q x y # || not code\n").len(), 1);
        assert!(negated_commands("! grep -q '#' y || exit 1\n").is_empty());
    }

    #[test]
    fn the_line_is_found_in_the_recipe_text() {
        let text = "[build]\nsteps.configure = '''\n./configure\n! grep -q foo Makefile\n'''\n";
        assert_eq!(line_of(text, "! grep -q foo Makefile"), 4);
    }
}
