use std::sync::Arc;

use watchpost_metastore::Metastore;
use watchpost_storage::{Store, StoreOptions};

use super::*;

fn control() -> (tempfile::TempDir, Control, String) {
    let dir = tempfile::tempdir().unwrap();
    let metastore = Arc::new(Metastore::open(dir.path()).unwrap());
    let workspace = metastore.ensure_workspace(None, None).unwrap().id;
    let store =
        Arc::new(Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() }).unwrap());
    (dir, Control::new(metastore, store), workspace)
}

#[test]
fn function_commands_parse_with_properties_parameters_and_body() {
    let text = ".create-or-alter function with (folder = \"Parsers\", docstring = 'Reads \\'x\\'', skipvalidation = \"true\")\n\
                MyParser(starttime: datetime = datetime(null), T: (*)) {\n  T | where x == \"}\" \n};";
    let Command::SaveFunction { spec, mode, if_not_exists } = parse_command(text).unwrap() else { panic!() };
    assert_eq!(mode, SaveMode::CreateOrReplace);
    assert!(!if_not_exists);
    assert_eq!(spec.name, "MyParser");
    assert_eq!(spec.parameters, "starttime: datetime = datetime(null), T: (*)");
    assert_eq!(spec.body, "T | where x == \"}\"");
    assert_eq!(spec.category, "Parsers");
    assert_eq!(spec.description, "Reads 'x'");
    assert_eq!(
        parse_command(".drop function ['My Parser'] ifexists").unwrap(),
        Command::DropFunction { name: "My Parser".into(), if_exists: true }
    );
    assert_eq!(parse_command("  .show functions ").unwrap(), Command::ShowFunctions);
    assert_eq!(parse_command(".SHOW TABLES;").unwrap(), Command::ShowTables);
    let Command::DeclareTable { name, columns, merge } =
        parse_command(".create-merge table App_CL (TimeGenerated:datetime, ['Raw Data']:string)").unwrap()
    else {
        panic!()
    };
    assert_eq!((name.as_str(), merge), ("App_CL", true));
    assert_eq!(columns[1], ColumnDef::new("Raw Data", KqlType::String));
}

#[test]
fn bad_commands_say_what_is_wrong() {
    let message = |text: &str| parse_command(text).unwrap_err().to_string();
    assert!(message(".purge table T").contains("unsupported control command"));
    assert!(message(".create function F { T }").contains("expected `(`"));
    assert!(message(".create function F() T").contains("expected `{`"));
    assert!(message(".create function F() { T } extra").contains("unexpected text"));
    assert!(message(".show tables please").contains("unexpected text"));
    assert!(message(".create table T (a)").contains("Column:type"));
    assert!(message(".create table T (a:text)").contains("unknown type"));
    assert!(message(".create function F(x:long { T }").contains("never closed"));
}

#[test]
fn commands_create_show_alter_and_drop_functions() {
    let (_dir, control, ws) = control();
    let run = |text: &str| control.run_command(&ws, text, Access::ReadWrite);
    let created = run(".create function with (folder='P') F(n:long = 2) { Syslog | take n }").unwrap();
    assert_eq!(created.rows[0][0], json!("F"));
    assert_eq!(created.rows[0][1], json!("(n:long = 2)"));
    assert_eq!(created.rows[0][3], json!("P"));
    let again = run(".create function F() { Syslog }").unwrap_err();
    assert_eq!(again.kind(), crate::ControlErrorKind::Conflict);
    run(".create function ifnotexists F() { Syslog }").unwrap();
    assert_eq!(control.function(&ws, "F").unwrap().parameters, "n:long = 2", "ifnotexists leaves it alone");
    run(".alter function F() { Heartbeat }").unwrap();
    assert_eq!(control.function(&ws, "F").unwrap().body, "Heartbeat");
    assert_eq!(run(".alter function G() { T }").unwrap_err().kind(), crate::ControlErrorKind::NotFound);
    let shown = run(".show functions").unwrap();
    assert_eq!(
        shown.columns.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        ["Name", "Parameters", "Body", "Folder", "DocString"]
    );
    assert_eq!(shown.rows.len(), 1);
    let read_only = control.run_command(&ws, ".drop function F", Access::ReadOnly).unwrap_err();
    assert_eq!(read_only.kind(), crate::ControlErrorKind::Forbidden);
    assert_eq!(run(".drop function F").unwrap().rows, vec![vec![json!("F")]]);
    assert_eq!(run(".drop function F").unwrap_err().kind(), crate::ControlErrorKind::NotFound);
    assert!(run(".drop function F ifexists").unwrap().rows.is_empty());
    assert_eq!(run(".create function Syslog() { Heartbeat }").unwrap_err().kind(), crate::ControlErrorKind::Conflict);
}

#[test]
fn table_commands_declare_and_show_tables() {
    let (_dir, control, ws) = control();
    let run = |text: &str| control.run_command(&ws, text, Access::ReadWrite);
    let created = run(".create table App_CL (TimeGenerated:datetime, RawData:string)").unwrap();
    let names: Vec<&Json> = created.rows.iter().map(|row| &row[0]).collect();
    assert_eq!(names[..2], [&json!("TimeGenerated"), &json!("RawData")]);
    assert!(names.contains(&&json!("TenantId")), "custom tables get the standard columns");
    assert_eq!(
        run(".create table App_CL (TimeGenerated:datetime)").unwrap_err().kind(),
        crate::ControlErrorKind::Conflict
    );
    let merged = run(".alter-merge table App_CL (Level:long)").unwrap();
    assert!(merged.rows.iter().any(|row| row[0] == json!("Level") && row[1] == json!("System.Int64")));
    let err = run(".alter-merge table App_CL (Level:string)").unwrap_err();
    assert_eq!(err.kind(), crate::ControlErrorKind::InvalidInput, "{err}");
    assert_eq!(
        run(".create table NoSuffix (TimeGenerated:datetime)").unwrap_err().kind(),
        crate::ControlErrorKind::InvalidInput
    );
    assert_eq!(run(".create table B_CL (RawData:string)").unwrap_err().kind(), crate::ControlErrorKind::InvalidInput);
    let err = run(".alter-merge table Syslog (Extra:string)").unwrap_err();
    assert!(err.to_string().contains("fixed schema"), "{err}");
    let tables = run(".show tables").unwrap();
    let table_names: Vec<&Json> = tables.rows.iter().map(|row| &row[0]).collect();
    assert!(table_names.contains(&&json!("App_CL")));
    assert!(table_names.contains(&&json!("ASimDnsActivityLogs")));
    let syslog = run(".show table Syslog").unwrap();
    assert!(syslog.rows.iter().any(|row| row[0] == json!("SyslogMessage")));
}
