//! GMS request bodies: the same fields as multipart/form-data (as the seed
//! sends them), application/x-www-form-urlencoded, or a flat JSON object.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};

use crate::error::AppError;

/// Largest body any GMS or agent request may have.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Most fields one request may carry.
pub const MAX_FIELDS: usize = 100;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// The fields of a GMS form, in the order they came.
#[derive(Debug, Default, Clone)]
pub struct GmsForm {
    pub fields: Vec<(String, String)>,
}

impl GmsForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field that must be present and not blank.
    pub fn require(&self, name: &str) -> Result<&str, AppError> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(AppError::field(name, "must not be empty")),
            None => Err(AppError::missing(name)),
        }
    }

    fn push(&mut self, name: String, value: String) -> Result<(), AppError> {
        if name.is_empty() {
            return Err(AppError::body("a field has an empty name"));
        }
        if !crate::requests::fields::fits(&name, MAX_NAME_LEN) {
            return Err(AppError::body(format!(
                "field name `{}…` is longer than {MAX_NAME_LEN} characters",
                name.chars().take(32).collect::<String>()
            )));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(AppError::field(
                &name,
                format!("is longer than {MAX_VALUE_LEN} bytes"),
            ));
        }
        if self.fields.len() >= MAX_FIELDS {
            return Err(AppError::body(format!("more than {MAX_FIELDS} fields")));
        }
        if self.get(&name).is_some() {
            return Err(AppError::field(&name, "is given more than once"));
        }
        self.fields.push((name, value));
        Ok(())
    }
}

pub async fn read_body(body: Body) -> Result<bytes::Bytes, AppError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        // to_bytes reports the limit as a boxed LengthLimitError somewhere in the chain.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return AppError::TooLarge { limit: BODY_LIMIT };
            }
            if let Some(stalled) = err.downcast_ref::<crate::guard::BodyStalled>() {
                return AppError::BodyTimeout(stalled.to_string());
            }
            source = err.source();
        }
        AppError::body(format!("could not be read: {e}"))
    })
}

impl<S: Send + Sync> FromRequest<S> for GmsForm {
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        GmsForm::read(content_type.as_ref(), req.into_body()).await
    }
}

/// The request's headers and its form, the headers moved out of the
/// request: axum's `HeaderMap` extractor copies them (about 1,000
/// instructions a create, with the copy's drop).
pub struct HeadersAndForm(pub HeaderMap, pub GmsForm);

impl<S: Send + Sync> FromRequest<S> for HeadersAndForm {
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let form = GmsForm::read(parts.headers.get(CONTENT_TYPE), body).await?;
        Ok(HeadersAndForm(parts.headers, form))
    }
}

impl GmsForm {
    /// The form in `body`, as its `Content-Type` says.
    async fn read(content_type: Option<&HeaderValue>, body: Body) -> Result<GmsForm, AppError> {
        let content_type = content_type.map(|v| v.to_str().unwrap_or("").to_owned());
        let bytes = read_body(body).await?;
        let mut form = GmsForm::default();
        let Some(content_type) = content_type else {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(form);
            }
            return Err(AppError::Unsupported(
                "Content-Type: is required with a body; use multipart/form-data, application/x-www-form-urlencoded or application/json".into(),
            ));
        };
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "multipart/form-data" => parse_multipart(&content_type, &bytes, &mut form)?,
            "application/x-www-form-urlencoded" => {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
                    .map_err(|e| AppError::body(format!("is not valid form-urlencoded: {e}")))?;
                for (k, v) in pairs {
                    form.push(k, v)?;
                }
            }
            "application/json" => parse_json(&bytes, &mut form)?,
            "" => return Err(AppError::Unsupported("Content-Type: is empty".into())),
            other => {
                return Err(AppError::Unsupported(format!(
                    "Content-Type: `{other}` is not supported; use multipart/form-data, application/x-www-form-urlencoded or application/json"
                )))
            }
        }
        Ok(form)
    }
}

