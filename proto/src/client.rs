//! Connecting to a coordinator: a lazily (re)connecting channel with the
//! shared bearer token attached to every call.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
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
}

/// A client that connects on first use and reconnects after the coordinator
/// restarts. `address` is e.g. `http://head:50051`.
pub fn connect_lazy(address: &str, token: Option<&str>) -> Result<Client, ConnectError> {
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|error| ConnectError::InvalidAddress { address: address.to_string(), message: error.to_string() })?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    let header = match token {
        Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| ConnectError::InvalidToken)?),
        None => None,
    };
    let channel = endpoint.connect_lazy();
    Ok(CoordinatorClient::with_interceptor(channel, BearerToken { header })
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES))
}
