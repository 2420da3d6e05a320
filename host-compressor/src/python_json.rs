//! `json.dumps` as Python writes it by default, so the `.walsh` header is byte-identical to the
//! Python compressor's: `", "` and `": "` separators, `ensure_ascii` escapes, Python float repr.

use walsh_engine::format::MAX_HEADER_LEN;

use crate::pickle::Value;

/// Serialises a pickle value (dicts keep their order). Fails on values JSON cannot hold, and
/// once the output is longer than a `.walsh` header may be: pickle values are shared, so a small
/// pickle can describe a value whose text is exponentially long.
pub fn dumps(value: &Value) -> Result<String, String> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut String) -> Result<(), String> {
    // Every call writes at least one byte, so this bounds the calls as well as the output.
    if out.len() > MAX_HEADER_LEN {
        return Err(format!("the JSON is longer than the {MAX_HEADER_LEN}-byte header limit"));
    }
    match value {
        Value::None => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => string(s, out),
        Value::Tuple(items) | Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Dict(items) => {
            out.push('{');
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                // json.dumps turns int, float, bool and None keys into strings.
                match k {
                    Value::Str(s) => string(s, out),
                    Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::None => {
                        let mut key = String::new();
                        write(k, &mut key)?;
                        string(&key, out);
                    }
                    other => return Err(format!("{} cannot be a JSON key", other.describe())),
                }
                out.push_str(": ");
                write(v, out)?;
            }
            out.push('}');
        }
        other => return Err(format!("{} cannot be written as JSON", other.describe())),
    }
    Ok(())
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in [-4, 16), otherwise `d.ddde±XX`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    // Rust's `{:e}` gives the same shortest round-trip digits: "1.5e-5", "1e0".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let fixed = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{fixed}")
    } else {
        let mantissa = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python_repr() {
        // Expected strings are Python 3's repr() of the same values.
        for (x, py) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (0.0003, "0.0003"),
            (0.0001, "0.0001"),
            (1e-05, "1e-05"),
            (1.5e-05, "1.5e-05"),
            (6e-4, "0.0006"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.3333333333333333"),
        ] {
            assert_eq!(float_repr(x), py, "{x}");
        }
    }

    #[test]
    fn dicts_strings_and_keys_like_json_dumps() {
        let v = Value::dict(vec![
            (Value::str("n"), Value::Int(8)),
            (Value::str("bias"), Value::Bool(false)),
            (Value::str("name"), Value::str("caf\u{e9} \"q\"\n\u{1f600}")),
            (Value::Int(1), Value::list(vec![Value::None, Value::Float(0.5)])),
        ]);
        assert_eq!(dumps(&v).unwrap(), r#"{"n": 8, "bias": false, "name": "caf\u00e9 \"q\"\n\ud83d\ude00", "1": [null, 0.5]}"#);
    }

    #[test]
    fn output_is_capped_at_the_header_limit() {
        // [[…[None, None]…], […]]: 2^40 leaves, 41 shared lists.
        let mut v = Value::list(vec![Value::None, Value::None]);
        for _ in 0..40 {
            v = Value::list(vec![v.clone(), v]);
        }
        let err = dumps(&v).unwrap_err();
        assert!(err.contains("header limit"), "{err}");
        let small = Value::list(vec![Value::str(&"x".repeat(MAX_HEADER_LEN - 4))]);
        assert_eq!(dumps(&small).unwrap().len(), MAX_HEADER_LEN);
    }
}
