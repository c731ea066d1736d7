//! `has` and `has_cs`: whether a text contains a term, where the match must
//! start and end at term boundaries (a term is a run of alphanumeric
//! characters). `has` compares ASCII letters case-insensitively.
//!
//! Written by hand because no DataFusion function matches whole terms; a
//! regular expression per row would be several times slower.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use memchr::memmem;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct HasFunc {
    signature: Signature,
}

impl HasFunc {
    pub(crate) fn new() -> HasFunc {
        HasFunc {
            signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8, DataType::Boolean], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for HasFunc {
    fn name(&self) -> &str {
        "kql_has"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, term, case_sensitive] = args.args.as_slice() else {
            return exec_err!("kql_has expects three arguments");
        };
        let case_sensitive = match case_sensitive {
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(flag))) => *flag,
            _ => return exec_err!("kql_has expects a constant case flag"),
        };
        match (text, term) {
            (ColumnarValue::Array(texts), ColumnarValue::Scalar(ScalarValue::Utf8(Some(term)))) => {
                let matcher = TermMatcher::new(term, case_sensitive);
                let texts = texts.as_string::<i32>();
                let result: BooleanArray = texts.iter().map(|text| text.map(|text| matcher.matches(text))).collect();
                Ok(ColumnarValue::Array(Arc::new(result)))
            }
            (ColumnarValue::Scalar(ScalarValue::Utf8(text)), ColumnarValue::Scalar(ScalarValue::Utf8(term))) => {
                let result = match (text, term) {
                    (Some(text), Some(term)) => Some(TermMatcher::new(term, case_sensitive).matches(text)),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(result)))
            }
            _ => {
                let n_rows = args.number_rows;
                let texts = text.to_array(n_rows)?;
                let terms = term.to_array(n_rows)?;
                Ok(ColumnarValue::Array(row_by_row(&texts, &terms, case_sensitive)))
            }
        }
    }
}

fn row_by_row(texts: &ArrayRef, terms: &ArrayRef, case_sensitive: bool) -> ArrayRef {
    let texts = texts.as_string::<i32>();
    let terms = terms.as_string::<i32>();
    let result: BooleanArray = (0..texts.len())
        .map(|idx| {
            if texts.is_null(idx) || terms.is_null(idx) {
                return None;
            }
            Some(TermMatcher::new(terms.value(idx), case_sensitive).matches(texts.value(idx)))
        })
        .collect();
    Arc::new(result)
}

/// A prepared term search.
pub(crate) struct TermMatcher {
    term: Vec<u8>,
    finder: memmem::Finder<'static>,
    /// Whether case folding can change a match: only a term with ASCII
    /// letters needs the text lower-cased.
    folds: bool,
    /// The lower-cased text of the row being matched, reused across rows
    /// so a search allocates nothing.
    scratch: std::cell::RefCell<Vec<u8>>,
}

impl TermMatcher {
    pub(crate) fn new(term: &str, case_sensitive: bool) -> TermMatcher {
        let term = if case_sensitive { term.as_bytes().to_vec() } else { term.to_ascii_lowercase().into_bytes() };
        let finder = memmem::Finder::new(&term).into_owned();
        let folds = !case_sensitive && term.iter().any(u8::is_ascii_alphabetic);
        TermMatcher { term, finder, folds, scratch: Default::default() }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        if self.term.is_empty() {
            return true;
        }
        if !self.folds {
            return self.matches_bytes(text.as_bytes());
        }
        // One pass that the compiler vectorises, into a reused buffer.
        let mut lowered = self.scratch.borrow_mut();
        lowered.clear();
        lowered.extend(text.bytes().map(|byte| byte.to_ascii_lowercase()));
        self.matches_bytes(&lowered)
    }

    fn matches_bytes(&self, haystack: &[u8]) -> bool {
        // The term rule the segments' term filters are built with.
        let is_term_byte = watchpost_storage::terms::is_term_byte;
        let starts_term = self.term.first().is_some_and(|byte| is_term_byte(*byte));
        let ends_term = self.term.last().is_some_and(|byte| is_term_byte(*byte));
        // Matches may overlap ("10.1" in "10.10.1" only matches at 3), so
        // the search resumes one byte after each candidate, not after its end
        // as `find_iter` would.
        let mut from = 0;
        while let Some(found) = self.finder.find(&haystack[from..]) {
            let start = from + found;
            let end = start + self.term.len();
            let left_ok = !starts_term || start == 0 || !is_term_byte(haystack[start - 1]);
            let right_ok = !ends_term || end == haystack.len() || !is_term_byte(haystack[end]);
            if left_ok && right_ok {
                return true;
            }
            from = start + 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::TermMatcher;

    #[test]
    fn matches_whole_terms_only() {
        let has = |text: &str, term: &str| TermMatcher::new(term, false).matches(text);
        assert!(has("Invoke Rubeus.exe now", "rubeus"));
        assert!(has("rubeus", "RUBEUS"));
        assert!(!has("rubeusx", "rubeus"));
        assert!(!has("xrubeus", "rubeus"));
        assert!(has("src=10.0.0.1 dst", "10.0.0.1"));
        assert!(!has("110.0.0.1", "10.0.0.1"));
        assert!(has("10.10.1", "10.1"), "a match that overlaps a rejected one");
        assert!(has("aa-aa-a", "aa-a"));
        assert!(has("a b", ""));
        assert!(!TermMatcher::new("Rubeus", true).matches("rubeus"));
        // One matcher over many rows: the buffer reused between rows holds
        // nothing of the previous one.
        let matcher = TermMatcher::new("Rubeus", false);
        assert!(matcher.matches("run RUBEUS.exe now and then some more text"));
        assert!(!matcher.matches("rub"));
        assert!(!matcher.matches("RUBEU"));
        assert!(matcher.matches("x rubeus"));
        // Terms without letters are matched without folding.
        assert!(TermMatcher::new("10.0.0.1", false).matches("SRC=10.0.0.1"));
    }
}
