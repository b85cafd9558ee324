//! CometBFT's URI over HTTP GET (`rpc/jsonrpc/server/http_uri_handler.go`): `GET /block?height=5`
//! is the JSON-RPC request `{"jsonrpc":"2.0","id":0,"method":"block","params":{"height":"5"}}`,
//! which the caller answers as it would a POST, with id -1 as CometBFT does
//! ([`URI_ANSWER_PREFIX`]). `GET /` is the list of routes ([`routes_html`]).
//!
//! How an argument's value becomes a JSON param, after percent-decoding (`+` is a space):
//! - `"…"` (in double quotes) is that string, with JSON's escapes;
//! - `0x…` stays the string as sent: Weft's params read `0x` hex themselves;
//! - `true` and `false` are JSON booleans;
//! - anything else (numbers, bare words) is a JSON string, which Weft's params accept for
//!   numbers as CometBFT's clients send them;
//! - an empty value is left out, so that the method's default applies, as in CometBFT.
//!
//! This module only translates: it never calls a method, and it knows no method's params.

use serde_json::{Map, Value};

/// The id of every request made from a URI. CometBFT answers URI requests with id -1, which
/// jsonrpsee's ids (unsigned) cannot carry: the transport writes -1 into the answer
/// ([`URI_ANSWER_PREFIX`]).
const URI_REQUEST_ID: i64 = 0;
/// How jsonrpsee's answer to a URI request begins, and what the transport puts instead.
pub(crate) const URI_ANSWER_PREFIX: (&str, &str) = (
    r#"{"jsonrpc":"2.0","id":0,"#,
    r#"{"jsonrpc":"2.0","id":-1,"#,
);

/// The longest query string read, in bytes (after `?`, before percent-decoding).
pub(crate) const QUERY_BYTES_MAX: usize = 64 * 1024;

/// The most arguments one URI may carry; no method takes more than a handful.
pub(crate) const ARGS_MAX: usize = 32;

/// Why a URI is not a request. The message is written for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UriError {
    /// The path is not `/` followed by a method name.
    #[error("invalid method name {0:?}: a method name is letters, digits and _")]
    BadMethod(String),
    /// The query string is over [`QUERY_BYTES_MAX`].
    #[error("query string of {bytes} bytes is over the limit of {max} bytes")]
    QueryTooLong {
        /// Its length.
        bytes: usize,
        /// [`QUERY_BYTES_MAX`].
        max: usize,
    },
    /// More than [`ARGS_MAX`] arguments.
    #[error("more than {max} arguments")]
    TooManyArgs {
        /// [`ARGS_MAX`].
        max: usize,
    },
    /// The same argument twice.
    #[error("argument {0:?} given twice")]
    RepeatedArg(String),
    /// An argument with a value but no name (`?=5`).
    #[error("an argument has no name")]
    UnnamedArg,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in {0:?}")]
    BadPercentEncoding(String),
    /// Percent-decoding gave bytes that are not UTF-8.
    #[error("{0:?} is not UTF-8 once percent-decoded")]
    NotUtf8(String),
    /// A value in double quotes that is not a JSON string.
    #[error("argument {name:?}: {value} is not a valid quoted string")]
    BadQuotedString {
        /// The argument.
        name: String,
        /// Its value.
        value: String,
    },
}

/// The JSON-RPC 2.0 request text for `GET {path}?{query}`, following CometBFT's rules (module
/// doc). `path` is the URI's path (`/block`), `query` what follows `?`, if anything.
pub(crate) fn uri_request(path: &str, query: Option<&str>) -> Result<String, UriError> {
    let method = path.strip_prefix('/').unwrap_or(path);
    let valid_method = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid_method {
        return Err(UriError::BadMethod(method.to_owned()));
    }
    let params = params(query.unwrap_or(""))?;
    // The method name needs no JSON escaping: it is letters, digits and `_` (checked above).
    Ok(format!(
        r#"{{"jsonrpc":"2.0","id":{URI_REQUEST_ID},"method":"{method}","params":{}}}"#,
        Value::Object(params)
    ))
}

/// The params object for a query string.
fn params(query: &str) -> Result<Map<String, Value>, UriError> {
    if query.len() > QUERY_BYTES_MAX {
        return Err(UriError::QueryTooLong {
            bytes: query.len(),
            max: QUERY_BYTES_MAX,
        });
    }
    let mut params = Map::new();
    let mut names_seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        if names_seen.len() == ARGS_MAX {
            return Err(UriError::TooManyArgs { max: ARGS_MAX });
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let value = percent_decode(value)?;
        if name.is_empty() {
            return Err(UriError::UnnamedArg);
        }
        if names_seen.contains(&name) {
            return Err(UriError::RepeatedArg(name));
        }
        if !value.is_empty() {
            params.insert(name.clone(), param(&name, value)?);
        }
        names_seen.push(name);
    }
    debug_assert!(params.len() <= ARGS_MAX);
    Ok(params)
}

