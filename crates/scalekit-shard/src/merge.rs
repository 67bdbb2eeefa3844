//! Merging what shards return: ORDER BY with LIMIT/OFFSET, COUNT/SUM/MIN/MAX,
//! AVG and GROUP BY, so the merged answer equals one database's.
//!
//! The rules the merges rely on (and that proxies have got wrong):
//!
//! * ORDER BY .. LIMIT l OFFSET o: ask every shard for its first `o + l` rows in
//!   the same order (`LIMIT o + l`, no offset), merge the sorted streams, then
//!   skip `o` rows once and take `l`. A shard-side offset loses rows.
//! * AVG is not the average of the shards' averages: ask each shard for SUM and
//!   COUNT, add them up, divide once.
//! * GROUP BY: a group's rows may be on every shard; merge the partial
//!   aggregates of equal keys, then apply ORDER BY and LIMIT to the groups (a
//!   LIMIT cannot be pushed to the shards unless the group key is the shard key).
//! * The order must be total (add the primary key as a last sort column) or ties
//!   may come back in a different order than one database would give.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::error::MergeOverflow;

/// How many rows to ask each shard for: `offset + limit` (saturating), with no
/// offset on the shard.
///
/// ```
/// assert_eq!(scalekit_shard::per_shard_limit(20, 10), 30);
/// ```
#[inline]
pub fn per_shard_limit(offset: usize, limit: usize) -> usize {
    offset.saturating_add(limit)
}

/// A streaming k-way merge of sorted streams: `O(log k)` a row, one row per
/// stream held at a time. Ties go to the stream listed first, so the merge is
/// stable.
///
/// ```
/// use scalekit_shard::KWayMerge;
/// let shards = vec![vec![1, 4, 9], vec![2, 3, 10], vec![]];
/// let merged: Vec<i32> = KWayMerge::new(shards, |a: &i32, b: &i32| a.cmp(b)).collect();
/// assert_eq!(merged, [1, 2, 3, 4, 9, 10]);
/// ```
pub struct KWayMerge<I: Iterator, F> {
    streams: Vec<I>,
    /// A binary min-heap of (the stream's current row, the stream's index).
    heap: Vec<(I::Item, usize)>,
    cmp: F,
}

impl<I: Iterator, F> std::fmt::Debug for KWayMerge<I, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KWayMerge")
            .field("streams", &self.streams.len())
            .field("live", &self.heap.len())
            .finish()
    }
}