/// A multipart/form-data body, read whole (it is at most [`BODY_LIMIT`]).
/// A streaming parser (multer) built a searcher for every part and every
/// read, a third of a create's CPU on the memory store; a two-way searcher
/// built once was still a sixth of the parsing (see [`find_delimiter`]).
fn parse_multipart(content_type: &str, bytes: &[u8], form: &mut GmsForm) -> Result<(), AppError> {
    let boundary = parameter(content_type.as_bytes(), "boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            AppError::field(
                "Content-Type",
                "multipart boundary: the boundary parameter is missing",
            )
        })?;
    // Every delimiter but a first one at the very start follows a CRLF.
    let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let dash_boundary = &delimiter[2..];
    // The seed's empty requests are a lone closing boundary: no fields.
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty()
        || (trimmed.starts_with(dash_boundary) && &trimmed[dash_boundary.len()..] == b"--")
    {
        return Ok(());
    }
    let invalid = |why: &str| AppError::body(format!("is not valid multipart/form-data: {why}"));
    let mut at = if bytes.starts_with(dash_boundary) {
        dash_boundary.len()
    } else {
        // A preamble before the first part is allowed (RFC 2046) and ignored.
        find_delimiter(bytes, &delimiter)
            .ok_or_else(|| invalid("no part starts with the boundary given in Content-Type"))?
            + delimiter.len()
    };
    loop {
        let line = &bytes[at..];
        if line.starts_with(b"--") {
            // The close delimiter; an epilogue after it is ignored.
            return Ok(());
        }
        // Transport padding, then the CRLF that ends the delimiter's line.
        let padding = line
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let Some(part) = line[padding..].strip_prefix(b"\r\n") else {
            return Err(invalid("a boundary is not followed by a line break"));
        };
        let (name, charset, head_len) = match usual_head(part) {
            Some((name, head_len)) => (name.to_owned(), None, head_len),
            None => part_head(part)?,
        };
        let content = &part[head_len..];
        let Some(end) = find_delimiter(content, &delimiter) else {
            return Err(AppError::field(
                &name,
                "could not be read: the body ends before the part's closing boundary",
            ));
        };
        let value =
            text(&content[..end], charset.as_deref()).map_err(|why| AppError::field(&name, why))?;
        form.push(name, value)?;
        at = bytes.len() - content.len() + end + delimiter.len();
    }
}

/// A part's name, its charset if its Content-Type names one, and the
/// length of its head (with the blank line that ends it).
fn part_head(part: &[u8]) -> Result<(String, Option<String>, usize), AppError> {
    let invalid = |why: &str| AppError::body(format!("is not valid multipart/form-data: {why}"));
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let (head_len, headers) = match httparse::parse_headers(part, &mut headers) {
        Ok(httparse::Status::Complete(parsed)) => parsed,
        Ok(httparse::Status::Partial) => return Err(invalid("a part's headers are cut off")),
        Err(e) => return Err(invalid(&format!("a part's headers: {e}"))),
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let Some(name) = header("content-disposition").and_then(|v| parameter(v, "name")) else {
        return Err(AppError::body(
            "a multipart part has no name in Content-Disposition",
        ));
    };
    let charset = header("content-type").and_then(|v| parameter(v, "charset"));
    Ok((name, charset, head_len))
}

/// The head of a text field as browsers and the seed send it, read without
/// parsing headers: one header, `Content-Disposition: form-data;
/// name="<name>"` (any case), the name without a quote, a backslash or a
/// control character, then the blank line. Its name and the head's length;
/// None for any other head, which [`part_head`] reads. For a head of this
/// shape both answer the same (the test `a_usual_head_reads_as_any_head`);
/// this way costs a fraction (a create's five fields: the form read in
/// 7,200 instructions instead of 10,700).
fn usual_head(part: &[u8]) -> Option<(&str, usize)> {
    const START: &[u8] = b"content-disposition: form-data; name=\"";
    if !part.get(..START.len())?.eq_ignore_ascii_case(START) {
        return None;
    }
    let rest = &part[START.len()..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    let name = &rest[..end];
    if rest[end] != b'"'
        || !rest[end + 1..].starts_with(b"\r\n\r\n")
        || name.iter().any(|&b| b < b' ' || b == 0x7f)
    {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    Some((name, START.len() + end + 1 + 4))
}

/// Where `delimiter` (`\r\n--<boundary>`) first starts in `haystack`: at a
/// CR (memchr) where the rest follows. A form's parts hold few CRs, and
/// this builds nothing, where a two-way searcher cost 3,400 instructions
/// to build for each body. However many CRs a body holds, each costs one
/// comparison of at most the delimiter's length.
fn find_delimiter(haystack: &[u8], delimiter: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\r', haystack).find(|&i| haystack[i..].starts_with(delimiter))
}

/// The parameter `key` of a header value such as `form-data; name="x"`, as a
/// token or a quoted string (`\"` in it is a quote). Browsers send names as
/// quoted strings; older clients send tokens. Every delimiter is ASCII, so
/// the value is walked as bytes (`str`'s char patterns cost about 1,000
/// instructions a call).
fn parameter(value: &[u8], key: &str) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?;
    let b = value.as_bytes();
    let skip = |mut at: usize, what: &[u8]| {
        while at < b.len() && what.contains(&b[at]) {
            at += 1;
        }
        at
    };
    // Past the disposition (or media) type.
    let mut at = memchr::memchr(b';', b)?;
    loop {
        at = skip(at, b" \t;");
        let equals = at + memchr::memchr(b'=', &b[at..])?;
        if let Some(semicolon) = memchr::memchr(b';', &b[at..equals]) {
            // A parameter without a value (`form-data; foo; name="x"`).
            at += semicolon;
            continue;
        }
        let wanted = value[at..equals].trim().eq_ignore_ascii_case(key);
        let start = skip(equals + 1, b" \t");
        if b.get(start) == Some(&b'"') {
            let quoted = start + 1;
            let end = quoted + memchr::memchr2(b'"', b'\\', &b[quoted..])?;
            if b[end] == b'"' {
                // No escape before the closing quote: a slice, copied only
                // when it is the one asked for.
                if wanted {
                    return Some(value[quoted..end].to_owned());
                }
                at = end + 1;
            } else {
                let mut found = String::new();
                let mut chars = value[quoted..].char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => found.push(chars.next()?.1),
                        (i, '"') => break quoted + i + 1,
                        (_, c) => found.push(c),
                    }
                };
                if wanted {
                    return Some(found);
                }
                at = end;
            }
        } else {
            let end = b[start..]
                .iter()
                .position(|c| matches!(c, b';' | b' ' | b'\t'))
                .map_or(b.len(), |n| start + n);
            if wanted {
                return Some(value[start..end].to_owned());
            }
            at = end;
        }
    }
}

