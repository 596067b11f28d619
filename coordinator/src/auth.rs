//! Shared-token authentication as a tonic interceptor: when the coordinator has
//! a token, every call must carry `authorization: Bearer <token>`.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Header carrying the token.
pub const AUTHORIZATION: &str = "authorization";

/// Checks the bearer token of each request.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl TokenCheck {
    /// Accept everything when `expected` is `None`.
    pub fn new(expected: Option<String>) -> Self {
        TokenCheck { expected: expected.map(Arc::from) }
    }
}

/// Equality whose duration does not depend on where the inputs differ.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let presented = request.metadata().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
        match presented.and_then(|value| value.strip_prefix("Bearer ")) {
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => {
                Err(Status::unauthenticated("the token presented is not this coordinator's token (check --token / GROKSWEEP_TOKEN)"))
            }
            None => Err(Status::unauthenticated("this coordinator requires a token: pass --token or set GROKSWEEP_TOKEN")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(token: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request.metadata_mut().insert(AUTHORIZATION, format!("Bearer {token}").parse().expect("ascii header"));
        }
        request
    }

    #[test]
    fn tokens_are_checked_only_when_configured() {
        assert!(TokenCheck::new(None).call(request_with(None)).is_ok());
        let mut check = TokenCheck::new(Some("s3cret".into()));
        assert!(check.call(request_with(Some("s3cret"))).is_ok());
        let wrong = check.call(request_with(Some("guess"))).expect_err("wrong token");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = check.call(request_with(None)).expect_err("no token");
        assert!(missing.message().contains("requires a token"), "{}", missing.message());
    }
}
