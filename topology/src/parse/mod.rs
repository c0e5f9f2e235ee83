//! Reading a topology file into the model, reporting every structural problem on the way.
//!
//! The TOML is parsed into toml's spanned document tree and walked by hand against the format's
//! schema, so that every unknown key, wrong type and missing key becomes a diagnostic pointing at
//! its own position, and one problem never hides the next.

pub mod host;
pub mod url;

use crate::codes::*;
use crate::diagnostic::{Code, Diagnostic, Label};
use crate::model::*;
use crate::source::{Span, Spanned};
use crate::suggest;
use crate::vocab::{
    ADMIN_PORT_KEY, BalancerKind, Component, Engine, INTERNAL_PORT_KEY, Revocation, Role,
    TokenFormat,
};
use std::borrow::Cow;
use std::collections::HashMap;
use toml::de::{DeTable, DeValue};

type Key<'i> = toml::Spanned<Cow<'i, str>>;
type Value<'i> = toml::Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &[
    "version",
    "deployment",
    "networks",
    "firewall",
    "databases",
    "clusters",
    "load_balancers",
    "tls",
    "kubernetes",
];
const TLS_KEYS: &[&str] = &["ca", "cert", "key", "edge", "issuer"];
const EDGE_KEYS: &[&str] = &["cert", "key"];
const DEPLOYMENT_KEYS: &[&str] = &[
    "name",
    "pattern",
    "session_hours",
    "database_timeout_ms",
    "tokens",
    "revocation",
    "revocation_bound_ms",
    "backends",
];
const NETWORK_KEYS: &[&str] = &["public"];
const FIREWALL_KEYS: &[&str] = &["from", "to", "ports"];
const DATABASE_KEYS: &[&str] = &["roles", "engine", "url", "network"];
const CLUSTER_KEYS: &[&str] = &["components", "network", "hosts", "ports"];
const BALANCER_KEYS: &[&str] = &["kind", "network", "host", "fronts"];

/// Parses `text` into the model (possibly partial) and every structural diagnostic.
///
/// TOML syntax errors come alone: the tree recovered around them is a guess, and checking a
/// guess would bury the real mistake under its echoes.
pub fn parse(text: &str) -> Result<(Topology, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut p = Parser::default();
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        p.syntax_errors(text, &errors);
        return Err(p.diags);
    }
    let topology = p.topology(root.get_ref());
    Ok((topology, p.diags))
}

#[derive(Default)]
struct Parser {
    diags: Vec<Diagnostic>,
}

