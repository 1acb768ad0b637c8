//! Size budgets for CI: `--max-binary-size` and `--max-image-size`, checked against a build's
//! record after it is reported, so a pipeline fails with the numbers in front of it.

use std::fmt;

use crate::error::{Error, Result};
use crate::metrics::BuildRecord;
use crate::preset::Preset;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The compiled binary's size in bytes.
    Binary,
    /// The image as stored (`image.compressed_size`): gzip layers + config + manifest.
    Image,
}

impl Limit {
    /// The command-line flag that sets this budget.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Binary => "--max-binary-size",
            Limit::Image => "--max-image-size",
        }
    }

    /// The measured size this budget limits.
    pub fn measure(self, record: &BuildRecord) -> u64 {
        match self {
            Limit::Binary => record.binary_size,
            Limit::Image => record.image.compressed_size,
        }
    }
}

/// A maximum size, with the text the user wrote so messages can quote it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// What it limits.
    pub limit: Limit,
    /// The maximum, in bytes; a size equal to it passes.
    pub bytes: u64,
    /// As given on the command line (`400KB`).
    pub spelled: String,
}

impl Budget {
    /// Parses a budget for `limit` from `400000`, `400KB`, `1.5MiB`, ...; see [`parse_size`].
    pub fn parse(limit: Limit, text: &str) -> Result<Budget> {
        let bytes = parse_size(text).map_err(|reason| Error::InvalidSize {
            flag: limit.flag(),
            value: text.to_string(),
            reason,
        })?;
        Ok(Budget {
            limit,
            bytes,
            spelled: text.to_string(),
        })
    }

    /// The overrun, if `record` is over this budget.
    pub fn check(&self, record: &BuildRecord) -> Option<Exceeded> {
        let size = self.limit.measure(record);
        (size > self.bytes).then(|| Exceeded {
            preset: record.optimization_level,
            size,
            budget: self.clone(),
        })
    }
}

/// A build that went over a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The preset that was built.
    pub preset: Preset,
    /// The measured size in bytes.
    pub size: u64,
    /// The budget it went over.
    pub budget: Budget,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, how) = match self.budget.limit {
            Limit::Binary => ("binary", ""),
            Limit::Image => ("image", " stored"),
        };
        write!(
            f,
            "{}: {what} is {} bytes{how}, over the budget of {} bytes ({} {})",
            self.preset,
            self.size,
            self.budget.bytes,
            self.budget.limit.flag(),
            self.budget.spelled
        )
    }
}

/// The budgets of one command line; either may be unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets {
    /// `--max-binary-size`
    pub max_binary: Option<Budget>,
    /// `--max-image-size`
    pub max_image: Option<Budget>,
}

impl Budgets {
    /// Every budget `record` is over, binary first.
    pub fn check(&self, record: &BuildRecord) -> Vec<Exceeded> {
        [&self.max_binary, &self.max_image]
            .into_iter()
            .flatten()
            .filter_map(|budget| budget.check(record))
            .collect()
    }
}

/// Parses a size: bytes (`400000`, `400B`) or a number with a unit, `KB`/`MB`/`GB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB` (powers of 1024). Unit letters are case-insensitive and decimals
/// are allowed (`1.5MB`); the result is rounded to whole bytes. The error says what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    // Checked by hand because f64's parser also takes `inf`, `1e5` and signs.
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return Err(
            "expected a number of bytes, optionally with a unit, like 400000, 400KB or 1.5MiB"
                .into(),
        );
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit `{unit}`: use bytes, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|e| format!("`{number}` is not a number: {e}"))?;
    let bytes = (value * multiplier as f64).round();
    // 2^53: beyond it f64 no longer holds every whole number, and no binary is that big.
    if bytes > 9_007_199_254_740_992.0 {
        return Err("too large".into());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        for (text, bytes) in [
            ("400000", 400_000),
            ("0", 0),
            ("512B", 512),
            ("400KB", 400_000),
            ("400kb", 400_000),
            ("400 kB", 400_000),
            ("1.5MB", 1_500_000),
            ("2GB", 2_000_000_000),
            ("400KiB", 409_600),
            ("400kib", 409_600),
            ("1.5MiB", 1_572_864),
            ("1MIB", 1_048_576),
            ("0.5KiB", 512),
            ("1GiB", 1 << 30),
            (".5KB", 500),
            ("3.", 3),
            // Whole bytes: 0.1 KB is 100.00000000000001 in binary floating point.
            ("0.1KB", 100),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, reason) in [
            ("40XB", "unknown unit `XB`"),
            ("400K", "unknown unit `K`"),
            ("400 bytes", "unknown unit `bytes`"),
            ("", "expected a number"),
            ("KB", "expected a number"),
            ("-5", "expected a number"),
            ("1.2.3MB", "expected a number"),
            ("inf", "expected a number"),
            ("1e5", "unknown unit `e5`"),
            ("99999999999GiB", "too large"),
        ] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn budget_errors_name_the_flag() {
        let error = Budget::parse(Limit::Binary, "40XB").unwrap_err();
        assert!(error.is_usage());
        assert!(
            error
                .to_string()
                .starts_with("invalid --max-binary-size `40XB`: unknown unit `XB`"),
            "{error}"
        );
    }

    #[test]
    fn overruns_name_preset_size_and_budget() {
        let budget = Budget::parse(Limit::Binary, "400KB").unwrap();
        let exceeded = Exceeded {
            preset: Preset::Aggressive,
            size: 1_142_432,
            budget,
        };
        assert_eq!(
            exceeded.to_string(),
            "aggressive: binary is 1142432 bytes, over the budget of 400000 bytes (--max-binary-size 400KB)"
        );
        let image = Exceeded {
            preset: Preset::None,
            size: 4_000_001,
            budget: Budget::parse(Limit::Image, "4MB").unwrap(),
        };
        assert_eq!(
            image.to_string(),
            "none: image is 4000001 bytes stored, over the budget of 4000000 bytes (--max-image-size 4MB)"
        );
    }
}
