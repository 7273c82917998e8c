//! [`SmallMap`]: a map of a few entries, kept as a sorted `Vec`.
//!
//! A record's user data (two or three fields) and timers (one to three)
//! were `BTreeMap`s, whose first node alone is 11 slots: 540 bytes on the
//! heap for two `String` pairs, 160 for two timers. A waiting service sits
//! in memory for its whole wait, so that was a fifth of its footprint. A
//! sorted `Vec` holds exactly its entries, iterates in the same order, and
//! is (de)serialized as the same JSON object, so records written before
//! read the same.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map ordered by key, for a handful of entries: lookups by binary
/// search, inserts and removals by shifting.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// Gives back the room grown for entries since removed or never made.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }

    pub const fn new() -> Self {
        SmallMap(Vec::new())
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, answering the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// The entry with the least key.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.0.first().map(|(k, v)| (k, v))
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.0.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// The entries of a [`SmallMap`] in key order, as `BTreeMap::iter` gives them.
pub struct Iter<'a, K, V>(std::slice::Iter<'a, (K, V)>);

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<'a, K: Ord, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<K: Ord, V> Extend<(K, V)> for SmallMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (k, v) in entries {
            self.insert(k, v);
        }
    }
}

/// As a `BTreeMap` collects: in key order, the last of equal keys kept.
impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = SmallMap(Vec::new());
        map.extend(entries);
        map.0.shrink_to_fit();
        map
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for SmallMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Ord, V> From<BTreeMap<K, V>> for SmallMap<K, V> {
    fn from(map: BTreeMap<K, V>) -> Self {
        // Already in key order, each key once.
        SmallMap(map.into_iter().collect())
    }
}

impl<K: Ord + Clone, V: Clone> From<&SmallMap<K, V>> for BTreeMap<K, V> {
    fn from(map: &SmallMap<K, V>) -> Self {
        map.0.iter().cloned().collect()
    }
}

impl<K: Ord, V: PartialEq> PartialEq<BTreeMap<K, V>> for SmallMap<K, V> {
    fn eq(&self, other: &BTreeMap<K, V>) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b)
    }
}

impl<K: Ord, V, Q> std::ops::Index<&Q> for SmallMap<K, V>
where
    K: Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key in the SmallMap")
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SmallMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = SmallMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = SmallMap(Vec::with_capacity(access.size_hint().unwrap_or(0).min(64)));
                while let Some((k, v)) = access.next_entry()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever is done to a `SmallMap`, done to a `BTreeMap` gives the
    /// same entries in the same order, and the same JSON.
    fn check(steps: &[(&str, Option<u32>)]) {
        let mut small = SmallMap::new();
        let mut btree = BTreeMap::new();
        for &(key, value) in steps {
            match value {
                Some(v) => assert_eq!(
                    small.insert(key.to_owned(), v),
                    btree.insert(key.to_owned(), v)
                ),
                None => assert_eq!(small.remove(key), btree.remove(key)),
            }
            assert!(small == btree, "{small:?} against {btree:?}");
            assert_eq!(
                serde_json::to_string(&small).unwrap(),
                serde_json::to_string(&btree).unwrap()
            );
            assert_eq!(small.first_key_value(), btree.first_key_value());
        }
        let json = serde_json::to_string(&small).unwrap();
        let back: SmallMap<String, u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, small);
    }

    #[test]
    fn behaves_as_a_btree_map() {
        check(&[("b", Some(2)), ("a", Some(1)), ("c", Some(3))]);
        check(&[("b", Some(2)), ("b", Some(5)), ("a", None), ("b", None)]);
        check(&[
            ("z", Some(1)),
            ("m", Some(2)),
            ("m", None),
            ("a", Some(3)),
            ("z", Some(4)),
        ]);
        check(&[]);
    }

    #[test]
    fn reads_a_map_with_a_repeated_key_as_a_btree_map_does() {
        let json = r#"{"b":1,"a":2,"b":3}"#;
        let small: SmallMap<String, u32> = serde_json::from_str(json).unwrap();
        let btree: BTreeMap<String, u32> = serde_json::from_str(json).unwrap();
        assert!(small == btree);
        assert_eq!(small["b"], 3);
    }

    #[test]
    fn holds_only_its_entries() {
        let map: SmallMap<String, String> = [("usr_a", "1"), ("usr_b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(map.0.capacity(), 2);
        assert_eq!(map.get("usr_b").map(String::as_str), Some("2"));
        assert!(!map.contains_key("usr_c"));
    }
}
