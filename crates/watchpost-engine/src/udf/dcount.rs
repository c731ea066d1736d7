//! `dcount(value)`: the number of distinct non-null values per group.
//!
//! KQL's `dcount` is an estimate; this one counts distinct 64-bit hashes of
//! the values, exact but for hash collisions (about one in 2^64 per pair).
//! DataFusion's `count(DISTINCT)` keeps a hash set of the values themselves
//! per group; here every group shares one set of (group, hash) pairs, so a
//! row costs one hash and one probe whatever its type, and no value is
//! copied. The partial state is each group's list of hashes.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt64Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::{HashSet, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// Every partition and every partial state hashes with this seed, so equal
/// values meet as equal hashes.
const SEED: u64 = 0x6463_6f75_6e74_5750;

/// The aggregate UDF `kql_dcount(value)`, returning a long.
pub(crate) fn dcount() -> AggregateUDF {
    AggregateUDF::from(DCount { signature: Signature::any(1, Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DCount {
    signature: Signature,
}

impl AggregateUDFImpl for DCount {
    fn name(&self) -> &str {
        "kql_dcount"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Arc::new(Field::new_list_field(DataType::UInt64, false));
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, "hashes"), DataType::List(item), true))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleDCount { groups: Distinct::default() }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Distinct::default()))
    }
}

/// One set of (group, value hash) pairs for all groups, and each group's
/// count of them.
#[derive(Debug, Default)]
struct Distinct {
    seen: HashSet<(u32, u64), PairState>,
    counts: Vec<i64>,
    hashes: Vec<u64>,
}

impl Distinct {
    fn grow(&mut self, total_num_groups: usize) {
        if self.counts.len() < total_num_groups {
            self.counts.resize(total_num_groups, 0);
        }
    }

    fn insert(&mut self, group: usize, hash: u64) {
        if self.seen.insert((group as u32, hash)) {
            self.counts[group] += 1;
        }
    }

    fn update(
        &mut self,
        values: &ArrayRef,
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        hashes.resize(values.len(), 0);
        create_hashes([values], &foldhash::fast::FixedState::with_seed(SEED), &mut hashes)?;
        let nulls = values.logical_nulls();
        for (row, &group) in group_indices.iter().enumerate() {
            let skipped = nulls.as_ref().is_some_and(|nulls| nulls.is_null(row)) || super::filtered_out(filter, row);
            if !skipped {
                self.insert(group, hashes[row]);
            }
        }
        self.hashes = hashes;
        Ok(())
    }

    fn merge(&mut self, states: &ArrayRef, group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.grow(total_num_groups);
        let lists = states.as_list::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if lists.is_null(row) {
                continue;
            }
            let hashes = lists.value(row);
            for &hash in hashes.as_primitive::<UInt64Type>().values() {
                self.insert(group, hash);
            }
        }
        Ok(())
    }

    /// Forgets the groups `emit_to` hands out; the rest move down.
    fn forget(&mut self, emit_to: EmitTo) {
        match emit_to {
            EmitTo::All => self.seen.clear(),
            EmitTo::First(n) => {
                let n = n as u32;
                self.seen = self.seen.drain().filter(|(group, _)| *group >= n).map(|(g, h)| (g - n, h)).collect();
            }
        }
    }

    /// The first `n` groups' hashes as lists. A group's count is the number
    /// of its pairs in `seen`, so the lists are laid out from the counts
    /// and filled in one pass over the set.
    /// Groups past `counts` (a single accumulator that saw no rows) have
    /// empty lists.
    fn hash_lists(&self, n: usize) -> ListArray {
        let count = |group: usize| self.counts.get(group).map_or(0, |&count| count as usize);
        let offsets = OffsetBuffer::from_lengths((0..n).map(count));
        let mut next: Vec<usize> = offsets.iter().take(n).map(|&offset| offset as usize).collect();
        let mut values = vec![0u64; offsets.last().map_or(0, |&end| end as usize)];
        for &(group, hash) in &self.seen {
            if let Some(slot) = next.get_mut(group as usize) {
                values[*slot] = hash;
                *slot += 1;
            }
        }
        let item = Arc::new(Field::new_list_field(DataType::UInt64, false));
        ListArray::new(item, offsets, Arc::new(UInt64Array::from(values)), None)
    }
}

/// Hashing for the set's `(group, value hash)` pairs: the value hash is
/// already a well-mixed 64-bit hash, so the group only needs mixing in; a
/// general-purpose hasher would hash the hash again for every row.
#[derive(Debug, Default, Clone, Copy)]
struct PairState;

impl std::hash::BuildHasher for PairState {
    type Hasher = PairHasher;

    fn build_hasher(&self) -> PairHasher {
        PairHasher(0)
    }
}

struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for (u32, u64) keys; kept correct for any key.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, group: u32) {
        self.0 ^= u64::from(group).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 ^= hash;
    }
}

impl GroupsAccumulator for Distinct {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.update(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let counts = emit_to.take_needed(&mut self.counts);
        self.forget(emit_to);
        Ok(Arc::new(Int64Array::from(counts)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = match emit_to {
            EmitTo::All => self.counts.len(),
            EmitTo::First(n) => n,
        };
        let lists = self.hash_lists(n);
        emit_to.take_needed(&mut self.counts);
        self.forget(emit_to);
        Ok(vec![Arc::new(lists)])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.merge(&values[0], group_indices, total_num_groups)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        // Each row is its own state: a list of its value's hash, empty for a
        // null or filtered-out row.
        let values = &values[0];
        let mut hashes = vec![0; values.len()];
        create_hashes([values], &foldhash::fast::FixedState::with_seed(SEED), &mut hashes)?;
        let nulls = values.logical_nulls();
        let kept = |row: usize| {
            !nulls.as_ref().is_some_and(|nulls| nulls.is_null(row)) && !super::filtered_out(opt_filter, row)
        };
        let offsets = OffsetBuffer::from_lengths((0..values.len()).map(|row| usize::from(kept(row))));
        let items = UInt64Array::from_iter_values((0..values.len()).filter(|&row| kept(row)).map(|row| hashes[row]));
        let item = Arc::new(Field::new_list_field(DataType::UInt64, false));
        Ok(vec![Arc::new(ListArray::new(item, offsets, Arc::new(items), None))])
    }

    fn size(&self) -> usize {
        self.seen.capacity() * (size_of::<(u32, u64)>() + 1) + self.counts.capacity() * 8 + self.hashes.capacity() * 8
    }
}

/// The accumulator for a `dcount` without groups.
#[derive(Debug)]
struct SingleDCount {
    groups: Distinct,
}

impl Accumulator for SingleDCount {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.groups.update(&values[0], &vec![0; values[0].len()], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.groups.merge(&states[0], &vec![0; states[0].len()], 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.groups.counts.first().copied().unwrap_or(0))))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let lists = self.groups.hash_lists(1);
        Ok(vec![ScalarValue::List(Arc::new(lists))])
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.groups.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;

    fn counts(array: ArrayRef) -> Vec<i64> {
        array.as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn distinct_non_null_values_are_counted_per_group() {
        let mut distinct = Distinct::default();
        let values: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a"), None, Some("a")]));
        distinct.update(&values, &[0, 0, 0, 0, 1], None, 2).unwrap();
        let values: ArrayRef = Arc::new(StringArray::from(vec![Some("c"), Some("a"), Some("x")]));
        let filter = BooleanArray::from(vec![true, true, false]);
        distinct.update(&values, &[0, 1, 2], Some(&filter), 3).unwrap();
        assert_eq!(counts(distinct.evaluate(EmitTo::All).unwrap()), [3, 1, 0]);
    }

    #[test]
    fn partial_states_merge_without_double_counting() {
        let (mut left, mut right, mut merged) = (Distinct::default(), Distinct::default(), Distinct::default());
        let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 1]));
        left.update(&values, &[0, 0, 1, 1], None, 2).unwrap();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![2, 9, 3]));
        right.update(&values, &[0, 0, 1], None, 2).unwrap();
        for mut partial in [left, right] {
            let state = partial.state(EmitTo::All).unwrap();
            merged.merge_batch(&state, &[0, 1], 2).unwrap();
        }
        // Group 0 saw {1, 2} and {2, 9}; group 1 saw {3, 1} and {3}.
        assert_eq!(counts(merged.evaluate(EmitTo::First(1)).unwrap()), [3]);
        assert_eq!(counts(merged.evaluate(EmitTo::All).unwrap()), [2]);
    }

    #[test]
    fn without_groups_the_single_accumulator_counts() {
        let mut single = SingleDCount { groups: Distinct::default() };
        assert_eq!(single.evaluate().unwrap(), ScalarValue::Int64(Some(0)));
        // The state of an accumulator that saw no rows is one empty list.
        let ScalarValue::List(empty) = &single.state().unwrap()[0] else { panic!("a list state") };
        assert_eq!((empty.len(), empty.value_length(0)), (1, 0));
        let values: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "x"]));
        single.update_batch(&[values]).unwrap();
        let ScalarValue::List(state) = &single.state().unwrap()[0] else { panic!("a list state") };
        let mut other = SingleDCount { groups: Distinct::default() };
        other.merge_batch(&[state.clone() as ArrayRef]).unwrap();
        other.update_batch(&[Arc::new(StringArray::from(vec!["z"])) as ArrayRef]).unwrap();
        assert_eq!(other.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
    }
}
