//! An incremental parser for `text/event-stream` bodies (the SSE format of the WHATWG HTML standard),
//! as Streamable HTTP servers use to answer a POST.
//!
//! It owns only framing: bytes in, whole events out, with every line ending the standard allows (CRLF,
//! LF, CR, split across chunks or not). It bounds how much it buffers, so a server that never ends a
//! line or an event cannot exhaust memory. It does not interpret the data.

#[cfg(test)]
mod tests;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field, `message` when absent.
    pub(crate) kind: String,
    /// The `data:` lines joined by `\n`.
    pub(crate) data: String,
}

/// The stream buffered more than the limit without completing a line or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

#[derive(Debug)]
pub(crate) struct Parser {
    limit: usize,
    line: Vec<u8>,
    /// The previous chunk ended with CR, so an LF at the start of the next one is part of that ending.
    skip_lf: bool,
    data: String,
    has_data: bool,
    kind: String,
}

impl Parser {
    /// A parser that refuses lines or events longer than `limit` bytes.
    pub(crate) fn new(limit: usize) -> Parser {
        Parser {
            limit,
            line: Vec::new(),
            skip_lf: false,
            data: String::new(),
            has_data: false,
            kind: String::new(),
        }
    }

    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        let mut events = Vec::new();
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (content, rest) = chunk.split_at(end);
            self.line.extend_from_slice(content);
            // `rest` starts with the CR or LF found above.
            let after = match rest {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.skip_lf = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
            chunk = after;
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&line)? {
                events.push(event);
            }
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > self.limit {
            return Err(TooLarge);
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Event>, TooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(b":") {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.limit {
                    return Err(TooLarge);
                }
            }
            "event" => value.clone_into(&mut self.kind),
            // `id` and `retry` only matter for resuming a stream, which this client does not do.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        let kind = std::mem::take(&mut self.kind);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(Event {
            kind: if kind.is_empty() { "message".to_owned() } else { kind },
            data,
        })
    }
}
