//! Configuration in layers: the embedded defaults (a TOML text, the same one
//! `default-config` prints), then the config file, then environment
//! variables (`KACHING_…`), each layer overriding the one before, key by key
//! and section by section. The result is any `serde::Deserialize` type;
//! what the values mean and which combinations are allowed is the caller's.
//!
//! An error names the layer to fix: the file, or the one variable without
//! which the configuration would be valid.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// How the layers combine; one constant per binary.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// The built-in defaults as TOML ("" when the type's `Default` is enough).
    pub defaults: &'a str,
    /// Prefix of the variables read, e.g. `KACHING_RELAY_`.
    pub env_prefix: &'a str,
    /// Keys a variable may set, lower-case, without the prefix, a section's
    /// keys joined to it with `_` (`rate_limit_burst`). Other variables with
    /// the prefix are left alone: another program may share it.
    pub env_keys: &'a [&'a str],
    /// Sections whose keys variables may set.
    pub sections: &'a [&'a str],
    /// Keys of `env_keys` that only a variable may set, never the file or
    /// the defaults (a secret that has a file of its own, say): a file
    /// that sets one is refused, naming the variable to use.
    pub env_only: &'a [&'a str],
    /// How a variable's text becomes a value.
    pub env_values: EnvValues,
}

/// How a variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvValues {
    /// A TOML value when the text is one (`100`, `2.5`, `true`, `"x"`),
    /// otherwise the text as a string, so `5m` or `/var/lib/x` need no quotes.
    Typed,
    /// Always the text as a string, for types that parse their own values.
    Text,
}

/// Which layer an error is in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The embedded defaults (a bug in the build, not in the setup).
    Defaults,
    /// The config file (`None`: text given without a path).
    File(Option<PathBuf>),
    /// One environment variable, by name.
    Var(String),
    /// The variables with this prefix, taken together.
    Vars(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("the built-in defaults"),
            Origin::File(Some(p)) => write!(f, "config file {}", p.display()),
            Origin::File(None) => f.write_str("the configuration"),
            Origin::Var(name) => write!(f, "environment variable {name}"),
            Origin::Vars(prefix) => write!(f, "the {prefix}* environment variables"),
        }
    }
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A layer is not TOML.
    #[error("{origin} is not valid TOML")]
    Syntax {
        /// The file or the defaults.
        origin: Origin,
        /// Where and why, as the TOML parser says.
        source: toml::de::Error,
    },
    /// The file sets a key that only a variable may set.
    #[error("{origin} sets `{key}`, which only environment variable {var} may set")]
    EnvOnly {
        /// The file.
        origin: Origin,
        /// The key, as the file names it (`section.key` in a section).
        key: String,
        /// The variable that may set it.
        var: String,
    },
    /// A variable sets a key in a section that an earlier layer made a plain value.
    #[error("[{section}] must be a table (environment variable {var} sets a key in it)")]
    NotATable {
        /// The variable.
        var: String,
        /// The section.
        section: String,
    },
    /// A variable of ours holds bytes that are not UTF-8.
    #[error("environment variable {var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: String,
    },
    /// The layers together do not make a valid configuration: a value of the
    /// wrong type, an unknown key, a missing one.
    #[error("in {origin}")]
    Invalid {
        /// The layer to fix.
        origin: Origin,
        /// What serde says is wrong.
        source: toml::de::Error,
    },
}

