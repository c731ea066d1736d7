//! Term filters end to end: segments whose filters rule a term out are not
//! read, results never lose a row, and segments without filters still answer.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray};
use serde_json::Value as Json;
use watchpost_schema::{ColumnDef, KqlType, TableSchema};
use watchpost_storage::{AppendRequest, Store, StoreOptions};

use super::{fixture, request, T0, WS};
use crate::{EngineOptions, QueryEngine};

fn append_messages(store: &Store, messages: &[String]) {
    let schema = TableSchema::new(vec![
        ColumnDef::new("TimeGenerated", KqlType::Datetime),
        ColumnDef::new("Message_s", KqlType::String),
        ColumnDef::new("Host_s", KqlType::String),
    ]);
    let n = messages.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from((0..n as i64).map(|idx| T0 + idx).collect::<Vec<_>>()).with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(messages.to_vec())),
        Arc::new(StringArray::from((0..n).map(|idx| format!("host-{}", idx % 5)).collect::<Vec<_>>())),
    ];
    let batch = RecordBatch::try_new(schema.arrow_schema(), columns).unwrap();
    let request =
        AppendRequest { workspace: WS.into(), table: "Logs_CL".into(), idempotency_key: None, received_ns: 0, batch };
    store.append(request).unwrap();
}