impl<I, F> KWayMerge<I, F>
where
    I: Iterator,
    F: FnMut(&I::Item, &I::Item) -> Ordering,
{
    /// Merges `streams`, each sorted by `cmp`.
    pub fn new<S>(streams: impl IntoIterator<Item = S>, cmp: F) -> Self
    where
        S: IntoIterator<IntoIter = I, Item = I::Item>,
    {
        let mut streams: Vec<I> = streams.into_iter().map(IntoIterator::into_iter).collect();
        let mut m = Self {
            heap: Vec::with_capacity(streams.len()),
            streams: Vec::new(),
            cmp,
        };
        for (i, s) in streams.iter_mut().enumerate() {
            if let Some(row) = s.next() {
                m.heap.push((row, i));
                let at = m.heap.len() - 1;
                m.sift_up(at);
            }
        }
        m.streams = streams;
        m
    }

    /// Whether heap entry `a` comes before entry `b` (ties: the lower stream).
    #[inline]
    fn less(cmp: &mut F, a: &(I::Item, usize), b: &(I::Item, usize)) -> bool {
        match cmp(&a.0, &b.0) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => a.1 < b.1,
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if Self::less(&mut self.cmp, &self.heap[at], &self.heap[parent]) {
                self.heap.swap(at, parent);
                at = parent;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn sift_down(&mut self, mut at: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * at + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let child = if r < n && Self::less(&mut self.cmp, &self.heap[r], &self.heap[l]) {
                r
            } else {
                l
            };
            if Self::less(&mut self.cmp, &self.heap[child], &self.heap[at]) {
                self.heap.swap(at, child);
                at = child;
            } else {
                break;
            }
        }
    }
}

impl<I, F> Iterator for KWayMerge<I, F>
where
    I: Iterator,
    F: FnMut(&I::Item, &I::Item) -> Ordering,
{
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let stream = self.heap.first()?.1;
        let out = match self.streams[stream].next() {
            // The stream's next row takes the top's place.
            Some(row) => std::mem::replace(&mut self.heap[0], (row, stream)).0,
            None => self.heap.swap_remove(0).0,
        };
        if self.heap.len() > 1 {
            self.sift_down(0);
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let live = self.heap.len();
        let (lo, hi) = self
            .streams
            .iter()
            .fold((0usize, Some(0usize)), |(lo, hi), s| {
                let (l, h) = s.size_hint();
                (
                    lo.saturating_add(l),
                    hi.and_then(|x| h.and_then(|h| x.checked_add(h))),
                )
            });
        (
            lo.saturating_add(live),
            hi.and_then(|h| h.checked_add(live)),
        )
    }
}

/// ORDER BY .. LIMIT `limit` OFFSET `offset` over the shards' answers, each
/// sorted by `cmp` and holding (at least) its first
/// [`per_shard_limit`]`(offset, limit)` rows.
///
/// ```
/// use scalekit_shard::merge_order_by;
/// // SELECT .. ORDER BY price LIMIT 2 OFFSET 3, over three shards asked for LIMIT 5.
/// let shards = vec![vec![1, 5, 6, 7, 8], vec![2, 3], vec![4, 9]];
/// let page: Vec<i32> = merge_order_by(shards, |a, b| a.cmp(b), 3, 2).collect();
/// assert_eq!(page, [4, 5]);
/// ```
pub fn merge_order_by<S, T, F>(
    shards: impl IntoIterator<Item = S>,
    cmp: F,
    offset: usize,
    limit: usize,
) -> std::iter::Take<std::iter::Skip<KWayMerge<S::IntoIter, F>>>
where
    S: IntoIterator<Item = T>,
    F: FnMut(&T, &T) -> Ordering,
{
    KWayMerge::new(shards, cmp).skip(offset).take(limit)
}

/// Partial aggregates of one integer column: COUNT, SUM, MIN, MAX, and AVG as
/// SUM / COUNT. Each shard computes one; [`merge`](Self::merge) adds them up.
///
/// `count` is COUNT(col), the rows whose column is not NULL, which is what AVG
/// divides by: when the column can be NULL, ask each shard for `SUM(col)` and
/// `COUNT(col)`, not `COUNT(*)`, or the merged AVG is too small. NULLs are
/// not pushed (SQL aggregates skip them); [`of_nullable`](Self::of_nullable)
/// skips them for you. Over no non-NULL rows, [`sum`](Self::sum),
/// [`avg`](Self::avg), `min` and `max` are `None`, as SQL's are NULL.
///
/// ```
/// use scalekit_shard::Aggregate;
/// let a = Aggregate::of([1, 2, 3]);
/// let b = Aggregate::of([10]);
/// let all = a.merged(&b)?;
/// assert_eq!((all.count, all.sum, all.min, all.max), (4, 16, Some(1), Some(10)));
/// assert_eq!(all.avg(), Some(4.0)); // not (2 + 10) / 2
///
/// // A nullable column: NULLs count in COUNT(*) but not in SUM, COUNT(col) or AVG.
/// let c = Aggregate::of_nullable([Some(4), None, None]);
/// assert_eq!((c.count, c.sum(), c.avg()), (1, Some(4), Some(4.0)));
/// assert_eq!(Aggregate::of_nullable([None]).sum(), None); // SUM over no values is NULL
/// # Ok::<(), scalekit_shard::MergeOverflow>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// COUNT(col): the values pushed (NULLs are not).
    pub count: u64,
    /// SUM (wide, so no sum of `i64` values counted in a `u64` overflows);
    /// `0` over no values, where SQL gives NULL: read it through
    /// [`sum`](Self::sum) for that.
    pub sum: i128,
    /// MIN, `None` over no rows.
    pub min: Option<i64>,
    /// MAX, `None` over no rows.
    pub max: Option<i64>,
}

impl Aggregate {
    /// The aggregate of some values. Counting from zero it cannot overflow: an
    /// `i128` holds the sum of `u64::MAX` values of `i64`.
    pub fn of(values: impl IntoIterator<Item = i64>) -> Self {
        let mut a = Self::default();
        for v in values {
            a.add_saturating(v);
        }
        a
    }

