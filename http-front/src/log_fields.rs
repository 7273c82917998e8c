//! The text log's fields: what tracing-subscriber's `DefaultFields` writes,
//! for less work per span.
//!
//! Every request opens a span whose fields (request id, method, path) are
//! formatted when it opens, logged or not. Without colours,
//! `DefaultFields` still writes each `name=` through `nu_ansi_term`'s
//! painting; this writes the same text directly (callgrind: the span was
//! about 16,000 instructions of every request). Colours (a person at a
//! terminal), messages and errors, which `DefaultFields` escapes against
//! terminal injection, are left to `DefaultFields` itself.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;

/// `DefaultFields`' text, written directly when there are no colours.
#[derive(Debug, Default)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let mut visitor = PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// A message or an error, as `DefaultFields` writes it (escaped).
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        // It pads with a space after a field, as here.
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.is_empty = false;
        self.result = default.finish();
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.by_default(|v| v.record_str(field, value));
        }
        self.record_debug(field, &value)
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.by_default(|v| v.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if name == "message" {
            return self.by_default(|v| v.record_debug(field, value));
        }
        // Records that came from the `log` crate carry these; tracing-
        // subscriber has written them already.
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let w = &mut self.writer;
        self.result = (|| {
            if !self.is_empty {
                w.write_char(' ')?;
            }
            w.write_str(name)?;
            w.write_char('=')?;
            write!(w, "{value:?}")
        })();
        self.is_empty = false;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// The log lines `emit` writes through a subscriber with `fields`, the
    /// time left out.
    fn lines<N>(fields: N, ansi: bool, emit: fn()) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(ansi)
            .without_time()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "outer \x1b[31mfailure")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every kind of field, in spans and in events, with what a terminal
    /// would obey in the message, in a field's value and in an error.
    fn every_kind() {
        let span = tracing::info_span!(
            "request",
            request_id = %"abc-1",
            method = %"GET",
            path = %"/genesys/1/service/x",
            version = ?"HTTP/1.1",
            quoted = "a \"str\"",
            credential = tracing::field::Empty,
            r#type = 3u64,
        );
        let _in = span.enter();
        span.record("credential", "agent:bob");
        tracing::info!(
            n = -4i64,
            ok = true,
            ratio = 0.5f64,
            "Plain \x1b[2J message {}",
            7
        );
        tracing::warn!(text = "esc \x1b[31m in a value", "Second.");
        let err = Outer(std::io::Error::other("inner \x07 cause"));
        tracing::error!(
            error = &err as &(dyn std::error::Error + 'static),
            "Failed."
        );
        tracing::info!("Only a message.");
        tracing::info!(alone = 1u64);
        let inner = tracing::info_span!("handler", scenario = %"chat-delay");
        inner.in_scope(|| tracing::info!(message = "message as a field", after = 2u64));
    }

    #[test]
    fn plain_fields_write_what_default_fields_write() {
        let ours = lines(PlainFields, false, every_kind);
        let theirs = lines(DefaultFields::new(), false, every_kind);
        assert_eq!(ours, theirs);
        // The escapes stayed escapes in the message and the error.
        assert!(ours.contains("Plain \\x1b[2J message 7"), "{ours}");
        assert!(ours.contains("inner \\x07 cause"), "{ours}");
        assert!(!ours.contains("\x1b[2J"), "{ours}");
        assert_eq!(ours.lines().count(), 6, "{ours}");
    }

    #[test]
    fn with_colours_it_is_default_fields() {
        let ours = lines(PlainFields, true, every_kind);
        let theirs = lines(DefaultFields::new(), true, every_kind);
        assert_eq!(ours, theirs);
    }
}
