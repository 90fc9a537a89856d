//! The handlebars templates, compiled once at start-up from files embedded in
//! the binary (so it runs from any directory), in strict mode and with HTML
//! escaping on.
//!
//! Each page template is the page's own content; `layout.hbs` wraps it
//! (head, header, notices, footer) and takes it as `{{{content}}}`, the one
//! field name a page's context must not use. A `{{#> layout}}` partial block
//! would do the same, but handlebars-rust copies the whole context into the
//! partial's scope and renders the block to a string of its own on every
//! render: 11k instructions, a tenth of a logged-in home page.

use std::sync::OnceLock;

use bytes::Bytes;
use handlebars::{Context, Handlebars, RenderErrorReason};
use serde::Serialize;

/// The page templates, by name; `layout` wraps each of the others.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../../templates/layout.hbs")),
    ("index", include_str!("../../templates/index.hbs")),
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
}

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
        Ok(Self {
            registry,
            anonymous_home: OnceLock::new(),
        })
    }

    /// Renders a page: the template `name`, then the layout around it, both
    /// from the one `context` (which must serialise to an object).
    pub fn render(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> Result<String, handlebars::RenderError> {
        let mut context = Context::wraps(context)?;
        let content = self.registry.render_with_context(name, &context)?;
        let Some(fields) = context.data_mut().as_object_mut() else {
            return Err(RenderErrorReason::Other(format!(
                "the context of {name} is not an object"
            ))
            .into());
        };
        fields.insert("content".to_owned(), serde_json::Value::String(content));
        self.registry.render_with_context("layout", &context)
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

    #[test]
    fn a_context_that_is_not_an_object_is_an_error_not_a_page() {
        let templates = Templates::new().unwrap();
        assert!(templates.render("error", &"just a string").is_err());
    }
}
