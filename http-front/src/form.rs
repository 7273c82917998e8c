//! GMS request bodies: the same fields as multipart/form-data (as the seed
//! sends them), application/x-www-form-urlencoded, or a flat JSON object.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

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
        if name.chars().count() > MAX_NAME_LEN {
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
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let bytes = read_body(req.into_body()).await?;
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
            "multipart/form-data" => parse_multipart(&content_type, bytes, &mut form).await?,
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

async fn parse_multipart(
    content_type: &str,
    bytes: bytes::Bytes,
    form: &mut GmsForm,
) -> Result<(), AppError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| AppError::field("Content-Type", format!("multipart boundary: {e}")))?;
    // The seed's empty requests are a lone closing boundary; multer wants a
    // part before it, so treat that body as "no fields".
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() || trimmed == format!("--{boundary}--").as_bytes() {
        return Ok(());
    }
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(AppError::body(format!(
                    "is not valid multipart/form-data: {e}"
                )))
            }
        };
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(AppError::body(
                "a multipart part has no name in Content-Disposition",
            ));
        };
        let value = field
            .text()
            .await
            .map_err(|e| AppError::field(&name, format!("could not be read: {e}")))?;
        form.push(name, value)?;
    }
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
