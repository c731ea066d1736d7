use std::collections::HashMap;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, TimeUnit};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Encoding;
use parquet::file::metadata::PageIndexPolicy;

use super::*;
use crate::terms::{needle_hashes, TermFilters};

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(TIME_GENERATED, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
        Field::new("Host", DataType::Utf8, true),
        Field::new("Message", DataType::Utf8, true),
        Field::new("N", DataType::Int64, true),
    ]))
}

/// Rows `from..to`; `shuffle` spreads their times out of arrival order.
fn batch(from: i64, to: i64, shuffle: bool) -> RecordBatch {
    let time = |row: i64| if shuffle { (row * 7_919) % 1_000_003 } else { row };
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(TimestampNanosecondArray::from((from..to).map(time).collect::<Vec<_>>()).with_timezone("UTC")),
            Arc::new(StringArray::from((from..to).map(|row| Some(format!("host-{}", row % 5))).collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                (from..to).map(|row| (row % 11 != 0).then(|| format!("event id{row} ok"))).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from((from..to).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

/// Per `N`, the row's time, host and message, read back from `path`, in file order.
fn read_back(path: &Path) -> Vec<(i64, i64, String, Option<String>)> {
    let file = fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let hinted = Arc::new(dictionary_hints(&schema(), &["Host".to_string()]));
        assert_eq!(batch.schema(), hinted, "the Arrow schema comes back whole, Host as a dictionary");
        let time = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        let host = arrow::compute::cast(batch.column(1), &DataType::Utf8).unwrap();
        let host = host.as_any().downcast_ref::<StringArray>().unwrap();
        let message = batch.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        let n = batch.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        for row in 0..batch.num_rows() {
            let message = message.is_valid(row).then(|| message.value(row).to_string());
            rows.push((n.value(row), time.value(row), host.value(row).to_string(), message));
        }
    }
    rows
}

/// Three row groups (two full, one partial) from uneven batches, in and
/// out of time order: every row comes back once, in time order, with its
/// values; the mostly-unique column is written without a dictionary and
/// the repetitive one with one; the term filters cover every row group;
/// pages are compressed with the codec asked for.
#[test]
fn segments_hold_every_row_in_time_order_across_row_groups() {
    let total = 2 * ROW_GROUP_ROWS as i64 + 1_234;
    for (shuffle, codec) in [(false, SegmentCodec::Lz4), (true, SegmentCodec::Zstd)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.parquet");
        let cuts = [0, 1_000, 100_000, 200_000, total];
        let batches: Vec<RecordBatch> = cuts.windows(2).map(|cut| batch(cut[0], cut[1], shuffle)).collect();
        let mut encoded = false;
        let meta = write_segment(&path, "seg.parquet".into(), &schema(), &batches, codec, || encoded = true).unwrap();
        assert!(encoded);
        assert_eq!(meta.n_rows, total as u64);
        assert_eq!(meta.dictionary, ["Host"], "Message is written without a dictionary");

        let rows = read_back(&path);
        assert_eq!(rows.len(), total as usize);
        assert!(rows.windows(2).all(|pair| pair[0].1 <= pair[1].1), "rows are in time order (shuffle {shuffle})");
        let expected: HashMap<i64, _> = batches
            .iter()
            .flat_map(|batch| {
                let from = batch.column(3).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
                from..from + batch.num_rows() as i64
            })
            .map(|n| {
                let time = if shuffle { (n * 7_919) % 1_000_003 } else { n };
                let message = (n % 11 != 0).then(|| format!("event id{n} ok"));
                (n, (time, format!("host-{}", n % 5), message))
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (n, time, host, message) in rows {
            assert!(seen.insert(n), "row {n} twice");
            assert_eq!(expected[&n], (time, host, message), "row {n}");
        }
        assert_eq!(meta.min_time_ns, Some(0));

        let file = fs::File::open(&path).unwrap();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let metadata = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap().metadata().clone();
        assert_eq!(metadata.num_row_groups(), 3);
        // Every page holds at most PAGE_ROWS rows, and a term-filter block
        // starts every BLOCK_ROWS / PAGE_ROWS pages.
        let offsets = metadata.offset_index().expect("segments carry a page index");
        for (group, columns) in offsets.iter().enumerate() {
            let n_rows = metadata.row_group(group).num_rows();
            for pages in columns {
                let starts: Vec<i64> = pages.page_locations().iter().map(|page| page.first_row_index).collect();
                let expected: Vec<i64> = (0..n_rows).step_by(PAGE_ROWS).collect();
                assert_eq!(starts, expected, "row group {group}: pages of {PAGE_ROWS} rows");
            }
        }
        for row_group in metadata.row_groups() {
            assert!(row_group.columns().iter().all(|chunk| chunk.compression() == codec.compression()));
            let encodings = |idx: usize| row_group.column(idx).encodings().collect::<Vec<_>>();
            assert!(encodings(1).contains(&Encoding::RLE_DICTIONARY), "Host keeps its dictionary");
            assert!(!encodings(2).contains(&Encoding::RLE_DICTIONARY), "Message has no dictionary");
        }

        let filters = TermFilters::open(&dir.path().join(meta.terms.unwrap())).unwrap();
        assert_eq!(filters.n_rows(), total as usize);
        let blocks = filters.may_contain_all("Message", &needle_hashes("id7")).unwrap().unwrap();
        assert_eq!(blocks.len(), filters.n_blocks());
        assert!(blocks.iter().any(|maybe| *maybe));
        let host = filters.may_contain_all("Host", &needle_hashes("host-3")).unwrap().unwrap();
        assert!(host.iter().all(|maybe| *maybe), "every block has host-3");
    }
}

#[test]
fn dictionary_encoding_is_kept_below_sixty_percent_distinct_in_the_sample() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("Skewed", DataType::Utf8, true),
        Field::new("Spread", DataType::Utf8, true),
        Field::new("Unique", DataType::Int64, true),
    ]));
    // Of 4,096 sampled rows: 55% distinct values, 65% distinct, all distinct.
    let rows = 4096;
    let share =
        |percent: usize| StringArray::from((0..rows).map(|r| format!("v{}", r * percent / 100)).collect::<Vec<_>>());
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(share(55)),
            Arc::new(share(65)),
            Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let unique = encode::mostly_unique_columns(&schema, &[batch]);
    assert_eq!(unique, ["Spread", "Unique"]);
}
