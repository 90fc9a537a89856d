//! Page templates rendered from pieces: what handlebars renders for a
//! template, cut once per *shape* into fixed text and holes, so that a page
//! is the text with each hole's value escaped into it.
//!
//! Interpreting a template walks its syntax tree, looks every path up in
//! the context and evaluates every helper on every render: 16k instructions
//! of a logged-in home page, for output that differs between two users
//! only where a value is printed. This takes only templates that handlebars
//! renders as a function of
//!
//! - the values of plain `{{path}}` and `{{{path}}}` expressions (the
//!   *holes*), each printed as handlebars prints a value, and
//! - whether the paths of `{{#if path}}` and `{{#unless path}}` blocks are
//!   truthy (the *conditions*; at most [`MAX_CONDITIONS`]).
//!
//! [`Pieces::analyse`] checks that from the template's syntax tree (its
//! `handlebars::template` types): raw text, comments, those two
//! expressions and those two blocks, nothing else. No other helper, no
//! `#each` or `#with`, no partial, no subexpression, no `this`, `../` or
//! `@` path, and no hole that is a prefix of another path. Anything else
//! is rendered whole by handlebars, as before.
//!
//! For each shape (which conditions are truthy) the template is rendered
//! once by handlebars itself, from the request's own context with every
//! hole replaced by a marker, and cut at the markers. It is rendered twice,
//! with two different sets of markers, and used only if both cut into the
//! same pieces: a helper that printed a value other than as it is (a
//! name shadowed by a helper, say) gives no pieces, and the page is
//! rendered whole. The markers are Unicode noncharacters around an `&`, so
//! the cut also tells an escaped hole (`&amp;`) from a raw one.
//!
//! A path that is both a hole and a condition is only taken when truthy
//! (its marker, a non-empty string, is truthy too): a falsy one is
//! printed as `false`, `0` or nothing, and that page is rendered whole.
//! `tests` compares pages made this way with handlebars' own, over every
//! template and the values that matter.

use std::sync::OnceLock;

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Context, Handlebars, JsonRender as _, JsonTruthy as _, Path, PathSeg, Template};
use serde_json::Value;

/// The most conditions a template may have: its shapes are kept in a
/// table of `2^n` slots, made on first use.
pub const MAX_CONDITIONS: usize = 6;

const OPEN: char = '\u{fdd0}';
const CLOSE: char = '\u{fdd1}';

/// A page template cut into pieces, per shape.
#[derive(Debug)]
pub struct Pieces {
    /// The paths printed by plain expressions, as segments.
    holes: Vec<Vec<String>>,
    /// The paths whose truthiness the blocks read, as segments.
    conditions: Vec<Vec<String>>,
    /// For each condition, the hole with the same path, if any.
    condition_holes: Vec<Option<usize>>,
    /// Per shape (bit `i` set: condition `i` is truthy): the pieces, made
    /// on the shape's first page; `None` if the cut did not hold.
    shapes: Vec<OnceLock<Option<Vec<Piece>>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hole { index: usize, escaped: bool },
}

impl Pieces {
    /// The pieces of `template`, if it is made only of what this module
    /// takes (see the module docs).
    pub fn analyse(template: &Template) -> Option<Pieces> {
        let mut holes = Vec::new();
        let mut conditions = Vec::new();
        walk(&template.elements, &mut holes, &mut conditions)?;
        if conditions.len() > MAX_CONDITIONS {
            return None;
        }
        // A hole replaced by its marker must not hide another path under
        // it (`{{user}}` and `{{user.name}}`).
        let all: Vec<&Vec<String>> = holes.iter().chain(&conditions).collect();
        for hole in &holes {
            if all
                .iter()
                .any(|other| other.len() > hole.len() && other.starts_with(hole))
            {
                return None;
            }
        }
        let condition_holes = conditions
            .iter()
            .map(|c| holes.iter().position(|h| h == c))
            .collect();
        Some(Pieces {
            shapes: (0..1usize << conditions.len())
                .map(|_| OnceLock::new())
                .collect(),
            holes,
            conditions,
            condition_holes,
        })
    }

