//! Joining lines into records: one line per record, or multi-line records
//! that start at a line beginning with a timestamp (the agent spec's eight
//! formats), a line matching a regex, or (preset `java`) any line that is
//! not a stack-trace continuation. Pure: the file source feeds lines with
//! their end offsets and checkpoints only the ends of finished records.

use regex::Regex;

/// How records are delimited.
#[derive(Debug, Clone)]
pub enum RecordStart {
    Newline,
    Timestamp,
    Regex(Regex),
    Java,
}

impl RecordStart {
    /// `newline`, `timestamp` (or one of Azure's format names, all treated
    /// alike), `java`, or `regex:<pattern>`.
    pub fn parse(text: &str) -> Result<RecordStart, String> {
        match text {
            "newline" | "" => Ok(RecordStart::Newline),
            "java" => Ok(RecordStart::Java),
            "timestamp" | "ISO 8601" | "YYYY-MM-DD HH:MM:SS" | "M/D/YYYY HH:MM:SS AM/PM" | "Mon DD, YYYY HH:MM:SS"
            | "yyMMdd HH:mm:ss" | "ddMMyy HH:mm:ss" | "MMM d hh:mm:ss" | "dd/MMM/yyyy:HH:mm:ss zzz"
            | "yyyy-MM-ddTHH:mm:ssK" => Ok(RecordStart::Timestamp),
            other => match other.strip_prefix("regex:") {
                Some(pattern) => Regex::new(pattern).map(RecordStart::Regex).map_err(|e| format!("record_start regex: {e}")),
                None => Err(format!(
                    "record_start {other:?}: use newline, timestamp, java, regex:<pattern> or one of Azure's format names"
                )),
            },
        }
    }

    fn starts_record(&self, line: &str) -> bool {
        match self {
            RecordStart::Newline => true,
            RecordStart::Timestamp => timestamp_start().is_match(line),
            RecordStart::Regex(regex) => regex.is_match(line),
            RecordStart::Java => {
                !(line.starts_with([' ', '\t']) || line.starts_with("Caused by:") || line.starts_with("..."))
            }
        }
    }
}

fn timestamp_start() -> &'static Regex {
    static REGEX: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    REGEX.get_or_init(|| {
        let month = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*";
        let alternatives = [
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}".to_string(),
            r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} ?[AaPp][Mm]".to_string(),
            format!(r"{month} \d{{1,2}}, \d{{4}} \d{{2}}:\d{{2}}:\d{{2}}"),
            r"\d{6} \d{2}:\d{2}:\d{2}".to_string(),
            format!(r"{month} +\d{{1,2}} \d{{2}}:\d{{2}}:\d{{2}}"),
            format!(r"\d{{2}}/{month}/\d{{4}}:\d{{2}}:\d{{2}}:\d{{2}} [+-]\d{{4}}"),
        ];
        Regex::new(&format!("^(?:{})", alternatives.join("|"))).expect("the timestamp regex is valid")
    })
}

/// A finished record: its text, the offset of its first byte and the
/// offset just past its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub text: String,
    pub start_offset: u64,
    pub end_offset: u64,
}

/// Joins lines into records.
#[derive(Debug)]
pub struct Assembler {
    start: RecordStart,
    max_bytes: usize,
    pending: Option<Record>,
}

impl Assembler {
    pub fn new(start: RecordStart, max_bytes: usize) -> Assembler {
        Assembler { start, max_bytes, pending: None }
    }

    /// Feeds one line (without its newline) spanning `start_offset` to
    /// `end_offset`; returns a record when this line finishes the previous one.
    pub fn push_line(&mut self, line: &str, start_offset: u64, end_offset: u64) -> Option<Record> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if matches!(self.start, RecordStart::Newline) {
            if line.is_empty() {
                return None;
            }
            return Some(Record { text: truncate(line, self.max_bytes).to_string(), start_offset, end_offset });
        }
        if self.start.starts_record(line) || self.pending.is_none() {
            let finished = self.pending.take();
            if !line.is_empty() || finished.is_some() {
                self.pending =
                    Some(Record { text: truncate(line, self.max_bytes).to_string(), start_offset, end_offset });
            }
            return finished;
        }
        let pending = self.pending.as_mut().expect("checked above");
        // Continuation lines fill the record up to `max_bytes`; the rest is cut.
        let room = self.max_bytes.saturating_sub(pending.text.len() + 1);
        if room > 0 {
            pending.text.push('\n');
            pending.text.push_str(truncate(line, room));
        }
        pending.end_offset = end_offset;
        None
    }

    /// Returns the record in progress (timeout or end of file).
    pub fn take_pending(&mut self) -> Option<Record> {
        self.pending.take()
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Where the record in progress starts: a checkpoint must not pass it.
    pub fn pending_start(&self) -> Option<u64> {
        self.pending.as_ref().map(|r| r.start_offset)
    }

    /// Forgets the record in progress (the file was truncated under it).
    pub fn reset(&mut self) {
        self.pending = None;
    }
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(start: &str, lines: &[&str]) -> Vec<String> {
        let mut assembler = Assembler::new(RecordStart::parse(start).unwrap(), 1 << 20);
        let mut out = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            out.extend(assembler.push_line(line, index as u64, index as u64 + 1).map(|r| r.text));
        }
        out.extend(assembler.take_pending().map(|r| r.text));
        out
    }

    #[test]
    fn java_stack_trace_is_one_record() {
        let lines = [
            "2024-10-29 18:28:34 ERROR boom",
            "java.lang.IllegalStateException: x",
            "\tat com.example.A.b(A.java:10)",
            "Caused by: java.io.IOException: y",
            "\t... 3 more",
            "2024-10-29 18:28:35 INFO ok",
        ];
        let got = records("timestamp", &lines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].lines().count(), 5);
        assert_eq!(got[1], "2024-10-29 18:28:35 INFO ok");
        let java = records("java", &lines[1..5]);
        assert_eq!(java.len(), 1);
    }

    #[test]
    fn each_azure_timestamp_format_starts_a_record() {
        for stamp in [
            "2024-10-29 18:28:34",
            "10/29/2024 06:28:34 PM",
            "Oct 29, 2024 18:28:34",
            "October 29, 2024 18:28:34",
            "241029 18:28:34",
            "291024 18:28:34",
            "Oct 29 18:28:34",
            "Oct  2 18:28:34",
            "14/Oct/2024:18:28:34 -0700",
            "2024-10-29T18:28:34Z",
        ] {
            let got = records("timestamp", &[&format!("{stamp} a"), "  more", &format!("{stamp} b")]);
            assert_eq!(got.len(), 2, "{stamp}");
        }
    }

    #[test]
    fn newline_mode_skips_empty_lines_and_strips_cr() {
        assert_eq!(records("newline", &["a\r", "", "b"]), ["a", "b"]);
    }

    #[test]
    fn offsets_track_the_unfinished_record() {
        let mut assembler = Assembler::new(RecordStart::Timestamp, 1024);
        assert!(assembler.push_line("2024-10-29 18:28:34 a", 0, 10).is_none());
        assert!(assembler.push_line(" b", 10, 20).is_none());
        assert_eq!(assembler.pending_start(), Some(0));
        let record = assembler.push_line("2024-10-29 18:28:35 c", 20, 30).unwrap();
        assert_eq!((record.start_offset, record.end_offset), (0, 20));
        assert_eq!(assembler.pending_start(), Some(20));
    }
}
