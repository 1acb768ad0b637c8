//! Size budgets for CI: a maximum binary size and a maximum image size, checked against a
//! build's record once it is assembled and before anything is published (a build over budget
//! publishes nothing). A verdict is data ([`Exceeded`]); the caller decides what it means (the
//! CLI prints it and exits 1).

use crate::core::metrics::BuildRecord;
// The types are the record's (its `over_budget`); the checks of a request's budgets are here.
pub use crate::core::metrics::{Budget, Exceeded, Limit};

/// The budgets of one request; either may be unset. In a request's JSON each is the size as
/// the user wrote it (`"max_binary": "400KB"`), read back by the same parser.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "Spelled", try_from = "Spelled")]
pub struct Budgets {
    /// The largest binary allowed.
    pub max_binary: Option<Budget>,
    /// The largest image, as stored, allowed.
    pub max_image: Option<Budget>,
}

/// [`Budgets`] as a request's JSON holds them.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Spelled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_binary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_image: Option<String>,
}

impl From<Budgets> for Spelled {
    fn from(budgets: Budgets) -> Spelled {
        Spelled {
            max_binary: budgets.max_binary.map(|b| b.spelled),
            max_image: budgets.max_image.map(|b| b.spelled),
        }
    }
}

impl TryFrom<Spelled> for Budgets {
    type Error = String;
    fn try_from(spelled: Spelled) -> Result<Budgets, String> {
        let parse = |limit, field: &str, text: Option<String>| {
            text.map(|text| {
                Budget::parse(limit, &text)
                    .map_err(|reason| format!("invalid {field} `{text}`: {reason}"))
            })
            .transpose()
        };
        Ok(Budgets {
            max_binary: parse(Limit::Binary, "max_binary", spelled.max_binary)?,
            max_image: parse(Limit::Image, "max_image", spelled.max_image)?,
        })
    }
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