/// One decoded value as a JSON param (module doc).
fn param(name: &str, value: String) -> Result<Value, UriError> {
    let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
    if quoted {
        return match serde_json::from_str::<String>(&value) {
            Ok(text) => Ok(Value::String(text)),
            Err(_) => Err(UriError::BadQuotedString {
                name: name.to_owned(),
                value,
            }),
        };
    }
    Ok(match value.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        // `0x…` hex, numbers and bare words: the string as sent.
        _ => Value::String(value),
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let byte = bytes
                    .get(at + 1..at + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| UriError::BadPercentEncoding(text.to_owned()))?;
                decoded.push(byte);
                at += 2;
            }
            other => decoded.push(other),
        }
        at += 1;
    }
    String::from_utf8(decoded).map_err(|_| UriError::NotUtf8(text.to_owned()))
}

/// The page CometBFT serves at `GET /`: a link per route, routes without args first, each list
/// sorted by name. `host` is the request's `Host`; `routes` are (method, arg names). Everything
/// printed is HTML-escaped, since `host` comes from the client.
pub(crate) fn routes_html(host: &str, routes: &[(&str, &[&str])]) -> String {
    let mut sorted = routes.to_vec();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    let mut page = String::from("<html><body><br>Available endpoints:<br>");
    for (name, _) in sorted.iter().filter(|(_, args)| args.is_empty()) {
        push_link(&mut page, &format!("//{host}/{name}"));
    }
    page.push_str("<br>Endpoints that require arguments:<br>");
    for (name, args) in sorted.iter().filter(|(_, args)| !args.is_empty()) {
        let query: Vec<String> = args.iter().map(|arg| format!("{arg}=_")).collect();
        push_link(&mut page, &format!("//{host}/{name}?{}", query.join("&")));
    }
    page.push_str("</body></html>");
    page
}

/// Appends `<a href="link">link</a></br>` (CometBFT's markup), escaped.
fn push_link(page: &mut String, link: &str) {
    let link = html_escape(link);
    page.push_str("<a href=\"");
    page.push_str(&link);
    page.push_str("\">");
    page.push_str(&link);
    page.push_str("</a></br>");
}

