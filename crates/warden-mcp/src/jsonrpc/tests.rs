use serde_json::{Value, json};

use super::{ErrorObject, Id, Message, Notification, ParseErrorKind, Request, Response};

/// Parses `input` and renders the outcome as one comparable line: the message, or the error code and
/// text (with its cause) and the id the error response would carry.
fn check(input: &str, expect: &str) {
    let got = match Message::parse(input.as_bytes()) {
        Ok(message) => format!("ok {}", message.to_line()),
        Err(err) => {
            let response = err.to_response();
            let id = response.id.map_or_else(|| "null".to_owned(), |id| id.to_string());
            let text = match response.outcome {
                Err(error) => error.message,
                Ok(_) => unreachable!(),
            };
            format!("err {} id={id} {text}", err.code())
        }
    };
    let shown: String = input.chars().take(200).collect();
    // Key order depends on serde_json's `preserve_order` feature, which the workspace may unify on, so
    // successful parses are compared as JSON values.
    match (got.strip_prefix("ok "), expect.strip_prefix("ok ")) {
        (Some(got), Some(expect)) => {
            let got: Value = serde_json::from_str(got).unwrap();
            let expect: Value = serde_json::from_str(expect).unwrap();
            assert_eq!(got, expect, "input: {shown}");
        }
        _ => assert_eq!(got, expect, "input: {shown}"),
    }
}

#[test]
fn parses_the_three_shapes() {
    check(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        r#"ok {"id":1,"jsonrpc":"2.0","method":"tools/list"}"#,
    );
    check(
        r#" {"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo"}} "#,
        r#"ok {"id":"a-1","jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
    );
    check(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"ok {"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    check(
        r#"{"jsonrpc":"2.0","method":"n","params":[1,2]}"#,
        r#"ok {"jsonrpc":"2.0","method":"n","params":[1,2]}"#,
    );
    check(
        r#"{"result":{"tools":[]},"jsonrpc":"2.0","id":7}"#,
        r#"ok {"id":7,"jsonrpc":"2.0","result":{"tools":[]}}"#,
    );
    check(
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: x","data":{"k":1}}}"#,
        r#"ok {"error":{"code":-32602,"data":{"k":1},"message":"Unknown tool: x"},"id":7,"jsonrpc":"2.0"}"#,
    );
    check(
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        r#"ok {"error":{"code":-32700,"message":"Parse error"},"id":null,"jsonrpc":"2.0"}"#,
    );
}

#[test]
fn refuses_what_is_not_json() {
    check(
        "",
        "err -32700 id=null the message is not valid json: EOF while parsing a value at line 1 column 0",
    );
    check(
        r#"{"jsonrpc":"2.0","id":1,"method":"x"} {}"#,
        "err -32700 id=null the message is not valid json: trailing characters at line 1 column 39",
    );
    check(
        r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
        "err -32700 id=null the message is not valid json: duplicate key `method` at line 1 column 45",
    );
    check(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        "err -32700 id=null the message is not valid json: duplicate key `name` at line 1 column 73",
    );
}

#[test]
fn refuses_invalid_messages_with_their_id() {
    check(r"[]", "err -32600 id=null batches are not supported");
    check(
        r#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#,
        "err -32600 id=null batches are not supported",
    );
    check("3", "err -32600 id=null the message is not a json object");
    check(
        r#"{"id":4,"method":"x"}"#,
        r#"err -32600 id=4 `jsonrpc` must be `"2.0"`"#,
    );
    check(
        r#"{"jsonrpc":"1.0","id":4,"method":"x"}"#,
        r#"err -32600 id=4 `jsonrpc` must be `"2.0"`"#,
    );
    check(
        r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
        "err -32600 id=null `id` must be a string or an integer",
    );
    check(
        r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
        "err -32600 id=null `id` must be a string or an integer",
    );
    check(
        r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
        "err -32600 id=null `id` must be a string or an integer",
    );
    check(
        r#"{"jsonrpc":"2.0","id":"s","method":7}"#,
        r#"err -32600 id="s" `method` must be a string"#,
    );
    check(
        r#"{"jsonrpc":"2.0","id":5,"method":"x","params":"p"}"#,
        "err -32600 id=5 `params` must be an object or an array",
    );
    check(
        r#"{"jsonrpc":"2.0","method":"x","params":null}"#,
        "err -32600 id=null `params` must be an object or an array",
    );
    check(
        r#"{"jsonrpc":"2.0","id":5,"method":"x","result":{}}"#,
        "err -32600 id=5 a message with `method` cannot have `result` or `error`",
    );
    check(
        r#"{"jsonrpc":"2.0"}"#,
        "err -32600 id=null the message has neither `method` nor `id`",
    );
    check(
        r#"{"jsonrpc":"2.0","id":5}"#,
        "err -32600 id=5 a response must have exactly one of `result` and `error`",
    );
    check(
        r#"{"jsonrpc":"2.0","id":5,"result":1,"error":{"code":1,"message":"m"}}"#,
        "err -32600 id=5 a response must have exactly one of `result` and `error`",
    );
    check(
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":"x","message":"m"}}"#,
        "err -32600 id=5 `error` must be an object with an integer `code` and a string `message`",
    );
    check(
        r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
        "err -32600 id=null `id` must be a string or an integer",
    );
}

#[test]
fn parse_errors_expose_kind_and_id() {
    let err = Message::parse(br#"{"jsonrpc":"2.0","id":9,"method":false}"#).unwrap_err();
    assert!(matches!(err.kind(), ParseErrorKind::Method));
    assert_eq!(err.id(), Some(&Id::Number(9)));
    let err = Message::parse(b"{").unwrap_err();
    assert!(std::error::Error::source(&err).is_some(), "the json cause is chained");
}

#[test]
fn serialized_lines_never_contain_line_breaks() {
    let request = Message::Request(Request {
        id: Id::from("multi\nline"),
        method: "tools/call".to_owned(),
        params: Some(json!({"name": "echo", "arguments": {"message": "a\nb\r\nc\u{2028}"}})),
    });
    let line = request.to_line();
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    assert_eq!(Message::parse(line.as_bytes()).unwrap(), request);

    let notification = Message::from(Notification {
        method: "notifications/cancelled".to_owned(),
        params: Some(json!({"requestId": 3})),
    });
    assert_eq!(Message::parse(notification.to_line().as_bytes()).unwrap(), notification);

    let response = Message::from(Response::error(
        Some(Id::Number(-4)),
        ErrorObject::new(ErrorObject::METHOD_NOT_FOUND, "no"),
    ));
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"jsonrpc": "2.0", "id": -4, "error": {"code": -32601, "message": "no"}})
    );
    let success = Message::from(Response::success(Id::Number(1), Value::Null));
    let line = success.to_line();
    assert!(!line.contains('\n'), "{line}");
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap(),
        json!({"id": 1, "jsonrpc": "2.0", "result": null})
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":{}1{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    check(
        &deep,
        "err -32700 id=null the message is not valid json: recursion limit exceeded at line 1 column 166",
    );
}
