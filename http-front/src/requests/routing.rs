//! The seed's `routingData`: where a video leg is routed. It arrives as a
//! JSON object (in a form field, or nested in the agent's JSON body) and
//! overrides the video scenario's `_target` key by key.
//!
//! Errors name the key under the request field (`routingData.priority`,
//! `routingData.attributes.<name>`): each key's rule is the `Deserialize`
//! of its type, and `serde_path_to_error` supplies the path.

use std::collections::BTreeMap;

use engine::routing::skills::SkillExpr;
use engine::scenario::Target;
use engine::video::RoutingData;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::fields::{check_id, fits};
use crate::error::AppError;

/// Most attributes one routingData may carry.
const MAX_ATTRIBUTES: usize = 50;
const MAX_ATTRIBUTE_NAME: usize = 128;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
const MAX_QUEUE: usize = 128;
const PRIORITY: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

/// The keys a routingData may set; an absent key keeps the target's.
#[derive(Debug, Default, Deserialize)]
pub struct RoutingRequest {
    #[serde(default, rename = "queueId", alias = "queue")]
    queue: Option<Queue>,
    /// `Some(None)`: no skills (an empty expression, list or `null`).
    #[serde(default, deserialize_with = "skills")]
    skills: Option<Option<String>>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    attributes: Option<Attributes>,
    /// `Some(None)`: `null`, no preferred agent.
    #[serde(
        default,
        rename = "preferredAgentId",
        alias = "preferredAgent",
        alias = "agentUserId",
        deserialize_with = "agent"
    )]
    preferred_agent: Option<Option<String>>,
    /// Collected to be refused by name (serde's own refusal lists no path).
    #[serde(flatten)]
    unknown: serde_json::Map<String, Value>,
}

impl RoutingRequest {
    /// Parses the text of form field `field`; blank is no override.
    pub fn from_text(field: &str, text: Option<&str>) -> Result<RoutingRequest, AppError> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(RoutingRequest::default());
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| AppError::field(field, format!("is not a JSON object: {e}")))?;
        RoutingRequest::from_value(field, Some(value))
    }

    /// Parses the JSON value of field `field`; absent is no override.
    pub fn from_value(field: &str, value: Option<Value>) -> Result<RoutingRequest, AppError> {
        let Some(value) = value else {
            return Ok(RoutingRequest::default());
        };
        let Value::Object(mut map) = value else {
            return Err(AppError::field(field, "must be a JSON object"));
        };
        later_alias_wins(&mut map);
        let value = Value::Object(map);
        let request: RoutingRequest = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                AppError::field(field, e.inner())
            } else {
                AppError::field(&format!("{field}.{path}"), e.inner())
            }
        })?;
        if let Some(other) = request.unknown.keys().next() {
            return Err(AppError::field(
                &format!("{field}.{other}"),
                "is not one of queueId, skills, priority, attributes, preferredAgentId",
            ));
        }
        Ok(request)
    }

    /// `routing` with this request's keys put over it.
    pub fn apply(self, mut routing: RoutingData) -> RoutingData {
        if let Some(Queue(q)) = self.queue {
            routing.queue = q;
        }
        if let Some(skills) = self.skills {
            routing.skills = skills;
        }
        if let Some(Priority(p)) = self.priority {
            routing.priority = p;
        }
        if let Some(Attributes(attrs)) = self.attributes {
            routing.attributes.extend(attrs);
        }
        if let Some(agent) = self.preferred_agent {
            routing.preferred_agent = agent;
        }
        routing
    }

    /// The routing of a leg under `target` with these overrides.
    pub fn over(self, target: &Target) -> RoutingData {
        self.apply(RoutingData::from_target(target))
    }
}

/// Keeps only the last of a key's aliases, as the seed's clients have
/// always been answered (serde would refuse the pair as a duplicate).
fn later_alias_wins(map: &mut serde_json::Map<String, Value>) {
    const ALIASES: [&[&str]; 2] = [
        &["queueId", "queue"],
        &["preferredAgentId", "preferredAgent", "agentUserId"],
    ];
    for names in ALIASES {
        let given: Vec<String> = map
            .keys()
            .filter(|k| names.contains(&k.as_str()))
            .cloned()
            .collect();
        for earlier in given.iter().rev().skip(1) {
            map.shift_remove(earlier);
        }
    }
}

/// A queue name: 1 to 128 characters after trimming.
#[derive(Debug)]
struct Queue(String);

