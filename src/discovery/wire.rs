//! What registries write about an endpoint, read into [`EndpointSpec`].
//!
//! The file source and etcd share one shape: `"IP:PORT"` or
//! `{address, weight, metadata}`, the same as static endpoints in the
//! config, so a list can be moved between them unchanged.

use std::net::SocketAddr;

use crate::config::raw::RawEndpoint;
use crate::error::BoxError;

use super::EndpointSpec;

/// Reads a YAML (or JSON, which is YAML) list of endpoints.
///
/// An empty document is refused rather than read as no endpoints: it is
/// what a writer that truncates and then writes leaves for a moment, and
/// taking it would drop every endpoint until the write lands. No
/// endpoints is written `[]`.
pub fn parse_list(text: &str) -> Result<Vec<EndpointSpec>, BoxError> {
    if text.trim().is_empty() {
        return Err("the list is empty (write `[]` for no endpoints)".into());
    }
    let raw: Vec<RawEndpoint> = serde_yaml::from_str(text)?;
    raw.into_iter().enumerate().map(|(i, e)| endpoint(e).map_err(|m| format!("item {i}: {m}").into())).collect()
}

/// Reads one value: a bare `IP:PORT`, or JSON (`"IP:PORT"` or an object).
pub fn parse_value(value: &[u8]) -> Result<EndpointSpec, BoxError> {
    let text = std::str::from_utf8(value)?.trim();
    let raw = match serde_json::from_str::<RawEndpoint>(text) {
        Ok(raw) => raw,
        Err(e) if text.starts_with(['{', '"']) => return Err(e.into()),
        Err(_) => RawEndpoint::Address(text.to_owned()),
    };
    Ok(endpoint(raw)?)
}

/// Checks one endpoint.
pub fn endpoint(raw: RawEndpoint) -> Result<EndpointSpec, String> {
    let (address, weight, metadata) = match raw {
        RawEndpoint::Address(a) => (a, None, None),
        RawEndpoint::Detailed(d) => (d.address, d.weight, d.metadata),
    };
    let address: SocketAddr = address.parse().map_err(|_| format!("{address:?} is not IP:PORT"))?;
    let weight = weight.unwrap_or(1);
    if weight == 0 {
        return Err(format!("{address}: weight must be at least 1"));
    }
    Ok(EndpointSpec { address, weight, metadata: metadata.unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both item shapes read from one list, weights and metadata kept.
    #[test]
    fn list_mixes_bare_and_detailed_items() {
        let eps = parse_list("- 127.0.0.1:80\n- {address: \"[::1]:81\", weight: 3, metadata: {zone: a}}\n").unwrap();
        assert_eq!(eps[0], EndpointSpec::new("127.0.0.1:80".parse().unwrap()));
        assert_eq!(eps[1].weight, 3);
        assert_eq!(eps[1].metadata["zone"], "a");
        assert!(parse_list("[\"127.0.0.1:80\", {\"address\": \"127.0.0.1:81\"}]").unwrap().len() == 2);
    }

    /// A bad item fails the whole list, naming the item.
    #[test]
    fn bad_items_are_refused() {
        assert!(parse_list("- nope:80\n").unwrap_err().to_string().contains("item 0"));
        assert!(parse_list("- {address: 127.0.0.1:80, weight: 0}\n").is_err());
        assert!(parse_list("- {address: 127.0.0.1:80, colour: red}\n").is_err());
        assert!(parse_list("{not: a list}").is_err());
    }

    /// A file caught between truncate and write is not read as "no
    /// endpoints"; `[]` is.
    #[test]
    fn only_an_explicit_empty_list_means_none() {
        assert!(parse_list("").unwrap_err().to_string().contains("[]"));
        assert!(parse_list(" \n").is_err());
        assert_eq!(parse_list("[]").unwrap(), Vec::new());
    }

    /// etcd values: bare, quoted, or an object.
    #[test]
    fn values_in_every_shape() {
        assert_eq!(parse_value(b"127.0.0.1:80").unwrap().address.port(), 80);
        assert_eq!(parse_value(b"\"127.0.0.1:81\"").unwrap().address.port(), 81);
        assert_eq!(parse_value(br#"{"address":"127.0.0.1:82","weight":3}"#).unwrap().weight, 3);
        assert!(parse_value(br#"{"address":"127.0.0.1:82""#).is_err());
        assert!(parse_value(b"localhost").is_err());
    }
}
