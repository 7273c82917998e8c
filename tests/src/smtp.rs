//! A local SMTP sink for black-box tests: it speaks enough SMTP for lettre
//! (plain, no STARTTLS, no AUTH) on 127.0.0.1, keeps every message it
//! accepts, and can refuse the next transactions with a 451 so retries
//! can be tested.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One accepted message: the envelope and the DATA, dot-unstuffed, with
/// CRLF line endings as sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub raw: String,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    fail_next: AtomicUsize,
    refused: AtomicUsize,
}

/// The sink; it stops listening when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

/// Longest command or data line taken; RFC 5321 asks for 1000 octets, the
/// slack keeps a misbehaving client from growing memory without bound.
const MAX_LINE: usize = 64 * 1024;

impl SmtpSink {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP sink");
        let addr = listener.local_addr().expect("SMTP sink address");
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(session(stream, shared.clone()));
                }
            }
        });
        SmtpSink {
            addr,
            shared,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A lettre connection URL for the sink: plain SMTP, no TLS.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The next `n` transactions are answered 451 at the end of DATA and
    /// not kept (the whole message was read, as a real greylisting or
    /// over-quota server would do it).
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Transactions refused with 451 so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The messages accepted so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("sink lock").clone()
    }

    /// Waits until at least `n` messages arrived or `timeout` passed, and
    /// returns what arrived (check its length: fewer than `n` is a timeout).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so an arrival in between still wakes us.
            let arrived = self.shared.arrived.notified();
            let now = self.received();
            if now.len() >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.received();
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let _ = serve(&mut read, &mut write, &shared).await;
}

