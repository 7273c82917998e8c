//! What both simulators share: a small HTTP client that speaks the way the
//! seed's clients do (multipart bodies, `gms_user` header), and a line log.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::multipart::Form;
use serde_json::Value;

/// One row of a chat transcript, as either side sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptRow {
    /// 1-based position in the transcript.
    pub index: u32,
    /// `Notice.Joined`, `Message.Text` or `Notice.Left`.
    pub kind: String,
    /// `CLIENT`, `AGENT` or `EXTERNAL`.
    pub party: String,
    pub nickname: String,
    pub text: String,
}

impl TranscriptRow {
    pub fn is_message(&self) -> bool {
        self.kind == "Message.Text"
    }

    pub fn is_from_client(&self) -> bool {
        self.is_message() && self.party == "CLIENT"
    }

    pub fn is_from_agent(&self) -> bool {
        self.is_message() && self.party == "AGENT"
    }

    /// From a `transcriptToShow` row of ixn/chat/refresh:
    /// `[kind, nickname, text, seconds, party]`.
    pub(crate) fn from_refresh(index: u32, row: &Value) -> TranscriptRow {
        let at = |i: usize| row[i].as_str().unwrap_or_default().to_owned();
        TranscriptRow {
            index,
            kind: at(0),
            nickname: at(1),
            text: at(2),
            party: at(4),
        }
    }

    /// From a `chat.transcript` entry of GET /api/v1/services/{id}.
    pub(crate) fn from_record(entry: &Value) -> TranscriptRow {
        let at = |k: &str| entry[k].as_str().unwrap_or_default().to_owned();
        TranscriptRow {
            index: entry["index"].as_u64().unwrap_or_default() as u32,
            kind: at("kind"),
            nickname: at("nickname"),
            text: at("text"),
            party: at("party"),
        }
    }

    /// The whole transcript of a service record (empty when no chat started).
    pub(crate) fn all_from_record(record: &Value) -> Vec<TranscriptRow> {
        record["chat"]["transcript"]
            .as_array()
            .map(|rows| rows.iter().map(TranscriptRow::from_record).collect())
            .unwrap_or_default()
    }
}

impl Display for TranscriptRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_message() {
            write!(
                f,
                "#{} {} {}: {}",
                self.index, self.party, self.nickname, self.text
            )
        } else {
            write!(f, "#{} {} {}", self.index, self.nickname, self.text)
        }
    }
}

/// Every line a simulator prints, kept so a caller (a test) can read them back.
#[derive(Clone)]
pub(crate) struct Log {
    prefix: String,
    print: bool,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    pub fn new(prefix: impl Into<String>, print: bool) -> Log {
        Log {
            prefix: prefix.into(),
            print,
            lines: Arc::default(),
        }
    }

    pub fn line(&self, message: impl Display) {
        let line = format!("[{}] {message}", self.prefix);
        if self.print {
            println!("{line}");
        }
        self.lines.lock().expect("log lock").push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }
}

/// An HTTP answer: status and body (JSON, or the text as a JSON string).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 409: the service's state does not allow the request (e.g. it completed meanwhile).
    pub fn is_conflict(&self) -> bool {
        self.status == 409
    }

    /// The server's `message`, or the body itself.
    pub fn message(&self) -> String {
        match self.body["message"].as_str() {
            Some(m) => m.to_owned(),
            None => self.body.to_string(),
        }
    }

    /// The body of a 2xx answer; anything else is an error naming `what`.
    pub fn ok(self, what: &str) -> Result<Value> {
        if !self.is_ok() {
            bail!("{what}: HTTP {}: {}", self.status, self.message());
        }
        Ok(self.body)
    }

    /// Like [`Answer::ok`], but a 409 is an expected race and yields `None`.
    pub fn ok_or_conflict(self, what: &str) -> Result<Option<Value>> {
        if self.is_conflict() {
            return Ok(None);
        }
        self.ok(what).map(Some)
    }
}

/// A client for one callbackd server.
#[derive(Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
    /// Sent as the `gms_user` header on every request, like the seed's device.
    gms_user: Option<String>,
}

impl Api {
    pub fn new(base: &str, gms_user: Option<&str>) -> Result<Api> {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("server URL `{base}` must start with http:// or https://");
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            client,
            base: base.to_owned(),
            gms_user: gms_user.map(str::to_owned),
        })
    }

    /// `path` on this server, or `path` itself when it is already a URL
    /// (a dialog's `_start_chat_url`).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn with_user(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.gms_user {
            Some(user) => request.header("gms_user", user),
            None => request,
        }
    }

    async fn send(&self, what: String, request: reqwest::RequestBuilder) -> Result<Answer> {
        let response = self
            .with_user(request)
            .send()
            .await
            .with_context(|| what.clone())?;
        let status = response.status().as_u16();
        let text = response.text().await.with_context(|| what.clone())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        let url = self.url(path);
        self.send(format!("GET {url}"), self.client.get(&url)).await
    }

    /// POST a multipart/form-data body with these text fields (none is fine:
    /// the seed's clients send an empty multipart body to connect and poll).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Result<Answer> {
        let url = self.url(path);
        let form = fields.iter().fold(Form::new(), |form, (k, v)| {
            form.text(k.to_string(), v.to_string())
        });
        self.send(
            format!("POST {url}"),
            self.client.post(&url).multipart(form),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Answer> {
        let url = self.url(path);
        self.send(format!("POST {url}"), self.client.post(&url).json(body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> Result<Answer> {
        let url = self.url(path);
        self.send(format!("POST {url}"), self.client.post(&url))
            .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Answer> {
        let url = self.url(path);
        self.send(format!("PUT {url}"), self.client.put(&url).json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer> {
        let url = self.url(path);
        self.send(format!("DELETE {url}"), self.client.delete(&url))
            .await
    }
}

/// A JSON value as short text: strings without quotes.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
