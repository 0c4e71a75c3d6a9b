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
    pub admin: crate::admin::Config,
    pub log: crate::log::Config,
    /// `[[site]]`: sites by name, each with its routes; none: `[edge]`'s one default site.
    pub site: Vec<foobar_edge::SiteConfig>,
    /// `[acme]`: certificates from an ACME CA for the sites without certificate files; none:
    /// a self-signed certificate for them.
    pub acme: Option<foobar_acme::Config>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("data"),
            dns: foobar_dns::Config::default(),
            edge: foobar_edge::Config::default(),
            app: foobar_app::Config::default(),
            admin: crate::admin::Config::default(),
            log: crate::log::Config::default(),
            site: Vec::new(),
            acme: None,
        }
    }
}

impl Config {
    /// Reads a configuration file; a missing key takes its default, an unknown key is an error.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let (at, key) = e.span().map_or((String::new(), None), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (format!(":{line}:{column}"), key_at(&text, span.start))
            });
            let message = e.message();
            match key {
                // A bad value: its key, which the message does not name.
                Some(key)
                    if !message
                        .contains(&format!("`{}`", key.rsplit('.').next().unwrap_or(&key))) =>
                {
                    anyhow::anyhow!("invalid config {}{at}: {key}: {message}", path.display())
                }
                _ => anyhow::anyhow!("invalid config {}{at}: {message}", path.display()),
            }
        })
    }
}

/// The key whose line holds byte `offset` of `text`, with its table: `edge.max_streams`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = text[..start].lines().rev().find_map(|line| {
        let line = line.trim();
        // `[edge]`, `[edge.headers]`, `[[site.route]]`: the table's name.
        let name = line.strip_prefix('[')?.strip_suffix(']')?;
        Some(name.trim_start_matches('[').trim_end_matches(']').trim())
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
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
        assert!(error.contains("edge.max_streams: invalid type"), "{error}");
        std::fs::write(&path, "[dns]\nlisen = []\n").expect("written");
        let error = Config::from_file(&path).expect_err("refused").to_string();
        assert!(error.contains(":2:1: unknown field `lisen`"), "{error}");
        // A key of an array of tables, and a check made after reading the table.
        std::fs::write(
            &path,
            "[[site]]\nnames = [\"a.example\"]\nroot = \"/tmp\"\n[[site.route]]\npath = \"/x\"\n\
             proxy = [\"http://127.0.0.1:1\"]\nconnect_timeout = \"soon\"\n",
        )
        .expect("written");
        let error = Config::from_file(&path).expect_err("refused").to_string();
        assert!(
            error.contains(":7:19: site.route.connect_timeout: invalid type: string \"soon\", expected a number of seconds"),
            "{error}"
        );
        std::fs::write(
            &path,
            "[[site]]\nnames = [\"a.example\"]\nroot = \"/tmp\"\n[[site.route]]\npath = \"/x\"\n\
             respond = \"x\"\npolicy = \"least_conn\"\n",
        )
        .expect("written");
        let error = Config::from_file(&path).expect_err("refused").to_string();
        assert!(
            error.contains(":4:1: site.route \"/x\": policy does not apply to a respond route"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = toml::from_str::<Config>("[dns]\nlisen = []\n").expect_err("typo rejected");
        assert!(error.to_string().contains("lisen"), "{error}");
    }
}
