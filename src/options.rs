//! Options as callers give them. Each option's name, default, valid values and help text are
//! written once, in an [`options!`] list next to the code that uses them
//! ([`crate::diffusion::SampleOptions`], [`crate::diffusion::TrainOptions`]). Everything else is
//! derived from that list: the checks every front end goes through (JSON, JS objects, CLI
//! flags), the CLI's `--kebab-case` flags and their help ([`Flags`]), and the table the npm
//! package, its TypeScript types and the demo read ([`Spec`], exported to JS as
//! `optionSpecs()`).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// What values an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "type")]
pub enum Kind {
    /// An integer in `[min, max]`.
    Int { min: u64, max: u64 },
    /// A finite number between `min` and `max`, each end open or closed.
    Real { min: f64, min_open: bool, max: f64, max_open: bool },
    /// One of these words.
    Choice { choices: &'static [&'static str] },
    /// Text of this form, read by the option's own parser.
    Text { form: &'static str },
}

/// A number option's bounds: `Kind::real(gt(0.0), le(1.0))` is (0, 1].
#[derive(Debug, Clone, Copy)]
pub struct Bound(f64, bool);
pub const fn gt(x: f64) -> Bound {
    Bound(x, true)
}
pub const fn ge(x: f64) -> Bound {
    Bound(x, false)
}
pub const fn lt(x: f64) -> Bound {
    Bound(x, true)
}
pub const fn le(x: f64) -> Bound {
    Bound(x, false)
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the largest integer every front end can say exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl Kind {
    pub const fn int(min: u64, max: u64) -> Kind {
        Kind::Int { min, max }
    }
    pub const fn real(min: Bound, max: Bound) -> Kind {
        Kind::Real { min: min.0, min_open: min.1, max: max.0, max_open: max.1 }
    }
    pub const fn choice(choices: &'static [&'static str]) -> Kind {
        Kind::Choice { choices }
    }
    pub const fn text(form: &'static str) -> Kind {
        Kind::Text { form }
    }

    /// "an integer in [1, 4096]", "a number in (0, 1]", "one of linear, cosine".
    pub fn describe(&self) -> String {
        match *self {
            Kind::Int { min, max } => format!("an integer in [{min}, {max}]"),
            Kind::Real { min, min_open, max, max_open } => {
                let hi = if max.is_infinite() { "∞)".to_string() } else { format!("{max}{}", if max_open { ")" } else { "]" }) };
                format!("a number in {}{min}, {hi}", if min_open { "(" } else { "[" })
            }
            Kind::Choice { choices } => format!("one of {}", choices.join(", ")),
            Kind::Text { form } => form.to_string(),
        }
    }

    /// The value in canonical JSON form (integers as integers), or `None` when it is not valid.
    fn accept(&self, v: &Value) -> Option<Value> {
        match *self {
            Kind::Int { min, max } => {
                let n = v.as_u64().or_else(|| {
                    v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64).map(|f| f as u64)
                })?;
                (min..=max).contains(&n).then(|| Value::from(n))
            }
            Kind::Real { min, min_open, max, max_open } => {
                let x = v.as_f64().filter(|x| x.is_finite())?;
                let lo = if min_open { x > min } else { x >= min };
                let hi = if max_open { x < max } else { x <= max };
                (lo && hi).then(|| v.clone())
            }
            Kind::Choice { choices } => v.as_str().filter(|s| choices.contains(s)).map(|_| v.clone()),
            Kind::Text { .. } => v.as_str().map(|_| v.clone()),
        }
    }
}

/// One option, as the JS package and the CLI see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// camelCase, as JSON and JS spell it.
    pub name: String,
    /// The CLI flag, `--kebab-case`.
    pub flag: String,
    pub help: String,
    pub kind: Kind,
    /// `null` for an option that is off unless given.
    pub default: Value,
}

impl Spec {
    #[doc(hidden)]
    pub fn new(field: &str, doc: &str, kind: Kind) -> Spec {
        let mut name = String::new();
        let mut up = false;
        for c in field.chars() {
            if c == '_' {
                up = true;
            } else if up {
                name.push(c.to_ascii_uppercase());
                up = false;
            } else {
                name.push(c);
            }
        }
        let help = doc.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        Spec { name, flag: format!("--{}", field.replace('_', "-")), help, kind, default: Value::Null }
    }

    /// Checks one given value; the message names the option, the value and what is valid.
    pub fn check(&self, v: &Value) -> Result<Value> {
        if v.is_null() && self.default.is_null() {
            return Ok(Value::Null);
        }
        self.kind.accept(v).ok_or_else(|| {
            Error::options(format!("{} ({}) must be {}, got {v}", self.name, self.flag, self.kind.describe()))
        })
    }
}

/// A struct of options defined by [`options!`].
pub trait OptionSet: Sized + Serialize + for<'de> serde::Deserialize<'de> + Default {
    /// Every option with its default filled in.
    fn specs() -> Vec<Spec>;

    /// Options from a JSON object (a JS object arrives the same way): unknown names and
    /// values out of range are errors that name the option and say what is valid.
    fn from_value(v: Value, what: &str) -> Result<Self> {
        let specs = Self::specs();
        let given = match v {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            other => return Err(Error::options(format!("{what} must be an object, got {other}"))),
        };
        let mut out = Map::new();
        for (k, v) in given {
            let spec = specs.iter().find(|s| s.name == k).ok_or_else(|| {
                let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                Error::options(format!("unknown option `{k}` in {what} (valid: {})", names.join(", ")))
            })?;
            out.insert(k, spec.check(&v)?);
        }
        serde_json::from_value(Value::Object(out)).map_err(|e| Error::options(format!("{what}: {e}")))
    }

