//! The handlebars templates, compiled once at start-up from files embedded in
//! the binary (so it runs from any directory), in strict mode and with HTML
//! escaping on.
//!
//! Each page template is the page's own content; `layout.hbs` wraps it
//! (head, header, notices, footer) and takes it as `{{{content}}}`. A
//! `{{#> layout}}` partial block would do the same, but handlebars-rust
//! copies the whole context into the partial's scope and renders the block
//! to a string of its own on every render: 11k instructions, a tenth of a
//! logged-in home page.
//!
//! The layout sees four fields only: the page's `title`, `tool_name` and
//! `flashes`, and `content`. So without notices, what it puts around a page
//! depends on the title and the tool name alone: that frame is rendered once
//! per page template ([`Frame`]) and a page is then its frame's head, its
//! content and its frame's tail, byte for byte what rendering the layout
//! would give.
//!
//! The page inside the frame is made from pieces where its template allows
//! ([`pieces`]): the template rendered once per shape and cut at its
//! holes, each request's values escaped into them.

mod pieces;

pub use pieces::{Field, Fields};

use std::sync::OnceLock;

use bytes::Bytes;
use handlebars::{Context, Handlebars, RenderErrorReason};
use serde::Serialize;

/// The page templates, by name; `layout` wraps each of the others.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../../templates/layout.hbs")),
    ("index", include_str!("../../templates/index.hbs")),
    ("home", include_str!("../../templates/home.hbs")),
    ("error", include_str!("../../templates/error.hbs")),
    ("logout", include_str!("../../templates/logout.hbs")),
    ("profile", include_str!("../../templates/profile.hbs")),
];

/// The stylesheet, served at `/static/style.css`.
pub const STYLESHEET: &str = include_str!("../../templates/style.css");

/// The compiled templates.
#[derive(Debug)]
pub struct Templates {
    registry: Handlebars<'static>,
    /// The home page as every anonymous visitor without a notice sees it.
    anonymous_home: OnceLock<Bytes>,
    /// Per page template (in [`TEMPLATES`] order, the layout's slot unused):
    /// the layout around it without notices, made on first use; `None` if
    /// the layout does not take its content exactly once, unescaped.
    frames: Vec<OnceLock<Option<Frame>>>,
    /// Per page template (same order): its pieces, if its syntax allows.
    pieces: Vec<Option<pieces::Pieces>>,
}

/// What the layout renders around a page without notices, for one title and
/// tool name: the page is `head + content + tail`.
#[derive(Debug)]
struct Frame {
    title: String,
    tool_name: String,
    head: String,
    tail: String,
}

/// Stands in for the content when a frame is made. The `<` makes an
/// escaped `{{content}}` miss it, so a layout that escapes its content gets
/// no frame (and is rendered whole each time) instead of a wrong one.
const CONTENT_MARK: &str = "\u{fdd0}<hello-oauth content>\u{fdd1}";

