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
        toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(":{line}:{column}")
            });
            anyhow::anyhow!("invalid config {}{at}: {}", path.display(), e.message())
        })
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
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("foobar.toml");
        std::fs::write(
            &path,
            "state_dir = \"d\"\n\n[edge]\nmax_streams = \"lots\"\n",
        )
        .expect("written");
        let error = Config::from_file(&path).expect_err("refused").to_string();
        assert!(
            error.starts_with(&format!("invalid config {}:4:15: ", path.display())),
            "{error}"
        );
        std::fs::write(&path, "[dns]\nlisen = []\n").expect("written");
        let error = Config::from_file(&path).expect_err("refused").to_string();
        assert!(error.contains(":2:1: unknown field `lisen`"), "{error}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = toml::from_str::<Config>("[dns]\nlisen = []\n").expect_err("typo rejected");
        assert!(error.to_string().contains("lisen"), "{error}");
    }
}
