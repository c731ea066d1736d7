//! Binder tests: resolved output schemas and Kusto-style diagnostics.

use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use super::*;

struct Catalog;

impl TableCatalog for Catalog {
    fn table(&self, name: &str) -> Option<TableSchema> {
        (name == "SigninLogs").then(|| {
            TableSchema::new(vec![
                ColumnDef::new("TimeGenerated", KqlType::Datetime),
                ColumnDef::new("UserPrincipalName", KqlType::String),
                ColumnDef::new("ResultType", KqlType::String),
                ColumnDef::new("Bytes", KqlType::Long),
            ])
        })
    }

    fn table_names(&self) -> Vec<String> {
        vec!["SigninLogs".into()]
    }
}

fn output(text: &str) -> Vec<String> {
    let (query, syntax) = watchpost_kql_syntax::parse(text);
    assert!(syntax.is_empty(), "{syntax:?}");
    let (bound, diagnostics) = bind(&query, &Catalog);
    assert!(diagnostics.is_empty(), "{}", diagnostics[0].render(text));
    bound.unwrap().schema.columns.iter().map(|c| format!("{}:{}", c.name, c.kql_type)).collect()
}

fn errors(text: &str) -> Vec<String> {
    let (query, syntax) = watchpost_kql_syntax::parse(text);
    assert!(syntax.is_empty(), "{syntax:?}");
    let (bound, diagnostics) = bind(&query, &Catalog);
    assert!(bound.is_none());
    diagnostics.iter().map(|d| d.render(text)).collect()
}

#[test]
fn output_schemas_follow_kusto_naming() {
    assert_eq!(
        output("SigninLogs | summarize count(), sum(Bytes), dcount(UserPrincipalName) by bin(TimeGenerated, 1h)"),
        ["TimeGenerated:datetime", "count_:long", "sum_Bytes:long", "dcount_UserPrincipalName:long"]
    );
    assert_eq!(output("SigninLogs | count"), ["Count:long"]);
    assert_eq!(
        output("SigninLogs | project UserPrincipalName, Kb = Bytes / 1024.0"),
        ["UserPrincipalName:string", "Kb:real"]
    );
    assert_eq!(
        output("SigninLogs | extend Bytes = Bytes * 2, Bytes + 1"),
        ["TimeGenerated:datetime", "UserPrincipalName:string", "ResultType:string", "Bytes:long", "Column1:long"]
    );
    assert_eq!(output("SigninLogs | project-away Bytes, ResultType").len(), 2);
    assert_eq!(output("SigninLogs | project-rename User = UserPrincipalName")[1], "User:string");
    assert_eq!(output("let t = SigninLogs | where Bytes > 1; t | take 5").len(), 4);
    assert_eq!(output("let limit = 10; SigninLogs | where Bytes > limit | top 3 by Bytes").len(), 4);
}

#[test]
fn errors_say_what_and_where() {
    assert_eq!(
        errors("SigninLog | take 1"),
        ["1:1: KQL2001: Failed to resolve table or column expression named 'SigninLog' (hint: did you mean 'SigninLogs'?)"]
    );
    assert_eq!(
        errors("SigninLogs\n| where ResultTyp == '0'"),
        ["2:9: KQL2002: Failed to resolve scalar expression named 'ResultTyp' (hint: did you mean 'ResultType'?)"]
    );
    let mismatch = errors("SigninLogs | where Bytes > 'x'");
    assert!(
        mismatch[0].starts_with("1:20: KQL2006: Cannot apply '>' to values of types long and string"),
        "{mismatch:?}"
    );
    assert!(errors("SigninLogs | where Bytes")[0].contains("where expects a bool predicate"));
    assert!(errors("SigninLogs | extend x = nosuch(1)")[0].contains("Unknown function: 'nosuch'"));
    assert!(errors("SigninLogs | extend x = count()")[0].contains("can only be used in summarize"));
    // Every problem is reported, not only the first.
    assert_eq!(errors("SigninLogs | project A, B").len(), 2);
}

#[test]
fn function_calls_are_checked_against_their_signatures() {
    assert_eq!(
        errors("SigninLogs | extend x = tolowr(ResultType)"),
        ["1:25: KQL2003: Unknown function: 'tolowr' (hint: did you mean 'tolower'?)"]
    );
    assert_eq!(
        errors("SigninLogs\n| extend x = substring(ResultType)"),
        ["2:14: KQL2007: function 'substring' expects 2 to 3 argument(s), got 1"]
    );
    assert!(errors("SigninLogs | extend x = case(Bytes > 1, 'a', Bytes > 2, 'b')")[0].contains("case() expects pairs"));
    assert!(errors("SigninLogs | extend x = iff(Bytes > 1, 'a', 1)")[0].contains("all results must have the same type"));
    assert!(errors("SigninLogs | extend x = bag_pack('a')")[0].contains("pairs of key and value"));
    assert!(errors("SigninLogs | extend x = Bytes.a")[0].contains("need a dynamic value, got long"));
    assert!(errors("SigninLogs | extend x = extract('a', 0, ResultType, 5)")[0].contains("typeof(T)"));
}

#[test]
fn function_results_are_typed() {
    assert_eq!(
        output(
            "SigninLogs | project a = extract(@'(\\d+)', 1, ResultType, typeof(long)), b = parse_json(ResultType).x[0], \
             c = todouble(Bytes), d = dayofweek(TimeGenerated), e = coalesce(Bytes, 1), f = parsejson('[]')"
        ),
        ["a:long", "b:dynamic", "c:real", "d:timespan", "e:long", "f:dynamic"]
    );
}
