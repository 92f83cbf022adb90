//! Byte sizes as configured: a plain number of bytes (`33554432`), or a number with a
//! unit (`"32MiB"`, `"1GB"`, `"512 KiB"`, `"100B"`). Decimal units (`kB`, `MB`, `GB`,
//! `TB`) are powers of 1000, binary units (`KiB`, `MiB`, `GiB`, `TiB`) powers of 1024;
//! units are case-insensitive and always mean bytes (`mb` is a megabyte, not a megabit).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A size as written: TOML gives an integer or a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SizeValue {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size string like \"32MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                Ok(SizeValue::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Units by lowercase name, with their multiplier.
const UNITS: [(&str, u64); 10] = [
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("", 1),
];

/// The number of bytes `value` stands for, at least 1.
pub(crate) fn parse_size(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Number(n) => u64::try_from(*n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("must be at least 1 byte, got {n}")),
        SizeValue::Text(text) => parse_text(text),
    }
}

fn parse_text(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size `{text}`, expected a number of bytes or like \"32MiB\" or \"1GB\"")
    };
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let (_, multiplier) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(bad)?;
    let bytes = number
        .checked_mul(*multiplier)
        .ok_or_else(|| format!("size `{text}` is too large"))?;
    if bytes == 0 {
        return Err(format!("must be at least 1 byte, got `{text}`"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Result<u64, String> {
        parse_size(&SizeValue::Text(t.to_owned()))
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(parse_size(&SizeValue::Number(1024)), Ok(1024));
        assert_eq!(text("32MiB"), Ok(32 << 20));
        assert_eq!(text("1GB"), Ok(1_000_000_000));
        assert_eq!(text(" 512 kib "), Ok(512 * 1024));
        assert_eq!(text("100B"), Ok(100));
        assert_eq!(text("7"), Ok(7));
        assert_eq!(text("2TiB"), Ok(2 << 40));
        assert_eq!(text("3kB"), Ok(3000));
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for bad in ["", "MiB", "1.5MiB", "-1MiB", "1 MiB B", "1Mbit", "ten"] {
            assert!(text(bad).is_err(), "{bad}");
        }
        assert_eq!(
            text("0MiB"),
            Err("must be at least 1 byte, got `0MiB`".into())
        );
        assert_eq!(
            parse_size(&SizeValue::Number(0)),
            Err("must be at least 1 byte, got 0".into())
        );
        assert_eq!(
            text("99999999999TiB"),
            Err("size `99999999999TiB` is too large".into())
        );
    }
}
