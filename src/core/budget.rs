//! Size budgets for CI: a maximum binary size and a maximum image size, checked against a
//! build's record once it is assembled and before anything is published (a build over budget
//! publishes nothing). A verdict is data ([`Exceeded`]); the caller decides what it means (the
//! CLI prints it and exits 1).

use crate::core::metrics::BuildRecord;
// The types are the record's (its `over_budget`); the checks of a request's budgets are here.
pub use crate::core::metrics::{Budget, Exceeded, Limit};

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

    /// What a record over budget says as its `error`.
    pub fn message(exceeded: &[Exceeded]) -> String {
        let each: Vec<String> = exceeded.iter().map(ToString::to_string).collect();
        format!(
            "over the size budget, so nothing was published: {}",
            each.join("; ")
        )
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
    use crate::core::preset::Preset;

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
