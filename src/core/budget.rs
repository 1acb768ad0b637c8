//! Size budgets for CI: a maximum binary size and a maximum image size, checked against a
//! build's record once it is assembled and before anything is published (a build over budget
//! publishes nothing). A verdict is data ([`Exceeded`]); the caller decides what it means (the
//! CLI prints it and exits 1).

use serde::{Deserialize, Serialize};

use crate::core::metrics::BuildRecord;
use crate::core::preset::Preset;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// The compiled binary's size in bytes.
    Binary,
    /// The image as stored (`image.compressed_size`): gzip layers + config + manifest.
    Image,
}

impl Limit {
    /// The measured size this budget limits.
    pub fn measure(self, record: &BuildRecord) -> u64 {
        match self {
            Limit::Binary => record.binary_size,
            Limit::Image => record.image.compressed_size,
        }
    }
}

/// A maximum size, with the text the user wrote so messages can quote it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// What it limits.
    pub limit: Limit,
    /// The maximum, in bytes; a size equal to it passes.
    pub bytes: u64,
    /// As the user wrote it (`400KB`).
    pub spelled: String,
}

impl Budget {
    /// A budget for `limit` from a size such as `400000`, `400KB` or `1.5MiB`; the error
    /// says what is wrong with the text (see [`parse_size`](crate::core::metrics::parse_size)).
    pub fn parse(limit: Limit, text: &str) -> Result<Budget, String> {
        Ok(Budget {
            limit,
            bytes: crate::core::metrics::parse_size(text)?,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exceeded {
    /// The preset that was built.
    pub preset: Preset,
    /// The measured size in bytes.
    pub size: u64,
    /// The budget it went over.
    pub budget: Budget,
}

impl std::fmt::Display for Exceeded {
    /// `aggressive: binary is 1142432 bytes, over the budget of 400000 bytes (400KB)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, how) = match self.budget.limit {
            Limit::Binary => ("binary", ""),
            Limit::Image => ("image", " stored"),
        };
        write!(
            f,
            "{}: {what} is {} bytes{how}, over the budget of {} bytes ({})",
            self.preset, self.size, self.budget.bytes, self.budget.spelled
        )
    }
}

/// The budgets of one request; either may be unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets {
    /// The largest binary allowed.
    pub max_binary: Option<Budget>,
    /// The largest image, as stored, allowed.
    pub max_image: Option<Budget>,
}

impl Budgets {
    /// Whether no budget is set.
    pub fn is_empty(&self) -> bool {
        self.max_binary.is_none() && self.max_image.is_none()
    }

    /// Every budget `record` is over, binary first.
    pub fn check(&self, record: &BuildRecord) -> Vec<Exceeded> {
        [&self.max_binary, &self.max_image]
            .into_iter()
            .flatten()
            .filter_map(|budget| budget.check(record))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metrics::sample_record;

    #[test]
    fn a_size_equal_to_the_budget_passes() {
        let record = sample_record(Preset::Aggressive, 400_000, 200_000);
        let budgets = Budgets {
            max_binary: Some(Budget::parse(Limit::Binary, "400KB").unwrap()),
            max_image: Some(Budget::parse(Limit::Image, "150KB").unwrap()),
        };
        let exceeded = budgets.check(&record);
        assert_eq!(exceeded.len(), 1, "{exceeded:?}");
        assert_eq!(exceeded[0].budget.limit, Limit::Image);
        assert_eq!(
            (exceeded[0].size, exceeded[0].budget.bytes),
            (200_000, 150_000)
        );
    }
}
