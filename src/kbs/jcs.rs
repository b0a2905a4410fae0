//! JSON Canonicalization Scheme (RFC 8785).
//!
//! Trustee hashes the runtime data as JCS bytes (`serde_json_canonicalizer`
//! on the server), so the guest must produce the very same bytes: object
//! members sorted by their names' UTF-16 code units, no insignificant
//! whitespace, strings with the minimal escaping of ECMAScript's
//! `JSON.stringify`, numbers as ECMAScript prints an IEEE-754 double.

use std::cmp::Ordering;
use std::fmt::Write;

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JcsError {
    #[error("number {0} cannot be represented exactly as an IEEE-754 double")]
    InexactNumber(String),
    #[error("number is not finite")]
    NonFinite,
}

/// The canonical serialisation of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out.into_bytes())
}

fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Orders strings by UTF-16 code units (RFC 8785 §3.2.3), which differs from
/// Rust's byte order for characters above U+FFFF versus U+E000..U+FFFF.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &serde_json::Number) -> Result<(), JcsError> {
    // An integer is exact when it survives the trip through f64 (compared
    // in i128, where 2^63 and 2^64 do not saturate).
    // `as` from f64 saturates: an inexact value compares unequal, which is
    // the check.
    #[allow(clippy::cast_possible_truncation)]
    let f = if let Some(i) = n.as_i64() {
        let f = i as f64;
        if f as i128 != i128::from(i) {
            return Err(JcsError::InexactNumber(n.to_string()));
        }
        f
    } else if let Some(u) = n.as_u64() {
        let f = u as f64;
        if f as i128 != i128::from(u) {
            return Err(JcsError::InexactNumber(n.to_string()));
        }
        f
    } else {
        n.as_f64().ok_or(JcsError::NonFinite)?
    };
    write_f64(out, f)
}

