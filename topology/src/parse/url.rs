//! Database URLs: enough of them to know the scheme, host, port and whether a password is literal.

use crate::vocab::Engine;

#[derive(Debug, PartialEq, Eq)]
pub struct DbUrl {
    pub scheme: String,
    /// Empty for SQLite, a Unix socket, or a URL that is one `${NAME}` reference.
    pub host: String,
    pub port: Option<u16>,
    /// The password is written out, not a `${NAME}` reference.
    pub literal_password: bool,
}

/// `${NAME}`: a credential or value taken from the environment at deploy time.
pub fn is_env_reference(text: &str) -> bool {
    text.strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .is_some_and(|name| {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
}

/// Reads a database URL for `engine`, or says what is wrong with it.
pub fn parse(url: &str, engine: Engine) -> Result<DbUrl, String> {
    if is_env_reference(url) {
        return Ok(DbUrl {
            scheme: String::new(),
            host: String::new(),
            port: None,
            literal_password: false,
        });
    }
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| "a URL starts with a scheme such as `postgres://`".to_string())?;
    let scheme = scheme.to_ascii_lowercase();
    if !engine.schemes().contains(&scheme.as_str()) {
        return Err(format!(
            "the scheme `{scheme}` does not match engine `{engine}`, which takes {}",
            engine
                .schemes()
                .iter()
                .map(|s| format!("`{s}://`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if engine == Engine::Sqlite {
        let path = rest.trim_start_matches("//");
        if path.is_empty() {
            return Err("a SQLite URL names a file, as in `sqlite://data/apim.db`".into());
        }
        return Ok(DbUrl {
            scheme,
            host: String::new(),
            port: None,
            literal_password: false,
        });
    }
    let rest = rest
        .strip_prefix("//")
        .ok_or_else(|| format!("expected `{scheme}://` followed by a host"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let literal_password = userinfo
        .and_then(|u| u.split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty() && !is_env_reference(password));
    let (host, port) = split_host_port(hostport)?;
    if let Some(problem) = (!host.is_empty() && !is_env_reference(host))
        .then(|| super::host::problem(host))
        .flatten()
    {
        return Err(format!("invalid host `{host}`: {problem}"));
    }
    Ok(DbUrl {
        scheme,
        host: host.to_string(),
        port,
        literal_password,
    })
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 host is closed with `]`".to_string())?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if is_env_reference(p) => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("the port `{p}` is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_network_urls() {
        let u = parse(
            "postgres://apim:${DB_PASSWORD}@10.0.9.10:5433/shared",
            Engine::Postgres,
        );
        assert_eq!(
            u,
            Ok(DbUrl {
                scheme: "postgres".into(),
                host: "10.0.9.10".into(),
                port: Some(5433),
                literal_password: false
            })
        );
        let u = parse("mysql://root:hunter2@db.example/apim", Engine::Mysql).expect("valid");
        assert!(u.literal_password);
        assert_eq!(u.port, None);
        assert!(parse("postgres://[::1]:5432/x", Engine::Postgres).is_ok());
        assert!(parse("${DATABASE_URL}", Engine::Postgres).is_ok());
    }

    #[test]
    fn rejects_mismatches_and_garbage() {
        assert!(parse("mysql://h/x", Engine::Postgres).is_err());
        assert!(parse("postgres:/h", Engine::Postgres).is_err());
        assert!(parse("postgres://h:99999/x", Engine::Postgres).is_err());
        assert!(parse("no scheme", Engine::Postgres).is_err());
        assert!(parse("sqlite://", Engine::Sqlite).is_err());
        assert!(parse("sqlite://data/apim.db", Engine::Sqlite).is_ok());
    }

    #[test]
    fn env_references() {
        assert!(is_env_reference("${DB_PASSWORD}"));
        assert!(!is_env_reference("${db}"));
        assert!(!is_env_reference("$DB"));
    }
}