/// `text` safe inside an element or a double- or single-quoted attribute.
fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `GET {path}?{query}` gives the request with `expected` as method and params, or the error.
    fn check(path: &str, query: Option<&str>, expected: Result<(&str, Value), UriError>) {
        let got = uri_request(path, query).map(|text| {
            let request: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(request["jsonrpc"], "2.0", "{text}");
            assert_eq!(request["id"], URI_REQUEST_ID, "{text}");
            assert_eq!(request.as_object().unwrap().len(), 4, "{text}");
            (
                request["method"].as_str().unwrap().to_owned(),
                request["params"].clone(),
            )
        });
        let expected = expected.map(|(method, params)| (method.to_owned(), params));
        assert_eq!(got, expected, "GET {path}?{query:?}");
    }

    #[test]
    fn the_example_reads_as_cometbft_writes_it_but_for_the_id() {
        assert_eq!(
            uri_request("/block", Some("height=5")).unwrap(),
            r#"{"jsonrpc":"2.0","id":0,"method":"block","params":{"height":"5"}}"#
        );
    }

    #[test]
    fn the_answer_prefix_replaced_is_that_of_the_request_id() {
        let (ours, cometbft) = URI_ANSWER_PREFIX;
        assert_eq!(ours, format!(r#"{{"jsonrpc":"2.0","id":{URI_REQUEST_ID},"#));
        assert_eq!(cometbft, r#"{"jsonrpc":"2.0","id":-1,"#);
    }

    #[test]
    fn values_become_params_by_cometbft_rules() {
        check("/health", None, Ok(("health", json!({}))));
        check("/health", Some(""), Ok(("health", json!({}))));
        check(
            "/block",
            Some("height=5"),
            Ok(("block", json!({"height": "5"}))),
        );
        check(
            "/block",
            Some("height=-5"),
            Ok(("block", json!({"height": "-5"}))),
        );
        check(
            "/tx",
            Some("hash=0xAB12"),
            Ok(("tx", json!({"hash": "0xAB12"}))),
        );
        check(
            "/tx",
            Some("hash=0Xab"),
            Ok(("tx", json!({"hash": "0Xab"}))),
        );
        check(
            "/tx",
            Some("hash=\"abc\""),
            Ok(("tx", json!({"hash": "abc"}))),
        );
        check(
            "/tx",
            Some("hash=%22a%5C%22b%22"),
            Ok(("tx", json!({"hash": "a\"b"}))),
        );
        check("/tx", Some("hash=\"\""), Ok(("tx", json!({"hash": ""}))));
        check(
            "/tx",
            Some("prove=true"),
            Ok(("tx", json!({"prove": true}))),
        );
        check(
            "/tx",
            Some("prove=false"),
            Ok(("tx", json!({"prove": false}))),
        );
        check(
            "/tx",
            Some("prove=True"),
            Ok(("tx", json!({"prove": "True"}))),
        );
        check(
            "/tx",
            Some("prove=\"true\""),
            Ok(("tx", json!({"prove": "true"}))),
        );
        check(
            "/q",
            Some("a=bare+word"),
            Ok(("q", json!({"a": "bare word"}))),
        );
        check("/q", Some("a=%2B%26%3D"), Ok(("q", json!({"a": "+&="}))));
        check("/q", Some("a=%C3%A9"), Ok(("q", json!({"a": "é"}))));
        check("/q", Some("a=\""), Ok(("q", json!({"a": "\""}))));
        check(
            "/q",
            Some("a=1&&b=2&"),
            Ok(("q", json!({"a": "1", "b": "2"}))),
        );
        check("/q", Some("a=&b"), Ok(("q", json!({}))));
        check("/q", Some("a%5F=1"), Ok(("q", json!({"a_": "1"}))));
        check("/q", Some("a=x=y"), Ok(("q", json!({"a": "x=y"}))));
        check("/unsafe_x2", None, Ok(("unsafe_x2", json!({}))));
    }

    #[test]
    fn bad_uris_are_typed_errors() {
        let bad_method = |name: &str| Err(UriError::BadMethod(name.to_owned()));
        check("/", None, bad_method(""));
        check("", None, bad_method(""));
        check("/a/b", None, bad_method("a/b"));
        check("/a-b", None, bad_method("a-b"));
        check("/a\"b", None, bad_method("a\"b"));
        check("/é", None, bad_method("é"));
        check(
            "/q",
            Some("a=1&a=2"),
            Err(UriError::RepeatedArg("a".into())),
        );
        check("/q", Some("a=&a=2"), Err(UriError::RepeatedArg("a".into())));
        check(
            "/q",
            Some("a=1&%61=2"),
            Err(UriError::RepeatedArg("a".into())),
        );
        check("/q", Some("=1"), Err(UriError::UnnamedArg));
        let bad_escape = |text: &str| Err(UriError::BadPercentEncoding(text.to_owned()));
        check("/q", Some("a=%"), bad_escape("%"));
        check("/q", Some("a=%4"), bad_escape("%4"));
        check("/q", Some("a=%zz"), bad_escape("%zz"));
        check("/q", Some("a=%+1"), bad_escape("%+1"));
        check("/q", Some("a=%FF"), Err(UriError::NotUtf8("%FF".into())));
        let bad_quoted = Err(UriError::BadQuotedString {
            name: "a".into(),
            value: "\"x\"y\"".into(),
        });
        check("/q", Some("a=%22x%22y%22"), bad_quoted);
    }

    #[test]
    fn limits_hold_at_their_edges() {
        let args = |n: usize| {
            (0..n)
                .map(|i| format!("a{i}=1"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(uri_request("/q", Some(&args(ARGS_MAX))).map(|_| ()), Ok(()));
        check(
            "/q",
            Some(&args(ARGS_MAX + 1)),
            Err(UriError::TooManyArgs { max: ARGS_MAX }),
        );

        let longest = format!("a={}", "x".repeat(QUERY_BYTES_MAX - 2));
        assert_eq!(uri_request("/q", Some(&longest)).map(|_| ()), Ok(()));
        let too_long = format!("{longest}x");
        check(
            "/q",
            Some(&too_long),
            Err(UriError::QueryTooLong {
                bytes: QUERY_BYTES_MAX + 1,
                max: QUERY_BYTES_MAX,
            }),
        );
    }

    #[test]
    fn the_routes_page_lists_routes_as_cometbft_does() {
        let routes: &[(&str, &[&str])] = &[
            ("status", &[]),
            ("block", &["height"]),
            ("health", &[]),
            ("tx", &["hash", "prove"]),
        ];
        assert_eq!(
            routes_html("localhost:26657", routes),
            "<html><body><br>Available endpoints:<br>\
             <a href=\"//localhost:26657/health\">//localhost:26657/health</a></br>\
             <a href=\"//localhost:26657/status\">//localhost:26657/status</a></br>\
             <br>Endpoints that require arguments:<br>\
             <a href=\"//localhost:26657/block?height=_\">//localhost:26657/block?height=_</a></br>\
             <a href=\"//localhost:26657/tx?hash=_&amp;prove=_\">\
             //localhost:26657/tx?hash=_&amp;prove=_</a></br>\
             </body></html>"
        );
    }

    #[test]
    fn the_routes_page_escapes_the_host() {
        let page = routes_html("\"><script>'&", &[("health", &[])]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("//&quot;&gt;&lt;script&gt;&#39;&amp;/health"),
            "{page}"
        );
    }

    #[test]
    fn an_empty_route_list_still_has_both_headings() {
        assert_eq!(
            routes_html("h", &[]),
            "<html><body><br>Available endpoints:<br>\
             <br>Endpoints that require arguments:<br></body></html>"
        );
    }
}
