use super::{Event, Parser, TooLarge};

/// Feeds `chunks` one by one and renders every event as `kind=data` (data with `\n` shown as `|`).
fn check(chunks: &[&str], expect: &[&str]) {
    let mut parser = Parser::new(1024);
    let mut got = Vec::new();
    for chunk in chunks {
        for Event { kind, data } in parser.push(chunk.as_bytes()).unwrap() {
            got.push(format!("{kind}={}", data.replace('\n', "|")));
        }
    }
    assert_eq!(got, expect, "chunks: {chunks:?}");
}

#[test]
fn parses_events_as_server_everything_sends_them() {
    check(
        &["id: 1\ndata: \n\nevent: message\nid: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"],
        &["message=", r#"message={"jsonrpc":"2.0","id":1,"result":{}}"#],
    );
}

#[test]
fn handles_every_line_ending_and_any_split() {
    let whole = "data: a\r\ndata:b\rdata:  c\n\r\nevent: e\ndata\n\n";
    let expect = ["message=a|b| c", "e="];
    check(&[whole], &expect);
    // Every split point, including between CR and LF.
    for at in 0..=whole.len() {
        let (head, tail) = whole.split_at(at);
        check(&[head, tail], &expect);
    }
    // Byte by byte.
    let bytes: Vec<String> = whole.chars().map(String::from).collect();
    let refs: Vec<&str> = bytes.iter().map(String::as_str).collect();
    check(&refs, &expect);
}

#[test]
fn ignores_comments_unknown_fields_and_events_without_data() {
    check(
        &[": keep-alive\n\nretry: 3000\nid: x\nfoo: bar\n\nevent: only-type\n\ndata: z\n\n"],
        &["message=z"],
    );
    // An unterminated event at the end is not dispatched.
    check(&["data: never\n"], &[]);
}

#[test]
fn bounds_what_it_buffers() {
    let mut parser = Parser::new(8);
    assert_eq!(parser.push(b"data: 0123456789"), Err(TooLarge));
    let mut parser = Parser::new(8);
    assert!(parser.push(b"data: 01234\n").is_ok());
    assert_eq!(parser.push(b"data: 01234\n"), Err(TooLarge));
}