/// A naive `has`, independent of the engine's: the needle must occur with
/// term boundaries where it starts and ends with a term byte.
fn naive_has(text: &str, needle: &str, case_sensitive: bool) -> bool {
    let term = |byte: u8| byte.is_ascii_alphanumeric() || byte >= 0x80;
    let (text, needle) = if case_sensitive {
        (text.as_bytes().to_vec(), needle.as_bytes().to_vec())
    } else {
        (text.to_ascii_lowercase().into_bytes(), needle.to_ascii_lowercase().into_bytes())
    };
    if needle.is_empty() {
        return true;
    }
    (0..text.len()).any(|start| {
        let end = start + needle.len();
        end <= text.len()
            && text[start..end] == needle[..]
            && (!term(needle[0]) || start == 0 || !term(text[start - 1]))
            && (!term(needle[needle.len() - 1]) || end == text.len() || !term(text[end]))
    })
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

const WORDS: [&str; 12] = ["conn", "Allow", "deny", "proc", "svchost", "exe", "pid", "10", "0", "1", "sess", "ab"];

fn random_message(rng: &mut Lcg) -> String {
    let mut text = String::new();
    for _ in 0..1 + rng.next(8) {
        text.push_str(WORDS[rng.next(WORDS.len() as u64) as usize]);
        text.push_str([" ", "=", ".", "-", ":", ""][rng.next(6) as usize]);
    }
    text
}

async fn count(engine: &QueryEngine, text: &str) -> (u64, crate::QueryStats) {
    let output = engine.run(&request(text)).await.unwrap_or_else(|err| panic!("{text}: {err:?}"));
    let rows = output.json_rows();
    let n = match rows.first().and_then(|row| row.first()) {
        Some(Json::Number(n)) => n.as_u64().unwrap(),
        other => panic!("{text}: {other:?}"),
    };
    (n, output.stats)
}

#[tokio::test]
async fn term_filters_skip_blocks_without_the_term_and_lose_no_row() {
    let fx = fixture(EngineOptions::default());
    let mut rng = Lcg(11);
    let mut all = Vec::new();
    // Three segments of 20,000 rows (three blocks each); planted rare terms:
    // "Rubeus" in segment 0 only, "mimikatz" nowhere.
    for segment in 0..3 {
        let mut messages: Vec<String> = (0..20_000).map(|_| random_message(&mut rng)).collect();
        if segment == 0 {
            messages[9_000] = "conn allow proc=Rubeus.exe pid=4".into();
            messages[9_001] = "x-RUBEUS-y".into();
        }
        append_messages(&fx.store, &messages);
        fx.store.flush().unwrap();
        all.extend(messages);
    }
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where Message_s has "rubeus" | count"#).await;
    assert_eq!(n, 2);
    assert_eq!(stats.segments_pruned, 2, "{stats:?}");
    assert_eq!(stats.blocks_skipped, 2, "{stats:?}");
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where Message_s has "mimikatz" | count"#).await;
    assert_eq!((n, stats.segments_pruned), (0, 3));
    // `in`, `==`, has_any and search prune the same way.
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where Message_s has_any ("mimikatz", "Rubeus") | count"#).await;
    assert_eq!((n, stats.segments_pruned), (2, 2));
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where Message_s == "x-RUBEUS-y" | count"#).await;
    assert_eq!((n, stats.segments_pruned), (1, 2));
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where Host_s in ("host-9", "nohost") | count"#).await;
    assert_eq!((n, stats.segments_pruned), (0, 3));
    let (n, _) = count(&fx.engine, r#"Logs_CL | search "rubeus" | count"#).await;
    assert_eq!(n, 2);
    // A `not` or an `or` with an unknown side proves nothing.
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where not(Message_s has "rubeus") | count"#).await;
    assert_eq!((n, stats.segments_pruned), (59_998, 0));

    // Property: for random needles, the count equals a naive scan of all rows.
    let mut needles: Vec<String> = WORDS.iter().map(|word| word.to_string()).collect();
    needles.extend(
        ["SVCHOST.exe", "pid=10", "conn allow", "-", "=0", "0.", "a", "svc", "10.1", "proc-exe", "Rubeus"]
            .map(String::from),
    );
    for _ in 0..30 {
        let a = WORDS[rng.next(WORDS.len() as u64) as usize];
        let b = WORDS[rng.next(WORDS.len() as u64) as usize];
        needles.push(format!("{a}{}{b}", [".", "-", " ", "="][rng.next(4) as usize]));
    }
    for needle in &needles {
        for (op, case_sensitive) in [("has", false), ("has_cs", true)] {
            let expected = all.iter().filter(|text| naive_has(text, needle, case_sensitive)).count() as u64;
            let query = format!(r#"Logs_CL | where Message_s {op} "{needle}" | count"#);
            let (n, _) = count(&fx.engine, &query).await;
            assert_eq!(n, expected, "{query}");
        }
    }
}

#[tokio::test]
async fn segments_without_term_filters_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = || StoreOptions { wal_fsync: false, ..StoreOptions::default() };
    {
        let store = Store::open(dir.path(), options()).unwrap();
        append_messages(&store, &["launch Rubeus.exe".to_string(), "other".to_string()]);
        store.flush().unwrap();
    }
    // Make the segment look like one written before term filters existed:
    // drop its filter file and its catalogue field, then reopen.
    let catalog_path = dir.path().join("catalog.json");
    let mut catalog: Json = serde_json::from_slice(&std::fs::read(&catalog_path).unwrap()).unwrap();
    let segment = &mut catalog["tables"][0]["segments"][0];
    let terms = segment["terms"].as_str().expect("new segments name their term filters").to_string();
    segment.as_object_mut().unwrap().remove("terms");
    std::fs::write(&catalog_path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    std::fs::remove_file(dir.path().join(terms)).unwrap();
    let store = Arc::new(Store::open(dir.path(), options()).unwrap());
    let engine = QueryEngine::new(store, EngineOptions::default());
    let (n, stats) = count(&engine, r#"Logs_CL | where Message_s has "rubeus" | count"#).await;
    assert_eq!((n, stats.segments_pruned, stats.blocks_skipped), (1, 0, 0));
    let (n, stats) = count(&engine, r#"Logs_CL | where Message_s has "mimikatz" | count"#).await;
    assert_eq!((n, stats.segments_pruned), (0, 0));
}

/// Bytes the Parquet scans of `text` read from disk.
async fn bytes_read(engine: &QueryEngine, text: &str) -> usize {
    let request = request(text);
    let bound = engine.check(&request.workspace, &request.text).unwrap();
    let session = engine.session().unwrap();
    let mut stats = crate::QueryStats::default();
    let pruning = Arc::new(crate::scan::TermPruning::default());
    let plan = engine.lowered_plan(&session, &bound, &request, &mut stats, &pruning).unwrap();
    let physical = session.state().create_physical_plan(&plan).await.unwrap();
    datafusion::physical_plan::collect(physical.clone(), session.task_ctx()).await.unwrap();
    fn sum(plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> usize {
        let own = plan.metrics().and_then(|metrics| metrics.sum_by_name("bytes_scanned")).map_or(0, |m| m.as_usize());
        own + plan.children().into_iter().map(sum).sum::<usize>()
    }
    sum(&physical)
}

/// A term filter's row selection reads only the pages of the selected
/// blocks: the page index is loaded for it, so Parquet fetches and
/// decompresses those pages and no others.
#[tokio::test]
async fn a_selection_reads_only_the_pages_of_its_blocks() {
    let fx = fixture(EngineOptions::default());
    let mut rng = Lcg(5);
    // One segment of eight blocks; the rare term only in the third.
    let mut messages: Vec<String> = (0..8 * 8192).map(|_| random_message(&mut rng)).collect();
    messages[2 * 8192 + 17] = "conn deny proc=Rubeus.exe".into();
    append_messages(&fx.store, &messages);
    fx.store.flush().unwrap();
    let (n, stats) = count(&fx.engine, r#"Logs_CL | where Message_s has "rubeus" | count"#).await;
    assert_eq!((n, stats.blocks_skipped), (1, 7), "{stats:?}");
    let selective = bytes_read(&fx.engine, r#"Logs_CL | where Message_s has "rubeus" | count"#).await;
    let whole = bytes_read(&fx.engine, r#"Logs_CL | where strlen(Message_s) > 0 | count"#).await;
    assert!(whole > 0 && selective * 4 < whole, "selective {selective} bytes, whole {whole} bytes");
}
