//! What a Kubernetes workload of the deployment asks for: the image and its resources, with
//! defaults a topology's `[kubernetes]` table and `apim build`'s flags override.
//!
//! Quantities are read as Kubernetes reads them (`250m` CPU, `512Mi` memory), so that a typo is
//! an error of `apim check`, not a rejected manifest at `kubectl apply`.

/// The resources each node's container asks for, as Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Default for Resources {
    /// Small enough to schedule on any cluster, with limits that leave a gateway room for its
    /// caches and bursts; a deployment sets its own in `[kubernetes]` or on `apim build`.
    fn default() -> Self {
        Resources {
            cpu_request: "250m".into(),
            memory_request: "128Mi".into(),
            cpu_limit: "2".into(),
            memory_limit: "512Mi".into(),
        }
    }
}

/// The image `apim build` names unless told otherwise: this apim's own version.
pub const DEFAULT_IMAGE: &str = concat!("apim:", env!("CARGO_PKG_VERSION"));

/// The four settings by their key in `[kubernetes]` (and flag name in `apim build`).
pub const RESOURCE_KEYS: [&str; 4] = ["cpu_request", "memory_request", "cpu_limit", "memory_limit"];

impl Resources {
    pub fn get(&self, key: &str) -> Option<&str> {
        match key {
            "cpu_request" => Some(&self.cpu_request),
            "memory_request" => Some(&self.memory_request),
            "cpu_limit" => Some(&self.cpu_limit),
            "memory_limit" => Some(&self.memory_limit),
            _ => None,
        }
    }

    pub fn set(&mut self, key: &str, value: String) {
        match key {
            "cpu_request" => self.cpu_request = value,
            "memory_request" => self.memory_request = value,
            "cpu_limit" => self.cpu_limit = value,
            "memory_limit" => self.memory_limit = value,
            _ => {}
        }
    }

    /// Every problem of the four together: an unreadable quantity, or a request above its limit
    /// (which Kubernetes refuses). Each is (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for key in RESOURCE_KEYS {
            let value = self.get(key).unwrap_or_default();
            if let Err(e) = quantity(key, value) {
                out.push((key, e));
            }
        }
        for (request, limit) in [
            ("cpu_request", "cpu_limit"),
            ("memory_request", "memory_limit"),
        ] {
            let (Some(r), Some(l)) = (self.get(request), self.get(limit)) else {
                continue;
            };
            if let (Ok(rv), Ok(lv)) = (quantity(request, r), quantity(limit, l))
                && rv > lv
            {
                out.push((
                    request,
                    format!("`{r}` is more than {limit} `{l}`: Kubernetes refuses a request above its limit"),
                ));
            }
        }
        out
    }
}

/// A quantity of `key`'s kind in its base unit: millicores for CPU, bytes for memory. Kubernetes'
/// syntax: a decimal number and a suffix (`m` for CPU; `Ki`..`Ei`, `k`..`E` for memory).
pub fn quantity(key: &str, text: &str) -> Result<u128, String> {
    let cpu = key.starts_with("cpu");
    let digits = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let expected = if cpu {
        "a CPU quantity such as `500m` (millicores) or `2` (cores)"
    } else {
        "a memory quantity such as `256Mi` or `1Gi`"
    };
    let bad = || format!("`{text}` is not {expected}");
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || whole.len() > 15 || frac.len() > 9 {
        return Err(bad());
    }
    let scale: u128 = if cpu {
        match suffix {
            "" => 1000,
            "m" => 1,
            _ => return Err(bad()),
        }
    } else {
        match suffix {
            "" => 1,
            "k" => 1000,
            "M" => 1000u128.pow(2),
            "G" => 1000u128.pow(3),
            "T" => 1000u128.pow(4),
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(bad()),
        }
    };
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    let frac_scale = 10u128.pow(frac.len() as u32);
    let value = whole * scale + frac_value * scale / frac_scale;
    if value == 0 {
        return Err(format!(
            "`{text}` is zero: a container needs some {}",
            if cpu { "CPU" } else { "memory" }
        ));
    }
    Ok(value)
}

/// Why `name` cannot be an image reference, if it cannot: Kubernetes passes it to the runtime
/// as written, so whitespace, an empty name or a trailing `:` fail only on the cluster.
pub fn image_problem(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if name.is_empty() {
        Some("the image name is empty".into())
    } else if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        Some(format!(
            "`{name}` has `{c}`, which no image reference may contain"
        ))
    } else if name.ends_with(':') || name.ends_with('/') || name.starts_with('/') {
        Some(format!("`{name}` is not a complete image reference"))
    } else if repository(name).chars().any(|c| c.is_ascii_uppercase()) {
        Some(format!(
            "`{name}` has upper-case letters in its repository, which Kubernetes refuses"
        ))
    } else {
        None
    }
}

/// The name without its tag or digest.
fn repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].find(':') {
        Some(i) => &name[..last + i],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_reads_them() {
        assert_eq!(quantity("cpu_request", "250m"), Ok(250));
        assert_eq!(quantity("cpu_limit", "2"), Ok(2000));
        assert_eq!(quantity("cpu_limit", "0.5"), Ok(500));
        assert_eq!(quantity("memory_limit", "1Gi"), Ok(1 << 30));
        assert_eq!(quantity("memory_request", "128M"), Ok(128_000_000));
        for bad in ["", "m", "2 cores", "1.5.1", "250Mi", "-1", "0", "1e3"] {
            assert!(quantity("cpu_request", bad).is_err(), "{bad}");
        }
        for bad in ["", "1GB", "512mi", "Gi", "0Mi"] {
            assert!(quantity("memory_request", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_above_its_limit_is_a_problem() {
        let mut r = Resources::default();
        assert!(r.problems().is_empty());
        r.memory_request = "1Gi".into();
        let p = r.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "memory_request");
    }

    #[test]
    fn image_names() {
        assert_eq!(image_problem("apim:0.1.0"), None);
        assert_eq!(
            image_problem("registry.example.com:5000/ops/apim@sha256:ab12"),
            None
        );
        assert!(image_problem("").is_some());
        assert!(image_problem("apim: 0.1").is_some());
        assert!(image_problem("apim:").is_some());
        assert!(image_problem("Apim").is_some());
        assert!(image_problem("Ops/apim:1").is_some());
        assert_eq!(image_problem("ops/apim:V1"), None);
    }
}
