//! JSON-RPC 2.0 messages as MCP uses them: requests, notifications and responses, parsed strictly from
//! bytes and serialized as one line.
//!
//! This module owns the wire shape of a single message and the standard error codes. It does no IO
//! and knows no MCP method. It never guesses: a message that is not exactly one of the three shapes is
//! refused with the error the JSON-RPC specification prescribes (`-32700` for bytes that are not JSON,
//! `-32600` for JSON that is not a valid message), and batches, which MCP removed in 2025-06-18, are
//! refused rather than parsed. Duplicate object keys are refused at every depth, so no two readers of
//! the same bytes (say, the gateway's policy check and the upstream) can see different values.

#[cfg(test)]
mod tests;

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The id of a request: MCP allows a string or an integer, never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl Id {
    fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::from(*n),
            Id::String(s) => Value::from(s.as_str()),
        }
    }

    fn from_value(value: &Value) -> Option<Id> {
        match value {
            Value::Number(n) => n.as_i64().map(Id::Number),
            Value::String(s) => Some(Id::String(s.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Id {
        Id::Number(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id::String(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Id {
        Id::String(s)
    }
}

/// A request: a call that expects a [`Response`] with the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id the response will carry.
    pub id: Id,
    /// The method name, such as `tools/call`.
    pub method: String,
    /// The parameters: an object or an array, or absent.
    pub params: Option<Value>,
}

/// A notification: a one-way message with no id and no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name, such as `notifications/initialized`.
    pub method: String,
    /// The parameters: an object or an array, or absent.
    pub params: Option<Value>,
}

/// A response to a request: its result or its error.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request answered; absent (`null` on the wire) only for an error about a message
    /// whose id could not be read.
    pub id: Option<Id>,
    /// The `result` member, or the `error` member.
    pub outcome: Result<Value, ErrorObject>,
}

impl Response {
    /// A successful response.
    pub fn success(id: Id, result: Value) -> Response {
        Response {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Response {
        Response {
            id,
            outcome: Err(error),
        }
    }
}

/// The `error` member of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorObject {
    /// The error code; see the associated constants for the standard ones.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Anything else the sender attached.
    pub data: Option<Value>,
}

impl ErrorObject {
    /// The bytes are not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The parameters are invalid.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The receiver failed internally.
    pub const INTERNAL_ERROR: i64 = -32603;

    /// An error with no `data`.
    pub fn new(code: i64, message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn to_value(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".to_owned(), Value::from(self.code));
        error.insert("message".to_owned(), Value::from(self.message.as_str()));
        if let Some(data) = &self.data {
            error.insert("data".to_owned(), data.clone());
        }
        Value::Object(error)
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.code, self.message)
    }
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response.
    Response(Response),
}

impl From<Request> for Message {
    fn from(request: Request) -> Message {
        Message::Request(request)
    }
}

impl From<Notification> for Message {
    fn from(notification: Notification) -> Message {
        Message::Notification(notification)
    }
}

impl From<Response> for Message {
    fn from(response: Response) -> Message {
        Message::Response(response)
    }
}

impl Message {
    /// Parses exactly one message from `bytes` (surrounding whitespace is allowed, nothing else).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = StrictValue::deserialize(&mut deserializer)
            .and_then(|StrictValue(value)| deserializer.end().map(|()| value))
            .map_err(|source| ParseError::new(ParseErrorKind::Json(source), None))?;
        Message::from_value(value)
    }

    /// Checks an already-parsed JSON value (duplicate keys can no longer be detected here).
    pub fn from_value(value: Value) -> Result<Message, ParseError> {
        let mut object = match value {
            Value::Object(object) => object,
            Value::Array(_) => return Err(ParseError::new(ParseErrorKind::Batch, None)),
            _ => return Err(ParseError::new(ParseErrorKind::NotObject, None)),
        };
        // The id is read first so that every later refusal can name it in its error response.
        let id = object.get("id").and_then(Id::from_value);
        let invalid = |kind| Err(ParseError::new(kind, id.clone()));

        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid(ParseErrorKind::Version);
        }
        let raw_id = object.remove("id");
        if raw_id.as_ref().is_some_and(|raw| !raw.is_null()) && id.is_none() {
            return invalid(ParseErrorKind::Id);
        }

        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return invalid(ParseErrorKind::Method);
            };
            if object.contains_key("result") || object.contains_key("error") {
                return invalid(ParseErrorKind::Mixed);
            }
            let params = match object.remove("params") {
                None => None,
                Some(params @ (Value::Object(_) | Value::Array(_))) => Some(params),
                Some(_) => return invalid(ParseErrorKind::Params),
            };
            return match (raw_id, id.clone()) {
                (None, _) => Ok(Message::Notification(Notification { method, params })),
                (Some(_), Some(id)) => Ok(Message::Request(Request { id, method, params })),
                // A present but null id on a request.
                (Some(_), None) => invalid(ParseErrorKind::Id),
            };
        }

        if raw_id.is_none() {
            return invalid(ParseErrorKind::Shape);
        }
        let outcome =
            match (object.remove("result"), object.remove("error")) {
                (Some(result), None) if id.is_some() => Ok(result),
                // Only an error may answer a message whose id could not be read.
                (Some(_), None) => return invalid(ParseErrorKind::Id),
                (None, Some(error)) => Err(parse_error_object(error)
                    .ok_or_else(|| ParseError::new(ParseErrorKind::ErrorObject, id.clone()))?),
                _ => return invalid(ParseErrorKind::Outcome),
            };
        Ok(Message::Response(Response { id, outcome }))
    }

    /// The message as a JSON value, `jsonrpc` member included.
    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("jsonrpc".to_owned(), Value::from("2.0"));
        match self {
            Message::Request(request) => {
                object.insert("id".to_owned(), request.id.to_value());
                object.insert("method".to_owned(), Value::from(request.method.as_str()));
                if let Some(params) = &request.params {
                    object.insert("params".to_owned(), params.clone());
                }
            }
            Message::Notification(notification) => {
                object.insert("method".to_owned(), Value::from(notification.method.as_str()));
                if let Some(params) = &notification.params {
                    object.insert("params".to_owned(), params.clone());
                }
            }
            Message::Response(response) => {
                object.insert("id".to_owned(), response.id.as_ref().map_or(Value::Null, Id::to_value));
                match &response.outcome {
                    Ok(result) => object.insert("result".to_owned(), result.clone()),
                    Err(error) => object.insert("error".to_owned(), error.to_value()),
                };
            }
        }
        Value::Object(object)
    }

    /// The message as compact JSON on one line, without the terminating newline: JSON escapes every
    /// control character inside strings, so the text never contains a line break (stdio framing relies
    /// on this).
    pub fn to_line(&self) -> String {
        self.to_value().to_string()
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

fn parse_error_object(error: Value) -> Option<ErrorObject> {
    let Value::Object(mut error) = error else {
        return None;
    };
    let code = error.get("code").and_then(Value::as_i64)?;
    let Some(Value::String(message)) = error.remove("message") else {
        return None;
    };
    Some(ErrorObject {
        code,
        message,
        data: error.remove("data"),
    })
}

/// Why bytes are not one valid JSON-RPC message.
#[derive(Debug)]
pub struct ParseError {
    kind: ParseErrorKind,
    id: Option<Id>,
}

/// The ways a message can be invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The bytes are not one JSON value, or an object repeats a key.
    #[error("the message is not valid json")]
    Json(#[source] serde_json::Error),
    /// A JSON array: a batch, which MCP does not allow.
    #[error("batches are not supported")]
    Batch,
    /// Some JSON value other than an object or an array.
    #[error("the message is not a json object")]
    NotObject,
    /// `jsonrpc` is missing or is not `"2.0"`.
    #[error("`jsonrpc` must be `\"2.0\"`")]
    Version,
    /// `id` is not a string or an integer (or is null on a request or a result).
    #[error("`id` must be a string or an integer")]
    Id,
    /// `method` is not a string.
    #[error("`method` must be a string")]
    Method,
    /// `params` is not an object or an array.
    #[error("`params` must be an object or an array")]
    Params,
    /// A message with a `method` that also has `result` or `error`.
    #[error("a message with `method` cannot have `result` or `error`")]
    Mixed,
    /// A message with neither `method` nor `id`.
    #[error("the message has neither `method` nor `id`")]
    Shape,
    /// A response without exactly one of `result` and `error`.
    #[error("a response must have exactly one of `result` and `error`")]
    Outcome,
    /// An `error` member that lacks an integer `code` or a string `message`.
    #[error("`error` must be an object with an integer `code` and a string `message`")]
    ErrorObject,
}

impl ParseError {
    fn new(kind: ParseErrorKind, id: Option<Id>) -> ParseError {
        ParseError { kind, id }
    }

    /// What is wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// The id of the offending message, when it could be read.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The JSON-RPC error code for this refusal: `-32700` or `-32600`.
    pub fn code(&self) -> i64 {
        match self.kind {
            ParseErrorKind::Json(_) => ErrorObject::PARSE_ERROR,
            _ => ErrorObject::INVALID_REQUEST,
        }
    }

    /// The error response a receiver sends back for this message.
    pub fn to_response(&self) -> Response {
        let mut message = self.kind.to_string();
        if let ParseErrorKind::Json(source) = &self.kind {
            message = format!("{message}: {source}");
        }
        Response::error(self.id.clone(), ErrorObject::new(self.code(), message))
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// A JSON value read without tolerating duplicate object keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictValue, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format_args!("duplicate key `{shown}`")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(StrictValue(Value::Object(object)))
    }
}
