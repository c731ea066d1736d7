//! Scalar and dynamic functions end to end, over `print` and `datatable`.

use serde_json::{json, Value as Json};

use super::{fixture, request, rows};
use crate::EngineOptions;

/// Runs `text` and returns its single row.
async fn one_row(text: &str) -> Vec<Json> {
    let fx = fixture(EngineOptions::default());
    let (_, mut printed) = rows(&fx.engine, &request(text)).await;
    assert_eq!(printed.len(), 1, "{text}: {printed:?}");
    printed.remove(0)
}

/// Parses the JSON text a dynamic cell carries.
fn dynamic(cell: &Json) -> Json {
    serde_json::from_str(cell.as_str().expect("dynamic cells are JSON text")).unwrap()
}

#[tokio::test]
async fn string_functions() {
    let row = one_row(
        r#"print strcat_delim("/", "usr", 1, "bin"), split("a,b,,c", ","), split("a.b.c", ".", 1),
            replace_regex("2024-05-06", @"(\d+)-(\d+)-(\d+)", @"\3/\2/\1"), replace_string("a-b", "-", "+"),
            extract(@"(\d+)ms", 1, "took 250ms", typeof(long)), extract("x(\\d)", 1, "none"),
            extract_all(@"(\d+)", "a1b22"), indexof("security", "cur"), countof("aaa", "aa"),
            trim(@"\s+", "  hi  "), reverse("abc"), strrep("ab", 3, "-")"#,
    )
    .await;
    assert_eq!(row[0], json!("usr/1/bin"));
    assert_eq!(dynamic(&row[1]), json!(["a", "b", "", "c"]));
    assert_eq!(dynamic(&row[2]), json!(["b"]));
    assert_eq!(row[3], json!("06/05/2024"));
    assert_eq!(row[4], json!("a+b"));
    assert_eq!(row[5], json!(250));
    assert_eq!(row[6], Json::Null);
    assert_eq!(dynamic(&row[7]), json!(["1", "22"]));
    assert_eq!(row[8..], [json!(2), json!(2), json!("hi"), json!("cba"), json!("ab-ab-ab")]);
}

