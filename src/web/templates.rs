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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_templates_compile() {
        assert!(Templates::new().is_ok());
    }
}