impl Templates {
    /// Compiles every template; fails if one does not parse.
    pub fn new() -> anyhow::Result<Self> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.set_dev_mode(false);
        // Partials are not re-indented line by line: the pages do not depend
        // on it, and it is a pass over every line rendered.
        registry.set_prevent_indent(true);
        registry.register_escape_fn(escape_html);
        for (name, source) in TEMPLATES {
            registry.register_template_string(name, *source)?;
        }
        let pieces = TEMPLATES
            .iter()
            .map(|(name, _)| {
                let template = registry.get_template(name)?;
                (*name != "layout").then(|| pieces::Pieces::analyse(template))?
            })
            .collect();
        Ok(Self {
            registry,
            anonymous_home: OnceLock::new(),
            frames: TEMPLATES.iter().map(|_| OnceLock::new()).collect(),
            pieces,
        })
    }

    /// Renders a page: the template `name` from `context` (which must
    /// serialise to an object), then the layout around it from the page's
    /// `title`, `tool_name` and `flashes`.
    pub fn render(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> Result<String, handlebars::RenderError> {
        let mut context = Context::wraps(context)?;
        let from_pieces = match self.pieces_of(name) {
            Some(pieces) => pieces.render(&self.registry, name, context.data())?,
            None => None,
        };
        let content = match from_pieces {
            Some(content) => content,
            None => self.registry.render_with_context(name, &context)?,
        };
        let Some(fields) = context.data_mut().as_object_mut() else {
            return Err(RenderErrorReason::Other(format!(
                "the context of {name} is not an object"
            ))
            .into());
        };
        let field = |key: &str| match fields.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        // Anything but two strings and an empty list (a missing field is an
        // error in strict mode) is left to the layout itself.
        let no_flashes = matches!(fields.get("flashes"),
            Some(serde_json::Value::Array(flashes)) if flashes.is_empty());
        if no_flashes
            && let (Some(title), Some(tool_name)) = (field("title"), field("tool_name"))
            && let Some(frame) = self.frame(name, title, tool_name)?
        {
            let mut page =
                String::with_capacity(frame.head.len() + content.len() + frame.tail.len());
            page.push_str(&frame.head);
            page.push_str(&content);
            page.push_str(&frame.tail);
            return Ok(page);
        }
        let mut layout = serde_json::Map::with_capacity(4);
        for key in ["title", "tool_name", "flashes"] {
            if let Some(value) = fields.remove(key) {
                layout.insert(key.to_owned(), value);
            }
        }
        layout.insert("content".to_owned(), serde_json::Value::String(content));
        self.registry
            .render_with_context("layout", &Context::from(serde_json::Value::Object(layout)))
    }

    /// [`Templates::render`] for a context that can be read in place
    /// ([`Fields`]): a page without notices whose frame and shape are made
    /// is put together without building the context's JSON value, straight
    /// into the page's buffer. Any other page goes through `render`.
    pub fn render_fields<C: Serialize + Fields>(
        &self,
        name: &str,
        context: &C,
    ) -> Result<String, handlebars::RenderError> {
        match self.in_place(name, context) {
            Some(page) => Ok(page),
            None => self.render(name, context),
        }
    }

    /// The page put together in place, if it can be (see `render_fields`).
    pub(crate) fn in_place(&self, name: &str, context: &impl Fields) -> Option<String> {
        let pieces = self.pieces_of(name)?;
        if context.field(&["flashes"]) != Some(Field::EmptyList) {
            return None;
        }
        let (Some(Field::Str(title)), Some(Field::Str(tool_name))) =
            (context.field(&["title"]), context.field(&["tool_name"]))
        else {
            return None;
        };
        let frame = self
            .frame_slot(name)?
            .get()?
            .as_ref()
            .filter(|f| f.title == title && f.tool_name == tool_name)?;
        let mut page = String::with_capacity(frame.head.len() + 1024 + frame.tail.len());
        page.push_str(&frame.head);
        pieces.render_fields(context, &mut page)?;
        page.push_str(&frame.tail);
        Some(page)
    }

    /// The page as handlebars renders it whole: the template, then the
    /// layout around it, without frames or pieces. What every other way of
    /// rendering must give, byte for byte.
    #[cfg(test)]
    pub fn render_whole(&self, name: &str, context: &impl Serialize) -> String {
        let context = serde_json::to_value(context).unwrap_or_default();
        let content = self.registry.render(name, &context).unwrap_or_default();
        let layout = serde_json::json!({
            "title": context["title"],
            "tool_name": context["tool_name"],
            "flashes": context.get("flashes").cloned().unwrap_or_default(),
            "content": content,
        });
        self.registry.render("layout", &layout).unwrap_or_default()
    }

    /// The pieces of page template `name`, if it has them.
    fn pieces_of(&self, name: &str) -> Option<&pieces::Pieces> {
        TEMPLATES
            .iter()
            .position(|(n, _)| *n == name)
            .and_then(|i| self.pieces.get(i)?.as_ref())
    }

    /// Where the frame of page template `name` is kept.
    fn frame_slot(&self, name: &str) -> Option<&OnceLock<Option<Frame>>> {
        TEMPLATES
            .iter()
            .position(|(n, _)| *n == name)
            .and_then(|i| self.frames.get(i))
    }

    /// The frame of page template `name` for this title and tool name, if
    /// it has one: made on the template's first page without notices, then
    /// reused while the title and tool name are the same (every page but
    /// the error page, whose title is its status, has a fixed title).
    fn frame(
        &self,
        name: &str,
        title: &str,
        tool_name: &str,
    ) -> Result<Option<&Frame>, handlebars::RenderError> {
        let Some(slot) = self.frame_slot(name) else {
            return Ok(None);
        };
        let frame = match slot.get() {
            Some(frame) => frame.as_ref(),
            None => {
                let made = self.make_frame(title, tool_name)?;
                slot.get_or_init(|| made).as_ref()
            }
        };
        Ok(frame.filter(|f| f.title == title && f.tool_name == tool_name))
    }

    /// Renders the layout around [`CONTENT_MARK`] and cuts it there.
    fn make_frame(
        &self,
        title: &str,
        tool_name: &str,
    ) -> Result<Option<Frame>, handlebars::RenderError> {
        let marked = self.registry.render(
            "layout",
            &serde_json::json!({
                "title": title,
                "tool_name": tool_name,
                "flashes": [],
                "content": CONTENT_MARK,
            }),
        )?;
        if marked.matches(CONTENT_MARK).count() != 1 {
            return Ok(None);
        }
        Ok(marked.split_once(CONTENT_MARK).map(|(head, tail)| Frame {
            title: title.to_owned(),
            tool_name: tool_name.to_owned(),
            head: head.to_owned(),
            tail: tail.to_owned(),
        }))
    }

    /// The anonymous home page without notices, rendered on first use and
    /// then served as the same bytes. What it shows (tool name, greeting,
    /// whether login is offered) comes from the configuration, which is
    /// fixed for the life of the process, so rendering it per request was
    /// half of an anonymous visit's CPU time for identical output. `context`
    /// is asked for only on first use; two requests racing there both render
    /// the same bytes and one copy is kept.
    pub fn anonymous_home<C: Serialize>(
        &self,
        context: impl FnOnce() -> C,
    ) -> Result<Bytes, handlebars::RenderError> {
        if let Some(page) = self.anonymous_home.get() {
            return Ok(page.clone());
        }
        let page = Bytes::from(self.render("index", &context())?);
        Ok(self.anonymous_home.get_or_init(|| page).clone())
    }
}