    /// [`OptionSet::from_value`] for typed callers: `{"name": value}` pairs, unknown names refused.
    fn with(pairs: &[(&str, Value)]) -> Result<Self> {
        Self::from_value(Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()), "options")
    }

    /// Checks values set in Rust against the same ranges.
    fn check(&self) -> Result<()> {
        let v = serde_json::to_value(self).map_err(|e| Error::options(e.to_string()))?;
        for s in Self::specs() {
            s.check(&v[s.name.as_str()])?;
        }
        Ok(())
    }
}

/// Fills in each spec's default from the struct's `DEFAULT`.
#[doc(hidden)]
pub fn with_defaults<T: Serialize>(mut specs: Vec<Spec>, defaults: &T) -> Vec<Spec> {
    let v = to_json(defaults);
    for s in &mut specs {
        s.default = v[s.name.as_str()].clone();
    }
    specs
}

/// Options as JSON with every `f32` written as the decimal it was written as.
pub fn to_json<T: Serialize>(options: &T) -> Value {
    match serde_json::to_value(options).expect("options serialise") {
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, shortest(&v))).collect()),
        v => v,
    }
}

/// An `f32` field's value as the decimal it was written as (0.9, not 0.8999999761581421).
fn shortest(v: &Value) -> Value {
    match v.as_f64() {
        Some(x) if !v.is_u64() && (x as f32) as f64 == x => (x as f32).to_string().parse::<f64>().map_or(v.clone(), Value::from),
        _ => v.clone(),
    }
}

/// Defines an options struct from one list: per field its doc (the help text), type, default
/// and [`Kind`]. The struct (de)serialises in camelCase, unknown fields refused; `DEFAULT` and
/// `Default` come from the list, and so does [`OptionSet::specs`].
#[macro_export]
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr, $kind:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl $name {
            pub const DEFAULT: Self = Self { $( $field: $default, )* };
        }

        impl Default for $name {
            fn default() -> Self {
                Self::DEFAULT
            }
        }

        impl $crate::options::OptionSet for $name {
            fn specs() -> Vec<$crate::options::Spec> {
                let specs = vec![$( $crate::options::Spec::new(stringify!($field), concat!($($doc, "\n"),+), $kind), )*];
                $crate::options::with_defaults(specs, &Self::DEFAULT)
            }
        }
    };
}

/// An enum of words: serde, `FromStr` and `Display` use the same words, and `NAMES` lists them
/// for [`Kind::choice`].
#[macro_export]
macro_rules! choice_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[doc = $doc:literal])* $variant:ident = $word:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[doc = $doc])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($word),+];
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            pub fn name(self) -> &'static str {
                match self { $( Self::$variant => $word, )+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                match s {
                    $( $word => Ok(Self::$variant), )+
                    other => Err($crate::Error::options(format!(
                        "unknown {} `{other}` (valid: {})", stringify!($name).to_lowercase(), Self::NAMES.join(", ")
                    ))),
                }
            }
        }
    };
}

/// An options struct as CLI flags: `--top-k 40`. Values are collected as given and checked by
/// [`OptionSet::from_value`], so the CLI reports the same messages as the JS package.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, Default)]
pub struct Flags<T> {
    given: Map<String, Value>,
    _t: std::marker::PhantomData<T>,
}

#[cfg(feature = "cli")]
impl<T: OptionSet> Flags<T> {
    /// The options, checked.
    pub fn parse(&self) -> Result<T> {
        T::from_value(Value::Object(self.given.clone()), "options")
    }

    /// Whether the user gave this option (by its camelCase name).
    pub fn has(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }
}

#[cfg(feature = "cli")]
impl<T: OptionSet> clap::FromArgMatches for Flags<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        let mut f = Flags { given: Map::new(), _t: std::marker::PhantomData };
        f.update_from_arg_matches(m)?;
        Ok(f)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> std::result::Result<(), clap::Error> {
        for s in T::specs() {
            if let Some(raw) = m.get_one::<String>(&s.name) {
                // Numbers as numbers where they parse; anything else reaches the check as text.
                let v = match s.kind {
                    Kind::Choice { .. } | Kind::Text { .. } => Value::from(raw.as_str()),
                    _ => serde_json::from_str::<Value>(raw).ok().filter(Value::is_number).unwrap_or_else(|| Value::from(raw.as_str())),
                };
                self.given.insert(s.name.clone(), v);
            }
        }
        Ok(())
    }
}

#[cfg(feature = "cli")]
impl<T: OptionSet> clap::Args for Flags<T> {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for s in T::specs() {
            let default = match &s.default {
                Value::Null => String::new(),
                Value::String(d) => format!("; default: {d}"),
                // Numbers as JS writes them (1, not 1.0), so every front end shows the same text.
                d => match d.as_f64() {
                    Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("; default: {}", x as i64),
                    _ => format!("; default: {d}"),
                },
            };
            let arg = clap::Arg::new(s.name.clone())
                .long(s.flag.trim_start_matches("--").to_string())
                .value_name(match s.kind {
                    Kind::Int { .. } => "N",
                    Kind::Real { .. } => "X",
                    Kind::Choice { .. } => "WORD",
                    Kind::Text { .. } => "TEXT",
                })
                .allow_negative_numbers(true)
                .help(format!("{} [{}{default}]", s.help, s.kind.describe()));
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}