/// ECMAScript `Number.prototype.toString` for a double (ECMA-262 §6.1.6.1.20),
/// which RFC 8785 §3.2.2.3 prescribes.
fn write_f64(out: &mut String, f: f64) -> Result<(), JcsError> {
    if !f.is_finite() {
        return Err(JcsError::NonFinite);
    }
    if f == 0.0 {
        out.push('0'); // also for -0
        return Ok(());
    }
    if f < 0.0 {
        out.push('-');
    }
    // `{:e}` gives the shortest digit count k that round-trips, but not
    // always the k-digit string closest to the value (ES6 wants the closest,
    // ties to even); formatting with k digits of precision gives exactly
    // that (Rust's exact mode rounds half to even).
    let shortest = format!("{:e}", f.abs());
    let k = shortest.split_once('e').map_or(shortest.len(), |(m, _)| m.chars().filter(char::is_ascii_digit).count());
    let sci = format!("{:.*e}", k.saturating_sub(1), f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    // Number of significant digits: at most 17 for a double.
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    let k = digits.len() as i32;
    let n = exp + 1; // position of the decimal point relative to the digits
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k).unsigned_abs() as usize));
    } else if 0 < n && n <= 21 {
        let n = n.unsigned_abs() as usize;
        out.push_str(&digits[..n]);
        out.push('.');
        out.push_str(&digits[n..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', n.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        let _ = write!(out, "{}", (n - 1).abs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs(v: &Value) -> String {
        String::from_utf8(to_vec(v).unwrap()).unwrap()
    }

    /// The hash input that a live Trustee KBS accepted (research/kbs.md §5).
    #[test]
    fn trustee_runtime_data_is_byte_exact() {
        let v = json!({
            "tee-pubkey": {
                "kty": "EC",
                "crv": "P-256",
                "alg": "ECDH-ES+A256KW",
                "x": "Cwe3UOWXOiv2xdNcFxHIc2K4IZA6qhcrFgGbWya_7oc",
                "y": "TMDdlkwFV19qSQ4DkTLnkEHyb1HpjWzOuSimj1Bt_nY"
            },
            "nonce": "xrbGvHykm71xPXl5h6Wv9IE5FKZ7+jR0jyH6ekt1GYc=",
            "additional-evidence": ""
        });
        assert_eq!(
            jcs(&v),
            r#"{"additional-evidence":"","nonce":"xrbGvHykm71xPXl5h6Wv9IE5FKZ7+jR0jyH6ekt1GYc=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"Cwe3UOWXOiv2xdNcFxHIc2K4IZA6qhcrFgGbWya_7oc","y":"TMDdlkwFV19qSQ4DkTLnkEHyb1HpjWzOuSimj1Bt_nY"}}"#
        );
    }

    /// The SHA-384 of those bytes was the accepted sample `report_data`.
    #[test]
    fn trustee_runtime_data_hashes_to_the_accepted_report_data() {
        use base64::Engine;
        use sha2::{Digest, Sha384};
        let bytes = br#"{"additional-evidence":"","nonce":"xrbGvHykm71xPXl5h6Wv9IE5FKZ7+jR0jyH6ekt1GYc=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"Cwe3UOWXOiv2xdNcFxHIc2K4IZA6qhcrFgGbWya_7oc","y":"TMDdlkwFV19qSQ4DkTLnkEHyb1HpjWzOuSimj1Bt_nY"}}"#;
        let digest = Sha384::digest(bytes);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(digest),
            "Ji94mitjEJNX2RJZ6uySf8g28i8o9O8e7VfyNRR/EqsD9rh3j2s0jsyp3K0ldQZK"
        );
    }

    /// RFC 8785 §3.2.2.2: minimal escaping; U+007F and non-ASCII stay literal.
    #[test]
    fn strings_use_minimal_escaping() {
        let v = json!("\u{20ac}$\u{f}\u{a}A'\u{42}\u{22}\u{5c}\\\"/\u{7f}\u{8}\u{c}\t\r\u{1f}");
        assert_eq!(jcs(&v), "\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\u{7f}\\b\\f\\t\\r\\u001f\"");
    }

    /// RFC 8785 §3.2.3 sorting example: UTF-16 code unit order.
    #[test]
    fn members_sort_by_utf16_code_units() {
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{80}": "Control",
            "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        let order: Vec<String> = {
            let s = jcs(&v);
            let parsed: Vec<&str> = s.split("\":\"").collect();
            parsed[1..].iter().map(|p| p.split('"').next().unwrap().to_string()).collect()
        };
        assert_eq!(
            order,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
    }

    #[test]
    fn nesting_and_literals() {
        let v = json!({"b": [true, false, null, {"z": 1, "a": []}], "a": {}});
        assert_eq!(jcs(&v), r#"{"a":{},"b":[true,false,null,{"a":[],"z":1}]}"#);
    }

    /// RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
    #[test]
    fn numbers_follow_ecmascript() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
            // Found by the kbs_jcs fuzz target: the shortest text that reads
            // back as this double (a parser that rounds imprecisely, as
            // serde_json does without `float_roundtrip`, lands one ULP below).
            (0x4afb609540a3ca02, "1.6388888888888889e+53"),
        ];
        for (bits, want) in cases {
            let mut out = String::new();
            write_f64(&mut out, f64::from_bits(*bits)).unwrap();
            assert_eq!(&out, want, "bits {bits:#018x}");
        }
        assert_eq!(write_f64(&mut String::new(), f64::NAN), Err(JcsError::NonFinite));
        assert_eq!(write_f64(&mut String::new(), f64::INFINITY), Err(JcsError::NonFinite));
    }

    /// Found by the kbs_jcs fuzz target: a large double prints as an
    /// integer that no double equals, so reading the canonical text back
    /// gives a u64 that is refused rather than rounded.
    #[test]
    fn a_large_double_prints_as_an_integer_refused_on_reading_back() {
        let text = jcs(&json!(5_139_325_592_627_444_838.34f64));
        assert_eq!(text, "5139325592627445000");
        let again: Value = serde_json::from_str(&text).unwrap();
        assert!(matches!(to_vec(&again), Err(JcsError::InexactNumber(_))));
    }

    #[test]
    fn integers_must_be_exact_doubles() {
        assert_eq!(jcs(&json!(42)), "42");
        assert_eq!(jcs(&json!(-7)), "-7");
        assert_eq!(jcs(&json!(9007199254740992u64)), "9007199254740992");
        assert_eq!(to_vec(&json!(9007199254740993u64)), Err(JcsError::InexactNumber("9007199254740993".into())));
        assert!(to_vec(&json!(u64::MAX)).is_err());
        assert!(to_vec(&json!(i64::MAX)).is_err());
    }
}
