//! `arg_max(key, values...)` and `arg_min`: the values of the row where the
//! key is greatest (least), per group, as one aggregate.
//!
//! DataFusion's `first_value(v ORDER BY k)` keeps an ordering-sensitive
//! state per returned column, so `arg_max(T, *)` over twenty columns ran
//! twenty of them and could even take different columns from different
//! tied rows. This aggregate takes the returned values packed in one struct
//! and keeps, per group, the byte-comparable encoding of the best key so far
//! (arrow's row format, so any key type compares with `memcmp`) and where
//! its row lives. Each batch appends only the rows that improved some group
//! (gathered with `take`), and those chunks are compacted with `interleave`
//! once they hold far more rows than there are groups.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::kernels::boolean::not;
use datafusion::arrow::compute::kernels::nullif::nullif;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::{interleave, prep_null_mask_filter, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// Which extreme of the key wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Extreme {
    Max,
    Min,
}

impl Extreme {
    /// Row-format options under which the winner has the greatest bytes
    /// for `Max` and the least for `Min`, and a null key loses to any value.
    fn sort_options(self) -> SortOptions {
        SortOptions { descending: false, nulls_first: self == Extreme::Max }
    }

    fn beats(self, candidate: &[u8], best: &[u8]) -> bool {
        match self {
            Extreme::Max => candidate > best,
            Extreme::Min => candidate < best,
        }
    }
}