impl<'de> Deserialize<'de> for Queue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        v.as_str()
            .map(str::trim)
            .filter(|q| !q.is_empty() && fits(q, MAX_QUEUE))
            .map(|q| Queue(q.to_owned()))
            .ok_or_else(|| de::Error::custom("must be a queue name (1 to 128 characters)"))
    }
}

/// A skill expression, or a list of skill names all required.
fn skills<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    let expr = match Value::deserialize(d)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Array(list) => {
            let names: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
            names
                .ok_or_else(|| de::Error::custom("must be skill names"))?
                .join(" & ")
        }
        Value::Null => String::new(),
        _ => {
            return Err(de::Error::custom(
                "must be a list of skill names or a skill expression",
            ))
        }
    };
    if expr.is_empty() {
        return Ok(Some(None));
    }
    SkillExpr::parse(&expr).map_err(de::Error::custom)?;
    Ok(Some(Some(expr)))
}

/// A whole number (or its text) within [`PRIORITY`].
#[derive(Debug)]
struct Priority(i32);

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|p| PRIORITY.contains(p))
            .map(|p| Priority(p as i32))
            .ok_or_else(|| de::Error::custom("must be a whole number from -1000000 to 1000000"))
    }
}

/// An agent id, or `null` for none.
fn agent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Some(None)),
        Value::String(a) => match check_id("", &a) {
            Ok(()) => Ok(Some(Some(a))),
            Err(_) => Err(de::Error::custom(
                "is not a valid id (letters, digits, '-' and '_', at most 128)",
            )),
        },
        _ => Err(de::Error::custom("must be an agent id")),
    }
}

/// Names to values (strings, numbers or booleans, kept as text).
#[derive(Debug)]
struct Attributes(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AttributesVisitor)
    }
}

struct AttributesVisitor;