    /// The template `name` rendered from `context` through its pieces, or
    /// `None` where handlebars must render it whole (a path missing, a
    /// falsy hole-condition, a shape whose cut did not hold).
    pub fn render(
        &self,
        registry: &Handlebars<'_>,
        name: &str,
        context: &Value,
    ) -> Result<Option<String>, handlebars::RenderError> {
        let Some(shape) = self.shape(|path| Some(lookup(context, path)?.is_truthy(false))) else {
            return Ok(None);
        };
        let Some(slot) = self.shapes.get(shape) else {
            return Ok(None);
        };
        let pieces = match slot.get() {
            Some(pieces) => pieces,
            None => {
                let made = self.cut(registry, name, context)?;
                slot.get_or_init(|| made)
            }
        };
        let Some(pieces) = pieces else {
            return Ok(None);
        };
        let mut page = String::with_capacity(1024);
        for piece in pieces {
            match piece {
                Piece::Text(text) => page.push_str(text),
                Piece::Hole { index, escaped } => {
                    let Some(value) = lookup(context, &self.holes[*index]) else {
                        return Ok(None);
                    };
                    push_value(&mut page, value, *escaped);
                }
            }
        }
        Ok(Some(page))
    }

    /// The shape for the conditions' truthiness as `truthy` says it (bit
    /// `i` set: condition `i` is truthy); `None` when a condition's path is
    /// absent, or a hole-condition is falsy (see the module docs).
    fn shape(&self, truthy: impl Fn(&[String]) -> Option<bool>) -> Option<usize> {
        let mut shape = 0usize;
        for (i, path) in self.conditions.iter().enumerate() {
            if truthy(path)? {
                shape |= 1 << i;
            } else if self.condition_holes[i].is_some() {
                return None;
            }
        }
        Some(shape)
    }

    /// Renders the template with markers in the holes, twice, and cuts it.
    fn cut(
        &self,
        registry: &Handlebars<'_>,
        name: &str,
        context: &Value,
    ) -> Result<Option<Vec<Piece>>, handlebars::RenderError> {
        let mut cuts = Vec::with_capacity(2);
        for set in MARKER_SETS {
            let mut marked = context.clone();
            for (index, path) in self.holes.iter().enumerate() {
                if let Some(value) = lookup_mut(&mut marked, path) {
                    *value = Value::String(marker(set, index));
                }
            }
            // Each hole on its own: a helper of the same name would print
            // something else than the value (`{{csrf}}` calls a helper
            // called `csrf` when there is one).
            for (index, path) in self.holes.iter().enumerate() {
                if lookup(&marked, path).is_some() {
                    let alone = registry
                        .render_template(&format!("{{{{{}}}}}", path.join(".")), &marked)?;
                    if alone != super::escape_html(&marker(set, index)) {
                        return Ok(None);
                    }
                }
            }
            let page = registry.render_with_context(name, &Context::from(marked))?;
            cuts.push(cut(&page, set, self.holes.len()));
        }
        Ok(match (cuts.pop().flatten(), cuts.pop().flatten()) {
            (Some(b), Some(a)) if a == b => Some(a),
            _ => None,
        })
    }
}

/// A page's context read in place, path by path: what
/// `serde_json::to_value` of it holds at a path, without building that
/// value (4.5k instructions for the home page, and as many to drop it).
/// [`Pieces::render_fields`] reads holes and conditions through it;
/// [`super::Templates::render_fields`] the layout's fields. Each
/// implementation is tested against its own `Serialize`.
pub trait Fields {
    /// The value at `path`, or `None` when it is absent or not one of the
    /// few kinds [`Field`] has (the page is then rendered from the JSON
    /// value, as before).
    fn field<S: AsRef<str>>(&self, path: &[S]) -> Option<Field<'_>>;
}

/// A value a [`Fields`] context gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// A string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// An empty list.
    EmptyList,
}

impl Field<'_> {
    fn is_truthy(self) -> bool {
        match self {
            Field::Str(s) => !s.is_empty(),
            Field::Bool(b) => b,
            Field::EmptyList => false,
        }
    }

    /// The JSON value it stands for.
    pub fn to_value(self) -> Value {
        match self {
            Field::Str(s) => Value::String(s.to_owned()),
            Field::Bool(b) => Value::Bool(b),
            Field::EmptyList => Value::Array(Vec::new()),
        }
    }
}

