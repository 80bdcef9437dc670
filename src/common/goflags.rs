//! Go's command-line conventions, for the parts of nsqrs that must accept nsqd's command lines.
//!
//! Scripts, systemd units and client test harnesses start nsqd with Go `flag` syntax
//! (`-tcp-address v`, `--snappy`, `-verbose`) and Go duration strings (`1m30s`). This module owns
//! turning such a command line into one clap reads with the same meaning, and parsing Go
//! booleans and durations exactly as Go does, so every value means what it meant to nsqd.

use std::time::Duration;

/// Rewrites a command line written for Go's `flag` package into the spelling clap accepts.
///
/// `args` excludes the program name. `bool_flags` lists the long names (without dashes) that Go
/// treats as boolean: those never take the next argument as their value.
///
/// Every recognised flag comes out as a single `--name=value`, so a value that happens to start
/// with `-` cannot be mistaken for a flag by clap. Go stops reading flags at `--` or at the first
/// argument that is not a flag; from there on the arguments are passed through after a `--`, so
/// clap sees them as positional exactly as Go did.
pub fn normalize_go_args(args: &[String], bool_flags: &[&str]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;

        if arg == "--" {
            out.push("--".to_string());
            out.extend_from_slice(&args[i..]);
            return out;
        }
        // Go: an argument shorter than two bytes or not starting with `-` ends the flags.
        if arg.len() < 2 || !arg.starts_with('-') {
            out.push("--".to_string());
            out.extend_from_slice(&args[i - 1..]);
            return out;
        }

        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            // Go rejects this as "bad flag syntax"; left as typed, clap rejects it too and names it.
            out.push(arg.clone());
            continue;
        }

        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };

        if name == "h" || name == "help" {
            // Go's flag package answers -h and -help with the usage text even when undefined.
            out.push("--help".to_string());
            continue;
        }

        if bool_flags.contains(&name) {
            let value = match value {
                Some(v) => canonical_go_bool(v).unwrap_or(v),
                None => "true",
            };
            out.push(format!("--{name}={value}"));
            continue;
        }

        match value {
            Some(v) => out.push(format!("--{name}={v}")),
            None if i < args.len() => {
                // Go takes the next argument as the value whatever it looks like (even `-x`).
                out.push(format!("--{name}={}", args[i]));
                i += 1;
            }
            // Nothing left to take: clap reports the missing value under the flag's name.
            None => out.push(format!("--{name}")),
        }
    }
    out
}

/// Spells one of Go's `strconv.ParseBool` inputs as `true`/`false`, or `None` if Go rejects it.
fn canonical_go_bool(s: &str) -> Option<&'static str> {
    parse_go_bool(s).ok().map(|b| if b { "true" } else { "false" })
}

/// Parses a boolean the way Go's `strconv.ParseBool` (and so every Go bool flag) does.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean {s:?} (use true/false, t/f, 1/0, TRUE/FALSE, True/False)"
        )),
    }
}

/// Go's `time.Duration` limit: durations are signed 64-bit nanosecond counts.
const MAX_NANOS: u64 = 1 << 63;

