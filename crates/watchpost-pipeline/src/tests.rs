//! Whole-pipeline tests: grok's standard patterns on known sample lines,
//! and TOML pipelines with conditions, dates and mutations.

use chrono::Utc;
use serde_json::{json, Value as Json};

use crate::{Event, PipelineConfig, Processed};

fn run(config: &str, line: &str) -> Processed {
    let pipeline =
        PipelineConfig::from_toml(config).unwrap_or_else(|e| panic!("{e}")).compile().unwrap_or_else(|e| panic!("{e}"));
    pipeline.process(Event::from_message(line, Utc::now()))
}

fn fields(processed: Processed) -> serde_json::Map<String, Json> {
    match processed {
        Processed::Event(event) => event.fields,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn grok(pattern: &str, line: &str) -> serde_json::Map<String, Json> {
    let config = format!("[[transform]]\ntype = \"grok\"\nmatch = {{ message = {} }}\n", json!(pattern));
    fields(run(&config, line))
}

#[test]
fn grok_apache_combined() {
    let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
    let f = grok("%{COMBINEDAPACHELOG}", line);
    assert_eq!(f["clientip"], "127.0.0.1");
    assert_eq!(f["ident"], "-");
    assert_eq!(f["auth"], "frank");
    assert_eq!(f["timestamp"], "10/Oct/2000:13:55:36 -0700");
    assert_eq!(f["verb"], "GET");
    assert_eq!(f["request"], "/apache_pb.gif");
    assert_eq!(f["httpversion"], "1.0");
    assert_eq!(f["response"], "200");
    assert_eq!(f["bytes"], "2326");
    assert_eq!(f["referrer"], "\"http://www.example.com/start.html\"");
    assert_eq!(f["agent"], "\"Mozilla/4.08 [en] (Win98; I ;Nav)\"");
}

#[test]
fn grok_syslog_sshd() {
    let line = "Mar  7 08:01:02 bastion sshd[4242]: Failed password for root from 203.0.113.9 port 22 ssh2";
    let f = grok("%{SYSLOGBASE} %{GREEDYDATA:syslog_message}", line);
    assert_eq!(f["timestamp"], "Mar  7 08:01:02");
    assert_eq!(f["logsource"], "bastion");
    assert_eq!(f["program"], "sshd");
    assert_eq!(f["pid"], "4242");
    assert_eq!(f["syslog_message"], "Failed password for root from 203.0.113.9 port 22 ssh2");
}

#[test]
fn grok_rfc5424_line() {
    let line = r#"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 [exampleSDID@32473 iut="3"] 'su root' failed"#;
    let f = grok("%{SYSLOG5424LINE}", line);
    assert_eq!(f["syslog5424_pri"], "34");
    assert_eq!(f["syslog5424_ver"], "1");
    assert_eq!(f["syslog5424_ts"], "2003-10-11T22:14:15.003Z");
    assert_eq!(f["syslog5424_host"], "mymachine.example.com");
    assert_eq!(f["syslog5424_app"], "su");
    assert_eq!(f["syslog5424_msgid"], "ID47");
    assert_eq!(f["syslog5424_sd"], r#"[exampleSDID@32473 iut="3"]"#);
    assert_eq!(f["syslog5424_msg"], "'su root' failed");
}

#[test]
fn grok_cisco_asa_deny() {
    let line =
        r#"Deny tcp src outside:203.0.113.5/4455 dst inside:10.1.1.10/443 by access-group "OUTSIDE_IN" [0x0, 0x0]"#;
    let f = grok("%{CISCOFW106023}", line);
    assert_eq!(f["action"], "Deny");
    assert_eq!(f["protocol"], "tcp");
    assert_eq!(f["src_interface"], "outside");
    assert_eq!(f["src_ip"], "203.0.113.5");
    assert_eq!(f["src_port"], "4455");
    assert_eq!(f["dst_ip"], "10.1.1.10");
    assert_eq!(f["dst_port"], "443");
    assert_eq!(f["policy_id"], "OUTSIDE_IN");
}

#[test]
fn grok_typed_captures_ipv6_uuid_and_nested_fields() {
    let f = grok(
        "^%{IP:[client][ip]} %{NUMBER:n:int} %{NUMBER:ratio:float} %{UUID:id} %{TIMESTAMP_ISO8601:ts} %{LOGLEVEL:level}",
        "2001:db8::8a2e:370:7334 42 0.25 123e4567-e89b-12d3-a456-426614174000 2024-01-02T03:04:05.123Z WARN",
    );
    assert_eq!(f["client"], json!({"ip": "2001:db8::8a2e:370:7334"}));
    assert_eq!(f["n"], 42);
    assert_eq!(f["ratio"], 0.25);
    assert_eq!(f["id"], "123e4567-e89b-12d3-a456-426614174000");
    assert_eq!(f["ts"], "2024-01-02T03:04:05.123Z");
    assert_eq!(f["level"], "WARN");
}

#[test]
fn grok_several_patterns_break_on_match_and_failure() {
    let config = r#"
        [[transform]]
        type = "grok"
        match = { message = ["^%{INT:a:int}$", "^%{WORD:w} %{INT:b:int}$", "^%{WORD:w}"] }
    "#;
    let f = fields(run(config, "hello 5"));
    assert_eq!((f["w"].clone(), f["b"].clone()), (json!("hello"), json!(5)));
    let all = config.replace("type = \"grok\"", "type = \"grok\"\nbreak_on_match = false");
    let f = fields(run(&all, "hello 5"));
    // The third pattern matches too; `w` is captured twice, so it becomes an array.
    assert_eq!(f["w"], json!(["hello", "hello"]).as_array().unwrap()[0]);
    match run(config, "!!!") {
        Processed::DeadLetter { event, step, reason } => {
            assert!(event.has_tag("_grokparsefailure"));
            assert_eq!(step, "transform[0] (grok)");
            assert!(reason.contains("no grok pattern matched [message]"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let tagging = format!("on_failure = \"tag\"\n{config}");
    let f = fields(run(&tagging, "!!!"));
    assert_eq!(f["tags"], json!(["_grokparsefailure"]));
}

#[test]
fn grok_overwrite_and_pattern_definitions() {
    let config = r#"
        [[transform]]
        type = "grok"
        match = { message = "^%{STAMP:ts} %{GREEDYDATA:message}" }
        pattern_definitions = { STAMP = "\\d{2}:\\d{2}" }
        overwrite = ["message"]
    "#;
    let f = fields(run(config, "12:30 the rest"));
    assert_eq!(f["ts"], "12:30");
    assert_eq!(f["message"], "the rest");
}

#[test]
fn conditions_date_mutate_and_drop() {
    let config = r##"
        name = "web"
        [[transform]]
        type = "grok"
        match = { message = "^%{IPORHOST:clientip} %{WORD:verb} %{NUMBER:status:int} \\[%{HTTPDATE:when}\\]" }

        [[transform]]
        type = "date"
        match = ["when", "dd/MMM/yyyy:HH:mm:ss Z"]
        remove_field = ["when"]

        [[transform]]
        type = "if"
        condition = '[status] >= 500'
        [[transform.then]]
        type = "mutate"
        add_tag = ["server_error"]
        [[transform.else_if]]
        condition = '[verb] == "HEAD"'
        [[transform.else_if.then]]
        type = "drop"
        [[transform.else]]
        type = "mutate"
        rename = { clientip = "[client][ip]" }
        uppercase = ["verb"]
        gsub = ["message", "\\d", "#"]
        convert = { status = "string" }
    "##;
    let f = fields(run(config, "10.0.0.1 get 200 [10/Oct/2000:13:55:36 -0700]"));
    assert_eq!(f["@timestamp"], "2000-10-10T20:55:36Z");
    assert!(!f.contains_key("when"));
    assert_eq!(f["client"], json!({"ip": "10.0.0.1"}));
    assert_eq!(f["verb"], "GET");
    assert_eq!(f["status"], "200");
    assert_eq!(f["message"], "##.#.#.# get ### [##/Oct/####:##:##:## -####]");
    let f = fields(run(config, "10.0.0.1 get 503 [10/Oct/2000:13:55:36 -0700]"));
    assert_eq!(f["tags"], json!(["server_error"]));
    assert!(matches!(run(config, "10.0.0.1 HEAD 200 [10/Oct/2000:13:55:36 -0700]"), Processed::Dropped { .. }));
}

#[test]
fn json_transform_and_per_step_if() {
    let config = r#"
        [[transform]]
        type = "json"
        source = "message"
        if = '[message] =~ /^\{/'
        add_field = { parsed = "yes %{user}" }
    "#;
    let f = fields(run(config, r#"{"user":"ann","n":3}"#));
    assert_eq!((f["user"].clone(), f["n"].clone(), f["parsed"].clone()), (json!("ann"), json!(3), json!("yes ann")));
    let f = fields(run(config, "plain text"));
    assert!(!f.contains_key("parsed"));
    let bad = config.replace("if = '[message] =~ /^\\{/'", "");
    assert!(matches!(run(&bad, "{oops"), Processed::DeadLetter { .. }));
}

#[test]
fn config_errors_name_the_step_and_option() {
    let err = |text: &str| match PipelineConfig::from_toml(text).and_then(|c| c.compile()) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err("[[transform]]\ntype = \"grok\"\nmatch = { message = \"%{WORD:w}\" }\nmtach = 1"),
        "transform[0] (grok): unsupported option `mtach`"
    );
    assert!(err("[[transform]]\ntype = \"translate\"").contains("unsupported transform type `translate`"));
    assert!(err("[[transform]]\ntype = \"geoip\"").contains("option `source` is required"));
    assert!(err("[[transform]]\ntype = \"geoip\"\nsource = \"ip\"").contains("option `database` is required"));
    let missing = err("[[transform]]\ntype = \"geoip\"\nsource = \"ip\"\ndatabase = \"/nowhere/City.mmdb\"");
    assert!(missing.contains("cannot open the GeoIP database /nowhere/City.mmdb"), "{missing}");
    assert!(err("[[transform]]\ntype = \"grok\"\nmatch = { message = \"%{NOPE}\" }").contains("NOPE"));
    assert!(err("[[transform]]\ntype = \"date\"\nmatch = [\"t\", \"yyyy QQ\"]").contains("QQ"));
    assert!(err("[[transform]]\ntype = \"mutate\"\nif = \"[a] ==\"").contains("offset"));
    assert!(err("colour = 1").contains("unsupported key `colour`"));
}

#[test]
fn csv_and_kv_transforms() {
    let config = r#"
        [[transform]]
        type = "csv"
        columns = ["user", "count", "note"]
        convert = { count = "integer" }
        [[transform]]
        type = "kv"
        source = "note"
        field_split = " &"
        prefix = "kv_"
        default_keys = { level = "info" }
    "#;
    let f = fields(run(config, r#"ann,3,"a=1 b=""two words""&c=x&a=2",extra"#));
    assert_eq!((f["user"].clone(), f["count"].clone()), (json!("ann"), json!(3)));
    assert_eq!(f["column4"], "extra");
    assert_eq!(f["kv_a"], json!(["1", "2"]));
    assert_eq!(f["kv_b"], "two words");
    assert_eq!(f["kv_c"], "x");
    assert_eq!(f["kv_level"], "info");
    let bad = "[[transform]]\ntype = \"kv\"\nfield_split_pattern = \",\"";
    assert!(PipelineConfig::from_toml(bad).unwrap().compile().is_err());
}

/// `geoip` writes Logstash's fields under its target; an address the
/// database does not know is tagged and the event goes on.
#[test]
fn geoip_enriches_known_addresses_and_tags_the_rest() {
    let dir = std::env::temp_dir().join(format!("watchpost-pipeline-geoip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("City.mmdb");
    std::fs::write(&db, watchpost_geo::testing::sample_database()).unwrap();
    let config = format!(
        "[[transform]]\ntype = \"kv\"\nsource = \"message\"\n[[transform]]\ntype = \"geoip\"\nsource = \"src\"\ntarget = \"[src_geo]\"\ndatabase = {:?}",
        db.display().to_string()
    );
    let f = fields(run(&config, "src=20.53.203.50 user=ann"));
    assert_eq!(
        f["src_geo"],
        json!({"country_name": "Australia", "country_code2": "AU", "continent_name": "Oceania",
               "region_name": "New South Wales", "city_name": "Sydney", "latitude": -33.8715,
               "longitude": 151.2006, "location": {"lat": -33.8715, "lon": 151.2006}})
    );
    assert!(f.get("tags").is_none());
    let f = fields(run(&config, "src=10.0.0.1 user=bob"));
    assert!(f.get("src_geo").is_none());
    assert_eq!(f["tags"], json!(["_geoip_lookup_failure"]));
    let f = fields(run(&config, "user=carol"));
    assert!(f.get("src_geo").is_none() && f.get("tags").is_none());
    std::fs::remove_dir_all(&dir).ok();
}

/// A stand-in for the engine: `upper` upper-cases the first declared
/// column into `Upper` and filters out values equal to "DROP"; it records
/// the records each call saw.
struct FakeKql {
    calls: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>,
}

struct FakeProgram {
    column: String,
    calls: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>,
}

impl crate::KqlEngine for FakeKql {
    fn compile(
        &self,
        query: &str,
        columns: &[watchpost_schema::ColumnDef],
    ) -> Result<Box<dyn crate::KqlProgram>, String> {
        if query != "upper" {
            return Err(format!("unknown query {query:?}"));
        }
        Ok(Box::new(FakeProgram { column: columns[0].name.clone(), calls: self.calls.clone() }))
    }
}

impl crate::KqlProgram for FakeProgram {
    fn run(&self, records: &[&serde_json::Map<String, Json>]) -> Result<Vec<crate::KqlOutcome>, String> {
        let seen = records.iter().map(|r| r.get(&self.column).and_then(Json::as_str).unwrap_or("").to_string());
        self.calls.lock().unwrap().push(seen.collect());
        Ok(records
            .iter()
            .map(|record| match record.get(&self.column) {
                Some(Json::String(text)) if text == "drop" => crate::KqlOutcome::Filtered,
                Some(Json::String(text)) if text == "fail" => {
                    crate::KqlOutcome::Failed { reason: "cannot take fail".to_string(), row: None }
                }
                Some(Json::String(text)) => crate::KqlOutcome::Row(serde_json::Map::from_iter([(
                    "Upper".to_string(),
                    json!(text.to_uppercase()),
                )])),
                _ => crate::KqlOutcome::Failed { reason: format!("no {}", self.column), row: None },
            })
            .collect())
    }
}

#[test]
fn batches_give_what_events_one_by_one_give_and_each_step_sees_its_events_in_order() {
    let config = r#"
[[transform]]
type = "grok"
match = { message = "%{WORD:kind} %{WORD:word}" }
on_failure = "tag"

[[transform]]
type = "if"
condition = '[kind] == "k"'
then = [{ type = "kql", query = "upper", columns = { word = "string" } }]
else = [{ type = "mutate", add_field = { Upper = "other" } }]

[[transform]]
type = "kql"
query = "upper"
columns = { Upper = "string" }
"#;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = FakeKql { calls: calls.clone() };
    let pipeline = PipelineConfig::from_toml(config).unwrap().compile_with(Some(&engine)).unwrap();
    assert!(pipeline.batched());
    let lines = ["k one", "x two", "k drop", "k three", "bad", "k fail", "x four"];
    let now = Utc::now();
    let events = || lines.iter().map(|line| Event::from_message(line, now)).collect::<Vec<_>>();
    let together = pipeline.process_batch(events());
    let batch_calls = std::mem::take(&mut *calls.lock().unwrap());
    let alone: Vec<Processed> = events().into_iter().map(|event| pipeline.process(event)).collect();
    assert_eq!(together, alone);
    // The arm's step saw the `k` events in input order; the last step saw
    // every survivor, in input order, once.
    assert_eq!(batch_calls, [vec!["one", "drop", "three", "fail"], vec!["ONE", "other", "THREE", "other", "other"]]);
    let upper = |processed: &Processed| match processed {
        Processed::Event(event) => event.fields["Upper"].as_str().unwrap().to_string(),
        other => format!("{other:?}"),
    };
    assert_eq!(upper(&together[0]), "ONE");
    assert_eq!(upper(&together[1]), "OTHER");
    assert!(matches!(&together[2], Processed::Dropped { reason, .. } if reason == "filtered out by the query"));
    // The grok failure was tagged and went on through the `else` arm.
    let Processed::Event(bad) = &together[4] else { panic!("{:?}", together[4]) };
    assert!(bad.has_tag("_grokparsefailure"));
    assert_eq!(bad.fields["Upper"], "OTHER");
    // The arm's step failed one event into a dead letter, tagged.
    let Processed::DeadLetter { event, reason, step } = &together[5] else { panic!("{:?}", together[5]) };
    assert_eq!(reason, "cannot take fail");
    assert!(step.contains("then[0] (kql)"), "{step}");
    assert!(event.has_tag("_kqlfailure"));
    assert_eq!(upper(&together[6]), "OTHER");
}

/// A pattern that backtracks exponentially on a line that almost matches.
const RUNAWAY: &str = "^(a|aa)+$";

fn config_for(pattern: &str) -> String {
    format!("[[transform]]\ntype = \"grok\"\ntimeout_millis = 20\nmatch = {{ message = {} }}\n", json!(pattern))
}

fn runaway_line() -> String {
    format!("{}!", "a".repeat(60))
}

#[test]
fn grok_a_runaway_match_is_stopped_and_tagged_as_a_timeout() {
    for timeout in ["timeout_millis = 20", "timeout_millis = 0", ""] {
        let config = format!(
            "[[transform]]\ntype = \"grok\"\n{timeout}\nmatch = {{ message = {} }}\n",
            json!([RUNAWAY, "^%{INT:n}$"])
        );
        match run(&config, &runaway_line()) {
            Processed::DeadLetter { event, reason, .. } => {
                // The second pattern is tried after the first gave up.
                assert!(event.has_tag("_groktimeout"), "{timeout}: {:?}", event.fields);
                assert!(!event.has_tag("_grokparsefailure"), "{timeout}");
                assert!(reason.starts_with("grok timed out: a match "), "{timeout}: {reason}");
            }
            other => panic!("{timeout}: {other:?}"),
        }
        // A pattern after the one that gave up can still match.
        let f = fields(run(&config.replace("^%{INT:n}$", "^%{WORD:w}!$"), &runaway_line()));
        assert_eq!(f["w"], "a".repeat(60), "{timeout}");
    }
    // Unanchored, PCRE2 counts steps afresh at each start position; the
    // runaway still ends as a timeout.
    let unanchored = config_for("(a|aa)+$");
    let Processed::DeadLetter { event, .. } = run(&unanchored, &runaway_line()) else { panic!() };
    assert!(event.has_tag("_groktimeout"), "{:?}", event.fields);
    let scoped = format!(
        "[[transform]]\ntype = \"grok\"\ntimeout_scope = \"event\"\ntag_on_timeout = \"slow\"\nmatch = {{ message = {} }}\n",
        json!([RUNAWAY])
    );
    let Processed::DeadLetter { event, .. } = run(&scoped, &runaway_line()) else { panic!() };
    assert!(event.has_tag("slow"));
}

#[test]
fn grok_a_match_too_deep_for_the_default_jit_stack_is_tried_again_with_a_larger_one() {
    let config = "[[transform]]\ntype = \"grok\"\nmatch = { message = \"^(?<pairs>(x|y)*)$\" }\n";
    // 2,000 characters overflow PCRE2's default 32 KiB JIT stack.
    let f = fields(run(config, &"xy".repeat(1_000)));
    assert_eq!(f["pairs"].as_str().map(str::len), Some(2_000));
    // Too deep even for the larger stack: a timeout, saying why.
    let Processed::DeadLetter { event, reason, .. } = run(config, &"xy".repeat(200_000)) else { panic!() };
    assert!(event.has_tag("_groktimeout"));
    assert!(reason.contains("PCRE2's limit"), "{reason}");
}

#[test]
fn grok_patterns_are_expanded_with_errors_that_name_the_problem() {
    let compile = |grok: &str| {
        let config = format!("[[transform]]\ntype = \"grok\"\n{grok}\n");
        PipelineConfig::from_toml(&config).unwrap().compile().err().map(|e| e.to_string())
    };
    let err = compile("match = { message = \"%{NOPE:x}\" }").unwrap();
    assert!(err.contains("unknown pattern %{NOPE}"), "{err}");
    let err = compile("match = { message = \"%{LOOP}\" }\npattern_definitions = { LOOP = \"a%{LOOP}\" }").unwrap();
    assert!(err.contains("pattern %{LOOP} refers to itself"), "{err}");
    let err = compile("match = { message = \"%{INT:n:hex}\" }").unwrap();
    assert!(err.contains("unknown conversion `hex`"), "{err}");
    let err = compile("match = { message = \"(%{INT:n}\" }").unwrap();
    assert!(err.contains("is not a valid regex"), "{err}");
    let err = compile("timeout_scope = \"line\"\nmatch = { message = \"%{INT:n}\" }").unwrap();
    assert!(err.contains("timeout_scope"), "{err}");
    // Unnamed references capture under their own name when asked to, and
    // a `(?<name>...)` written in a pattern is a capture too.
    let config =
        "[[transform]]\ntype = \"grok\"\nnamed_captures_only = false\nmatch = { message = \"^%{INT} (?<rest>.*)$\" }\n";
    let f = fields(run(config, "42 the rest"));
    assert_eq!((f["INT"].clone(), f["rest"].clone()), (json!("42"), json!("the rest")));
    // An inline definition names a pattern for the rest of the pattern.
    let config =
        "[[transform]]\ntype = \"grok\"\nmatch = { message = \"^%{HEX2:first=[0-9a-f][0-9a-f]}-%{HEX2:second:int}$\" }\n";
    let f = fields(run(config, "ab-12"));
    assert_eq!((f["first"].clone(), f["second"].clone()), (json!("ab"), json!(12)));
}
