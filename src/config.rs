//! The configuration file: every key optional, defaults as documented in `foobar.example.toml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The whole configuration; each crate's table is that crate's own `Config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where generated state (certificate, SQLite file, API token) is kept.
    pub state_dir: PathBuf,
    pub dns: foobar_dns::Config,
    pub edge: foobar_edge::Config,
    pub app: foobar_app::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("data"),
            dns: foobar_dns::Config::default(),
            edge: foobar_edge::Config::default(),
            app: foobar_app::Config::default(),
        }
    }
}

impl Config {
    /// Reads a configuration file; a missing key takes its default, an unknown key is an error.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../foobar.example.toml");
        let parsed: Config = toml::from_str(text).expect("example config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = toml::from_str::<Config>("[dns]\nlisen = []\n").expect_err("typo rejected");
        assert!(error.to_string().contains("lisen"), "{error}");
    }
}
