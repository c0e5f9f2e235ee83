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

    /// Where the request comes from, for limits per address: the address a balancer of the
    /// deployment put last in `X-Forwarded-For` (it appends the one it saw), else the
    /// listener's own peer. A client talking to a node directly can write that header itself,
    /// so limits per account are what an attacker cannot step around.
    pub fn origin(&self) -> &str {
        self.headers
            .iter()
            .filter(|(n, _)| n == "x-forwarded-for")
            .filter_map(|(_, v)| v.rsplit(',').next())
            .map(str::trim)
            .next_back()
            .or(self.client.as_deref())
            .unwrap_or("unknown")
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

/// Reads a JSON body into `T`, or answers 400 saying what is wrong. Unknown fields are errors.
pub fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body)
        .map_err(|e| Response::error(400, "invalid_request", format!("invalid JSON body: {e}")))
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
}