#[tokio::test]
async fn dynamic_paths_and_conversions() {
    let row = one_row(
        r#"print d = parse_json('{"a":{"b":[10,20,30]},"k-1":"v","s":"ok"}')
            | project tolong(d.a.b[1]), tostring(d["k-1"]), tolong(d.a.b[-1]), isnull(d.missing),
                d.s == "ok", tostring(d.a), parse_json(d), array_length(d.a.b)"#,
    )
    .await;
    assert_eq!(row[..5], [json!(20), json!("v"), json!(30), json!(true), json!(true)]);
    assert_eq!(row[5], json!(r#"{"b":[10,20,30]}"#));
    assert_eq!(dynamic(&row[6])["s"], json!("ok"));
    assert_eq!(row[7], json!(3));
}

#[tokio::test]
async fn array_and_bag_functions() {
    let row = one_row(
        r#"print bag_pack("name", "x", "n", 5), pack_array(1, "a"), array_sort_asc(set_union(dynamic([3,1]), dynamic([1,2]))),
            array_concat(dynamic([1]), dynamic(["a"])), set_intersect(dynamic([1,2,3]), dynamic([3,2])),
            set_difference(dynamic([1,2,3]), dynamic([2])), array_slice(dynamic([1,2,3,4]), 1, -2),
            array_sort_asc(bag_keys(dynamic({"y":2,"x":1}))), array_index_of(dynamic(["a","b"]), "b")"#,
    )
    .await;
    assert_eq!(dynamic(&row[0]), json!({"name": "x", "n": 5}));
    assert_eq!(dynamic(&row[1]), json!([1, "a"]));
    assert_eq!(dynamic(&row[2]), json!([1, 2, 3]));
    assert_eq!(dynamic(&row[3]), json!([1, "a"]));
    assert_eq!(dynamic(&row[4]), json!([2, 3]));
    assert_eq!(dynamic(&row[5]), json!([1, 3]));
    assert_eq!(dynamic(&row[6]), json!([2, 3]));
    assert_eq!(dynamic(&row[7]), json!(["x", "y"]));
    assert_eq!(row[8], json!(1));
}

#[tokio::test]
async fn datetime_functions() {
    let row = one_row(
        "let t = datetime(2024-03-15 13:47:12); print startofweek(t), endofmonth(t), dayofweek(t), getyear(t),
            datetime_part('hour', t), datetime_diff('day', datetime(2024-03-15), datetime(2024-03-01)),
            datetime_add('month', 1, datetime(2024-01-31)), format_datetime(t, 'yyyy-MM-dd HH:mm'),
            make_datetime(2024, 2, 29), unixtime_seconds_todatetime(0), tostring(t), tostring(90m)",
    )
    .await;
    assert_eq!(row[0], json!("2024-03-10T00:00:00.0000000Z"));
    assert_eq!(row[1], json!("2024-03-31T23:59:59.9999999Z"));
    assert_eq!(row[2..6], [json!("5.00:00:00"), json!(2024), json!(13), json!(14)]);
    assert_eq!(row[6], json!("2024-02-29T00:00:00.0000000Z"));
    assert_eq!(row[7], json!("2024-03-15 13:47"));
    assert_eq!(row[8], json!("2024-02-29T00:00:00.0000000Z"));
    assert_eq!(row[9], json!("1970-01-01T00:00:00.0000000Z"));
    assert_eq!(row[10..], [json!("2024-03-15T13:47:12Z"), json!("01:30:00")]);
}

#[tokio::test]
async fn conversions_math_and_conditionals() {
    let row = one_row(
        r#"print toint("x"), todatetime("2024-01-02"), totimespan("1.02:03:04"), tobool("true"), tostring(2.5),
            sqrt(-1.0), pow(2, 10), log10(100.0), case(1 > 2, "a", 2 > 1, "b", "c"), coalesce("", "x"),
            coalesce(long(null), 7), 3 * 1h, 1h / 30m, max_of(1, 5, 3)"#,
    )
    .await;
    assert_eq!(row[..4], [Json::Null, json!("2024-01-02T00:00:00.0000000Z"), json!("1.02:03:04"), json!(true)]);
    assert_eq!(row[4..8], [json!("2.5"), Json::Null, json!(1024.0), json!(2.0)]);
    assert_eq!(row[8..], [json!("b"), json!("x"), json!(7), json!("03:00:00"), json!(2.0), json!(5)]);
}

#[tokio::test]
async fn ip_url_path_and_hash_functions() {
    let row = one_row(
        r#"print ipv4_is_in_range("10.1.2.3", "10.1.0.0/16"), ipv4_is_private("172.32.0.1"),
            ipv4_compare("10.0.0.2", "10.0.0.10"), parse_ipv4("127.0.0.1"), ipv4_is_match("192.168.1.1", "192.168.1.255", 24),
            tostring(parse_url("https://example.com:8443/a?x=1")["Query Parameters"].x),
            tostring(parse_path(@"C:\Windows\cmd.exe").Filename), hash_md5("abc"), hash_sha1("abc"),
            base64_decode_tostring(base64_encode_tostring("Kusto"))"#,
    )
    .await;
    assert_eq!(row[..5], [json!(true), json!(false), json!(-1), json!(2_130_706_433), json!(true)]);
    assert_eq!(row[5..7], [json!("1"), json!("cmd.exe")]);
    assert_eq!(row[7], json!("900150983cd24fb0d6963f7d28e17f72"));
    assert_eq!(row[8], json!("a9993e364706816aba3e25717850c26c9cd0d89d"));
    assert_eq!(row[9], json!("Kusto"));
}

#[tokio::test]
async fn ip_geolocation_reads_the_configured_database() {
    let db = watchpost_geo::GeoDb::from_bytes(watchpost_geo::testing::sample_database(), "sample").unwrap();
    let fx = fixture(EngineOptions { geo: Some(std::sync::Arc::new(db)), ..EngineOptions::default() });
    let text = r#"datatable(Ip: string) ["20.53.203.50", "2a03:2880:f12c:83:face:b00c::25de", "89.160.20.1", "10.0.0.1", "nonsense", "20.53.203.50"]
        | extend Info = geo_info_from_ip_address(Ip), Location = geo_location(Ip)
        | extend Country = tostring(Info.country), Latitude = todouble(Info.latitude)"#;
    let (_, printed) = rows(&fx.engine, &request(text)).await;
    assert_eq!(
        dynamic(&printed[0][1]),
        json!({"country": "Australia", "state": "New South Wales", "city": "Sydney", "latitude": -33.8715, "longitude": 151.2006})
    );
    assert_eq!(dynamic(&printed[0][2])["region"], json!("Oceania"));
    assert_eq!(printed[0][3..], [json!("Australia"), json!(-33.8715)]);
    assert_eq!(dynamic(&printed[1][1])["city"], json!("Boca Raton"));
    // A record with a country only, an address outside every network, and
    // text that is no address.
    assert_eq!(dynamic(&printed[2][1]), json!({"country": "Sweden"}));
    assert_eq!(dynamic(&printed[3][1]), json!({}));
    assert_eq!(printed[3][3], json!(""));
    assert_eq!(printed[4][1], Json::Null);
    assert_eq!(printed[5][1], printed[0][1]);
}

#[tokio::test]
async fn ip_geolocation_without_a_database_knows_no_place() {
    let row =
        one_row(r#"print geo_info_from_ip_address("20.53.203.50"), geo_location("20.53.203.50"), geo_location("x")"#)
            .await;
    assert_eq!(dynamic(&row[0]), json!({}));
    assert_eq!(dynamic(&row[1]), json!({}));
    assert_eq!(row[2], Json::Null);
}
