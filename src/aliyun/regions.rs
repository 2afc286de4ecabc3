//! Which regions the gateway will send to: Alibaba Cloud's public ECS regions by default (from
//! [`catalog`]), an operator's list, or any region that is a valid DNS label (`*`).
//!
//! A region outside the set is refused before anything is sent, so a misspelt region costs no DNS
//! lookup and never looks like an outage.

use std::collections::BTreeSet;
use std::fmt;

use crate::aliyun::catalog;
use crate::aliyun::request::RegionId;

/// The regions the gateway serves.
#[derive(Clone, PartialEq, Eq)]
pub enum Regions {
    /// Any region ID that is a valid DNS label (`--regions '*'`).
    Any,
    /// Only these.
    Listed(BTreeSet<String>),
}

/// A `--regions` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionsError {
    /// The list names nothing.
    #[error("must name at least one region, or '*' for any")]
    Empty,
    /// An entry is not a valid region ID.
    #[error("{entry:?} {rule}")]
    Invalid {
        /// The entry as given.
        entry: String,
        /// The rule it broke.
        rule: &'static str,
    },
}

impl Regions {
    /// The public ECS regions.
    pub fn public() -> Self {
        Self::Listed(catalog::public_regions().iter().cloned().collect())
    }

    /// Parses `*` or a comma-separated list of region IDs (spaces around entries allowed).
    pub fn parse(value: &str) -> Result<Self, RegionsError> {
        if value.trim() == "*" {
            return Ok(Self::Any);
        }
        let mut listed = BTreeSet::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let region = RegionId::parse(entry).map_err(|rule| RegionsError::Invalid {
                entry: entry.to_owned(),
                rule,
            })?;
            listed.insert(region.as_str().to_owned());
        }
        if listed.is_empty() {
            return Err(RegionsError::Empty);
        }
        Ok(Self::Listed(listed))
    }

    /// Whether the gateway may send a request for `region`.
    pub fn allows(&self, region: &RegionId) -> bool {
        match self {
            Self::Any => true,
            Self::Listed(listed) => listed.contains(region.as_str()),
        }
    }
}

impl Default for Regions {
    fn default() -> Self {
        Self::public()
    }
}

impl fmt::Debug for Regions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Listed(listed) => f.debug_set().entries(listed).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> RegionId {
        RegionId::parse(r).unwrap()
    }

    #[test]
    fn the_default_refuses_a_misspelt_region() {
        let regions = Regions::default();
        assert!(regions.allows(&region("cn-hangzhou")));
        assert!(!regions.allows(&region("cn-hangzou")));
    }

    #[test]
    fn a_list_allows_exactly_its_entries() {
        let regions = Regions::parse(" cn-hangzhou, private-1 ,").unwrap();
        assert!(regions.allows(&region("private-1")));
        assert!(regions.allows(&region("cn-hangzhou")));
        assert!(!regions.allows(&region("cn-shanghai")));
    }

    #[test]
    fn a_star_allows_any_valid_region() {
        assert!(Regions::parse("*").unwrap().allows(&region("xx-nowhere-9")));
    }

    #[test]
    fn bad_lists_are_refused_with_the_entry_and_rule() {
        assert_eq!(Regions::parse(" , "), Err(RegionsError::Empty));
        let err = Regions::parse("cn-hangzhou,Bad_Region").unwrap_err();
        assert!(err.to_string().contains("\"Bad_Region\""), "{err}");
        assert!(Regions::parse("cn-hangzhou,*").is_err());
    }
}