/// Parses a duration with Go's `time.ParseDuration` syntax: a sequence of decimal numbers, each
/// with an optional fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), such as
/// `300ms`, `1.5h` or `2h45m`. A bare `0` needs no unit.
///
/// Go accepts negative durations, but no nsqd option has a meaning for one, so a negative value
/// is an error here rather than a silent surprise later.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {s:?}");
    let overflow = || format!("duration {s:?} is too large");

    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total: u64 = 0;
    while !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if first != b'.' && !first.is_ascii_digit() {
            return Err(invalid());
        }

        let (whole, after_whole) = leading_int(rest).ok_or_else(overflow)?;
        let has_whole = after_whole.len() != rest.len();
        rest = after_whole;

        let (mut frac, mut scale, mut has_frac) = (0u64, 1f64, false);
        if let Some(after_dot) = rest.strip_prefix('.') {
            let (f, sc, after_frac) = leading_fraction(after_dot);
            has_frac = after_frac.len() != after_dot.len();
            frac = f;
            scale = sc;
            rest = after_frac;
        }
        if !has_whole && !has_frac {
            // ".s" or "-.s": a dot with no digits on either side.
            return Err(invalid());
        }

        let unit_len = rest
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("missing unit in duration {s:?}"));
        }
        // The unit ends at an ASCII byte or at the end, so this split is on a char boundary.
        let (unit, after_unit) = rest.split_at(unit_len);
        rest = after_unit;
        let unit_ns = unit_nanos(unit).ok_or_else(|| {
            format!("unknown unit {unit:?} in duration {s:?} (use ns, us, µs, ms, s, m or h)")
        })?;

        if whole > MAX_NANOS / unit_ns {
            return Err(overflow());
        }
        let mut part = whole * unit_ns;
        if frac > 0 {
            // Go computes the fraction in float64 so fractions of hours stay nanosecond-exact;
            // doing the same keeps "1.000000001h"-style inputs identical to nsqd.
            part += (frac as f64 * (unit_ns as f64 / scale)) as u64;
            if part > MAX_NANOS {
                return Err(overflow());
            }
        }
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or_else(overflow)?;
    }

    if negative && total != 0 {
        return Err(format!("negative duration {s:?} is not allowed"));
    }
    if total > MAX_NANOS - 1 {
        return Err(overflow());
    }
    Ok(Duration::from_nanos(total))
}

/// Nanoseconds per unit, for exactly the unit names Go's `time` package knows.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC) alike.
        "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Consumes leading ASCII digits; `None` if the number exceeds a Go duration's range.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let mut x: u64 = 0;
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    for c in s[..digits].bytes() {
        if x > MAX_NANOS / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > MAX_NANOS {
            return None;
        }
    }
    Some((x, &s[digits..]))
}

