//! The one outgoing HTTP client of the service, shared by everything that
//! talks to the wiki: connection pooling, a User-Agent that follows
//! Wikimedia's policy, timeouts, and no redirects (a redirected signed OAuth
//! request is refused by the wiki, and following one could leak the header).

use std::time::Duration;

use crate::config::Config;

/// Time allowed to open a connection to the wiki.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a whole request to the wiki, body included
/// (`TOOL_WIKI_TIMEOUT_SECONDS`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// `<tool>/<version> (<public URL>; <contact>) reqwest/<version>`, as
/// Wikimedia's User-Agent policy asks.
pub fn user_agent(config: &Config) -> String {
    let url = config
        .public_url
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_else(|| format!("https://{}.toolforge.org/", config.tool_name));
    let contact = config
        .contact
        .clone()
        .unwrap_or_else(|| format!("tools.{}@toolforge.org", config.tool_name));
    format!(
        "{}/{} ({url}; {contact}) reqwest/0.13",
        config.tool_name,
        env!("CARGO_PKG_VERSION")
    )
}

/// Builds the shared client.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    crate::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .user_agent(user_agent(config))
        .connect_timeout(CONNECT_TIMEOUT.min(config.wiki_timeout))
        .timeout(config.wiki_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_agent_names_the_tool_its_url_and_a_contact() {
        let mut config = Config::for_tests();
        config.tool_name = "my-tool".into();
        assert_eq!(
            user_agent(&config),
            format!(
                "my-tool/{} (https://my-tool.toolforge.org/; tools.my-tool@toolforge.org) reqwest/0.13",
                env!("CARGO_PKG_VERSION")
            )
        );
        config.contact = Some("me@example.org".into());
        assert!(user_agent(&config).contains("; me@example.org)"));
    }
}