/// A part's bytes as text: UTF-8 unless its Content-Type names another
/// charset; bytes that are not of it become U+FFFD.
fn text(bytes: &[u8], charset: Option<&str>) -> Result<String, String> {
    let encoding = match charset {
        None => encoding_rs::UTF_8,
        Some(label) => encoding_rs::Encoding::for_label(label.as_bytes())
            .ok_or_else(|| format!("names an unknown charset `{label}`"))?,
    };
    // As multer did: a byte-order mark names the encoding and is dropped.
    Ok(encoding.decode(bytes).0.into_owned())
}

fn parse_json(bytes: &[u8], form: &mut GmsForm) -> Result<(), AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| AppError::body(format!("is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(AppError::body("must be a JSON object of fields"));
    };
    for (k, v) in map {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            // The seed's escalation sends routingData as a nested object.
            v @ serde_json::Value::Object(_) if k == "routingData" => v.to_string(),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Err(AppError::field(&k, "must be a string, number or boolean"))
            }
        };
        form.push(k, text)?;
    }
    Ok(())
}

/// JSON bodies of the agent and admin API, with errors that name the field.
/// A body with a Content-Type other than JSON is refused (415) unread.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers())?;
        let bytes = read_body(req.into_body()).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(AppError::body("is empty; send a JSON object"));
        }
        parse_json_body(&bytes).map(JsonBody)
    }
}

/// An optional JSON body: none (or only white space) gives `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequest<S>
    for OptionalJsonBody<T>
{
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        json_content_type(&parts.headers)?;
        parse_json_body(&bytes).map(OptionalJsonBody)
    }
}

/// The JSON API takes `application/json` (or a `+json` type), or a body
/// without a Content-Type; anything else is 415.
fn json_content_type(headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if json {
        return Ok(());
    }
    Err(AppError::Unsupported(format!(
        "Content-Type: `{mime}` is not supported; this API takes application/json"
    )))
}