/// handlebars' HTML escaping, with a fast path: most values (names, ids,
/// tokens) have nothing to escape and are copied whole instead of char by
/// char. Anything with a special character goes through handlebars' own
/// function, so the result is always the same as with the default.
fn escape_html(s: &str) -> String {
    let special = |b: u8| matches!(b, b'<' | b'>' | b'"' | b'&' | b'\'' | b'`' | b'=');
    if s.bytes().any(special) {
        handlebars::html_escape(s)
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_handlebars_own() {
        for s in [
            "",
            "Alice Example",
            "é ✓ 🦀",
            "<script>alert('x')</script>",
            "a=b & c \"d\" `e`",
            "user, autoconfirmed",
        ] {
            assert_eq!(escape_html(s), handlebars::html_escape(s), "{s}");
        }
        // Every ASCII character on its own, special or not.
        for b in 0u8..128 {
            let s = char::from(b).to_string();
            assert_eq!(escape_html(&s), handlebars::html_escape(&s), "{b}");
        }
    }

    #[test]
    fn all_templates_compile() {
        assert!(Templates::new().is_ok());
    }

    #[test]
    fn a_page_is_rendered_once_inside_the_layout() {
        let templates = Templates::new().unwrap();
        let page = templates
            .render(
                "error",
                &serde_json::json!({
                    "title": "Not <found>",
                    "tool_name": "hello-oauth",
                    "flashes": [{"level": "info", "text": "a & b"}],
                    "message": "Nothing here.",
                    "request_id": null,
                }),
            )
            .unwrap();
        assert_eq!(page.matches("<!DOCTYPE html>").count(), 1, "{page}");
        let main = page
            .split_once("<main>")
            .and_then(|(_, rest)| rest.split_once("</main>"))
            .map(|(main, _)| main)
            .unwrap();
        assert!(
            main.contains(r#"<p class="flash flash-info" role="status">a &amp; b</p>"#),
            "{main}"
        );
        assert!(main.contains("<h1>Not &lt;found&gt;</h1>"), "{main}");
        assert!(main.contains("<p>Nothing here.</p>"), "{main}");
        assert!(page.contains("<title>Not &lt;found&gt; · hello-oauth</title>"));
        // The content is the page's HTML, not escaped a second time.
        assert!(!page.contains("&lt;section"), "{page}");
    }

    /// The page as the layout renders it around the page's content, done
    /// here without frames: what `render` must give, byte for byte.
    fn whole(templates: &Templates, name: &str, context: &serde_json::Value) -> String {
        let content = templates.registry.render(name, context).unwrap();
        templates
            .registry
            .render(
                "layout",
                &serde_json::json!({
                    "title": context["title"],
                    "tool_name": context["tool_name"],
                    "flashes": context.get("flashes").cloned().unwrap_or_default(),
                    "content": content,
                }),
            )
            .unwrap()
    }

    #[test]
    fn a_framed_page_is_the_layout_rendered_around_it() {
        let templates = Templates::new().unwrap();
        let home = |title: &str, tool: &str, name: &str, flashes: serde_json::Value| {
            serde_json::json!({
                "title": title,
                "tool_name": tool,
                "greeting": "Hi",
                "login_available": true,
                "flashes": flashes,
                "user": {"username": name, "editcount": "1,234", "groups": "", "blocked": false},
                "csrf": "t0k3n",
            })
        };
        let cases = [
            home("Home", "tool <&> \"x\"", "Alice", serde_json::json!([])),
            // Same template and frame, another user.
            home("Home", "tool <&> \"x\"", "Bob <b>", serde_json::json!([])),
            // A notice: the layout is rendered whole.
            home(
                "Home",
                "tool <&> \"x\"",
                "Alice",
                serde_json::json!([{"level": "error", "text": "<no>"}]),
            ),
            // Another title or tool name than the frame's: rendered whole.
            home(
                "Elsewhere",
                "tool <&> \"x\"",
                "Alice",
                serde_json::json!([]),
            ),
            home("Home", "other", "Alice", serde_json::json!([])),
        ];
        for context in &cases {
            let expected = whole(&templates, "home", context);
            assert_eq!(
                templates.render("home", context).unwrap(),
                expected,
                "{context}"
            );
        }
        assert!(
            templates
                .frame_slot("home")
                .unwrap()
                .get()
                .is_some_and(Option::is_some)
        );
        // Strict mode still applies to the layout's fields.
        let no_list = home("Home", "tool <&> \"x\"", "Carol", serde_json::Value::Null);
        assert!(templates.render("home", &no_list).is_err());
        // Also on a template's first page, which makes its frame.
        let mut no_title = home("Home", "tool", "Carol", serde_json::json!([]));
        no_title.as_object_mut().unwrap().remove("title");
        assert!(Templates::new().unwrap().render("home", &no_title).is_err());
        // The page itself is still rendered per request.
        let page = templates.render("home", &cases[1]).unwrap();
        assert!(page.contains("Hello Bob &lt;b&gt;!"), "{page}");
    }

    #[test]
    fn a_layout_that_escapes_its_content_gets_no_frame() {
        let mut templates = Templates::new().unwrap();
        templates
            .registry
            .register_template_string("layout", "<main>{{content}}</main>")
            .unwrap();
        let context = serde_json::json!({
            "title": "Not found", "tool_name": "t", "message": "m", "request_id": null, "flashes": [],
        });
        let page = templates.render("error", &context).unwrap();
        assert_eq!(page, whole(&templates, "error", &context));
        assert!(page.starts_with("<main>&lt;section"), "{page}");
        assert!(
            templates
                .frame_slot("error")
                .unwrap()
                .get()
                .is_some_and(Option::is_none)
        );
    }

    #[test]
    fn a_context_that_is_not_an_object_is_an_error_not_a_page() {
        let templates = Templates::new().unwrap();
        assert!(templates.render("error", &"just a string").is_err());
    }
}
