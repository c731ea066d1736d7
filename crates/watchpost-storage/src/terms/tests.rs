use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::*;

fn terms_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text.as_bytes(), |term| out.push(String::from_utf8(term.to_vec()).unwrap()));
    out
}

#[test]
fn terms_are_maximal_runs_of_term_bytes() {
    assert_eq!(terms_of("conn allow proc=Rubeus.exe pid=42"), ["conn", "allow", "proc", "Rubeus", "exe", "pid", "42"]);
    assert_eq!(terms_of("--a_b--"), ["a", "b"]);
    assert_eq!(terms_of("café-au"), ["café", "au"]);
    assert!(terms_of("-- ..").is_empty());
    assert_eq!(term_hash(b"RUBEUS"), term_hash(b"rubeus"));
    assert_ne!(term_hash(b"rubeus"), term_hash(b"rubeux"));
    assert_eq!(needle_hashes("Rubeus.EXE").hashes(), {
        let mut v = vec![term_hash(b"rubeus"), term_hash(b"exe")];
        v.sort_unstable();
        v
    });
    assert!(needle_hashes("-").is_empty());
}

/// The fused pass (words read in place, past the value's end when the
/// buffer goes on) gives exactly the hashes of tokenising then hashing, for
/// every length around the word size and every value position in a buffer.
#[test]
fn hashing_terms_in_place_matches_hashing_them_alone() {
    let mut data = b"aB3-0123456789abcdefXYZ.\xc3\xa9t\xc3\xa9 Zz__qwertyuiopASDFGHJ-k".to_vec();
    // Terms across the 64-byte words of the bitmap, and a value of more than two words.
    data.extend_from_slice(b" ab ".repeat(14).as_slice());
    data.extend_from_slice(&[b'x'; 70]);
    data.extend_from_slice(b"-end");
    let mut masks = Vec::new();
    for start in 0..data.len() {
        for end in start..=data.len() {
            let mut fused = Vec::new();
            for_each_term_hash(&data, start, end, &mut masks, |hash| fused.push(hash));
            let mut alone = Vec::new();
            for_each_term(&data[start..end], |term| alone.push(term_hash(term)));
            assert_eq!(fused, alone, "value {start}..{end}");
        }
    }
    // Case folds; other letters and digits do not collide.
    assert_eq!(term_hash(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"), term_hash(b"abcdefghijklmnopqrstuvwxyz"));
    let mut seen = HashSet::new();
    for term in ["a", "b", "ab", "ba", "a1", "1a", "abcdefgh", "abcdefgh1", "abcdefghi", "0", "00", "000"] {
        assert!(seen.insert(term_hash(term.as_bytes())), "{term}");
    }
}

/// Files written by earlier releases hash terms with XXH64 (`WPTERMS1`);
/// they are still probed with the hashes they were built with.
#[test]
fn version_1_filters_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.terms");
    let hashes: Vec<u64> =
        ["launch", "rubeus", "exe", "now"].iter().map(|term| term_hash_v1(term.as_bytes())).collect();
    let bloom = Bloom::with_terms(&hashes, hashes.len());
    let mut data = Vec::new();
    bloom.write_to(&mut data);
    let header = Header {
        block_rows: BLOCK_ROWS,
        n_rows: 1,
        columns: vec![ColumnHeader { name: "Message".into(), blocks: vec![(0, bloom.words.len() as u32)] }],
    };
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = MAGIC_V1.to_vec();
    file.extend_from_slice(&(header.len() as u32).to_le_bytes());
    file.extend_from_slice(&header);
    file.extend_from_slice(&data);
    fs::write(&path, file).unwrap();
    let filters = TermFilters::open(&path).unwrap();
    assert_eq!(filters.may_contain_all("Message", &needle_hashes("Rubeus.EXE")).unwrap(), Some(vec![true]));
    let absent = (0..50)
        .filter(|probe| {
            filters.may_contain_all("Message", &needle_hashes(&format!("gone{probe}"))).unwrap() == Some(vec![false])
        })
        .count();
    assert!(absent >= 45, "only {absent} of 50 absent terms rejected");
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("Message", DataType::Utf8, true),
        Field::new("N", DataType::Int64, true),
        Field::new("Host", DataType::Utf8, true),
    ]))
}

fn batch(messages: Vec<Option<String>>) -> RecordBatch {
    let n = messages.len();
    let hosts: Vec<String> = (0..n).map(|idx| format!("host-{}", idx % 7)).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(messages)),
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(StringArray::from(hosts)),
        ],
    )
    .unwrap()
}