/// Consumes the digits after a decimal point as `value / scale`. Digits beyond what fits are
/// dropped rather than rejected, as Go does, since they are below nanosecond precision anyway.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let mut x: u64 = 0;
    let mut scale = 1f64;
    let mut overflowed = false;
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    for c in s[..digits].bytes() {
        if overflowed {
            continue;
        }
        if x > (MAX_NANOS - 1) / 10 {
            overflowed = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > MAX_NANOS {
            overflowed = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[digits..])
}

/// Long names of a clap command's Go-style bool flags: those whose value is optional, which
/// is how the command lines here declare Go's bool flags.
pub fn bool_flags(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_positional())
        .filter(|a| a.get_num_args().is_some_and(|r| r.min_values() == 0))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// `normalize_go_args` with the bool flags of `cmd`.
pub fn normalize_for(cmd: &clap::Command, args: &[String]) -> Vec<String> {
    let bools = bool_flags(cmd);
    let bools: Vec<&str> = bools.iter().map(String::as_str).collect();
    normalize_go_args(args, &bools)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOLS: &[&str] = &["snappy", "verbose", "deflate", "tls-required", "version"];

    fn norm(args: &[&str]) -> Vec<String> {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        normalize_go_args(&owned, BOOLS)
    }

    #[test]
    fn all_four_value_spellings_agree() {
        for form in [
            &["-tcp-address", "127.0.0.1:1"][..],
            &["-tcp-address=127.0.0.1:1"],
            &["--tcp-address", "127.0.0.1:1"],
            &["--tcp-address=127.0.0.1:1"],
        ] {
            assert_eq!(norm(form), ["--tcp-address=127.0.0.1:1"], "{form:?}");
        }
    }

    #[test]
    fn bare_booleans_are_true_and_never_take_the_next_argument() {
        assert_eq!(
            norm(&["--snappy", "--mem-queue-size", "5", "-verbose"]),
            ["--snappy=true", "--mem-queue-size=5", "--verbose=true"]
        );
        // "false" after a bare bool is not its value: Go stops at this first non-flag.
        assert_eq!(norm(&["--snappy", "false"]), ["--snappy=true", "--", "false"]);
    }

    #[test]
    fn explicit_boolean_values_use_go_parsebool_spellings() {
        assert_eq!(norm(&["--snappy=false"]), ["--snappy=false"]);
        assert_eq!(norm(&["-deflate=0"]), ["--deflate=false"]);
        assert_eq!(norm(&["-deflate=T"]), ["--deflate=true"]);
        assert_eq!(norm(&["--snappy=True"]), ["--snappy=true"]);
        // Not a Go bool: passed through so the flag's own parser can accept or name it.
        assert_eq!(norm(&["--snappy=yes"]), ["--snappy=yes"]);
        assert_eq!(norm(&["--tls-required=tcp-https"]), ["--tls-required=tcp-https"]);
        assert_eq!(norm(&["--tls-required"]), ["--tls-required=true"]);
    }

    #[test]
    fn a_separate_value_is_taken_even_when_it_looks_like_a_flag() {
        assert_eq!(
            norm(&["--data-path", "-odd-dir", "--snappy"]),
            ["--data-path=-odd-dir", "--snappy=true"]
        );
        assert_eq!(norm(&["--node-id", "-1"]), ["--node-id=-1"]);
    }

    #[test]
    fn empty_values_survive() {
        assert_eq!(norm(&["--http-address="]), ["--http-address="]);
        assert_eq!(norm(&["-http-address", ""]), ["--http-address="]);
    }

    #[test]
    fn values_keep_everything_after_the_first_equals_sign() {
        assert_eq!(norm(&["--statsd-prefix=a=b=c"]), ["--statsd-prefix=a=b=c"]);
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            norm(&["--snappy", "--", "--tcp-address", "x"]),
            ["--snappy=true", "--", "--tcp-address", "x"]
        );
        assert_eq!(norm(&["--"]), ["--"]);
    }

    #[test]
    fn first_non_flag_ends_flags() {
        assert_eq!(
            norm(&["-verbose", "extra", "--snappy"]),
            ["--verbose=true", "--", "extra", "--snappy"]
        );
        assert_eq!(norm(&["-", "--snappy"]), ["--", "-", "--snappy"]);
        assert_eq!(norm(&["", "--snappy"]), ["--", "", "--snappy"]);
    }

    #[test]
    fn missing_value_at_the_end_is_left_for_clap_to_report() {
        assert_eq!(norm(&["--tcp-address"]), ["--tcp-address"]);
    }

    #[test]
    fn help_in_any_go_spelling() {
        for h in ["-h", "--h", "-help", "--help"] {
            assert_eq!(norm(&[h]), ["--help"], "{h}");
        }
    }

    #[test]
    fn bad_syntax_passes_through_unchanged() {
        assert_eq!(norm(&["---snappy"]), ["---snappy"]);
        assert_eq!(norm(&["-=x"]), ["-=x"]);
        assert_eq!(norm(&["--=x", "--snappy"]), ["--=x", "--snappy=true"]);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(norm(&[]).is_empty());
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_in_every_unit() {
        let cases: &[(&str, Duration)] = &[
            ("300ms", ms(300)),
            ("1.5h", Duration::from_secs(5400)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("1m30s", Duration::from_secs(90)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10\u{03bc}s", Duration::from_micros(10)),
            ("1ns", Duration::from_nanos(1)),
            ("60s", Duration::from_secs(60)),
            ("15m", Duration::from_secs(900)),
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0s", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("1h1m1s1ms1us1ns", Duration::from_nanos(3_661_001_001_001)),
            ("1.000000001s", Duration::from_nanos(1_000_000_001)),
            ("0.3333333333333333333h", Duration::from_nanos(1_200_000_000_000)),
            ("9223372036854775807ns", Duration::from_nanos(i64::MAX as u64)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input).as_ref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn duration_errors_say_what_is_wrong() {
        let err = |s: &str| parse_go_duration(s).unwrap_err();
        assert!(err("5").contains("missing unit"));
        assert!(err("1.5").contains("missing unit"));
        assert!(err("5x").contains("unknown unit \"x\""));
        assert!(err("5S").contains("unknown unit"));
        assert!(err("1d").contains("unknown unit"));
        assert!(err("-1s").contains("negative"));
        assert!(err("-1.5h").contains("negative"));
        for bad in ["", "-", "+", ".", ".s", "s", "1s ", " 1s", "1 s", "1s-2s", "--1s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(err("9223372036854775808ns").contains("too large"));
        assert!(err("3000000h").contains("too large"));
        assert!(err("99999999999999999999s").contains("too large"));
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false));
        }
        for bad in ["", "yes", "tRUE", "2", " true"] {
            assert!(parse_go_bool(bad).is_err(), "{bad:?}");
        }
    }
}
