//! String columns that segments store as dictionaries are read as
//! `Dictionary(Int32, Utf8)` (`scan::dictionary_columns`) and a summarize
//! by one of them groups by key (`optimize::dictionary_groups`). Neither
//! may change an answer: the same rows, kept in memory, flushed to
//! segments, or half and half, give the same results for queries that use
//! such columns in every role.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};
use watchpost_storage::{AppendRequest, Store};

use super::{fixture, physical_plan, request, rows, T0, WS};
use crate::EngineOptions;

/// Rows in all: each half is one segment of several 8,192-row batches that
/// share their dictionaries.
const N: usize = 40_000;

fn append_range(store: &Store, from: usize, to: usize) {
    let schema = TableSchema::new(vec![
        ColumnDef::new("TimeGenerated", KqlType::Datetime),
        ColumnDef::new("Host_s", KqlType::String),
        ColumnDef::new("User_s", KqlType::String),
        ColumnDef::new("Message_s", KqlType::String),
        ColumnDef::new("Bytes_d", KqlType::Real),
    ]);
    let rows = from..to;
    let host = |idx: usize| (!idx.is_multiple_of(13)).then(|| format!("Host-{}", idx % 7));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from(
                rows.clone().map(|idx| T0 + (idx as i64 * 7_919 % 40_009) * 1_000_000_000).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(rows.clone().map(host).collect::<Vec<_>>())),
        Arc::new(StringArray::from(
            rows.clone().map(|idx| format!("user{}@contoso.com", idx % 40)).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.clone().map(|idx| format!("event {idx} proc=p{} ok", idx % 3)).collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(rows.map(|idx| (idx % 100) as f64).collect::<Vec<_>>())),
    ];
    let batch = RecordBatch::try_new(schema.arrow_schema(), columns).unwrap();
    let request =
        AppendRequest { workspace: WS.into(), table: "Dict_CL".into(), idempotency_key: None, received_ns: 0, batch };
    store.append(request).unwrap();
}

const QUERIES: &[&str] = &[
    "Dict_CL | summarize count() by Host_s | order by Host_s asc",
    "Dict_CL | summarize Rows = count(), Again = count() by User_s | order by User_s asc",
    "Dict_CL | where Bytes_d > 90 | summarize count() by User_s | order by User_s asc",
    "Dict_CL | summarize Total = sum(Bytes_d), Last = max(TimeGenerated), n = countif(Bytes_d > 50) by Host_s | order by Host_s asc",
    "Dict_CL | summarize dcount(User_s), make_set(Host_s), max(Host_s), min(User_s) by Host_s | order by Host_s asc",
    "Dict_CL | summarize count() by Host_s, User_s | order by Host_s asc, User_s asc",
    "Dict_CL | summarize arg_max(TimeGenerated, *) by Host_s | order by Host_s asc",
    "Dict_CL | summarize arg_max(TimeGenerated, User_s, Bytes_d, Message_s) by User_s | order by User_s asc",
    "Dict_CL | where Host_s == 'Host-3' | count",
    "Dict_CL | where Host_s =~ 'host-3' or Host_s in ('Host-1', 'nope') | count",
    "Dict_CL | where Host_s has 'host' and Host_s !startswith 'Host-2' | summarize count() by Host_s | order by Host_s asc",
    "Dict_CL | where Host_s contains '-4' or isempty(Host_s) | count",
    "Dict_CL | where User_s in~ ('USER1@contoso.com', 'user2@contoso.com') | summarize count() by User_s | order by User_s asc",
    "Dict_CL | extend H = tolower(Host_s), L = strlen(User_s), C = strcat(Host_s, '/', User_s) | summarize count() by H, L, C | order by C asc | take 20",
    "Dict_CL | project Host_s, User_s | distinct Host_s | order by Host_s asc",
    "Dict_CL | top 5 by Message_s desc | project Host_s, TimeGenerated, User_s",
    "Dict_CL | order by Host_s asc nulls first, TimeGenerated asc, Message_s asc | take 7 | project Host_s, Message_s",
    "Dict_CL | extend P = extract('proc=(p[0-9])', 1, Message_s) | summarize count() by P, Host_s | order by P asc, Host_s asc",
    "Dict_CL | parse User_s with Name '@' Domain | summarize count() by Domain",
    "Dict_CL | summarize n = count() by Host_s | join kind=inner (datatable(Host_s: string, Site: string) ['Host-1', 'a', 'Host-2', 'b']) on Host_s | order by Host_s asc",
    "Dict_CL | join kind=leftanti (Dict_CL | where Host_s == 'Host-5' | distinct Host_s) on Host_s | summarize count() by Host_s | order by Host_s asc",
    "Dict_CL | lookup (datatable(Host_s: string, Site: string) ['Host-1', 'a']) on Host_s | summarize count() by Site | order by Site asc",
    "union Dict_CL, (datatable(Host_s: string) ['extra']) | summarize count() by Host_s | order by Host_s asc",
    "Dict_CL | summarize Hosts = make_list(Host_s) by User_s | mv-expand Hosts to typeof(string) | summarize count() by H = tostring(Hosts) | order by H asc",
    "Dict_CL | summarize count() by bin(TimeGenerated, 1m), Host_s | order by TimeGenerated asc, Host_s asc | take 10",
    "Dict_CL | project-rename Machine = Host_s | summarize count() by Machine | order by Machine asc",
    "Dict_CL | extend Pair = pack('host', Host_s, 'user', User_s) | summarize count() by H = tostring(Pair.host) | order by H asc",
    "Dict_CL | summarize count() by Host_s | where Host_s startswith 'Host' | order by count_ desc, Host_s asc",
    "Dict_CL | where isnotempty(Host_s) | summarize by Host_s | order by Host_s asc",
    "Dict_CL | summarize percentile(Bytes_d, 50), min(Bytes_d), countif(Bytes_d < 10) by Host_s | order by Host_s asc",
];

