//! Stage 3, assemble: a binary in, a deterministic OCI image out, with no daemon involved.
//!
//! [`layer`] writes reproducible tar+gzip layers, [`image`] lays out the filesystem and writes
//! config and manifest, [`layout`] and [`archive`] serialize the result for OCI tools and for
//! `docker load`.

pub mod archive;
pub mod image;
pub mod index;
pub mod layer;
pub mod layer_cache;
pub mod layout;
pub mod referrer;

/// Serializes to canonical JSON: object keys sorted (oci-spec keeps labels and annotations in
/// hash maps, whose order changes from run to run), no whitespace.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&serde_json::to_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_map_keys() {
        let map: std::collections::HashMap<&str, u8> =
            [("b", 1), ("a", 2), ("c", 3)].into_iter().collect();
        assert_eq!(canonical_json(&map).unwrap(), br#"{"a":2,"b":1,"c":3}"#);
    }
}

/// A validated image reference with a tag (`name:tag`), as given to `--tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The reference as the user wrote it, with `:latest` added when it had no tag.
    pub full: String,
    /// The tag part.
    pub tag: String,
}

impl std::str::FromStr for ImageRef {
    type Err = crate::core::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| crate::core::error::Error::InvalidInput {
            what: "tag",
            value: s.to_string(),
            reason,
        };
        let parsed: oci_spec::distribution::Reference = s
            .parse()
            .map_err(|e| invalid(format!("{e}; expected NAME[:TAG], e.g. myapp:1.0")))?;
        if parsed.digest().is_some() {
            return Err(invalid("give a tag, not a digest".into()));
        }
        // The parser accepts a trailing ":" as no tag; the engine would not.
        if s.ends_with(':') {
            return Err(invalid("the tag after ':' is empty".into()));
        }
        // The parser reports `latest` for a missing tag; look at the last path part instead.
        let has_tag = s.rsplit('/').next().is_some_and(|last| last.contains(':'));
        let tag = parsed
            .tag()
            .filter(|_| has_tag)
            .unwrap_or("latest")
            .to_string();
        let full = if has_tag {
            s.to_string()
        } else {
            format!("{s}:latest")
        };
        Ok(ImageRef { full, tag })
    }
}

crate::core::text::serde_as_text!(ImageRef);

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod reference_tests {
    use super::ImageRef;

    #[test]
    fn tags_are_validated_and_defaulted() {
        let r: ImageRef = "fib:aggressive".parse().unwrap();
        assert_eq!(
            (r.full.as_str(), r.tag.as_str()),
            ("fib:aggressive", "aggressive")
        );
        let r: ImageRef = "localhost:5000/team/app".parse().unwrap();
        assert_eq!(
            (r.full.as_str(), r.tag.as_str()),
            ("localhost:5000/team/app:latest", "latest")
        );
        for bad in ["Fib:1", "fib:", "fib:bad tag", "", "a@sha256:abc"] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
    }
}
