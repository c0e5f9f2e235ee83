//! "Did you mean" suggestions and name repairs for hints.

/// The candidate closest to `input`, when it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&input, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

/// A valid name made from an invalid one, or empty when nothing usable is left.
pub fn name(input: &str) -> String {
    let mapped: String = input
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut out = String::new();
    for c in trimmed.chars() {
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.truncate(63);
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggests_near_typos_only() {
        assert_eq!(super::closest("hsots", ["hosts", "network"]), Some("hosts"));
        assert_eq!(
            super::closest("gatway", ["gateway", "store"]),
            Some("gateway")
        );
        assert_eq!(super::closest("zzz", ["hosts", "network"]), None);
    }

    #[test]
    fn repairs_names() {
        assert_eq!(super::name("Gate_Way"), "gate-way");
        assert_eq!(super::name("1st cluster"), "st-cluster");
        assert_eq!(super::name("__"), "");
    }
}
