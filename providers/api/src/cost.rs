//! What a lab bills: each provider says what its resources consume per hour, in units of
//! items it prices (`ec2:t3.medium`, `eks:cluster`), from a price table it ships; the
//! core adds them up, with the lab file's own rates first.

use std::collections::BTreeMap;

/// Between `min` and `max` units of `item` billed per hour (a node pool scales between its
/// minimum and maximum size; most resources bill a fixed amount).
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    pub item: String,
    pub min: f64,
    pub max: f64,
}

impl Billed {
    /// `units` of `item`, whatever happens.
    pub fn fixed(item: impl Into<String>, units: f64) -> Self {
        Self { item: item.into(), min: units, max: units }
    }
}

/// A provider's shipped prices: USD per unit-hour by item, for one region, dated and with
/// where they came from, so that an instructor can judge and override them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    pub rates: BTreeMap<String, f64>,
    /// What the figures are, e.g. "AWS on-demand list prices, us-east-1, 2025".
    pub source: String,
}
