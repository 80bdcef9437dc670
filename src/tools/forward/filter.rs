//! nsq_to_nsq's JSON filters: `--require-json-field` (with `--require-json-value`) lets only
//! matching messages through, `--whitelist-json-field` rewrites a message to those fields.

use serde_json::{Map, Value};

/// What the filters make of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward this body (the original, or the whitelisted rewrite).
    Pass(Vec<u8>),
    /// Not forwarded, and done with: finished without being sent.
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The body is not a JSON object, so no field can be checked or kept.
    NotJson,
    /// The required field is missing, or has another value.
    NoMatch,
}

#[derive(Debug, Clone, Default)]
pub struct JsonFilter {
    pub require_field: Option<String>,
    pub require_value: Option<String>,
    pub whitelist: Vec<String>,
}

impl JsonFilter {
    /// `--require-json-value` without `--require-json-field` would test nothing.
    pub fn check(&self) -> Result<(), String> {
        if self.require_value.is_some() && self.require_field.is_none() {
            return Err("--require-json-value needs --require-json-field".into());
        }
        Ok(())
    }

    pub fn is_active(&self) -> bool {
        self.require_field.is_some() || !self.whitelist.is_empty()
    }

    pub fn apply(&self, body: &[u8]) -> Verdict {
        if !self.is_active() {
            return Verdict::Pass(body.to_vec());
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Verdict::Skip(SkipReason::NotJson);
        };
        if let Some(field) = &self.require_field {
            let matches = match (object.get(field), &self.require_value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(v), Some(want)) => value_is(v, want),
            };
            if !matches {
                return Verdict::Skip(SkipReason::NoMatch);
            }
        }
        if self.whitelist.is_empty() {
            return Verdict::Pass(body.to_vec());
        }
        let kept: Map<String, Value> = self
            .whitelist
            .iter()
            .filter_map(|k| object.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        Verdict::Pass(serde_json::to_vec(&Value::Object(kept)).expect("JSON of JSON values"))
    }
}

/// nsq_to_nsq's comparison: a string field equals the text; a number field equals the text
/// read as a number; anything else never matches.
fn value_is(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Number(n) => match (n.as_f64(), want.parse::<f64>()) {
            (Some(have), Ok(want)) => have == want,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(field: Option<&str>, value: Option<&str>, keep: &[&str]) -> JsonFilter {
        JsonFilter {
            require_field: field.map(String::from),
            require_value: value.map(String::from),
            whitelist: keep.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn without_filters_everything_passes_unparsed() {
        assert_eq!(
            filter(None, None, &[]).apply(b"not json"),
            Verdict::Pass(b"not json".to_vec())
        );
    }

    #[test]
    fn required_field_and_value() {
        let f = filter(Some("kind"), Some("order"), &[]);
        assert!(matches!(f.apply(br#"{"kind":"order","n":1}"#), Verdict::Pass(_)));
        assert_eq!(
            f.apply(br#"{"kind":"refund"}"#),
            Verdict::Skip(SkipReason::NoMatch)
        );
        assert_eq!(f.apply(br#"{"n":1}"#), Verdict::Skip(SkipReason::NoMatch));
        assert_eq!(f.apply(b"[1,2]"), Verdict::Skip(SkipReason::NotJson));
        let n = filter(Some("n"), Some("5"), &[]);
        assert!(matches!(n.apply(br#"{"n":5.0}"#), Verdict::Pass(_)));
        assert!(matches!(n.apply(br#"{"n":"5"}"#), Verdict::Pass(_)));
        assert_eq!(n.apply(br#"{"n":true}"#), Verdict::Skip(SkipReason::NoMatch));
        let any = filter(Some("n"), None, &[]);
        assert!(matches!(any.apply(br#"{"n":null}"#), Verdict::Pass(_)));
    }

    #[test]
    fn whitelist_keeps_only_those_fields() {
        let f = filter(None, None, &["b", "a", "missing"]);
        assert_eq!(
            f.apply(br#"{"a":1,"b":{"x":[2]},"c":3}"#),
            Verdict::Pass(br#"{"a":1,"b":{"x":[2]}}"#.to_vec())
        );
        assert!(filter(None, Some("x"), &[]).check().is_err());
    }
}