/// The aggregate UDF `arg_max_row(key, value)` / `arg_min_row(key, value)`,
/// returning `value` (usually a struct of the returned columns).
pub(crate) fn arg_extreme(extreme: Extreme) -> AggregateUDF {
    AggregateUDF::from(ArgExtreme { extreme, signature: Signature::any(2, Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArgExtreme {
    extreme: Extreme,
    signature: Signature,
}

impl AggregateUDFImpl for ArgExtreme {
    fn name(&self) -> &str {
        match self.extreme {
            Extreme::Max => "arg_max_row",
            Extreme::Min => "arg_min_row",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[1].clone())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let key = args.input_fields[0].data_type().clone();
        let value = args.input_fields[1].data_type().clone();
        Ok(vec![
            Arc::new(Field::new(format_state_name(args.name, "key"), key, true)),
            Arc::new(Field::new(format_state_name(args.name, "value"), value, true)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let (key, value) = (args.expr_fields[0].data_type(), args.expr_fields[1].data_type());
        Ok(Box::new(SingleAccumulator { groups: Best::new(self.extreme, key, value)? }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        let (key, value) = (args.expr_fields[0].data_type(), args.expr_fields[1].data_type());
        Ok(Box::new(Best::new(self.extreme, key, value)?))
    }
}

/// Where a group's best row lives: a chunk and a row in it.
#[derive(Clone, Copy)]
struct Slot {
    chunk: usize,
    row: usize,
}

/// The per-group state: the best key's row bytes and the slot holding the
/// key and value of that row.
struct Best {
    extreme: Extreme,
    converter: RowConverter,
    key_type: DataType,
    value_type: DataType,
    best: Vec<Option<Vec<u8>>>,
    slots: Vec<Option<Slot>>,
    /// Gathered keys and values of winning rows, the same shape per chunk.
    keys: Vec<ArrayRef>,
    values: Vec<ArrayRef>,
    stored_rows: usize,
    /// Bytes held by `best`, for [`GroupsAccumulator::size`].
    key_bytes: usize,
    /// Scratch: the row in the current batch that leads each group, and
    /// the groups that changed in this batch.
    batch_winner: Vec<u32>,
    touched: Vec<usize>,
}

impl std::fmt::Debug for Best {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Best").field("extreme", &self.extreme).field("groups", &self.best.len()).finish()
    }
}

const NO_ROW: u32 = u32::MAX;

impl Best {
    fn new(extreme: Extreme, key_type: &DataType, value_type: &DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new_with_options(key_type.clone(), extreme.sort_options())])?;
        Ok(Self {
            extreme,
            converter,
            key_type: key_type.clone(),
            value_type: value_type.clone(),
            best: Vec::new(),
            slots: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            stored_rows: 0,
            key_bytes: 0,
            batch_winner: Vec::new(),
            touched: Vec::new(),
        })
    }

    fn update(
        &mut self,
        key: &ArrayRef,
        value: &ArrayRef,
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if self.best.len() < total_num_groups {
            self.best.resize(total_num_groups, None);
            self.slots.resize(total_num_groups, None);
            self.batch_winner.resize(total_num_groups, NO_ROW);
        }
        let rows = self.converter.convert_columns(std::slice::from_ref(key))?;
        for (row, &group) in group_indices.iter().enumerate() {
            if super::filtered_out(filter, row) {
                continue;
            }
            let candidate = rows.row(row);
            let candidate = candidate.as_ref();
            let wins = match &self.best[group] {
                None => true,
                Some(best) => self.extreme.beats(candidate, best),
            };
            if !wins {
                continue;
            }
            match &mut self.best[group] {
                Some(best) => {
                    best.clear();
                    best.extend_from_slice(candidate);
                }
                empty => {
                    self.key_bytes += candidate.len();
                    *empty = Some(candidate.to_vec());
                }
            }
            if self.batch_winner[group] == NO_ROW {
                self.touched.push(group);
            }
            self.batch_winner[group] = row as u32;
        }
        if self.touched.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from_iter_values(self.touched.iter().map(|&group| self.batch_winner[group]));
        let chunk = self.keys.len();
        self.keys.push(take(key.as_ref(), &indices, None)?);
        self.values.push(take(value.as_ref(), &indices, None)?);
        self.stored_rows += self.touched.len();
        for (row, &group) in self.touched.iter().enumerate() {
            self.slots[group] = Some(Slot { chunk, row });
            self.batch_winner[group] = NO_ROW;
        }
        self.touched.clear();
        if self.stored_rows > 2 * self.best.len() + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    /// Gathers the live rows into a single chunk, in group order.
    fn compact(&mut self) -> Result<()> {
        let (keys, values) = self.gather(0..self.best.len())?;
        self.keys = vec![keys];
        self.values = vec![values];
        self.stored_rows = self.best.len();
        for (row, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_some() {
                *slot = Some(Slot { chunk: 0, row });
            }
        }
        Ok(())
    }

    /// The keys and values of `groups`, in order; null for a group that
    /// saw no row.
    fn gather(&self, groups: std::ops::Range<usize>) -> Result<(ArrayRef, ArrayRef)> {
        let null_chunk = self.keys.len();
        let indices = self.slots[groups]
            .iter()
            .map(|slot| slot.map_or((null_chunk, 0), |slot| (slot.chunk, slot.row)))
            .collect::<Vec<_>>();
        let null_key = new_null_array(&self.key_type, 1);
        let null_value = new_null_array(&self.value_type, 1);
        let keys = self.keys.iter().map(|array| array.as_ref()).chain([null_key.as_ref()]).collect::<Vec<_>>();
        let values = self.values.iter().map(|array| array.as_ref()).chain([null_value.as_ref()]).collect::<Vec<_>>();
        Ok((interleave(&keys, &indices)?, interleave(&values, &indices)?))
    }

    /// Hands out the first groups' keys and values and forgets them.
    fn emit(&mut self, emit_to: EmitTo) -> Result<(ArrayRef, ArrayRef)> {
        let n = match emit_to {
            EmitTo::All => self.best.len(),
            EmitTo::First(n) => n,
        };
        let gathered = self.gather(0..n)?;
        emit_to.take_needed(&mut self.best);
        emit_to.take_needed(&mut self.slots);
        emit_to.take_needed(&mut self.batch_winner);
        if self.best.is_empty() {
            self.keys.clear();
            self.values.clear();
            self.stored_rows = 0;
        } else {
            self.compact()?;
        }
        Ok(gathered)
    }
}

impl GroupsAccumulator for Best {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.update(&values[0], &values[1], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.emit(emit_to)?.1)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (keys, values) = self.emit(emit_to)?;
        Ok(vec![keys, values])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        // A partial state is a key and a value per group, like an input row;
        // a group that saw no row has a null key, which never wins over a
        // real one.
        self.update(&values[0], &values[1], group_indices, None, total_num_groups)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        // Each row is its own state; a filtered-out row becomes a state with
        // neither key nor value, as a group that saw no row.
        let Some(filter) = opt_filter else { return Ok(values[..2].to_vec()) };
        let dropped = not(&prep_null_mask_filter(filter))?;
        Ok(vec![nullif(&values[0], &dropped)?, nullif(&values[1], &dropped)?])
    }

    fn size(&self) -> usize {
        let arrays: usize = self.keys.iter().chain(&self.values).map(|array| array.get_array_memory_size()).sum();
        self.key_bytes
            + arrays
            + self.converter.size()
            + self.best.capacity() * size_of::<Option<Vec<u8>>>()
            + self.slots.capacity() * size_of::<Option<Slot>>()
            + self.batch_winner.capacity() * 4
    }
}

/// The accumulator for an aggregate without groups: one group, zero.
#[derive(Debug)]
struct SingleAccumulator {
    groups: Best,
}

impl SingleAccumulator {
    fn one(&mut self, values: &[ArrayRef]) -> Result<()> {
        let zeros = vec![0; values[0].len()];
        self.groups.update(&values[0], &values[1], &zeros, None, 1)
    }

    fn current(&self) -> Result<(ArrayRef, ArrayRef)> {
        if self.groups.best.is_empty() {
            Ok((new_null_array(&self.groups.key_type, 1), new_null_array(&self.groups.value_type, 1)))
        } else {
            self.groups.gather(0..1)
        }
    }
}

impl Accumulator for SingleAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.one(values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.one(states)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&self.current()?.1, 0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (keys, values) = self.current()?;
        Ok(vec![ScalarValue::try_from_array(&keys, 0)?, ScalarValue::try_from_array(&values, 0)?])
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.groups.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;

    fn longs(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    fn texts(values: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn strings(array: &ArrayRef) -> Vec<Option<String>> {
        array.as_string::<i32>().iter().map(|value| value.map(str::to_string)).collect()
    }

    #[test]
    fn each_group_keeps_the_value_of_its_extreme_key_across_batches() {
        let mut max = Best::new(Extreme::Max, &DataType::Int64, &DataType::Utf8).unwrap();
        let mut min = Best::new(Extreme::Min, &DataType::Int64, &DataType::Utf8).unwrap();
        for accumulator in [&mut max, &mut min] {
            let keys = longs(&[Some(5), Some(1), None, Some(7)]);
            accumulator.update(&keys, &texts(&["a5", "b1", "bnull", "a7"]), &[0, 1, 1, 0], None, 2).unwrap();
            let keys = longs(&[Some(3), Some(9), Some(9), None]);
            accumulator.update(&keys, &texts(&["b3", "b9", "b9-tie", "cnull"]), &[1, 1, 1, 2], None, 3).unwrap();
        }
        let max_values = max.evaluate(EmitTo::All).unwrap();
        // The first of two tied rows wins; a group with only a null key
        // still returns its row.
        assert_eq!(strings(&max_values), [Some("a7".into()), Some("b9".into()), Some("cnull".into())]);
        let min_values = min.evaluate(EmitTo::All).unwrap();
        assert_eq!(strings(&min_values), [Some("a5".into()), Some("b1".into()), Some("cnull".into())]);
    }

    #[test]
    fn partial_states_merge_to_the_same_answer() {
        let mut left = Best::new(Extreme::Max, &DataType::Int64, &DataType::Utf8).unwrap();
        let mut right = Best::new(Extreme::Max, &DataType::Int64, &DataType::Utf8).unwrap();
        left.update(&longs(&[Some(4), Some(8)]), &texts(&["l4", "l8"]), &[0, 1], None, 2).unwrap();
        right.update(&longs(&[Some(6), Some(2)]), &texts(&["r6", "r2"]), &[0, 1], None, 3).unwrap();
        let mut merged = Best::new(Extreme::Max, &DataType::Int64, &DataType::Utf8).unwrap();
        for state in [left.state(EmitTo::All).unwrap(), right.state(EmitTo::All).unwrap()] {
            let groups = (0..state[0].len()).collect::<Vec<_>>();
            merged.merge_batch(&state, &groups, 3).unwrap();
        }
        let keys = merged.state(EmitTo::All).unwrap();
        assert_eq!(keys[0].as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), [Some(6), Some(8), None]);
        assert_eq!(strings(&keys[1]), [Some("r6".into()), Some("l8".into()), None]);
    }

    #[test]
    fn compaction_and_partial_emits_keep_every_group() {
        let mut accumulator = Best::new(Extreme::Max, &DataType::Int64, &DataType::Utf8).unwrap();
        // Rising keys make every row a winner, so chunks pile up and compact.
        for round in 0..600i64 {
            let keys = longs(&[Some(round), Some(round * 2)]);
            let values = texts(&[&format!("g0-{round}"), &format!("g1-{round}")]);
            accumulator.update(&keys, &values, &[0, 1], None, 2).unwrap();
        }
        assert!(accumulator.keys.len() < 600, "chunks were compacted");
        let filter = BooleanArray::from(vec![true, false]);
        accumulator
            .update(&longs(&[Some(10_000), Some(10_000)]), &texts(&["g0-top", "g1-top"]), &[0, 1], Some(&filter), 2)
            .unwrap();
        assert_eq!(strings(&accumulator.evaluate(EmitTo::First(1)).unwrap()), [Some("g0-top".into())]);
        assert_eq!(strings(&accumulator.evaluate(EmitTo::All).unwrap()), [Some("g1-599".into())]);
    }

    #[test]
    fn without_groups_the_single_accumulator_answers() {
        let mut single =
            SingleAccumulator { groups: Best::new(Extreme::Min, &DataType::Utf8, &DataType::Int64).unwrap() };
        assert_eq!(single.evaluate().unwrap(), ScalarValue::Int64(None));
        single.update_batch(&[texts(&["m", "c", "x"]), longs(&[Some(1), Some(2), Some(3)])]).unwrap();
        single.merge_batch(&[texts(&["d"]), longs(&[Some(4)])]).unwrap();
        assert_eq!(single.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
    }
}
