//! `${NAME}` references: found in topology values, and rewritten into each output's own form.

use std::collections::BTreeSet;

/// Calls `f` on each `${NAME}` reference in `text` and splices in what it returns.
pub fn rewrite(text: &str, f: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_name(&after[..end]) => {
                out.push_str(&rest[..start]);
                out.push_str(&f(&after[..end]));
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The names referenced in `text`.
pub fn references(text: &str) -> BTreeSet<String> {
    let found = std::cell::RefCell::new(BTreeSet::new());
    rewrite(text, |name| {
        found.borrow_mut().insert(name.to_string());
        String::new()
    });
    found.into_inner()
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The variable `apim up` and every node read the admin password from.
pub const ADMIN_PASSWORD: &str = "APIM_ADMIN_PASSWORD";
/// The password of a WSO2 node's PKCS#12 key store (its certificate and key).
pub const KEYSTORE_PASSWORD: &str = "APIM_KEYSTORE_PASSWORD";
/// The password of a WSO2 node's PKCS#12 trust store (the deployment CA).
pub const TRUSTSTORE_PASSWORD: &str = "APIM_TRUSTSTORE_PASSWORD";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_well_formed_references() {
        let url = "postgres://apim:${DB_PASSWORD}@h/${x}${";
        assert_eq!(
            rewrite(url, |n| format!("$env{{{n}}}")),
            "postgres://apim:$env{DB_PASSWORD}@h/${x}${"
        );
        assert_eq!(
            references(url).into_iter().collect::<Vec<_>>(),
            vec!["DB_PASSWORD"]
        );
    }
}
