//! Checks of user-supplied fields: each failure is a 400 that names the field and the rule.

use crate::http::Response;

fn bad(field: &str, rule: &str) -> Response {
    Response::error(400, "invalid_request", format!("`{field}` {rule}"))
}

pub fn name(field: &str, v: &str) -> Result<(), Response> {
    let ok = !v.trim().is_empty() && v.chars().count() <= 100 && !v.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(bad(field, "must be 1 to 100 printable characters"))
    }
}

/// Path parts (contexts, versions): lowercase letters, digits, '.', '-', '_'; never `.` or `..`.
pub fn path_part(field: &str, v: &str) -> Result<(), Response> {
    let ok = (1..=60).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && v != "."
        && v != ".."
        && v != "internal"
        && v != "token";
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            "must be 1 to 60 of a-z, 0-9, '.', '-', '_' (not `.`, `..`, `internal` or `token`)",
        ))
    }
}

/// An API's backend: an `http://` URL with a host, that the deployment's backend policy
/// allows (`backends::Policy`).
pub fn backend(policy: &crate::backends::Policy, v: &str) -> Result<(), Response> {
    let rest = v.strip_prefix("http://");
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) && v.len() <= 500 => {
            policy.check_url(v).map_err(|why| {
                crate::security::event("backend_refused", &[("backend", v), ("reason", &why)]);
                bad("backend", &why)
            })
        }
        _ => Err(bad(
            "backend",
            "must be an http:// URL with a host (version 1 speaks plain HTTP)",
        )),
    }
}

/// A user name given at sign-in: one an account could have (`username`), or `admin`. Anything
/// else is refused before a database sees it.
pub fn login_name(v: &str) -> Result<(), Response> {
    if v == crate::auth::ADMIN {
        return Ok(());
    }
    username(v)
}

/// An OAuth client id as given: what a consumer key can be, at most 128 of a-z, A-Z, 0-9,
/// '-', '_', '.'; anything else is refused before a database sees it.
pub fn client_id(v: &str) -> Result<(), Response> {
    let ok = (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "client_id",
            "must be 1 to 128 of a-z, A-Z, 0-9, '-', '_', '.'",
        ))
    }
}

/// Requests whose body is JSON say so (`Content-Type: application/json`): a browser sends that
/// to another site only after asking it (a CORS preflight), so no page elsewhere can.
pub fn json_content(req: &crate::http::Request) -> Result<(), Response> {
    let json = req.get_header("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        Ok(())
    } else {
        Err(Response::error(
            415,
            "unsupported_media_type",
            "send the body as JSON, with `Content-Type: application/json`",
        ))
    }
}

pub fn text(field: &str, v: &str, max: usize) -> Result<(), Response> {
    if v.chars().count() <= max {
        Ok(())
    } else {
        Err(bad(field, &format!("must be at most {max} characters")))
    }
}

pub fn username(v: &str) -> Result<(), Response> {
    let ok = (3..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "username",
            "must be 3 to 64 of a-z, 0-9, '.', '_', '-', '@'",
        ))
    }
}

/// Passwords of 12 characters or more that lists of leaked passwords rank among the most used.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

pub const MIN_PASSWORD: usize = 12;

/// The password policy: 12 to 256 characters, not one character repeated, not a commonly used
/// password.
pub fn password(v: &str) -> Result<(), Response> {
    let n = v.chars().count();
    if !(MIN_PASSWORD..=256).contains(&n) {
        return Err(bad("password", "must be 12 to 256 characters"));
    }
    let mut chars = v.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(bad("password", "must not be one character repeated"));
    }
    let lower = v.to_lowercase();
    if COMMON_PASSWORDS
        .lines()
        .map(str::trim)
        .any(|p| !p.is_empty() && !p.starts_with('#') && p == lower)
    {
        return Err(bad(
            "password",
            "is one of the most used passwords; choose another",
        ));
    }
    Ok(())
}