    /// The aggregate of a nullable column: `None` (NULL) is skipped, as SQL's
    /// aggregates skip it.
    pub fn of_nullable(values: impl IntoIterator<Item = Option<i64>>) -> Self {
        Self::of(values.into_iter().flatten())
    }

    /// Adds one value, or says which aggregate would overflow (only possible
    /// on an aggregate built with a huge `count` or `sum`); on error `self` is
    /// unchanged.
    pub fn push(&mut self, v: i64) -> Result<(), MergeOverflow> {
        self.merge(&Aggregate {
            count: 1,
            sum: i128::from(v),
            min: Some(v),
            max: Some(v),
        })
    }

    /// [`push`](Self::push) for [`of`](Self::of), which starts from zero and so
    /// cannot reach the limits.
    fn add_saturating(&mut self, v: i64) {
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(i128::from(v));
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    /// Adds another shard's partial aggregate. The counts and sums come from
    /// shard responses, so they are added with checks: an overflow is an
    /// error naming the aggregate, and leaves `self` unchanged.
    ///
    /// ```
    /// use scalekit_shard::{Aggregate, MergeOverflow};
    /// let mut a = Aggregate { sum: i128::MAX, ..Aggregate::of([1]) };
    /// assert_eq!(a.merge(&Aggregate::of([1])), Err(MergeOverflow::Sum));
    /// ```
    pub fn merge(&mut self, other: &Aggregate) -> Result<(), MergeOverflow> {
        let count = self
            .count
            .checked_add(other.count)
            .ok_or(MergeOverflow::Count)?;
        let sum = self.sum.checked_add(other.sum).ok_or(MergeOverflow::Sum)?;
        self.count = count;
        self.sum = sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

    /// This merged with `other` (see [`merge`](Self::merge)).
    pub fn merged(mut self, other: &Aggregate) -> Result<Self, MergeOverflow> {
        self.merge(other)?;
        Ok(self)
    }

    /// SUM as SQL gives it: `None` (NULL) over no values.
    pub fn sum(&self) -> Option<i128> {
        (self.count > 0).then_some(self.sum)
    }

    /// AVG as a float, `None` over no rows.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// AVG exactly, as (SUM, COUNT), `None` over no rows.
    pub fn avg_exact(&self) -> Option<(i128, u64)> {
        (self.count > 0).then_some((self.sum, self.count))
    }
}

/// A partial aggregate that shards compute and the merge combines.
pub trait MergeAggregate {
    /// Folds another shard's partial aggregate for the same group into this
    /// one, or says which aggregate overflowed.
    fn merge_from(&mut self, other: Self) -> Result<(), MergeOverflow>;
}

impl MergeAggregate for Aggregate {
    fn merge_from(&mut self, other: Self) -> Result<(), MergeOverflow> {
        self.merge(&other)
    }
}

/// A COUNT: overflow is [`MergeOverflow::Count`].
impl MergeAggregate for u64 {
    fn merge_from(&mut self, other: Self) -> Result<(), MergeOverflow> {
        *self = self.checked_add(other).ok_or(MergeOverflow::Count)?;
        Ok(())
    }
}

/// A SUM: overflow is [`MergeOverflow::Sum`].
impl MergeAggregate for i128 {
    fn merge_from(&mut self, other: Self) -> Result<(), MergeOverflow> {
        *self = self.checked_add(other).ok_or(MergeOverflow::Sum)?;
        Ok(())
    }
}

/// GROUP BY: merges the shards' `(group key, partial aggregate)` rows, the
/// partials of equal keys combined. The result is sorted by key; sort it again
/// for an ORDER BY on an aggregate, then apply LIMIT.
///
/// ```
/// use scalekit_shard::{merge_groups, Aggregate};
/// let shard_a = vec![("books", Aggregate::of([10, 20])), ("games", Aggregate::of([5]))];
/// let shard_b = vec![("books", Aggregate::of([30]))];
/// let groups = merge_groups([shard_a, shard_b])?;
/// assert_eq!(groups["books"].sum, 60);
/// assert_eq!(groups["books"].count, 3);
/// assert_eq!(groups["games"].count, 1);
/// # Ok::<(), scalekit_shard::MergeOverflow>(())
/// ```
///
/// # Errors
///
/// [`MergeOverflow`] when a group's partials overflow when added.
pub fn merge_groups<K, A, S>(
    shards: impl IntoIterator<Item = S>,
) -> Result<BTreeMap<K, A>, MergeOverflow>
where
    K: Ord,
    A: MergeAggregate,
    S: IntoIterator<Item = (K, A)>,
{
    let mut out: BTreeMap<K, A> = BTreeMap::new();
    for shard in shards {
        for (k, a) in shard {
            match out.entry(k) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge_from(a)?,
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(a);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_stable_and_handles_empty() {
        let shards: Vec<Vec<(i32, char)>> =
            vec![vec![(1, 'a'), (2, 'a')], vec![], vec![(1, 'c'), (2, 'c')]];
        let merged: Vec<_> =
            KWayMerge::new(shards, |x: &(i32, char), y: &(i32, char)| x.0.cmp(&y.0)).collect();
        assert_eq!(merged, [(1, 'a'), (1, 'c'), (2, 'a'), (2, 'c')]);
        let none: Vec<Vec<i32>> = vec![];
        assert_eq!(KWayMerge::new(none, |a: &i32, b: &i32| a.cmp(b)).count(), 0);
    }

    #[test]
    fn size_hint_is_exact_for_vectors() {
        let m = KWayMerge::new(vec![vec![1, 2], vec![3]], |a: &i32, b: &i32| a.cmp(b));
        assert_eq!(m.size_hint(), (3, Some(3)));
    }

    proptest::proptest! {
        /// The merge equals a stable sort of the concatenated streams: same rows,
        /// ties in stream order.
        #[test]
        fn merge_equals_stable_sort(mut streams in proptest::collection::vec(
            proptest::collection::vec((0u8..6, proptest::prelude::any::<u16>()), 0..30), 0..9)) {
            for s in &mut streams {
                s.sort_by_key(|r| r.0);
            }
            let mut want: Vec<(u8, u16)> = streams.iter().flatten().copied().collect();
            want.sort_by_key(|r| r.0);
            let got: Vec<(u8, u16)> =
                KWayMerge::new(streams, |a: &(u8, u16), b: &(u8, u16)| a.0.cmp(&b.0)).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn aggregates_of_nothing() {
        let a = Aggregate::default();
        assert_eq!(a.avg(), None);
        assert_eq!(a.merged(&Aggregate::of([3])), Ok(Aggregate::of([3])));
        assert_eq!(a.sum(), None);
        assert_eq!(Aggregate::of([0]).sum(), Some(0));
    }

    #[test]
    fn merging_past_the_limits_is_an_error_not_a_panic() {
        // COUNT: u64::MAX + 1.
        let mut a = Aggregate {
            count: u64::MAX,
            ..Aggregate::default()
        };
        let before = a;
        assert_eq!(a.merge(&Aggregate::of([1])), Err(MergeOverflow::Count));
        assert_eq!(a, before, "unchanged on error");
        assert_eq!(a.push(1), Err(MergeOverflow::Count));
        // SUM past i128 both ways.
        let mut s = Aggregate {
            count: 1,
            sum: i128::MAX,
            ..Aggregate::default()
        };
        assert_eq!(s.merge(&Aggregate::of([1])), Err(MergeOverflow::Sum));
        let mut s = Aggregate {
            count: 1,
            sum: i128::MIN,
            ..Aggregate::default()
        };
        assert_eq!(s.merge(&Aggregate::of([-1])), Err(MergeOverflow::Sum));
        // Plain counts and sums in GROUP BY.
        let mut c = u64::MAX;
        assert_eq!(c.merge_from(1), Err(MergeOverflow::Count));
        let mut t = i128::MAX;
        assert_eq!(t.merge_from(1), Err(MergeOverflow::Sum));
        let groups = merge_groups([vec![("k", u64::MAX)], vec![("k", 1)]]);
        assert_eq!(groups, Err(MergeOverflow::Count));
        assert!(MergeOverflow::Count.to_string().contains("COUNT"));
        assert!(MergeOverflow::Sum.to_string().contains("SUM"));
        // Within the limits it still adds up.
        let ok = merge_groups([vec![("k", u64::MAX - 1)], vec![("k", 1)]]).unwrap();
        assert_eq!(ok["k"], u64::MAX);
    }
}