/// A small deterministic generator, so the test needs no extra crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn filters_never_miss_a_term_and_skip_most_blocks_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.terms");
    let mut rng = Lcg(7);
    let words = ["alpha", "Beta", "gamma", "DELTA", "x", "proc", "exe", "10", "0", "ü"];
    let n_rows = BLOCK_ROWS * 3 + 123;
    let mut rows = Vec::with_capacity(n_rows);
    for _ in 0..n_rows {
        if rng.next().is_multiple_of(17) {
            rows.push(None);
            continue;
        }
        let n = 1 + rng.next() % 6;
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(words[(rng.next() % words.len() as u64) as usize]);
            text.push_str([" ", "=", ".", "-", ""][(rng.next() % 5) as usize]);
        }
        text.push_str(&format!(" id{}", rng.next() % 50_000));
        rows.push(Some(text));
    }
    // The rare term sits in block 1 only.
    rows[BLOCK_ROWS + 5] = Some("launch Rubeus.exe now".to_string());
    let mut builder = TermFilterBuilder::new(&schema()).unwrap();
    // Uneven batch sizes: blocks span batches.
    let mut start = 0;
    for size in [1000, 9000, 5000, n_rows - 15000] {
        builder.push(&batch(rows[start..start + size].to_vec()));
        start += size;
    }
    builder.write(&path).unwrap();
    let filters = TermFilters::open(&path).unwrap();
    assert_eq!(filters.n_rows(), n_rows);
    assert_eq!(filters.n_blocks(), 4);
    assert!(filters.may_contain_all("N", &needle_hashes("1")).unwrap().is_none());

    // Soundness: every term of every row is reported as maybe present in its block.
    for (idx, text) in rows.iter().enumerate() {
        let Some(text) = text else { continue };
        let block = idx / BLOCK_ROWS;
        for term in terms_of(text) {
            let upper = term.to_ascii_uppercase();
            for needle in [term.as_str(), upper.as_str()] {
                let maybe = filters.may_contain_all("Message", &needle_hashes(needle)).unwrap().unwrap();
                assert!(maybe[block], "term {needle:?} of row {idx} missed");
            }
        }
        // A needle made of several of the row's terms too.
        let maybe = filters.may_contain_all("Message", &needle_hashes(text)).unwrap().unwrap();
        assert!(maybe[block]);
    }
    let rubeus = filters.may_contain_all("Message", &needle_hashes("RUBEUS")).unwrap().unwrap();
    assert_eq!(rubeus, [false, true, false, false]);
    let both = filters.may_contain_all("Message", &needle_hashes("rubeus-alpha")).unwrap().unwrap();
    assert!(!both[0] && !both[2]);
    // Absent terms are rejected in nearly every block (about 1% false positives).
    let mut false_positives = 0;
    for probe in 0..500 {
        let maybe = filters.may_contain_all("Message", &needle_hashes(&format!("absent{probe}"))).unwrap().unwrap();
        false_positives += maybe.iter().filter(|m| **m).count();
    }
    assert!(false_positives < 500 * 4 / 20, "{false_positives} false positives");
    let host = filters.may_contain_all("Host", &needle_hashes("host-3")).unwrap().unwrap();
    assert!(host.iter().all(|m| *m));
}

/// The sketch that sizes each filter counts distinct terms closely enough
/// (the filter's false-positive rate follows its size), repeats or not.
#[test]
fn the_distinct_term_estimate_is_close() {
    for n in [0usize, 1, 10, 500, 5_000, 60_000, 250_000] {
        let mut terms = BlockTerms::new();
        for round in 0..3 {
            for idx in 0..n {
                terms.push(term_hash(format!("t{idx}").as_bytes()));
            }
            let estimate = terms.distinct() as f64;
            let error = (estimate - n as f64).abs() / (n as f64).max(1.0);
            assert!(error < 0.05, "{n} distinct after {round} repeats: estimated {estimate}");
        }
        terms.clear();
        assert_eq!(terms.distinct(), 0);
        assert!(terms.hashes.is_empty());
    }
}

#[test]
fn lookups_of_repeated_values_stop_for_unique_columns_and_come_back() {
    let mut unique = Dedup::default();
    assert!(unique.enabled());
    (unique.looked_up, unique.new) = (8192, 8000);
    unique.finish_block();
    for _ in 0..Dedup::RETRY_AFTER {
        assert!(!unique.enabled());
        unique.finish_block();
    }
    assert!(unique.enabled(), "a column is tried again after a while");

    let mut repeated = Dedup::default();
    for _ in 0..20 {
        (repeated.looked_up, repeated.new) = (8192, 7);
        repeated.finish_block();
        assert!(repeated.enabled());
    }
}
