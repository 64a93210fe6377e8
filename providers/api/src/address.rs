//! Resource addresses: where a resource sits in a lab (`student["ada"].bucket`,
//! `cluster["main"].node_pool["gpu"]`, `network`).

use std::fmt;

/// A resource's stable address, built from its parts rather than by hand.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(String);

impl Address {
    /// A lab-wide resource: `network`, `artifacts`.
    pub fn shared(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// `student["<id>"]`, the root of every address of the student.
    pub fn student(student: &str) -> Self {
        Self::top("student", student)
    }

    /// A keyed top-level resource: `<what>["<key>"]`.
    pub fn top(what: &str, key: &str) -> Self {
        Self(format!("{what}[\"{key}\"]"))
    }

    /// A child: `.<what>`.
    pub fn child(&self, what: &str) -> Self {
        Self(format!("{}.{what}", self.0))
    }

    /// A keyed child: `.<what>["<key>"]`.
    pub fn keyed(&self, what: &str, key: &str) -> Self {
        Self(format!("{}.{what}[\"{key}\"]", self.0))
    }

    /// An indexed child: `.<what>[<i>]`.
    pub fn indexed(&self, what: &str, index: u32) -> Self {
        Self(format!("{}.{what}[{index}]", self.0))
    }

    /// The student an address belongs to and the address within them: `("ada", "bucket")`
    /// for `student["ada"].bucket`.
    pub fn split_student(address: &str) -> Option<(&str, &str)> {
        let rest = address.strip_prefix("student[\"")?;
        let (student, rest) = rest.split_once("\"]")?;
        Some((student, rest.strip_prefix('.')?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> Self {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::Address;

    #[test]
    fn addresses_are_built_and_split() {
        let ada = Address::student("ada");
        assert_eq!(ada.child("bucket").as_str(), "student[\"ada\"].bucket");
        assert_eq!(ada.keyed("dataset", "corpus").as_str(), "student[\"ada\"].dataset[\"corpus\"]");
        assert_eq!(ada.indexed("null", 3).as_str(), "student[\"ada\"].null[3]");
        let pool = Address::top("cluster", "main").keyed("node_pool", "gpu");
        assert_eq!(pool.as_str(), "cluster[\"main\"].node_pool[\"gpu\"]");
        assert_eq!(
            Address::split_student("student[\"ada\"].dataset[\"x\"]"),
            Some(("ada", "dataset[\"x\"]"))
        );
        assert_eq!(Address::split_student("network"), None);
    }
}