#[tokio::test]
async fn stored_dictionaries_answer_as_plain_strings_do() {
    let memory = fixture(EngineOptions::default());
    append_range(&memory.store, 0, N);
    let flushed = fixture(EngineOptions::default());
    append_range(&flushed.store, 0, N / 2);
    flushed.store.flush().unwrap();
    append_range(&flushed.store, N / 2, N);
    flushed.store.flush().unwrap();
    let mixed = fixture(EngineOptions::default());
    append_range(&mixed.store, 0, N / 2);
    mixed.store.flush().unwrap();
    append_range(&mixed.store, N / 2, N);

    let snapshot = flushed.store.snapshot(WS, "Dict_CL").unwrap();
    assert!(snapshot.batches.is_empty());
    for (_, meta) in &snapshot.segments {
        assert_eq!(meta.dictionary, ["Host_s", "User_s"], "Message_s is mostly unique, so plain");
    }

    // A summarize by one dictionary column groups by its keys; by several
    // columns, or over plain strings, DataFusion groups as usual.
    let text = "Dict_CL | summarize count(), max(Bytes_d) by Host_s";
    let plan = physical_plan(&flushed.engine, &request(text)).await;
    assert!(plan.contains("DictionaryGroupsExec"), "{plan}");
    let plan = physical_plan(&memory.engine, &request(text)).await;
    assert!(!plan.contains("DictionaryGroupsExec"), "{plan}");
    let plan = physical_plan(&flushed.engine, &request("Dict_CL | summarize count() by Host_s, User_s")).await;
    assert!(!plan.contains("DictionaryGroupsExec"), "{plan}");

    // Joins build their left side once rather than repartitioning both.
    let join = "Dict_CL | where Bytes_d > 98 | join kind=inner (Dict_CL | project Host_s, Other = User_s) on Host_s";
    let plan = physical_plan(&flushed.engine, &request(join)).await;
    assert!(plan.contains("mode=CollectLeft") && !plan.contains("mode=Partitioned"), "{plan}");

    for query in QUERIES {
        let expected = rows(&memory.engine, &request(query)).await;
        assert!(!expected.1.is_empty(), "{query}: no rows");
        assert_eq!(rows(&flushed.engine, &request(query)).await, expected, "segments only: {query}");
        assert_eq!(rows(&mixed.engine, &request(query)).await, expected, "segments and buffers: {query}");
    }
}