/// One line without its CRLF; None at EOF or on an overlong line.
async fn read_line<R: AsyncRead + Unpin>(read: &mut BufReader<R>) -> Option<String> {
    let mut buf = Vec::new();
    let n = (&mut *read)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .ok()?;
    if n == 0 || (buf.last() != Some(&b'\n') && n >= MAX_LINE) {
        return None;
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

async fn serve<R, W>(read: &mut BufReader<R>, write: &mut W, shared: &Shared) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    write.write_all(b"220 localhost ESMTP sink\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    while let Some(line) = read_line(read).await {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => {
                from = None;
                to.clear();
                // No STARTTLS, no AUTH: lettre then sends in the clear.
                b"250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
            }
            "HELO" => {
                from = None;
                to.clear();
                b"250 localhost\r\n"
            }
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                from = Some(path_of(&line["MAIL FROM:".len()..]));
                to.clear();
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from.is_none() {
                    b"503 5.5.1 MAIL first\r\n"
                } else {
                    to.push(path_of(&line["RCPT TO:".len()..]));
                    b"250 2.1.5 OK\r\n"
                }
            }
            "DATA" => {
                if from.is_none() || to.is_empty() {
                    b"503 5.5.1 MAIL and RCPT first\r\n"
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let Some(raw) = read_data(read).await else {
                        return Ok(());
                    };
                    let message = Received {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        raw,
                    };
                    let failing = shared
                        .fail_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if failing {
                        shared.refused.fetch_add(1, Ordering::SeqCst);
                        b"451 4.3.0 Try again later\r\n"
                    } else {
                        shared.received.lock().expect("sink lock").push(message);
                        shared.arrived.notify_waiters();
                        b"250 2.0.0 OK queued\r\n"
                    }
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return write.shutdown().await;
            }
            "VRFY" => b"252 2.5.0 Cannot VRFY\r\n",
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
    Ok(())
}

/// The address in `<addr> PARAMS` (`MAIL FROM:<a@b> BODY=8BITMIME`).
fn path_of(rest: &str) -> String {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(open), Some(close)) if open < close => rest[open + 1..close].to_owned(),
        _ => rest.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// DATA up to the lone dot, dot-unstuffed (RFC 5321 §4.5.2), CRLF endings.
async fn read_data<R: AsyncRead + Unpin>(read: &mut BufReader<R>) -> Option<String> {
    let mut raw = String::new();
    loop {
        let line = read_line(read).await?;
        if line == "." {
            return Some(raw);
        }
        raw.push_str(line.strip_prefix('.').unwrap_or(&line));
        raw.push_str("\r\n");
    }
}

impl Received {
    fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        MessageParser::default().parse(self.raw.as_bytes())
    }

    /// The decoded Subject header.
    pub fn subject(&self) -> Option<String> {
        self.parsed()?.subject().map(str::to_owned)
    }

    /// The decoded value of a header (e.g. "To", "From"), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let message = self.parsed()?;
        let value = message.header(name)?;
        match value {
            mail_parser::HeaderValue::Text(t) => Some(t.to_string()),
            mail_parser::HeaderValue::Address(a) => Some(
                a.iter()
                    .filter_map(|a| a.address())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            other => Some(format!("{other:?}")),
        }
    }

    /// The first text/plain body, decoded.
    pub fn text_body(&self) -> Option<String> {
        self.parsed()?.body_text(0).map(|t| t.into_owned())
    }

    /// The decoded text/calendar attachment, if any.
    pub fn ics(&self) -> Option<String> {
        self.calendar_part().map(|(_, _, text)| text)
    }

    /// The `method` parameter of the text/calendar part's Content-Type.
    pub fn ics_method(&self) -> Option<String> {
        self.calendar_part().and_then(|(method, _, _)| method)
    }

    /// The text/calendar part's file name.
    pub fn ics_name(&self) -> Option<String> {
        self.calendar_part().and_then(|(_, name, _)| name)
    }

    /// The top-level Content-Type, e.g. "multipart/mixed".
    pub fn content_type(&self) -> Option<String> {
        let message = self.parsed()?;
        let ct = message.content_type()?;
        Some(match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
    }

    fn calendar_part(&self) -> Option<(Option<String>, Option<String>, String)> {
        let message = self.parsed()?;
        let part = message
            .parts
            .iter()
            .find(|p| p.is_content_type("text", "calendar"))?;
        let method = part
            .content_type()
            .and_then(|ct| ct.attribute("method"))
            .map(str::to_owned);
        let name = part.attachment_name().map(str::to_owned);
        let text = part
            .text_contents()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(part.contents()).into_owned());
        Some((method, name, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn expect(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, code: &str) {
        loop {
            let line = read_line(read).await.expect("reply");
            assert!(line.starts_with(code), "expected {code}, got {line}");
            if line.as_bytes().get(3) == Some(&b' ') {
                return;
            }
        }
    }

    #[tokio::test]
    async fn speaks_smtp_and_unstuffs_dots() {
        let sink = SmtpSink::start().await;
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        expect(&mut read, "220").await;
        for (command, code) in [
            ("EHLO test", "250"),
            ("MAIL FROM:<a@example.com> BODY=8BITMIME", "250"),
            ("RCPT TO:<b@example.com>", "250"),
            ("RCPT TO:<c@example.com>", "250"),
            ("DATA", "354"),
        ] {
            write
                .write_all(format!("{command}\r\n").as_bytes())
                .await
                .unwrap();
            expect(&mut read, code).await;
        }
        write
            .write_all(b"Subject: hi\r\n\r\n..leading dot\r\nplain\r\n.\r\n")
            .await
            .unwrap();
        expect(&mut read, "250").await;
        sink.fail_next(1);
        for (command, code) in [
            ("RSET", "250"),
            ("NOOP", "250"),
            ("MAIL FROM:<a@example.com>", "250"),
            ("RCPT TO:<b@example.com>", "250"),
            ("DATA", "354"),
        ] {
            write
                .write_all(format!("{command}\r\n").as_bytes())
                .await
                .unwrap();
            expect(&mut read, code).await;
        }
        write
            .write_all(b"Subject: no\r\n\r\nx\r\n.\r\n")
            .await
            .unwrap();
        expect(&mut read, "451").await;
        write.write_all(b"QUIT\r\n").await.unwrap();
        expect(&mut read, "221").await;

        let got = sink.wait_for(1, Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].from, "a@example.com");
        assert_eq!(got[0].to, ["b@example.com", "c@example.com"]);
        assert_eq!(got[0].raw, "Subject: hi\r\n\r\n.leading dot\r\nplain\r\n");
        assert_eq!(got[0].subject().as_deref(), Some("hi"));
        assert_eq!(sink.refused(), 1);
    }
}