impl<'a> Layers<'a> {
    /// Builds a `T` from the defaults, `file` (when given) and the process
    /// environment.
    pub fn load<T: DeserializeOwned>(&self, file: Option<&Path>) -> Result<T, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        self.parse(&text, file, self.process_env()?)
    }

    /// This program's variables from the process environment. Unlike
    /// `std::env::vars`, a name or value that is not UTF-8 does not panic:
    /// such a name cannot be ours, such a value of ours is refused.
    fn process_env(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if self.env_key(name).is_none() {
                continue;
            }
            let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
                var: name.to_string(),
            })?;
            vars.push((name.to_string(), value));
        }
        Ok(vars)
    }

    /// The key a variable sets (lower-case, without the prefix), if it is one
    /// of this program's.
    fn env_key(&self, name: &str) -> Option<String> {
        let key = name.strip_prefix(self.env_prefix)?.to_ascii_lowercase();
        self.env_keys.contains(&key.as_str()).then_some(key)
    }

    /// Builds a `T` from the defaults, the config file's `text` (`path`
    /// names it in errors) and `env` (name, value) pairs: the whole of
    /// [`Layers::load`] but the reading, so tests need no files or process
    /// environment.
    pub fn parse<T: DeserializeOwned>(
        &self,
        text: &str,
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<T, ConfigError> {
        let file_origin = || Origin::File(path.map(Path::to_path_buf));
        let mut table = parse_table(self.defaults, Origin::Defaults)?;
        self.refuse_env_only(&table, Origin::Defaults)?;
        let file = parse_table(text, file_origin())?;
        self.refuse_env_only(&file, file_origin())?;
        merge(&mut table, file);
        let vars = self.env_layer(env);
        let base = table.clone();
        for var in &vars {
            var.apply(&mut table)?;
        }
        let err = match toml::Value::Table(table).try_into::<T>() {
            Ok(config) => return Ok(config),
            Err(e) => e,
        };
        // Find the layer to blame: a variable without which the rest is
        // valid, else the file, else the variables together.
        let origin = self.blame::<T>(&base, &vars).unwrap_or_else(|| {
            if !text.trim().is_empty() {
                file_origin()
            } else if !vars.is_empty() {
                Origin::Vars(self.env_prefix.to_string())
            } else {
                Origin::Defaults
            }
        });
        Err(ConfigError::Invalid {
            origin,
            source: err,
        })
    }

    /// Splits a variable's key into its section (one of `sections`) and
    /// the key within it.
    fn section_key<'k>(&self, key: &'k str) -> (Option<&'a str>, &'k str) {
        self.sections
            .iter()
            .find_map(|s| {
                key.strip_prefix(s)
                    .and_then(|k| k.strip_prefix('_'))
                    .map(|k| (Some(*s), k))
            })
            .unwrap_or((None, key))
    }

    /// An error when a layer other than the variables sets an `env_only` key.
    fn refuse_env_only(&self, table: &toml::Table, origin: Origin) -> Result<(), ConfigError> {
        for key in self.env_only {
            let (section, k) = self.section_key(key);
            let set = match section {
                Some(s) => table
                    .get(s)
                    .and_then(toml::Value::as_table)
                    .is_some_and(|t| t.contains_key(k)),
                None => table.contains_key(k),
            };
            if set {
                return Err(ConfigError::EnvOnly {
                    origin,
                    key: section.map_or_else(|| k.to_string(), |s| format!("{s}.{k}")),
                    var: format!("{}{}", self.env_prefix, key.to_ascii_uppercase()),
                });
            }
        }
        Ok(())
    }

    /// The variables this program reads, in the order given.
    fn env_layer(&self, env: impl IntoIterator<Item = (String, String)>) -> Vec<EnvVar> {
        let mut vars = Vec::new();
        for (name, text) in env {
            let Some(key) = self.env_key(&name) else {
                continue;
            };
            let (section, key) = match self.section_key(&key) {
                (Some(s), k) => (Some(s.to_string()), k.to_string()),
                (None, _) => (None, key),
            };
            let value = match self.env_values {
                EnvValues::Typed => typed_value(&text),
                EnvValues::Text => toml::Value::String(text),
            };
            vars.push(EnvVar {
                name,
                section,
                key,
                value,
            });
        }
        vars
    }

    /// The one variable whose removal makes `base` plus the others valid.
    fn blame<T: DeserializeOwned>(&self, base: &toml::Table, vars: &[EnvVar]) -> Option<Origin> {
        (0..vars.len()).find_map(|skip| {
            let mut t = base.clone();
            for (i, var) in vars.iter().enumerate() {
                if i != skip {
                    var.apply(&mut t).ok()?;
                }
            }
            toml::Value::Table(t)
                .try_into::<T>()
                .is_ok()
                .then(|| Origin::Var(vars[skip].name.clone()))
        })
    }
}

/// One variable of the environment layer.
struct EnvVar {
    /// Its full name, for messages.
    name: String,
    /// The section it sets a key in, if any.
    section: Option<String>,
    /// The key.
    key: String,
    /// The value.
    value: toml::Value,
}

impl EnvVar {
    fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        let Some(section) = &self.section else {
            table.insert(self.key.clone(), self.value.clone());
            return Ok(());
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = entry else {
            return Err(ConfigError::NotATable {
                var: self.name.clone(),
                section: section.clone(),
            });
        };
        t.insert(self.key.clone(), self.value.clone());
        Ok(())
    }
}

fn parse_table(text: &str, origin: Origin) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Syntax { origin, source })
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// [`EnvValues::Typed`]: the text as a TOML value when it is one, else as a string.
fn typed_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

/// Reads a duration written the way people write them (`30s`, `5m`, `24h`,
/// `30d`): use as `#[serde(deserialize_with = "kaching_kit::config::duration")]`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("{s:?} is not a duration like 30s, 5m or 24h ({e})"))
    })
}

/// Reads a whole number written either as a TOML integer (`1024`) or as
/// text (`"1024"`, what [`EnvValues::Text`] makes of a variable): use as
/// `#[serde(deserialize_with = "kaching_kit::config::number")]`.
pub fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    struct Number<T>(std::marker::PhantomData<T>);
    impl<T> serde::de::Visitor<'_> for Number<T>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number, like 1024")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse()
                .map_err(|e| E::custom(format!("{v:?} is not a whole number like 1024 ({e})")))
        }
    }
    d.deserialize_any(Number(std::marker::PhantomData))
}

#[cfg(test)]
mod tests;
