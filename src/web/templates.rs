//! The handlebars templates, compiled once at start-up from files embedded in
//! the binary (so it runs from any directory), in strict mode and with HTML
//! escaping on.

use handlebars::Handlebars;
use serde::Serialize;

/// The page templates, by name, with the layout registered as a partial.
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
            if *name == "layout" {
                registry.register_partial(name, *source)?;
            } else {
                registry.register_template_string(name, *source)?;
            }
        }
        Ok(Self { registry })
    }

    /// Renders a page.
    pub fn render(
        &self,
        name: &str,
        context: &impl Serialize,
    ) -> Result<String, handlebars::RenderError> {
        self.registry.render(name, context)
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
}