fn span(r: std::ops::Range<usize>) -> Span {
    Span::from(r)
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<(&'t Key<'i>, &'t Value<'i>)> {
    table.iter().find(|(k, _)| k.get_ref() == key)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Parser {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn error(
        &mut self,
        code: &'static Code,
        message: String,
        at: Span,
        label: &str,
        hint: Option<String>,
    ) {
        let mut d = Diagnostic::new(code, message, Label::new(at, label));
        d.hint = hint;
        self.push(d);
    }

    /// Reports the first syntax error and every duplicate key. The parser's later errors are
    /// mostly echoes of the first one (an unclosed array swallows the lines after it).
    fn syntax_errors(&mut self, text: &str, errors: &[toml::de::Error]) {
        let mut all: Vec<(Span, &str)> = errors
            .iter()
            .map(|e| (e.span().map(span).unwrap_or_default(), e.message()))
            .collect();
        all.sort();
        all.dedup();
        let first_other = all.iter().position(|(_, m)| *m != "duplicate key");
        let more = all.len() - all.iter().filter(|(_, m)| *m == "duplicate key").count();
        for (i, (at, message)) in all.into_iter().enumerate() {
            if message == "duplicate key" {
                let key = text.get(at.range()).unwrap_or_default();
                self.error(
                    &INVALID_TOML,
                    format!("duplicate key `{key}`"),
                    at,
                    "defined a second time here",
                    Some("each key and each [table] may be defined only once; merge the two definitions".into()),
                );
            } else if Some(i) == first_other {
                let hint = if more > 1 {
                    "fix this first and check again: the lines after a syntax error cannot be read reliably"
                } else {
                    "strings are quoted, lists are [a, b], tables are [name]; see https://toml.io"
                };
                self.error(
                    &INVALID_TOML,
                    format!("invalid TOML: {message}"),
                    at,
                    "here",
                    Some(hint.into()),
                );
            }
        }
    }

    fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], path: &str) {
        for key in table.keys() {
            let k = key.get_ref().as_ref();
            if allowed.contains(&k) {
                continue;
            }
            let hint = match suggest::closest(k, allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the keys here are: {}", allowed.join(", ")),
            };
            let place = if path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in `{path}`")
            };
            self.error(
                &UNKNOWN_KEY,
                format!("unknown key `{k}` {place}"),
                span(key.span()),
                "unknown key",
                Some(hint),
            );
        }
    }

    fn wrong_type(&mut self, v: &Value<'_>, path: &str, expected: &str) {
        self.error(
            &WRONG_TYPE,
            format!(
                "`{path}` must be {expected}, found {}",
                type_name(v.get_ref())
            ),
            span(v.span()),
            &format!("expected {expected}"),
            None,
        );
    }

    fn missing(&mut self, path: &str, key: &str, at: Span, hint: &str) {
        let message = if path.is_empty() {
            format!("the required key `{key}` is missing")
        } else {
            format!("`{path}` is missing the required key `{key}`")
        };
        self.error(
            &MISSING_KEY,
            message,
            at,
            &format!("`{key}` is missing here"),
            Some(hint.into()),
        );
    }

    fn table<'t, 'i>(&mut self, v: &'t Value<'i>, path: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, path, "a table");
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, path: &str) -> Option<Spanned<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(s.to_string(), span(v.span()))),
            _ => {
                self.wrong_type(v, path, "a string");
                None
            }
        }
    }

    fn bool(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, path, "a boolean (true or false)");
                None
            }
        }
    }

    fn array<'t, 'i>(&mut self, v: &'t Value<'i>, path: &str, of: &str) -> Option<&'t [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(v, path, &format!("an array of {of}"));
                None
            }
        }
    }

    /// An array of strings; an empty array is reported, duplicates too.
    fn strings(&mut self, v: &Value<'_>, path: &str, what: &str) -> Vec<Spanned<String>> {
        let Some(items) = self.array(v, path, "strings") else {
            return Vec::new();
        };
        if items.is_empty() {
            self.error(
                &EMPTY_LIST,
                format!("`{path}` is empty"),
                span(v.span()),
                "empty list",
                Some(format!("list at least one {what}")),
            );
        }
        let mut out: Vec<Spanned<String>> = Vec::new();
        // Where each entry was first listed: a fleet's balancer lists thousands of clusters.
        let mut seen: HashMap<String, Span> = HashMap::new();
        let item_path = format!("{path}[]");
        for item in items {
            let Some(s) = self.string(item, &item_path) else {
                continue;
            };
            if let Some(&first) = seen.get(&s.value) {
                self.push(
                    Diagnostic::new(
                        &DUPLICATE_ENTRY,
                        format!("`{}` is listed twice in `{path}`", s.value),
                        Label::new(s.span, "listed again here"),
                    )
                    .with_secondary(Label::new(first, "first listed here"))
                    .with_hint("remove the repeated entry"),
                );
                continue;
            }
            seen.insert(s.value.clone(), s.span);
            out.push(s);
        }
        out
    }

    /// An array of fixed words (components, roles): unknown words and duplicates are reported.
    fn words<W: Copy + PartialEq>(
        &mut self,
        v: &Value<'_>,
        path: &str,
        what: &str,
        parse: fn(&str) -> Option<W>,
        all: &[&'static str],
    ) -> Vec<Spanned<W>> {
        self.strings(v, path, what)
            .into_iter()
            .filter_map(|s| match parse(&s.value) {
                Some(w) => Some(Spanned::new(w, s.span)),
                None => {
                    self.unknown_word(&s, what, all);
                    None
                }
            })
            .collect()
    }

    fn unknown_word(&mut self, s: &Spanned<String>, what: &str, all: &[&'static str]) {
        let list = all.join(", ");
        let hint = match suggest::closest(&s.value, all.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? the {what}s are: {list}"),
            None => format!("the {what}s are: {list}"),
        };
        self.error(
            &UNKNOWN_VALUE,
            format!("unknown {what} `{}`", s.value),
            s.span,
            &format!("not a {what}"),
            Some(hint),
        );
    }

    fn word<W>(
        &mut self,
        v: &Value<'_>,
        path: &str,
        what: &str,
        parse: fn(&str) -> Option<W>,
        all: &[&'static str],
    ) -> Option<Spanned<W>> {
        let s = self.string(v, path)?;
        match parse(&s.value) {
            Some(w) => Some(Spanned::new(w, s.span)),
            None => {
                self.unknown_word(&s, what, all);
                None
            }
        }
    }

    fn port(&mut self, v: &Value<'_>, path: &str) -> Option<Spanned<u16>> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(v, path, "an integer port");
            return None;
        };
        let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
        match n.and_then(|n| u16::try_from(n).ok()).filter(|&n| n > 0) {
            Some(port) => Some(Spanned::new(port, span(v.span()))),
            None => {
                self.error(
                    &INVALID_PORT,
                    format!("`{path}` = {} is not a valid port", i.as_str()),
                    span(v.span()),
                    "out of range",
                    Some("ports are numbers from 1 to 65535".into()),
                );
                None
            }
        }
    }

    fn host(&mut self, s: &Spanned<String>, path: &str) -> bool {
        match host::problem(&s.value) {
            None => true,
            Some(problem) => {
                self.error(
                    &INVALID_HOST,
                    format!("invalid host `{}` in `{path}`", s.value),
                    s.span,
                    "not an address or host name",
                    Some(problem.to_string()),
                );
                false
            }
        }
    }

    fn name(&mut self, name: &str, at: Span, what: &str) {
        if is_valid_name(name) {
            return;
        }
        let fixed = suggest::name(name);
        let hint = if fixed.is_empty() {
            "names are lowercase letters, digits and '-', starting with a letter".to_string()
        } else {
            format!(
                "names are lowercase letters, digits and '-', starting with a letter: try `{fixed}`"
            )
        };
        self.error(
            &INVALID_NAME,
            format!("invalid {what} name `{name}`"),
            at,
            "invalid name",
            Some(hint),
        );
    }

    /// A `[section]` of named tables, such as `[clusters.NAME]`.
    fn named_tables<'t, 'i>(
        &mut self,
        root: &'t DeTable<'i>,
        key: &str,
        what: &str,
    ) -> Vec<(&'t Key<'i>, &'t DeTable<'i>)> {
        let Some((_, v)) = get(root, key) else {
            return Vec::new();
        };
        let Some(t) = self.table(v, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in t {
            self.name(k.get_ref(), span(k.span()), what);
            if let Some(item) = self.table(v, &join(key, k.get_ref())) {
                out.push((k, item));
            }
        }
        out
    }

    fn topology(&mut self, root: &DeTable<'_>) -> Topology {
        self.unknown_keys(root, TOP_KEYS, "");
        self.version(root);
        let mut t = Topology {
            deployment: self.deployment(root),
            networks: self.networks(root),
            firewall: self.firewall(root),
            databases: self.databases(root),
            clusters: self.clusters(root),
            load_balancers: self.balancers(root),
            tls: self.tls(root),
            kubernetes: self.kubernetes(root),
            fronted_by: Default::default(),
        };
        t.index();
        t
    }

    fn tls(&mut self, root: &DeTable<'_>) -> Option<Tls> {
        let (k, v) = get(root, "tls")?;
        let t = self.table(v, "tls")?;
        self.unknown_keys(t, TLS_KEYS, "tls");
        let mut tls = Tls {
            span: span(k.span()),
            ..Tls::default()
        };
        let path = |p: &mut Parser, t: &DeTable<'_>, key: &str, at: &str, per_name: bool| {
            let (_, v) = get(t, key)?;
            let s = p.string(v, &join(at, key))?;
            let problem = if s.value.trim().is_empty() {
                Some("the path is empty")
            } else if per_name && !s.value.contains("{name}") {
                Some("without `{name}`, every node and balancer would share this file")
            } else {
                None
            };
            if let Some(problem) = problem {
                p.error(
                    &INVALID_TLS_PATH,
                    format!("`{}` cannot be `{}`: {problem}", join(at, key), s.value),
                    s.span,
                    "not a usable path",
                    Some(format!(
                        "e.g. `{key} = \"/etc/apim/tls/{}\"`",
                        match key {
                            "ca" => "ca.crt",
                            "key" => "{name}.key",
                            _ => "{name}.crt",
                        }
                    )),
                );
                return None;
            }
            Some(s)
        };
        tls.ca = path(self, t, "ca", "tls", false);
        tls.cert = path(self, t, "cert", "tls", true);
        tls.key = path(self, t, "key", "tls", true);
        if let Some((ek, ev)) = get(t, "edge")
            && let Some(e) = self.table(ev, "tls.edge")
        {
            self.unknown_keys(e, EDGE_KEYS, "tls.edge");
            let cert = path(self, e, "cert", "tls.edge", false);
            let key = path(self, e, "key", "tls.edge", false);
            for (name, found) in [("cert", cert.is_some()), ("key", key.is_some())] {
                if !found && get(e, name).is_none() {
                    self.missing(
                        "tls.edge",
                        name,
                        span(ek.span()),
                        "the edge certificate needs both `cert` and `key`",
                    );
                }
            }
            if let (Some(cert), Some(key)) = (cert, key) {
                tls.edge = Some(EdgeCert { cert, key });
            }
        }
        if let Some((_, v)) = get(t, "issuer") {
            tls.issuer = self.string(v, "tls.issuer");
            if let Some(i) = &tls.issuer {
                self.name(&i.value, i.span, "issuer");
            }
        }
        Some(tls)
    }

    fn kubernetes(&mut self, root: &DeTable<'_>) -> Option<Kubernetes> {
        use crate::kubernetes::{RESOURCE_KEYS, Resources, image_problem};
        let (k, v) = get(root, "kubernetes")?;
        let t = self.table(v, "kubernetes")?;
        let mut keys = vec!["image"];
        keys.extend(RESOURCE_KEYS);
        self.unknown_keys(t, &keys, "kubernetes");
        let mut kube = Kubernetes {
            span: span(k.span()),
            ..Kubernetes::default()
        };
        let hint = INVALID_KUBERNETES_SETTING.fix.to_string();
        if let Some((_, v)) = get(t, "image")
            && let Some(image) = self.string(v, "kubernetes.image")
        {
            match image_problem(&image.value) {
                Some(problem) => self.error(
                    &INVALID_KUBERNETES_SETTING,
                    format!("`kubernetes.image` cannot be used: {problem}"),
                    image.span,
                    "not an image reference",
                    Some(hint.clone()),
                ),
                None => kube.image = Some(image),
            }
        }
        let mut resources = Resources::default();
        for key in RESOURCE_KEYS {
            if let Some((_, v)) = get(t, key)
                && let Some(q) = self.string(v, &join("kubernetes", key))
            {
                resources.set(key, q.value.clone());
                kube.resources.insert(key, q);
            }
        }
        // Problems of what the file writes, with the defaults for what it does not; a problem
        // of a default points at the setting that made it one.
        for (key, problem) in resources.problems() {
            let partner = match key {
                "cpu_request" => "cpu_limit",
                "memory_request" => "memory_limit",
                "cpu_limit" => "cpu_request",
                _ => "memory_request",
            };
            let Some(at) = kube
                .resources
                .get(key)
                .or_else(|| kube.resources.get(partner))
            else {
                continue;
            };
            let at = at.span;
            self.error(
                &INVALID_KUBERNETES_SETTING,
                format!("`kubernetes.{key}`: {problem}"),
                at,
                "Kubernetes would refuse this",
                Some(hint.clone()),
            );
        }
        kube.resources
            .retain(|key, _| resources.problems().iter().all(|(k, _)| k != key));
        Some(kube)
    }

    fn version(&mut self, root: &DeTable<'_>) {
        let Some((_, v)) = get(root, "version") else {
            self.error(
                &UNSUPPORTED_VERSION,
                "the format version is missing".into(),
                Span::default(),
                "`version = 1` belongs here",
                Some("start the file with `version = 1`".into()),
            );
            return;
        };
        let ok = matches!(v.get_ref(), DeValue::Integer(i) if i.as_str() == "1" && i.radix() == 10);
        if !ok {
            let found = match v.get_ref() {
                DeValue::Integer(i) => i.as_str().to_string(),
                other => type_name(other).to_string(),
            };
            self.error(
                &UNSUPPORTED_VERSION,
                format!("unsupported format version {found}"),
                span(v.span()),
                "apim reads version 1",
                Some("write `version = 1`; this apim reads format version 1 only".into()),
            );
        }
    }

    fn deployment(&mut self, root: &DeTable<'_>) -> Deployment {
        let mut d = Deployment::default();
        let Some((k, v)) = get(root, "deployment") else {
            self.missing(
                "",
                "deployment",
                Span::default(),
                "add a [deployment] table with `name = \"...\"`",
            );
            return d;
        };
        d.span = span(k.span());
        let Some(t) = self.table(v, "deployment") else {
            return d;
        };
        self.unknown_keys(t, DEPLOYMENT_KEYS, "deployment");
        match get(t, "name") {
            Some((_, v)) => {
                d.name = self.string(v, "deployment.name");
                if let Some(n) = &d.name {
                    self.name(&n.value, n.span, "deployment");
                }
            }
            None => self.missing(
                "deployment",
                "name",
                d.span,
                "add `name = \"my-deployment\"` (lowercase letters, digits, '-')",
            ),
        }
        if let Some((_, v)) = get(t, "pattern") {
            d.pattern = self.string(v, "deployment.pattern");
        }
        if let Some((_, v)) = get(t, "session_hours") {
            // How long a portal session lasts, in hours: 1 to 720 (30 days).
            d.session_hours = self.whole_number(
                v,
                "deployment.session_hours",
                1..=720,
                ("a whole number of hours", "a session length"),
                "sessions last 1 to 720 hours (30 days)",
            );
        }
        if let Some((_, v)) = get(t, "database_timeout_ms") {
            // The bound on one database operation, connecting included.
            d.database_timeout_ms = self.whole_number(
                v,
                "deployment.database_timeout_ms",
                100..=30_000,
                ("a whole number of milliseconds", "a database timeout"),
                "a database operation may wait 100 to 30000 ms (default 2000)",
            );
        }
        if let Some((_, v)) = get(t, "tokens") {
            d.tokens = self.word(
                v,
                "deployment.tokens",
                "token format",
                TokenFormat::parse,
                &TokenFormat::words(),
            );
        }
        if let Some((_, v)) = get(t, "revocation") {
            d.revocation = self.word(
                v,
                "deployment.revocation",
                "revocation policy",
                Revocation::parse,
                &Revocation::words(),
            );
        }
        if let Some((_, v)) = get(t, "revocation_bound_ms") {
            // A gateway asks for missed revocations every 500 ms: a bound below a second
            // could not be kept.
            d.revocation_bound_ms = self.whole_number(
                v,
                "deployment.revocation_bound_ms",
                1_000..=600_000,
                ("a whole number of milliseconds", "a revocation bound"),
                "a revoked token may keep working 1000 to 600000 ms (default 1000)",
            );
        }
        if let Some((_, v)) = get(t, "backends") {
            for entry in self.strings(v, "deployment.backends", "address range or host") {
                match crate::vocab::BackendRule::parse(&entry.value) {
                    Ok(_) => d.backends.push(entry),
                    Err(why) => self.error(
                        &INVALID_HOST,
                        format!("`deployment.backends`: {why}"),
                        entry.span,
                        "not an address range or host",
                        Some(
                            "write a range such as \"10.20.0.0/16\", an address, a host name or \"*.svc.example\""
                                .into(),
                        ),
                    ),
                }
            }
        }
        d
    }

    /// A whole number in `range`; `what` is (the type wanted, the thing it measures).
    fn whole_number(
        &mut self,
        v: &Value<'_>,
        path: &str,
        range: std::ops::RangeInclusive<u32>,
        what: (&str, &str),
        hint: &str,
    ) -> Option<Spanned<u32>> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(v, path, what.0);
            return None;
        };
        let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
        match n
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| range.contains(n))
        {
            Some(h) => Some(Spanned::new(h, span(v.span()))),
            None => {
                self.error(
                    &UNKNOWN_VALUE,
                    format!("`{path}` = {} is not {} apim accepts", i.as_str(), what.1),
                    span(v.span()),
                    "out of range",
                    Some(hint.into()),
                );
                None
            }
        }
    }

    fn networks(&mut self, root: &DeTable<'_>) -> std::collections::BTreeMap<String, Network> {
        let mut out = std::collections::BTreeMap::new();
        match get(root, "networks") {
            None => self.missing(
                "",
                "networks",
                Span::default(),
                "add at least one network, such as `[networks.internal]`",
            ),
            Some((k, v)) if matches!(v.get_ref(), DeValue::Table(t) if t.is_empty()) => {
                let at = span(k.span());
                self.error(
                    &EMPTY_LIST,
                    "no network is defined".into(),
                    at,
                    "empty",
                    Some("add at least one network, such as `[networks.internal]`".into()),
                );
            }
            Some(_) => {}
        }
        for (k, t) in self.named_tables(root, "networks", "network") {
            let path = join("networks", k.get_ref());
            self.unknown_keys(t, NETWORK_KEYS, &path);
            let public = get(t, "public")
                .and_then(|(_, v)| self.bool(v, &join(&path, "public")))
                .unwrap_or(false);
            let name = k.get_ref().to_string();
            out.insert(
                name.clone(),
                Network {
                    name,
                    span: span(k.span()),
                    public,
                },
            );
        }
        out
    }

    fn firewall(&mut self, root: &DeTable<'_>) -> Vec<FirewallRule> {
        let Some((_, v)) = get(root, "firewall") else {
            return Vec::new();
        };
        let Some(items) = self.array(v, "firewall", "tables ([[firewall]])") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(t) = self.table(item, "firewall[]") else {
                continue;
            };
            let at = span(item.span());
            self.unknown_keys(t, FIREWALL_KEYS, "firewall");
            let end = |p: &mut Parser, key: &str| match get(t, key) {
                Some((_, v)) => p.string(v, &join("firewall", key)),
                None => {
                    p.missing("firewall", key, at, &format!("add `{key} = \"<network>\"`"));
                    None
                }
            };
            let from = end(self, "from");
            let to = end(self, "to");
            let ports = get(t, "ports").map(|(_, v)| {
                let items = self.array(v, "firewall.ports", "ports").unwrap_or_default();
                items
                    .iter()
                    .filter_map(|p| self.port(p, "firewall.ports[]"))
                    .collect()
            });
            out.push(FirewallRule {
                from,
                to,
                ports,
                span: at,
            });
        }
        out
    }

    fn databases(&mut self, root: &DeTable<'_>) -> std::collections::BTreeMap<String, Database> {
        if get(root, "databases").is_none() {
            self.missing("", "databases", Span::default(), "add databases serving the roles user, apim and registry, such as `[databases.main]`");
        }
        let mut out = std::collections::BTreeMap::new();
        for (k, t) in self.named_tables(root, "databases", "database") {
            let path = join("databases", k.get_ref());
            let at = span(k.span());
            self.unknown_keys(t, DATABASE_KEYS, &path);
            let roles = match get(t, "roles") {
                Some((_, v)) => self.words(
                    v,
                    &join(&path, "roles"),
                    "role",
                    Role::parse,
                    &Role::words(),
                ),
                None => {
                    self.missing(&path, "roles", at, "add `roles = [\"user\", \"apim\", \"registry\"]` or the subset this database serves");
                    Vec::new()
                }
            };
            let engine = match get(t, "engine") {
                Some((_, v)) => self.word(
                    v,
                    &join(&path, "engine"),
                    "engine",
                    Engine::parse,
                    &Engine::words(),
                ),
                None => {
                    self.missing(
                        &path,
                        "engine",
                        at,
                        "add `engine = \"sqlite\"`, `\"postgres\"` or `\"mysql\"`",
                    );
                    None
                }
            };
            let url = match get(t, "url") {
                Some((_, v)) => self.string(v, &join(&path, "url")),
                None => {
                    self.missing(
                        &path,
                        "url",
                        at,
                        "add `url = \"postgres://user@host:5432/db\"` (or `sqlite://file.db`)",
                    );
                    None
                }
            };
            let mut endpoint = None;
            let mut literal_password = false;
            if let (Some(u), Some(e)) = (&url, &engine) {
                match url::parse(&u.value, e.value) {
                    Ok(parsed) => {
                        literal_password = parsed.literal_password;
                        if e.value != Engine::Sqlite {
                            endpoint = Some(DbEndpoint {
                                host: parsed.host,
                                port: parsed.port.or(e.value.default_port()).unwrap_or_default(),
                            });
                        }
                    }
                    Err(why) => {
                        self.push(
                            Diagnostic::new(
                                &INVALID_URL,
                                format!("invalid database URL for `{path}`: {why}"),
                                Label::new(u.span, "cannot use this URL"),
                            )
                            .with_secondary(Label::new(e.span, "engine set here"))
                            .with_hint(format!("write it as {}", example_url(e.value))),
                        );
                    }
                }
            }
            let network = match get(t, "network") {
                Some((_, v)) => self.string(v, &join(&path, "network")),
                None if engine.as_ref().is_some_and(|e| e.value != Engine::Sqlite) => {
                    self.missing(
                        &path,
                        "network",
                        at,
                        "add `network = \"<network>\"`: the network the database server is on",
                    );
                    None
                }
                None => None,
            };
            let name = k.get_ref().to_string();
            out.insert(
                name.clone(),
                Database {
                    name,
                    span: at,
                    roles,
                    engine,
                    url,
                    endpoint,
                    literal_password,
                    network,
                },
            );
        }
        out
    }

    fn clusters(&mut self, root: &DeTable<'_>) -> std::collections::BTreeMap<String, Cluster> {
        if get(root, "clusters").is_none() {
            self.missing("", "clusters", Span::default(), "add a cluster, such as `[clusters.all]` with `components = [\"publisher\", \"store\", \"key-manager\", \"gateway\"]`");
        }
        let mut out = std::collections::BTreeMap::new();
        for (k, t) in self.named_tables(root, "clusters", "cluster") {
            let path = join("clusters", k.get_ref());
            let at = span(k.span());
            self.unknown_keys(t, CLUSTER_KEYS, &path);
            let components = match get(t, "components") {
                Some((_, v)) => self.words(
                    v,
                    &join(&path, "components"),
                    "component",
                    Component::parse,
                    &Component::words(),
                ),
                None => {
                    self.missing(&path, "components", at, "add `components = [\"gateway\"]`: any of publisher, store, key-manager, gateway");
                    Vec::new()
                }
            };
            let network = match get(t, "network") {
                Some((_, v)) => self.string(v, &join(&path, "network")),
                None => {
                    self.missing(
                        &path,
                        "network",
                        at,
                        "add `network = \"<network>\"`: the network its nodes are on",
                    );
                    None
                }
            };
            let (hosts, hosts_span) = match get(t, "hosts") {
                Some((_, v)) => {
                    let hosts_path = join(&path, "hosts");
                    let hosts = self
                        .strings(v, &hosts_path, "host")
                        .into_iter()
                        .filter(|h| self.host(h, &hosts_path))
                        .collect();
                    (hosts, Some(span(v.span())))
                }
                None => {
                    self.missing(
                        &path,
                        "hosts",
                        at,
                        "add `hosts = [\"10.0.1.11\"]`: one address or host name per node",
                    );
                    (Vec::new(), None)
                }
            };
            let mut cluster = Cluster {
                name: k.get_ref().to_string(),
                span: at,
                components,
                network,
                hosts,
                hosts_span,
                ports: Default::default(),
                admin_port: None,
                internal_port: None,
            };
            if let Some((_, v)) = get(t, "ports") {
                self.cluster_ports(v, &join(&path, "ports"), &mut cluster);
            }
            out.insert(cluster.name.clone(), cluster);
        }
        out
    }

    fn cluster_ports(&mut self, v: &Value<'_>, path: &str, cluster: &mut Cluster) {
        let Some(t) = self.table(v, path) else { return };
        for (k, v) in t {
            let key = k.get_ref().as_ref();
            let Some(port) = self.port(v, &join(path, key)) else {
                continue;
            };
            if key == ADMIN_PORT_KEY {
                cluster.admin_port = Some(port);
                continue;
            }
            if key == INTERNAL_PORT_KEY {
                cluster.internal_port = Some(port);
                continue;
            }
            match Component::parse(key) {
                Some(c) if cluster.runs(c) => {
                    cluster.ports.insert(c, port);
                }
                _ => {
                    let mut allowed: Vec<&str> = cluster
                        .components
                        .iter()
                        .map(|c| c.value.as_str())
                        .collect();
                    allowed.push(ADMIN_PORT_KEY);
                    allowed.push(INTERNAL_PORT_KEY);
                    let hint = match suggest::closest(key, allowed.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{s}`? ports can be set for: {}",
                            allowed.join(", ")
                        ),
                        None => format!("ports can be set for: {}", allowed.join(", ")),
                    };
                    self.error(
                        &INVALID_PORT,
                        format!(
                            "`{path}` sets a port for `{key}`, which cluster `{}` does not run",
                            cluster.name
                        ),
                        span(k.span()),
                        "not a component of this cluster",
                        Some(hint),
                    );
                }
            }
        }
    }

    fn balancers(
        &mut self,
        root: &DeTable<'_>,
    ) -> std::collections::BTreeMap<String, LoadBalancer> {
        let mut out = std::collections::BTreeMap::new();
        for (k, t) in self.named_tables(root, "load_balancers", "load balancer") {
            let path = join("load_balancers", k.get_ref());
            let at = span(k.span());
            self.unknown_keys(t, BALANCER_KEYS, &path);
            let kind = match get(t, "kind") {
                Some((_, v)) => self.word(
                    v,
                    &join(&path, "kind"),
                    "balancer kind",
                    BalancerKind::parse,
                    &BalancerKind::words(),
                ),
                None => {
                    self.missing(&path, "kind", at, "add `kind = \"external\"` (client traffic) or `kind = \"internal\"` (between components)");
                    None
                }
            };
            let network = match get(t, "network") {
                Some((_, v)) => self.string(v, &join(&path, "network")),
                None => {
                    self.missing(
                        &path,
                        "network",
                        at,
                        "add `network = \"<network>\"`: the network the balancer listens on",
                    );
                    None
                }
            };
            let host = match get(t, "host") {
                Some((_, v)) => self
                    .string(v, &join(&path, "host"))
                    .filter(|h| self.host(h, &join(&path, "host"))),
                None => {
                    self.missing(
                        &path,
                        "host",
                        at,
                        "add `host = \"<address>\"`: where the balancer listens",
                    );
                    None
                }
            };
            let (fronts, fronts_span) = match get(t, "fronts") {
                Some((_, v)) => (
                    self.strings(v, &join(&path, "fronts"), "cluster"),
                    Some(span(v.span())),
                ),
                None => {
                    self.missing(
                        &path,
                        "fronts",
                        at,
                        "add `fronts = [\"<cluster>\"]`: the clusters it balances",
                    );
                    (Vec::new(), None)
                }
            };
            let name = k.get_ref().to_string();
            out.insert(
                name.clone(),
                LoadBalancer {
                    name,
                    span: at,
                    kind,
                    network,
                    host,
                    fronts,
                    fronts_span,
                },
            );
        }
        out
    }
}

fn example_url(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "`sqlite://data/apim.db`",
        Engine::Postgres => "`postgres://apim:${DB_PASSWORD}@10.0.9.10:5432/apim`",
        Engine::Mysql => "`mysql://apim:${DB_PASSWORD}@10.0.9.10:3306/apim`",
    }
}

/// Lowercase letters, digits and '-', starting with a letter, not ending with '-', at most 63.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}
