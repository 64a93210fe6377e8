//! Map-side collection: records are combined as they are emitted (when the job has a
//! combiner), then partitioned by a stable hash of the key and sorted, ready to write.
//!
//! Intermediate records are encoded as `u32 key length, key, u32 value length, value`
//! (little endian), sorted by key within each partition file.

use rustc_hash::{FxHashMap, FxHashSet};

/// How values of one key are combined map-side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Values are u64 counts: keep their sum.
    Sum,
    /// Keep each distinct value once.
    Distinct,
    None,
}

/// A key and a value, as bytes.
type Pair = (Box<[u8]>, Box<[u8]>);

/// Collects one map task's output.
pub enum Collector {
    Sum(FxHashMap<Box<[u8]>, u64>),
    Distinct(FxHashSet<Pair>),
    /// Every record as emitted, encoded back to back.
    Plain(Vec<u8>),
}

impl Collector {
    pub fn new(combine: Combine) -> Self {
        match combine {
            Combine::Sum => Self::Sum(FxHashMap::default()),
            Combine::Distinct => Self::Distinct(FxHashSet::default()),
            Combine::None => Self::Plain(Vec::new()),
        }
    }

    /// Emits `key` with a count (the word count fast path).
    #[inline]
    pub fn emit_count(&mut self, key: &[u8], n: u64) {
        match self {
            Self::Sum(map) => match map.get_mut(key) {
                Some(c) => *c += n,
                None => {
                    map.insert(key.into(), n);
                }
            },
            _ => self.emit(key, &n.to_le_bytes()),
        }
    }

    pub fn emit(&mut self, key: &[u8], value: &[u8]) {
        match self {
            Self::Sum(map) => {
                *map.entry(key.into()).or_default() +=
                    u64::from_le_bytes(value[..8].try_into().unwrap_or_default())
            }
            Self::Distinct(set) => {
                set.insert((key.into(), value.into()));
            }
            Self::Plain(buf) => encode(buf, key, value),
        }
    }

    /// The encoded, key-sorted records of each of `reduces` partitions.
    pub fn finish(self, reduces: u32) -> Vec<Vec<u8>> {
        let mut parts: Vec<Vec<(&[u8], &[u8])>> = vec![Vec::new(); reduces as usize];
        let counts: Vec<(Box<[u8]>, [u8; 8])>;
        match &self {
            Self::Sum(map) => {
                counts = map.iter().map(|(k, n)| (k.clone(), n.to_le_bytes())).collect();
                for (k, v) in &counts {
                    parts[partition(k, reduces)].push((k, v));
                }
            }
            Self::Distinct(set) => set.iter().for_each(|(k, v)| parts[partition(k, reduces)].push((k, v))),
            Self::Plain(buf) => records(buf).for_each(|(k, v)| parts[partition(k, reduces)].push((k, v))),
        }
        parts
            .into_iter()
            .map(|mut records| {
                records.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.cmp(b.1)));
                let mut out = Vec::with_capacity(records.iter().map(|(k, v)| k.len() + v.len() + 8).sum());
                records.iter().for_each(|(k, v)| encode(&mut out, k, v));
                out
            })
            .collect()
    }
}

/// The reduce partition of `key`: FNV-1a, stable across runs, machines and versions.
pub fn partition(key: &[u8], reduces: u32) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(reduces.max(1))) as usize
}

pub fn encode(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// The records of an encoded buffer. Stops at the first truncated record.
pub fn records(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let field = |at: &mut usize| -> Option<&[u8]> {
            let len = u32::from_le_bytes(buf.get(*at..*at + 4)?.try_into().ok()?) as usize;
            let v = buf.get(*at + 4..*at + 4 + len)?;
            *at += 4 + len;
            Some(v)
        };
        let k = field(&mut at)?;
        let v = field(&mut at)?;
        Some((k, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining_and_plain_collection_agree_after_summing() {
        let words: Vec<&[u8]> = vec![b"b", b"a", b"b", b"c", b"b"];
        let mut sum = Collector::new(Combine::Sum);
        let mut plain = Collector::new(Combine::None);
        for w in &words {
            sum.emit_count(w, 1);
            plain.emit_count(w, 1);
        }
        let total = |parts: Vec<Vec<u8>>| {
            let mut m = std::collections::BTreeMap::new();
            for p in &parts {
                for (k, v) in records(p) {
                    *m.entry(k.to_vec()).or_insert(0) += u64::from_le_bytes(v.try_into().unwrap());
                }
            }
            m
        };
        let (s, p) = (sum.finish(3), plain.finish(3));
        assert!(s.iter().map(Vec::len).sum::<usize>() < p.iter().map(Vec::len).sum::<usize>());
        assert_eq!(total(s), total(p));
    }

    #[test]
    fn every_key_lands_in_one_partition_sorted() {
        let mut c = Collector::new(Combine::None);
        for w in ["delta", "alpha", "charlie", "bravo", "alpha"] {
            c.emit(w.as_bytes(), b"1");
        }
        let parts = c.finish(2);
        let mut seen = vec![];
        for (i, p) in parts.iter().enumerate() {
            let keys: Vec<&[u8]> = records(p).map(|(k, _)| k).collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]));
            assert!(keys.iter().all(|k| partition(k, 2) == i));
            seen.extend(keys.iter().map(|k| k.to_vec()));
        }
        assert_eq!(seen.len(), 5);
    }
}
