//! The cost estimate of a lab as its file wants it: what each resource bills per hour (as
//! its provider says), priced at the lab file's rates or else the provider's shipped
//! table; per student, for the whole lab, and until the lab expires. A pure computation.

use std::collections::BTreeMap;

use labctl_provider_api::lab::Budget;
use labctl_provider_api::{Node, ProviderSetup};
use serde::{Deserialize, Serialize};

/// USD per hour, between the lab at its smallest (node pools at their minimum) and at its
/// largest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    fn add(&mut self, other: Range) {
        self.min += other.min;
        self.max += other.max;
    }

    fn scaled(self, by: f64) -> Range {
        Range { min: self.min * by, max: self.max * by }
    }
}

/// One priced item across the lab: how much of the hourly cost it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item: String,
    pub units: Range,
    /// USD per unit-hour.
    pub rate: f64,
    pub per_hour: Range,
}

/// What the lab costs, in USD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub currency: String,
    /// The lab's whole hourly cost divided among its students.
    pub per_student_per_hour: Range,
    pub per_hour: Range,
    /// The hours until `expires` and the cost over them, when the lab expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_expiry: Option<Range>,
    /// Biggest first.
    pub items: Vec<Item>,
    /// Items with no price in the table or the lab file, counted as 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced: Vec<String>,
    /// Where the prices come from.
    pub prices: String,
}

impl Estimate {
    /// Prices `nodes` (the lab's desired resources) for `students` students, with
    /// `budget.rates` over `setup`'s table; `hours` until the lab expires, if it does.
    pub fn of(
        nodes: &[Node],
        setup: &dyn ProviderSetup,
        budget: &Budget,
        students: usize,
        hours: Option<f64>,
    ) -> Self {
        let table = setup.prices();
        let mut units: BTreeMap<String, Range> = BTreeMap::new();
        for node in nodes {
            for billed in setup.billed(&node.spec) {
                units.entry(billed.item).or_default().add(Range { min: billed.min, max: billed.max });
            }
        }
        let mut per_hour = Range::default();
        let (mut items, mut unpriced) = (vec![], vec![]);
        for (item, units) in units {
            let Some(rate) = budget.rates.get(&item).or_else(|| table.rates.get(&item)).copied() else {
                unpriced.push(item);
                continue;
            };
            let cost = units.scaled(rate);
            per_hour.add(cost);
            items.push(Item { item, units, rate, per_hour: cost });
        }
        items.sort_by(|a, b| b.per_hour.max.total_cmp(&a.per_hour.max).then_with(|| a.item.cmp(&b.item)));
        let prices = match (budget.rates.is_empty(), table.source.is_empty()) {
            (true, true) => "no prices (give rates in [lab.budget])".to_owned(),
            (true, false) => table.source,
            (false, true) => "the lab file's rates".to_owned(),
            (false, false) => format!("the lab file's rates, then {}", table.source),
        };
        let hours = hours.map(|h| h.max(0.0));
        Self {
            currency: "USD".into(),
            per_student_per_hour: per_hour.scaled(1.0 / students.max(1) as f64),
            per_hour,
            hours,
            until_expiry: hours.map(|h| per_hour.scaled(h)),
            items,
            unpriced,
            prices,
        }
    }

    /// Whether anything is billed or left unpriced: an estimate worth showing.
    pub fn is_worth_showing(&self) -> bool {
        !self.items.is_empty() || !self.unpriced.is_empty()
    }

    /// Why `budget` refuses this estimate (at the lab's largest), if it does.
    pub fn over(&self, budget: &Budget) -> Option<String> {
        let mut over = vec![];
        if let Some(limit) = budget.per_student_per_hour {
            if exceeds(self.per_student_per_hour.max, limit) {
                over.push(format!(
                    "{} per student per hour, over the budget of {}",
                    usd(self.per_student_per_hour.max),
                    usd(limit)
                ));
            }
        }
        if let (Some(limit), Some(total)) = (budget.total, self.until_expiry) {
            if exceeds(total.max, limit) {
                over.push(format!(
                    "{} until the lab expires, over the budget of {}",
                    usd(total.max),
                    usd(limit)
                ));
            }
        }
        let unpriced =
            (budget.per_student_per_hour.is_some() || budget.total.is_some()) && !self.unpriced.is_empty();
        if unpriced {
            over.push(format!("no price for {} to check the budget with", self.unpriced.join(", ")));
        }
        if over.is_empty() {
            return None;
        }
        let biggest: Vec<String> =
            self.items.iter().take(3).map(|i| format!("{} {}/h", i.item, usd(i.per_hour.max))).collect();
        let biggest =
            if biggest.is_empty() { String::new() } else { format!(" (biggest: {})", biggest.join(", ")) };
        Some(format!("the estimate is {}{biggest}", over.join("; ")))
    }
}

