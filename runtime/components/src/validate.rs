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

pub fn backend(v: &str) -> Result<(), Response> {
    let rest = v.strip_prefix("http://");
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) && v.len() <= 500 => Ok(()),
        _ => Err(bad(
            "backend",
            "must be an http:// URL with a host (version 1 speaks plain HTTP)",
        )),
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

pub fn password(v: &str) -> Result<(), Response> {
    if (8..=256).contains(&v.chars().count()) {
        Ok(())
    } else {
        Err(bad("password", "must be 8 to 256 characters"))
    }
}
