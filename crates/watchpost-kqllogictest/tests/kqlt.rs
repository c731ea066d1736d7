//! Runs every `.kqlt` file under `test_files/`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kqlt_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_files");
    let (failures, files) = watchpost_kqllogictest::run_dir(&dir).await;
    assert!(files > 0, "no .kqlt files under {}", dir.display());
    let report: Vec<String> =
        failures.iter().map(|(file, failure)| format!("{file}:{}: {}", failure.line, failure.message)).collect();
    assert!(report.is_empty(), "{} failing record(s):\n{}", report.len(), report.join("\n\n"));
}