impl<'de> Visitor<'de> for AttributesVisitor {
    type Value = Attributes;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
        // The count is known before any entry is read (a JSON value's map).
        if map.size_hint().is_some_and(|n| n > MAX_ATTRIBUTES) {
            return Err(de::Error::custom("has more than 50 attributes"));
        }
        let mut attrs = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            // The name's rule is checked with the value, so that an error
            // is reported at `attributes.<name>`.
            let AttributeValue(text) = map.next_value_seed(AttributeSeed { name: &name })?;
            attrs.insert(name, text);
            if attrs.len() > MAX_ATTRIBUTES {
                return Err(de::Error::custom("has more than 50 attributes"));
            }
        }
        Ok(Attributes(attrs))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Attributes, E> {
        Err(E::custom("must be an object of names to values"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Attributes, E> {
        Err(E::custom("must be an object of names to values"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Attributes, E> {
        Err(E::custom("must be an object of names to values"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Attributes, E> {
        Err(E::custom("must be an object of names to values"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Attributes, E> {
        Err(E::custom("must be an object of names to values"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Attributes, E> {
        Err(E::custom("must be an object of names to values"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Attributes, A::Error> {
        Err(de::Error::custom("must be an object of names to values"))
    }
}

struct AttributeValue(String);

/// One attribute's value, checked together with its name.
struct AttributeSeed<'a> {
    name: &'a str,
}

impl<'de> de::DeserializeSeed<'de> for AttributeSeed<'_> {
    type Value = AttributeValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttributeValue, D::Error> {
        let text = match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(de::Error::custom("must be a string, number or boolean")),
        };
        let name_ok = !self.name.is_empty() && fits(self.name, MAX_ATTRIBUTE_NAME);
        if !name_ok || !fits(&text, MAX_ATTRIBUTE_VALUE) {
            return Err(de::Error::custom(
                "names are 1 to 128 characters, values at most 1024",
            ));
        }
        Ok(AttributeValue(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target {
            queue: "video".into(),
            skills: None,
            priority: 5,
            steps: Vec::new(),
        }
    }

    /// `routingData` as the form field `text` gives `expected`: the routing
    /// as JSON, or the error message.
    fn check(text: &str, expected: Result<Value, &str>) {
        let got = RoutingRequest::from_text("routingData", Some(text))
            .map(|r| json!(r.over(&target())))
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "{text}");
    }

    #[test]
    fn keys_override_the_target_under_every_alias() {
        let base = |changes: Value| {
            let mut v = json!({"queue": "video", "priority": 5, "attributes": {}});
            v.as_object_mut()
                .unwrap()
                .extend(changes.as_object().unwrap().clone());
            Ok(v)
        };
        check("", base(json!({})));
        check("  {}  ", base(json!({})));
        check(r#"{"queueId":" sales "}"#, base(json!({"queue": "sales"})));
        check(r#"{"queue":"sales"}"#, base(json!({"queue": "sales"})));
        check(
            r#"{"skills":["Arabic","billing"]}"#,
            base(json!({"skills": "Arabic & billing"})),
        );
        check(
            r#"{"skills":"Arabic | French"}"#,
            base(json!({"skills": "Arabic | French"})),
        );
        check(r#"{"skills":null}"#, base(json!({})));
        check(r#"{"priority":"-7"}"#, base(json!({"priority": -7})));
        check(
            r#"{"priority":1000000}"#,
            base(json!({"priority": 1_000_000})),
        );
        check(
            r#"{"attributes":{"lang":"ar","vip":true,"n":3}}"#,
            base(json!({"attributes": {"lang": "ar", "n": "3", "vip": "true"}})),
        );
        for key in ["preferredAgentId", "preferredAgent", "agentUserId"] {
            let text = format!(r#"{{"{key}":"pat"}}"#);
            check(&text, base(json!({"preferred_agent": "pat"})));
        }
        check(r#"{"preferredAgentId":null}"#, base(json!({})));
        // Two aliases of one key: the later one counts.
        check(
            r#"{"queue":"a","queueId":"b"}"#,
            base(json!({"queue": "b"})),
        );
        check(
            r#"{"queueId":"b","queue":"a"}"#,
            base(json!({"queue": "a"})),
        );
        check(
            r#"{"agentUserId":"pat","preferredAgent":"kim"}"#,
            base(json!({"preferred_agent": "kim"})),
        );
        // Lengths count characters: 128 Arabic letters are a queue name.
        let long = "ع".repeat(128);
        check(
            &format!(r#"{{"queueId":"{long}"}}"#),
            base(json!({"queue": long})),
        );
    }

    #[test]
    fn each_error_names_its_key() {
        let queue = "routingData.queueId: must be a queue name (1 to 128 characters)";
        let attr = "routingData.attributes.a: names are 1 to 128 characters, values at most 1024";
        let too_many: serde_json::Map<String, Value> =
            (0..51).map(|i| (format!("a{i}"), json!("x"))).collect();
        let too_many = json!({"attributes": too_many}).to_string();
        let cases = [
            ("[1]", "routingData: must be a JSON object"),
            (r#"{"queue_id":"x"}"#, "routingData.queue_id: is not one of queueId, skills, priority, attributes, preferredAgentId"),
            (r#"{"queueId":""}"#, queue),
            (r#"{"queueId":5}"#, queue),
            (r#"{"queue":"  "}"#, "routingData.queue: must be a queue name (1 to 128 characters)"),
            (r#"{"skills":["Arabic",3]}"#, "routingData.skills: must be skill names"),
            (r#"{"skills":{"a":1}}"#, "routingData.skills: must be a list of skill names or a skill expression"),
            (r#"{"priority":1000001}"#, "routingData.priority: must be a whole number from -1000000 to 1000000"),
            (r#"{"priority":"high"}"#, "routingData.priority: must be a whole number from -1000000 to 1000000"),
            (r#"{"attributes":["x"]}"#, "routingData.attributes: must be an object of names to values"),
            (&too_many, "routingData.attributes: has more than 50 attributes"),
            (r#"{"attributes":{"a":[1]}}"#, "routingData.attributes.a: must be a string, number or boolean"),
            (r#"{"attributes":{"a":null}}"#, "routingData.attributes.a: must be a string, number or boolean"),
            (&format!(r#"{{"attributes":{{"a":"{}"}}}}"#, "x".repeat(1025)), attr),
            (r#"{"preferredAgentId":5}"#, "routingData.preferredAgentId: must be an agent id"),
            (r#"{"agentUserId":"a b"}"#, "routingData.agentUserId: is not a valid id (letters, digits, '-' and '_', at most 128)"),
        ];
        for (text, expected) in cases {
            check(text, Err(expected));
        }
        // 1024 two-byte characters are within the value's limit.
        let value = "é".repeat(1024);
        let text = format!(r#"{{"attributes":{{"a":"{value}"}}}}"#);
        assert!(RoutingRequest::from_text("routingData", Some(&text)).is_ok());
        let got = RoutingRequest::from_text("routingData", Some("{not json")).unwrap_err();
        assert!(
            got.to_string()
                .starts_with("routingData: is not a JSON object: "),
            "{got}"
        );
    }
}
