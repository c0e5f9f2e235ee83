//! The project's own small request and response types; servers translate to and from them.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The address the request came from, as the listener saw it (a balancer's, behind one).
    pub client: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Bodies larger than this are refused with 413 before any component sees them.
pub const MAX_BODY: usize = 1024 * 1024;

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            client: None,
        }
    }

    /// Where the request comes from, for limits per address: the address the world vouches
    /// for. The real world takes it from the connection, or from `X-Forwarded-For` only when
    /// the connection is a balancer of the deployment (its certificate says so); components
    /// never read that header, which any client can write.
    pub fn origin(&self) -> &str {
        self.client.as_deref().unwrap_or("unknown")
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn json(mut self, value: &impl Serialize) -> Request {
        self.body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json")
    }

    pub fn form(mut self, pairs: &[(&str, &str)]) -> Request {
        self.body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token of an `Authorization: Bearer ...` header.
    pub fn bearer(&self) -> Option<&str> {
        bearer(self.get_header("authorization")?)
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        cookie_in(
            self.headers
                .iter()
                .filter(|(n, _)| n == "cookie")
                .map(|(_, v)| v.as_str()),
            name,
        )
    }

    /// The path split on '/', without empty segments.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// Fields of a form body (`application/x-www-form-urlencoded`) or of the query.
    pub fn form_fields(&self) -> Vec<(String, String)> {
        parse_form(&String::from_utf8_lossy(&self.body))
    }
}

pub fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Percent-decoding; malformed escapes are kept as they are. Borrows when there is nothing
/// to decode, as in almost every path.
pub fn decode_cow(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b == b'%' || b == b'+') {
        std::borrow::Cow::Owned(decode(s))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Percent-decoding; malformed escapes are kept as they are.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &impl Serialize) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// An error with a JSON body `{"error": code, "message": ...}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
        Response::json(
            status,
            &serde_json::json!({ "error": code, "message": message.into() }),
        )
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json_body(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Reads a JSON body into `T`, or answers 400 saying what is wrong. Unknown fields are errors,
/// and so is a NUL character in any string: no database stores one, and a request must never
/// be what makes a database fail.
pub fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Response> {
    let invalid =
        |why: String| Response::error(400, "invalid_request", format!("invalid JSON body: {why}"));
    if has_escaped_nul(&req.body) {
        return Err(invalid(
            "a string holds a NUL character (\\u0000), which cannot be stored".into(),
        ));
    }
    serde_json::from_slice(&req.body).map_err(|e| invalid(e.to_string()))
}

/// Whether a JSON text escapes a NUL (`\u0000`); raw control characters are refused by the
/// parser itself.
fn has_escaped_nul(json: &[u8]) -> bool {
    json.windows(6).enumerate().any(|(i, w)| {
        w[0] == b'\\'
            && w[1] == b'u'
            && &w[2..] == b"0000"
            // An escaped backslash before it makes it text, not an escape.
            && json[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0
    })
}

/// A cookie's value among `Cookie` header values.
pub fn cookie_in<'a>(values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The token of an `Authorization` header's value, when it is `Bearer ...`.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Hop-by-hop header fields (RFC 9110 7.6.1), which a proxy never passes on: the framing and
/// the connection are each hop's own. `host` is the next hop's too.
pub fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "proxy-connection"
            | "transfer-encoding"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

/// A message's header fields as a world holds them (lowercase names), so that a policy about
/// them is written once and runs in both worlds.
pub trait Fields {
    /// Removes every field whose name `drop` says.
    fn remove_where(&mut self, drop: impl Fn(&str) -> bool);
    /// Replaces every value of the field `name` with what `keep` makes of it, dropping those
    /// it answers `None` for (and values that are not text).
    fn rewrite(&mut self, name: &str, keep: impl Fn(&str) -> Option<String>);
}

impl Fields for Vec<(String, String)> {
    fn remove_where(&mut self, drop: impl Fn(&str) -> bool) {
        self.retain(|(n, _)| !drop(n));
    }
    fn rewrite(&mut self, name: &str, keep: impl Fn(&str) -> Option<String>) {
        if !self.iter().any(|(n, _)| n == name) {
            return;
        }
        *self = std::mem::take(self)
            .into_iter()
            .filter_map(|(n, v)| {
                if n == name {
                    keep(&v).map(|v| (n, v))
                } else {
                    Some((n, v))
                }
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_cookies_and_forms() {
        let r = Request::new("POST", "/token?x=1")
            .header("Authorization", "Bearer abc")
            .header("Cookie", "a=1; apim_session=s2")
            .form(&[("grant_type", "client_credentials"), ("scope", "a b")]);
        assert_eq!(r.query, "x=1");
        assert_eq!(r.bearer(), Some("abc"));
        assert_eq!(r.cookie("apim_session"), Some("s2"));
        assert_eq!(r.form_fields()[1], ("scope".into(), "a b".into()));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn a_nul_in_a_json_string_is_refused_before_anything_reads_it() {
        #[derive(serde::Deserialize, Debug)]
        struct U {
            #[allow(dead_code)]
            username: String,
        }
        let req = |b: &str| {
            let mut r = Request::new("POST", "/api/login");
            r.body = b.as_bytes().to_vec();
            r
        };
        let r = body::<U>(&req(r#"{"username": "x\u0000"}"#)).expect_err("NUL");
        assert_eq!(r.status, 400);
        assert!(body::<U>(&req(r#"{"username": "x\\u0000"}"#)).is_ok());
        assert!(body::<U>(&req(r#"{"username": "x\\\u0000"}"#)).is_err());
    }
}