/// Whether `amount` is over `limit` by more than float rounding (a lab that costs exactly
/// its budget fits it).
fn exceeds(amount: f64, limit: f64) -> bool {
    amount > limit * (1.0 + 1e-9)
}

/// An amount of USD, to the cent, or to the tenth of a cent below a dollar.
pub fn usd(amount: f64) -> String {
    if amount < 1.0 && amount > 0.0 {
        format!("${amount:.3}")
    } else {
        format!("${amount:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labctl_provider_api::cost::{Billed, PriceTable};
    use labctl_provider_api::{Connected, Endpoints, ResourceSpec, StudentResources, Tags};

    /// A provider billing one `small` per VM and between 0 and 2 `gpu` per pool.
    #[derive(Debug, serde::Serialize)]
    struct Priced;

    impl ProviderSetup for Priced {
        fn name(&self) -> &'static str {
            "priced"
        }
        fn rate_limit(&self) -> Option<f64> {
            None
        }
        fn expand_student(
            &self,
            _: &labctl_provider_api::lab::Lab,
            _: &labctl_provider_api::lab::Cohort,
            _: &labctl_provider_api::lab::Student,
        ) -> Vec<Node> {
            vec![]
        }
        fn connect(&self, _: &str, _: &std::path::Path) -> Connected {
            unreachable!("not connected in these tests")
        }
        fn endpoints(&self, _: &StudentResources) -> Endpoints {
            Endpoints::default()
        }
        fn billed(&self, spec: &ResourceSpec) -> Vec<Billed> {
            match spec.kind.as_str() {
                "vm" => vec![Billed::fixed("small", 1.0)],
                "pool" => vec![Billed { item: "gpu".into(), min: 0.0, max: 2.0 }],
                _ => vec![],
            }
        }
        fn prices(&self) -> PriceTable {
            PriceTable {
                rates: [("small".to_owned(), 0.05), ("gpu".to_owned(), 0.5)].into(),
                source: "test".into(),
            }
        }
    }

    fn nodes(kinds: &[&str]) -> Vec<Node> {
        kinds
            .iter()
            .map(|k| Node::new("priced", format!("x.{k}"), k, &(), &Tags::default(), vec![]))
            .collect()
    }

    #[test]
    fn the_estimate_adds_units_prices_them_and_divides_among_students() {
        let lab = nodes(&["vm", "vm", "vm", "vm", "pool", "bucket"]);
        let e = Estimate::of(&lab, &Priced, &Budget::default(), 4, Some(10.0));
        assert_eq!(e.per_hour, Range { min: 0.2, max: 1.2 });
        assert_eq!(e.per_student_per_hour, Range { min: 0.05, max: 0.3 });
        assert_eq!(e.until_expiry, Some(Range { min: 2.0, max: 12.0 }));
        assert_eq!(e.items.iter().map(|i| i.item.as_str()).collect::<Vec<_>>(), ["gpu", "small"]);

        // The lab file's rate wins; an item nobody prices is named, and a budget refuses it.
        let budget = Budget { rates: [("small".to_owned(), 0.1)].into(), ..Budget::default() };
        let e = Estimate::of(&lab, &Priced, &budget, 4, None);
        assert_eq!(e.per_hour, Range { min: 0.4, max: 1.4 });
        assert_eq!(e.prices, "the lab file's rates, then test");
        assert_eq!(e.until_expiry, None);
    }

    #[test]
    fn a_budget_refuses_the_largest_estimate_naming_figures_and_biggest_items() {
        let lab = nodes(&["vm", "vm", "pool"]);
        let e = Estimate::of(&lab, &Priced, &Budget::default(), 2, Some(100.0));
        let fits = Budget { per_student_per_hour: Some(0.6), total: Some(110.0), ..Budget::default() };
        assert_eq!(e.over(&fits), None);
        let tight = Budget { per_student_per_hour: Some(0.5), total: Some(100.0), ..Budget::default() };
        assert_eq!(
            e.over(&tight).unwrap(),
            "the estimate is $0.550 per student per hour, over the budget of $0.500; $110.00 until \
             the lab expires, over the budget of $100.00 (biggest: gpu $1.00/h, small $0.100/h)"
        );
    }
}
