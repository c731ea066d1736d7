//! TCP syslog framing (RFC 6587, syslog-cef spec 3.2), detected per frame:
//! a frame starting with a digit is octet-counted (`LEN SP MSG`), anything
//! else ends at LF (or NUL). Long messages are truncated, never fatal.

/// Splits a TCP byte stream into messages.
#[derive(Debug)]
pub struct Framer {
    buffer: Vec<u8>,
    max_message: usize,
    /// Bytes of an over-long frame still to skip (octet counting), or
    /// `usize::MAX` to skip up to the next LF.
    skip: usize,
    pub truncated: u64,
}

impl Framer {
    pub fn new(max_message: usize) -> Framer {
        Framer { buffer: Vec::new(), max_message, skip: 0, truncated: 0 }
    }

    /// Feeds bytes; returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.skip > 0 {
                if self.skip == usize::MAX {
                    match self.buffer.iter().position(|&b| b == b'\n') {
                        Some(end) => {
                            self.buffer.drain(..=end);
                            self.skip = 0;
                        }
                        None => {
                            self.buffer.clear();
                            return out;
                        }
                    }
                } else {
                    let n = self.skip.min(self.buffer.len());
                    self.buffer.drain(..n);
                    self.skip -= n;
                    if self.skip > 0 {
                        return out;
                    }
                }
            }
            // Separators between frames (stray LFs after counted frames).
            let leading = self.buffer.iter().take_while(|&&b| b == b'\n' || b == b'\r' || b == 0).count();
            self.buffer.drain(..leading);
            let Some(&first) = self.buffer.first() else { return out };
            let frame = if first.is_ascii_digit() { self.octet_counted() } else { self.lf_terminated() };
            match frame {
                Some(message) => out.push(message),
                None => return out,
            }
        }
    }

    fn octet_counted(&mut self) -> Option<Vec<u8>> {
        let space = self.buffer.iter().take(10).position(|&b| b == b' ');
        let Some(space) = space else {
            if self.buffer.len() >= 10 || self.buffer.iter().any(|b| !b.is_ascii_digit()) {
                // Not a length after all: treat as an LF-framed message.
                return self.lf_terminated();
            }
            return None;
        };
        let length: usize = std::str::from_utf8(&self.buffer[..space]).ok()?.parse().ok()?;
        let start = space + 1;
        let keep = length.min(self.max_message);
        if self.buffer.len() < start + keep {
            return None;
        }
        let message = trim(self.buffer[start..start + keep].to_vec());
        let available = self.buffer.len() - start;
        if length > keep {
            self.truncated += 1;
            let consumed = available.min(length);
            self.buffer.drain(..start + consumed);
            self.skip = length - consumed;
        } else {
            self.buffer.drain(..start + length);
        }
        Some(message)
    }

    fn lf_terminated(&mut self) -> Option<Vec<u8>> {
        match self.buffer.iter().position(|&b| b == b'\n' || b == 0) {
            Some(end) => {
                let mut message: Vec<u8> = self.buffer.drain(..=end).collect();
                message.pop();
                if message.len() > self.max_message {
                    message.truncate(self.max_message);
                    self.truncated += 1;
                }
                Some(trim(message))
            }
            None if self.buffer.len() > self.max_message => {
                let message = self.buffer[..self.max_message].to_vec();
                self.buffer.clear();
                self.skip = usize::MAX;
                self.truncated += 1;
                Some(trim(message))
            }
            None => None,
        }
    }

    /// At connection close: a pending unterminated frame is one message.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = trim(std::mem::take(&mut self.buffer));
        (!rest.is_empty() && self.skip == 0).then_some(rest)
    }
}

fn trim(mut message: Vec<u8>) -> Vec<u8> {
    while matches!(message.last(), Some(b'\n' | b'\r' | 0)) {
        message.pop();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(messages: Vec<Vec<u8>>) -> Vec<String> {
        messages.into_iter().map(|m| String::from_utf8(m).unwrap()).collect()
    }

    #[test]
    fn lf_and_octet_counting_mixed_and_split_across_reads() {
        let mut framer = Framer::new(1024);
        let mut got = text(framer.push(b"<13>a\n<13>b\r\n11 <13>counted"));
        got.extend(text(framer.push(b"6 <13>x\n\n<13>")));
        got.extend(text(framer.push(b"lf\0<13>tail")));
        got.extend(framer.finish().map(|m| String::from_utf8(m).unwrap()));
        assert_eq!(got, ["<13>a", "<13>b", "<13>counted", "<13>x", "<13>lf", "<13>tail"]);
    }

    #[test]
    fn long_messages_are_truncated_not_fatal() {
        let mut framer = Framer::new(8);
        let got = text(framer.push(b"<13>0123456789\n<13>ok\n20 <13>abcdefghijklmnop<13>n\n"));
        assert_eq!(got, ["<13>0123", "<13>ok", "<13>abcd", "<13>n"]);
        assert_eq!(framer.truncated, 2);
        let mut framer = Framer::new(8);
        assert_eq!(text(framer.push(b"<13>0123456789")), ["<13>0123"]);
        assert!(text(framer.push(b"more")).is_empty());
        assert_eq!(text(framer.push(b"x\n<13>y\n")), ["<13>y"]);
    }
}