impl Pieces {
    /// [`Pieces::render`] from a context read in place, appended to `page`:
    /// `None` (and `page` as it was, or longer) where the JSON path must
    /// render it: a field absent or of another kind, a falsy
    /// hole-condition, or a shape not cut yet (cutting needs the JSON
    /// value, so the first page of each shape goes that way).
    pub fn render_fields(&self, fields: &impl Fields, page: &mut String) -> Option<()> {
        let shape = self.shape(|path| Some(fields.field(path)?.is_truthy()))?;
        let pieces = self.shapes.get(shape)?.get()?.as_ref()?;
        for piece in pieces {
            match piece {
                Piece::Text(text) => page.push_str(text),
                Piece::Hole { index, escaped } => {
                    let text = match fields.field(&self.holes[*index])? {
                        Field::Str(s) => s,
                        Field::Bool(true) => "true",
                        Field::Bool(false) => "false",
                        Field::EmptyList => return None,
                    };
                    if *escaped {
                        page.push_str(&super::escape_html(text));
                    } else {
                        page.push_str(text);
                    }
                }
            }
        }
        Some(())
    }
}

/// The two marker sets: different letters, different lengths.
const MARKER_SETS: [&str; 2] = ["a", "bb"];

/// The marker of hole `index` in marker set `set`.
fn marker(set: &str, index: usize) -> String {
    format!("{OPEN}{set}{index}&{CLOSE}")
}

/// `page` cut at the markers of `set`; `None` if anything else looks like
/// a marker, or a marker names no hole.
fn cut(page: &str, set: &str, holes: usize) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut parts = page.split(OPEN);
    let first = parts.next().unwrap_or_default();
    let mut text = first.to_owned();
    for part in parts {
        let rest = part.strip_prefix(set)?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let index: usize = rest[..digits].parse().ok()?;
        let rest = &rest[digits..];
        let (escaped, rest) = if let Some(rest) = rest.strip_prefix("&amp;") {
            (true, rest)
        } else {
            (false, rest.strip_prefix('&')?)
        };
        let rest = rest.strip_prefix(CLOSE)?;
        if index >= holes {
            return None;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Hole { index, escaped });
        text.push_str(rest);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    let stray = pieces
        .iter()
        .any(|p| matches!(p, Piece::Text(t) if t.contains(CLOSE)));
    (!stray).then_some(pieces)
}

/// A value printed as handlebars prints it, escaped with the registry's
/// escape function (ours: `super::escape_html`) where the template escapes.
fn push_value(page: &mut String, value: &Value, escaped: bool) {
    match value {
        Value::String(s) if escaped => page.push_str(&super::escape_html(s)),
        Value::String(s) => page.push_str(s),
        other if escaped => page.push_str(&super::escape_html(&other.render())),
        other => page.push_str(&other.render()),
    }
}

fn lookup<'v>(context: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(context, |value, segment| value.as_object()?.get(segment))
}

fn lookup_mut<'v>(context: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(context, |value, segment| {
        value.as_object_mut()?.get_mut(segment)
    })
}

/// Collects the holes and conditions of `elements`; `None` at anything
/// this module does not take.
fn walk(
    elements: &[TemplateElement],
    holes: &mut Vec<Vec<String>>,
    conditions: &mut Vec<Vec<String>>,
) -> Option<()> {
    for element in elements {
        match element {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                if !is_plain(ht) || ht.block || !ht.params.is_empty() {
                    return None;
                }
                let path = simple_path(&ht.name)?;
                if !holes.contains(&path) {
                    holes.push(path);
                }
            }
            TemplateElement::HelperBlock(ht) => {
                let Parameter::Name(helper) = &ht.name else {
                    return None;
                };
                if !matches!(helper.as_str(), "if" | "unless")
                    || !is_plain(ht)
                    || ht.params.len() != 1
                {
                    return None;
                }
                let path = simple_path(&ht.params[0])?;
                if !conditions.contains(&path) {
                    conditions.push(path);
                }
                for branch in [&ht.template, &ht.inverse].into_iter().flatten() {
                    walk(&branch.elements, holes, conditions)?;
                }
            }
            _ => return None,
        }
    }
    Some(())
}

