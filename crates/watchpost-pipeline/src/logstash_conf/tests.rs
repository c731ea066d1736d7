use chrono::Utc;
use serde_json::Value as Json;

use super::*;
use crate::{Event, Processed};

const CONF: &str = r#"
# The grok spec's example, trimmed to what this build supports.
input {
  file { path => ["/var/log/app/*.log"] start_position => "beginning" }
  syslog { port => 25224 }
}
filter {
  if [message] =~ /^\{/ {
    json { source => "message" }
  } else if [message] =~ /^\d/ or "web" in [tags] {
    grok {
      match => { "message" => ["^%{IPORHOST:clientip} %{WORD:verb} %{NUMBER:status:int} \[%{HTTPDATE:when}\]$", "^%{INT:only}$"] }
      add_tag => [ "web" ]
    }
    date { match => ["when", "dd/MMM/yyyy:HH:mm:ss Z"] remove_field => "when" }
  } else {
    drop { }
  }
  mutate {
    rename => { "clientip" => "[client][ip]" }
    lowercase => [ "verb" ]
    add_field => { "pipeline" => "web-%{verb}" }
  }
  if [status] and [status] >= 500 { mutate { add_tag => "server_error" } }
}
output {
  microsoft-logstash-output-azure-loganalytics {
    workspace_id => "ws"  workspace_key => "c2hhcmVkX2tleQ=="  custom_log_table_name => "Apache"
  }
  stdout { codec => rubydebug }
}
"#;

const TOML: &str = r#"
on_failure = "tag"
[[transform]]
type = "if"
condition = '[message] =~ /^\{/'
[[transform.then]]
type = "json"
source = "message"
[[transform.else_if]]
condition = '[message] =~ /^\d/ or "web" in [tags]'
[[transform.else_if.then]]
type = "grok"
match = { message = ['^%{IPORHOST:clientip} %{WORD:verb} %{NUMBER:status:int} \[%{HTTPDATE:when}\]$', '^%{INT:only}$'] }
add_tag = ["web"]
[[transform.else_if.then]]
type = "date"
match = ["when", "dd/MMM/yyyy:HH:mm:ss Z"]
remove_field = "when"
[[transform.else]]
type = "drop"

[[transform]]
type = "mutate"
rename = { clientip = "[client][ip]" }
lowercase = ["verb"]
add_field = { pipeline = "web-%{verb}" }

[[transform]]
type = "if"
condition = '[status] and [status] >= 500'
[[transform.then]]
type = "mutate"
add_tag = "server_error"
"#;

fn normalised(processed: Processed) -> String {
    match processed {
        Processed::Event(mut event) => {
            // Events the date filter did not touch carry the time they were made.
            if event.fields.contains_key("status") {
                return Json::Object(event.fields).to_string();
            }
            event.fields.remove("@timestamp");
            Json::Object(event.fields).to_string()
        }
        other => format!("{other:?}"),
    }
}

#[test]
fn conf_and_toml_give_the_same_events() {
    let conf = parse(CONF, "web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conf.sources.len(), 2);
    assert_eq!(conf.sources[1]["listen"].as_str(), Some("0.0.0.0:25224"));
    assert_eq!(conf.sinks[0]["type"].as_str(), Some("data_collector"));
    assert_eq!(conf.sinks[0]["custom_log_table_name"].as_str(), Some("Apache"));
    let conf = conf.compile().unwrap_or_else(|e| panic!("{e}"));
    let toml = PipelineConfig::from_toml(TOML).unwrap().compile().unwrap();
    let lines = [
        "10.0.0.1 GET 200 [10/Oct/2000:13:55:36 -0700]",
        "10.0.0.2 POST 503 [10/Oct/2000:13:55:37 -0700]",
        "42",
        "9 not a match",
        r#"{"verb":"PUT","n":1}"#,
        "plain text",
    ];
    let mut seen_events = 0;
    for line in lines {
        let now = Utc::now();
        let from_conf = normalised(conf.process(Event::from_message(line, now)));
        let from_toml = normalised(toml.process(Event::from_message(line, now)));
        assert_eq!(from_conf, from_toml, "{line}");
        seen_events += usize::from(!from_conf.starts_with("Dropped"));
    }
    assert_eq!(seen_events, 5);
    let first = match conf.process(Event::from_message(lines[1], Utc::now())) {
        Processed::Event(event) => event,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.fields["client"]["ip"], "10.0.0.2");
    assert_eq!(first.fields["verb"], "post");
    assert_eq!(first.fields["pipeline"], "web-post");
    assert_eq!(first.fields["@timestamp"], "2000-10-10T20:55:37Z");
    assert!(first.has_tag("web") && first.has_tag("server_error"));
    let failed = match conf.process(Event::from_message("9 not a match", Utc::now())) {
        Processed::Event(event) => event,
        other => panic!("{other:?}"),
    };
    assert!(failed.has_tag("_grokparsefailure"));
}

#[test]
fn unsupported_plugins_and_options_are_named() {
    let err = |text: &str| match parse(text, "p").and_then(|c| c.compile().map(|_| ())) {
        Ok(()) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err("input {\n  kafka { topics => [\"a\"] }\n}"),
        "line 2: input plugin `kafka` is not supported (file, syslog, http)"
    );
    assert!(err("filter { grok { match => { \"message\" => \"%{WORD:w}\" } patterns_dir => [\"/x\"] } }")
        .contains("transform[0] (grok): option `patterns_dir` is not supported"));
    assert!(err("filter { translate { source => \"ip\" } }").contains("unsupported transform type `translate`"));
    assert!(err("filter { geoip { source => \"ip\" } }").contains("option `database` is required"));
    assert!(err("filter { mutate { add_tag => [\"a\"] frobnicate => 1 } }").contains("unsupported option `frobnicate`"));
    assert!(err("output { elasticsearch { hosts => [\"x\"] } }").contains("line 1: output plugin `elasticsearch`"));
    assert!(err("filter {\n if [a] == { drop {} } }").contains("line 2"));
    assert!(err("output { if [a] { stdout {} } }").contains("conditionals in the output section"));
}

#[test]
fn http_input_maps_onto_the_http_source() {
    let config = parse(
        "input { http { host => \"127.0.0.1\" port => 8765 user => \"u\" password => \"p\" codec => \"plain\" } }\n\
         output { stdout {} }",
        "p",
    )
    .unwrap();
    let source = &config.sources[0];
    assert_eq!(source["type"].as_str(), Some("http"));
    assert_eq!(source["listen"].as_str(), Some("127.0.0.1:8765"));
    assert_eq!((source["username"].as_str(), source["password"].as_str()), (Some("u"), Some("p")));
    assert_eq!(source["format"].as_str(), Some("lines"));
    let err = parse("input { http { codec => \"avro\" } }\noutput { stdout {} }", "p").unwrap_err().to_string();
    assert!(err.contains("codec \"avro\" is not supported"), "{err}");
}
