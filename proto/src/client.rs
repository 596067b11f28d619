//! Connecting to a coordinator: a lazily (re)connecting channel, over TLS for
//! `https://` addresses, with the shared bearer token attached to every call.

use std::error::Error as _;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::pb::coordinator_client::CoordinatorClient;

/// Adds `authorization: Bearer <token>` when a token is configured.
#[derive(Debug, Clone)]
pub struct BearerToken {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A coordinator client with the token interceptor.
pub type Client = CoordinatorClient<InterceptedService<Channel, BearerToken>>;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address is not a valid URI.
    #[error("invalid coordinator address `{address}`: {message}")]
    InvalidAddress {
        /// As given.
        address: String,
        /// Why.
        message: String,
    },
    /// The token cannot be sent as a header.
    #[error("the token must be printable ASCII")]
    InvalidToken,
    /// A CA was given for a plaintext address.
    #[error("a TLS CA was given but the coordinator address `{0}` is not https://; use https:// to connect over TLS")]
    CaWithoutTls(String),
    /// The TLS settings were refused.
    #[error("cannot set up TLS for `{address}`: {message}")]
    Tls {
        /// As given.
        address: String,
        /// Why.
        message: String,
    },
}

/// How to reach a coordinator.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions<'a> {
    /// Shared token, when the coordinator requires one.
    pub token: Option<&'a str>,
    /// PEM of the certificate authority that signed the coordinator's
    /// certificate (for `https://` addresses; without it the system's roots
    /// are trusted).
    pub tls_ca_pem: Option<&'a [u8]>,
}

/// A client that connects on first use and reconnects after the coordinator
/// restarts. `address` is e.g. `http://head:50051`, or `https://head:50051`
/// for a coordinator serving TLS.
pub fn connect_lazy(address: &str, options: ConnectOptions<'_>) -> Result<Client, ConnectError> {
    let mut endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|error| ConnectError::InvalidAddress { address: address.to_string(), message: error.to_string() })?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    let https = endpoint.uri().scheme_str() == Some("https");
    match (https, options.tls_ca_pem) {
        (false, Some(_)) => return Err(ConnectError::CaWithoutTls(address.to_string())),
        (false, None) => {}
        (true, ca) => {
            let tls = match ca {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| ConnectError::Tls { address: address.to_string(), message: error_chain(&error) })?;
        }
    }
    let header = match options.token {
        Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| ConnectError::InvalidToken)?),
        None => None,
    };
    let channel = endpoint.connect_lazy();
    Ok(CoordinatorClient::with_interceptor(channel, BearerToken { header })
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES))
}

/// An error and its sources, joined with `: ` (tonic's transport errors keep
/// the useful part, such as a certificate failure, in their sources).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// What went wrong reaching the coordinator at `address`, from a failed
/// call's status: the transport error's whole chain, and a hint when it
/// looks like a TLS mismatch.
pub fn unreachable_reason(status: &Status, address: &str) -> String {
    let mut text = status.message().to_string();
    if let Some(source) = status.source() {
        let chain = error_chain(source);
        if chain.contains(&text) {
            text = chain;
        } else if !text.contains(&chain) {
            text = format!("{text}: {chain}");
        }
    }
    match tls_hint(&text, address) {
        Some(hint) => format!("{text} ({hint})"),
        None => text,
    }
}

/// True when the status says this client cannot verify the coordinator's
/// certificate: retrying will not help.
pub fn is_certificate_failure(status: &Status) -> bool {
    let text = match status.source() {
        Some(source) => error_chain(source),
        None => status.message().to_string(),
    };
    text.contains("invalid peer certificate")
}

fn tls_hint(text: &str, address: &str) -> Option<&'static str> {
    let https = address.starts_with("https://");
    if text.contains("invalid peer certificate") {
        if text.contains("NotValidForName") {
            return Some("the coordinator's certificate does not name the host in this address; connect by a name or IP it lists");
        }
        return Some("this client does not trust the coordinator's certificate: pass the CA that signed it with --tls-ca");
    }
    let lower = text.to_ascii_lowercase();
    if https && (lower.contains("corrupt message") || lower.contains("invalidcontenttype") || lower.contains("invalid content type")) {
        return Some("the coordinator does not seem to serve TLS: use an http:// address");
    }
    let dropped = ["connection reset", "connection closed", "broken pipe", "unexpected eof", "frame with invalid size"];
    if !https && dropped.iter().any(|needle| lower.contains(needle)) {
        return Some("if the coordinator serves TLS, use an https:// address and --tls-ca");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_for_a_plaintext_address_is_refused() {
        let error = connect_lazy("http://127.0.0.1:1", ConnectOptions { token: None, tls_ca_pem: Some(b"pem") }).unwrap_err();
        assert!(matches!(error, ConnectError::CaWithoutTls(_)), "{error}");
    }

    #[test]
    fn hints_name_the_fix() {
        assert!(tls_hint("invalid peer certificate: UnknownIssuer", "https://h:1").unwrap().contains("--tls-ca"));
        assert!(tls_hint("invalid peer certificate: NotValidForName", "https://h:1").unwrap().contains("does not name"));
        assert!(tls_hint("received corrupt message of type InvalidContentType", "https://h:1").unwrap().contains("http://"));
        assert!(tls_hint("h2 protocol error: connection reset", "http://h:1").unwrap().contains("https://"));
        assert_eq!(tls_hint("tcp connect error: Connection refused", "http://h:1"), None);
    }
}
