//! `serve --geoip-db`: the database is opened at start-up (a bad path stops
//! the server with a message naming it) and queries look up in it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const WS: &str = "3d1c5e2a-0000-4000-8000-0000000000cc";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

fn serve(data_dir: &std::path::Path, geoip_db: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_watchpost"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--workspace", &format!("{WS}={KEY}"), "--geoip-db"])
        .arg(geoip_db);
    command
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn a_missing_database_stops_the_server_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let output = serve(dir.path(), &dir.path().join("nowhere.mmdb")).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the GeoIP database") && stderr.contains("nowhere.mmdb"), "{stderr}");
}

#[test]
fn queries_look_up_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    std::fs::write(&db, watchpost_geo::testing::sample_database()).unwrap();
    let mut child = serve(&dir.path().join("data"), &db).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let _server = Server(child);
    let mut lines = Vec::new();
    let mut address = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Watchpost is listening on ") {
            address = Some(rest.trim().to_string());
            break;
        }
        lines.push(line);
    }
    let address = address.unwrap_or_else(|| panic!("the server did not start: {lines:?}"));
    assert!(
        lines.iter().any(|line| line.contains("GeoIP database:") && line.contains("Watchpost-Test-City")),
        "{lines:?}"
    );

    let answer: serde_json::Value = ureq::post(&format!("{address}/v1/workspaces/{WS}/query"))
        .set("authorization", &format!("Bearer {KEY}"))
        .send_json(serde_json::json!({"query": "print g = geo_info_from_ip_address('20.53.203.50') | project City = tostring(g.city), Lat = todouble(g.latitude)"}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(answer["tables"][0]["rows"], serde_json::json!([["Sydney", -33.8715]]));
}