/// No hash arguments and no block parameters.
fn is_plain(ht: &HelperTemplate) -> bool {
    ht.hash.is_empty() && ht.block_param.is_none()
}

/// A path of plain names from the current context (`user.username`), as
/// its segments.
fn simple_path(param: &Parameter) -> Option<Vec<String>> {
    let Parameter::Path(Path::Relative((segments, _))) = param else {
        return None;
    };
    segments
        .iter()
        .map(|segment| match segment {
            PathSeg::Named(name) if !name.is_empty() && !name.starts_with('@') => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
        .filter(|path| !path.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry(templates: &[(&str, &str)]) -> Handlebars<'static> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.set_prevent_indent(true);
        registry.register_escape_fn(super::super::escape_html);
        for (name, source) in templates {
            registry.register_template_string(name, *source).unwrap();
        }
        registry
    }

    fn pieces(registry: &Handlebars<'_>, name: &str) -> Option<Pieces> {
        Pieces::analyse(registry.get_template(name).unwrap())
    }

    /// Values a hole or a condition may hold: escapes, markers' own
    /// characters, falsy ones of every type, numbers, unicode.
    fn values() -> Vec<Value> {
        vec![
            json!("Alice"),
            json!(""),
            json!("<b>Bob</b> & \"Carol\" 'D' `e` =f"),
            json!("\u{fdd0}a0&\u{fdd1}"),
            json!("é ✓ 🦀"),
            json!(0),
            json!(1234),
            json!(-1.5),
            json!(true),
            json!(false),
            json!(null),
            json!([]),
            json!(["x", "y"]),
            json!({}),
        ]
    }

    /// Every template of the tool, from the pieces and from handlebars,
    /// over every value in every field the template reads (one at a time,
    /// the others at a plain value), and with each field missing.
    #[test]
    fn pages_from_pieces_are_handlebars_own() {
        let registry = registry(super::super::TEMPLATES);
        let mut taken = Vec::new();
        for (name, _) in super::super::TEMPLATES {
            let Some(pieces) = pieces(&registry, name) else {
                continue;
            };
            taken.push(*name);
            let paths: Vec<Vec<String>> = pieces
                .holes
                .iter()
                .chain(&pieces.conditions)
                .cloned()
                .collect();
            let plain = |paths: &[Vec<String>]| {
                let mut context = json!({});
                for path in paths {
                    let mut at = &mut context;
                    for segment in path {
                        at = at
                            .as_object_mut()
                            .unwrap()
                            .entry(segment.clone())
                            .or_insert(json!({}));
                    }
                    *at = json!("plain value");
                }
                context
            };
            let mut contexts = vec![plain(&paths)];
            for path in &paths {
                for value in values() {
                    let mut context = plain(&paths);
                    *lookup_mut(&mut context, path).unwrap() = value;
                    contexts.push(context);
                }
                let mut missing = plain(&paths);
                let (last, parent) = path.split_last().unwrap();
                lookup_mut(&mut missing, parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove(last);
                contexts.push(missing);
            }
            let mut from_pieces = 0;
            for context in &contexts {
                let whole = registry.render(name, context);
                match pieces.render(&registry, name, context) {
                    Ok(Some(page)) => {
                        from_pieces += 1;
                        assert_eq!(page, whole.unwrap(), "{name}: {context}");
                    }
                    Ok(None) => {}
                    Err(e) => assert!(whole.is_err(), "{name}: {context}: {e}"),
                }
            }
            assert!(from_pieces > contexts.len() / 2, "{name}: {from_pieces}");
        }
        assert!(taken.contains(&"home"), "{taken:?}");
        assert!(taken.contains(&"index"), "{taken:?}");
        assert!(taken.contains(&"error"), "{taken:?}");
    }

    #[test]
    fn the_home_page_has_its_holes_and_conditions() {
        let registry = registry(super::super::TEMPLATES);
        let home = pieces(&registry, "home").unwrap();
        let names = |paths: &[Vec<String>]| paths.iter().map(|p| p.join(".")).collect::<Vec<_>>();
        assert_eq!(
            names(&home.holes),
            ["user.username", "user.editcount", "user.groups", "csrf"]
        );
        assert_eq!(names(&home.conditions), ["user.groups", "user.blocked"]);
    }

    #[test]
    fn anything_but_values_and_conditions_is_rendered_whole() {
        for source in [
            "{{len name}}",
            "{{#if (eq name \"x\")}}yes{{/if}}{{name}}",
            "{{#each items}}{{this}}{{/each}}",
            "{{#with user}}{{name}}{{/with}}",
            "{{> other}}",
            "{{this}}",
            "{{../name}}",
            "{{@root.name}}",
            "{{lookup user \"name\"}}",
            "{{#if name includeZero=true}}x{{/if}}",
            "{{user}} {{user.name}}",
            "{{#if a}}{{/if}}{{#if b}}{{/if}}{{#if c}}{{/if}}{{#if d}}{{/if}}\
             {{#if e}}{{/if}}{{#if f}}{{/if}}{{#if g}}{{/if}}",
        ] {
            let registry = registry(&[("t", source), ("other", "o")]);
            assert!(pieces(&registry, "t").is_none(), "{source}");
        }
        // Blocks inside blocks, else and else-if chains are taken.
        let registry = registry(&[(
            "t",
            "{{#if a}}A{{#unless b}}{{{c}}}{{/unless}}{{else if d}}D{{else}}E{{/if}}",
        )]);
        let t = pieces(&registry, "t").unwrap();
        for (context, expected) in [
            (json!({"a": 1, "b": false, "c": "<c>", "d": 0}), "A<c>"),
            (json!({"a": 1, "b": true, "c": "<c>", "d": 0}), "A"),
            (json!({"a": 0, "b": true, "c": "x", "d": "y"}), "D"),
            (json!({"a": "", "b": true, "c": "x", "d": []}), "E"),
        ] {
            assert_eq!(
                t.render(&registry, "t", &context).unwrap().unwrap(),
                expected
            );
            assert_eq!(registry.render("t", &context).unwrap(), expected);
        }
    }

    /// A helper registered under a hole's name prints something else than
    /// the value: the two marker sets cut differently, and the page is
    /// rendered whole.
    #[test]
    fn a_hole_shadowed_by_a_helper_gets_no_pieces() {
        let mut registry = registry(&[("t", "<p>{{name}}</p><p>{{other}}</p>")]);
        registry.register_helper(
            "name",
            Box::new(
                |_: &handlebars::Helper<'_>,
                 _: &Handlebars<'_>,
                 _: &Context,
                 _: &mut handlebars::RenderContext<'_, '_>,
                 out: &mut dyn handlebars::Output|
                 -> handlebars::HelperResult {
                    out.write("from a helper")?;
                    Ok(())
                },
            ),
        );
        let t = pieces(&registry, "t").unwrap();
        let context = json!({"name": "Alice", "other": "Bob"});
        assert_eq!(t.render(&registry, "t", &context).unwrap(), None);
        assert_eq!(
            registry.render("t", &context).unwrap(),
            "<p>from a helper</p><p>Bob</p>"
        );
    }

    #[test]
    fn the_cut_tells_escaped_holes_from_raw_ones_and_refuses_strays() {
        let page = format!(
            "a{}b{}c",
            marker("a", 0),
            marker("a", 1).replace('&', "&amp;")
        );
        assert_eq!(
            cut(&page, "a", 2).unwrap(),
            [
                Piece::Text("a".into()),
                Piece::Hole {
                    index: 0,
                    escaped: false
                },
                Piece::Text("b".into()),
                Piece::Hole {
                    index: 1,
                    escaped: true
                },
                Piece::Text("c".into()),
            ]
        );
        assert!(cut(&page, "bb", 2).is_none(), "the other set's markers");
        assert!(cut(&page, "a", 1).is_none(), "a hole that does not exist");
        assert!(cut("x\u{fdd1}y", "a", 1).is_none());
        assert!(cut("x\u{fdd0}y", "a", 1).is_none());
    }
}