fn parse_json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            AppError::body(format!("is not valid: {}", e.inner()))
        } else {
            AppError::field(&path, e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "----WebKitFormBoundary0WnE36LruxJ4S5nu";

    /// Parses `body` as multipart with the boundary [`B`]: the fields, or the
    /// error's field and message.
    fn check(body: impl AsRef<[u8]>, expected: Result<&[(&str, &str)], (&str, &str)>) {
        let bytes = body.as_ref();
        // For the messages only.
        let body = String::from_utf8_lossy(bytes);
        let mut form = GmsForm::default();
        let content_type = format!("multipart/form-data; boundary={B}");
        match (parse_multipart(&content_type, bytes, &mut form), expected) {
            (Ok(()), Ok(fields)) => {
                let got: Vec<(&str, &str)> = form
                    .fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(got, fields, "{body:?}");
            }
            (Err(e), Err((field, message))) => {
                // The message starts with the field it names ("request
                // body" for the body as a whole).
                let text = e.to_string();
                let named = if field == "body" {
                    "request body"
                } else {
                    field
                };
                assert!(matches!(e, AppError::BadRequest { .. }), "{body:?}: {e:?}");
                assert!(text.starts_with(&format!("{named}: ")), "{body:?}: {text}");
                assert!(text.contains(message), "{body:?}: {text}");
            }
            (got, expected) => panic!("{body:?}: got {got:?}, expected {expected:?}"),
        }
    }

    /// Each head [`usual_head`] reads, it reads as [`part_head`] does (the
    /// name, no charset, the head's length); the others it leaves to
    /// `part_head`. (head, whether `usual_head` reads it)
    #[test]
    fn a_usual_head_reads_as_any_head() {
        let cases: &[(&[u8], bool)] = &[
            (b"Content-Disposition: form-data; name=\"_customer_number\"\r\n\r\n+1555", true),
            (b"content-disposition: FORM-DATA; NAME=\"x\"\r\n\r\nv", true),
            (b"Content-Disposition: form-data; name=\"\"\r\n\r\nv", true),
            ("Content-Disposition: form-data; name=\"prénom\"\r\n\r\nv".as_bytes(), true),
            (b"Content-Disposition: form-data; name=\"a b;c=d\"\r\n\r\n", true),
            (b"Content-Disposition: form-data; name=\"a\"; filename=\"f.txt\"\r\n\r\nv", false),
            (b"Content-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nv", false),
            (b"Content-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nv", false),
            (b"Content-Disposition: form-data; name=\"a\x01b\"\r\n\r\nv", false),
            (b"Content-Disposition: form-data; name=\"a\tb\"\r\n\r\nv", false),
            (b"Content-Disposition: form-data; name=a\r\n\r\nv", false),
            (b"Content-Disposition: form-data;name=\"a\"\r\n\r\nv", false),
            (b"Content-Disposition: form-data; name=\"a\"\r\n", false),
            (b"Content-Disposition: form-data; name=\"a", false),
            (b"Content-Disposition: form-data; name=\"\xff\"\r\n\r\nv", false),
            (b"X-Other: 1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv", false),
        ];
        for &(head, usual) in cases {
            let text = String::from_utf8_lossy(head);
            assert_eq!(usual_head(head).is_some(), usual, "{text:?}");
            if let Some((name, len)) = usual_head(head) {
                let (any_name, charset, any_len) = part_head(head).expect("a head part_head reads");
                assert_eq!(
                    (name, None, len),
                    (any_name.as_str(), charset.as_deref(), any_len),
                    "{text:?}"
                );
            }
        }
    }

    fn part(disposition: &str, value: &str) -> String {
        format!("--{B}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n")
    }

    /// The boundary as Content-Type gives it: a token or a quoted string,
    /// among other parameters; none is an error naming Content-Type.
    #[test]
    fn multipart_boundaries() {
        let body =
            format!("--{B}\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n1\r\n--{B}--\r\n");
        for content_type in [
            format!("multipart/form-data; boundary={B}"),
            format!("multipart/form-data; boundary=\"{B}\""),
            format!("multipart/form-data;charset=utf-8; BOUNDARY = {B}"),
        ] {
            let mut form = GmsForm::default();
            parse_multipart(&content_type, body.as_bytes(), &mut form).unwrap();
            assert_eq!(
                form.fields,
                vec![("n".to_owned(), "1".to_owned())],
                "{content_type}"
            );
        }
        for content_type in [
            "multipart/form-data",
            "multipart/form-data; charset=utf-8",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"\"",
        ] {
            let mut form = GmsForm::default();
            let e = parse_multipart(content_type, body.as_bytes(), &mut form).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("Content-Type: multipart boundary"),
                "{content_type}: {e}"
            );
        }
    }

    #[test]
    fn multipart_bodies() {
        let end = format!("--{B}--\r\n");
        let seed = [
            part(r#"form-data; name="_customer_number""#, "4082652649"),
            part(r#"form-data; name="usr_customer_name""#, "Bob Markel"),
            end.clone(),
        ]
        .concat();
        let both = [
            ("_customer_number", "4082652649"),
            ("usr_customer_name", "Bob Markel"),
        ];
        check(&seed, Ok(&both));
        // A preamble, padding after a boundary, an epilogue, no final CRLF.
        check(format!("preamble\r\n{seed}epilogue"), Ok(&both));
        check(
            seed.replacen(&format!("{B}\r\n"), &format!("{B} \t\r\n"), 1),
            Ok(&both),
        );
        check(seed.trim_end(), Ok(&both));
        // Values: empty, multi-line, with something like a boundary in them.
        let values = [
            part(r#"form-data; name="a""#, ""),
            part(r#"form-data; name="b""#, "line 1\r\nline 2"),
            part(r#"form-data; name="c""#, &format!("--{B}x")),
            end.clone(),
        ]
        .concat();
        check(
            &values,
            Ok(&[
                ("a", ""),
                ("b", "line 1\r\nline 2"),
                ("c", &format!("--{B}x")),
            ]),
        );
        // Names: quoted with an escaped quote and a semicolon, a token, the
        // parameter in another case and after a filename (one with escapes
        // too), header names in any case.
        let names = [
            part(r#"form-data; name="say \"hi\"; now""#, "1"),
            part("form-data; name=plain", "2"),
            part(r#"form-data; filename="f.txt"; NAME = "late""#, "3"),
            format!("--{B}\r\ncontent-disposition: form-data; name=\"lower\"\r\n\r\n4\r\n"),
            part(r#"form-data; bare; name="after bare""#, "5"),
            // An escaped quote in the filename, and `name=` inside it.
            part(r#"form-data; filename="a\"; name=\"x"; name="real""#, "6"),
            end.clone(),
        ]
        .concat();
        check(
            &names,
            Ok(&[
                ("say \"hi\"; now", "1"),
                ("plain", "2"),
                ("late", "3"),
                ("lower", "4"),
                ("after bare", "5"),
                ("real", "6"),
            ]),
        );
        // A charset on the part; UTF-8 by default, bad bytes replaced.
        let with_charset = |charset: &str| {
            let mut body = format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"n\"\r\nContent-Type: text/plain; charset={charset}\r\n\r\nJos"
            )
            .into_bytes();
            body.push(0xe9); // é in ISO 8859-1; not UTF-8
            body.extend(format!("\r\n{end}").into_bytes());
            body
        };
        check(with_charset("iso-8859-1"), Ok(&[("n", "Jos\u{e9}")]));
        check(with_charset("utf-8"), Ok(&[("n", "Jos\u{fffd}")]));
        // The empty bodies of the seed.
        check(&end, Ok(&[]));
        check(format!("--{B}--"), Ok(&[]));
        check("", Ok(&[]));

        // Bad bodies: each says what is wrong, naming the field when it can.
        check(
            part("form-data", "1"),
            Err(("body", "no name in Content-Disposition")),
        );
        check(
            format!("--{B}\r\n\r\n1\r\n{end}"),
            Err(("body", "no name in Content-Disposition")),
        );
        check(
            format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"_customer_number\"\r\n\r\n40826"
            ),
            Err(("_customer_number", "closing boundary")),
        );
        check(
            seed.to_string()
                .replace(&end, &format!("--{B}\r\nContent-Disp")),
            Err(("body", "headers are cut off")),
        );
        check(
            format!("--{B}x\r\n"),
            Err(("body", "not followed by a line break")),
        );
        check(
            seed.replace(B, "AAAA"),
            Err(("body", "no part starts with the boundary")),
        );
        check(
            format!("--{B}\r\nBad Header\r\n\r\n1\r\n{end}"),
            Err(("body", "a part's headers")),
        );
        check(
            with_charset("klingon"),
            Err(("n", "unknown charset `klingon`")),
        );
        check(
            [
                part(r#"form-data; name="a""#, "1"),
                part(r#"form-data; name="a""#, "2"),
                end,
            ]
            .concat(),
            Err(("a", "more than once")),
        );
    }
}
