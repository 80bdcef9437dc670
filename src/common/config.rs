//! The TOML layer beneath the daemons' flags (`--config file.toml`): reading the file, and
//! reading each value the way nsqd's option resolver does (quoted integers, Go durations or
//! bare milliseconds, comma-separated lists). Which key sets which option is each daemon's
//! command line's business; every error here is one line, for the one-line error contract.

use std::time::Duration;

use crate::common::goflags::{parse_go_bool, parse_go_duration};

/// Reads and parses a `--config` TOML file; every failure is one line naming the file.
pub fn load_config_table(path: &str) -> Result<toml::Table, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("failed to load config file {path} - {e}"))?;
    toml::from_str(&text).map_err(|e| {
        // toml's own Display draws the offending line over several lines; keep one line.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(n) => format!("failed to load config file {path} - line {n}: {}", e.message()),
            None => format!("failed to load config file {path} - {}", e.message()),
        }
        .replace('\n', "; ")
    })
}

fn type_error(want: &str, v: &toml::Value) -> String {
    format!("expected {want}, got {} {v}", v.type_str())
}

pub fn cfg_string(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        _ => Err(type_error("a string", v)),
    }
}

/// Integers may also be quoted, as nsqd's option resolver accepts.
pub fn cfg_int(v: &toml::Value) -> Result<i64, String> {
    match v {
        toml::Value::Integer(i) => Ok(*i),
        toml::Value::String(s) => s.parse().map_err(|_| format!("expected an integer, got {s:?}")),
        _ => Err(type_error("an integer", v)),
    }
}

pub fn cfg_bool(v: &toml::Value) -> Result<bool, String> {
    match v {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(s) => parse_go_bool(s),
        _ => Err(type_error("a boolean", v)),
    }
}

/// A Go duration string, or a bare integer which nsqd's option resolver reads as milliseconds.
pub fn cfg_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => parse_go_duration(s),
        toml::Value::Integer(ms) => u64::try_from(*ms)
            .map(Duration::from_millis)
            .map_err(|_| format!("negative duration {ms} is not allowed")),
        _ => Err(type_error("a duration string such as \"2s\"", v)),
    }
}

/// An array of strings, or one comma-separated string, as nsqd's option resolver accepts.
pub fn cfg_strings(v: &toml::Value) -> Result<Vec<String>, String> {
    match v {
        toml::Value::String(s) => Ok(s.split(',').map(str::to_string).collect()),
        toml::Value::Array(items) => items.iter().map(cfg_string).collect(),
        _ => Err(type_error("an array of strings", v)),
    }
}

/// An array of numbers, or one comma-separated string, as nsqd's option resolver accepts.
pub fn cfg_floats(v: &toml::Value) -> Result<Vec<f64>, String> {
    let one = |item: &toml::Value| match item {
        toml::Value::Float(f) => Ok(*f),
        toml::Value::Integer(i) => Ok(*i as f64),
        _ => Err(type_error("a number", item)),
    };
    match v {
        toml::Value::String(s) => s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse()
                    .map_err(|_| format!("expected a number, got {p:?}"))
            })
            .collect(),
        toml::Value::Array(items) => items.iter().map(one).collect(),
        _ => Err(type_error("an array of numbers", v)),
    }
}

/// The text nsqd's special-cased keys are parsed from: nsqd formats whatever TOML value it got
/// (`tls_required = true` and `tls_required = "true"` mean the same).
pub fn cfg_scalar_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(type_error("a string", v)),
    }
}
