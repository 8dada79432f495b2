//! One connection's authentication state, shared by both listeners: who
//! the connection is (once it has authenticated), and the SASL exchange in
//! progress. With authentication off, a connection is trusted from the start
//! (and a client that authenticates anyway has its credentials checked).

use super::handle::ShardHandle;
use crate::security::scram::{SaslError, ServerExchange, Step};
use crate::security::Principal;
use std::cell::RefCell;

/// Largest request frame read before a connection has authenticated: enough
/// for ApiVersions, Hello and the SASL messages, so an unauthenticated peer
/// cannot make the server read (or hold) a large frame.
pub const PRE_AUTH_REQUEST_BYTES_MAX: usize = 512 * 1024;

pub(crate) struct Session {
    principal: RefCell<Option<Principal>>,
    exchange: RefCell<Option<(String, ServerExchange)>>,
    /// A SASL exchange succeeded on this connection (it authenticates once).
    sasl_done: std::cell::Cell<bool>,
}

impl Session {
    pub fn new(handle: &ShardHandle) -> Session {
        let trusted = !handle.shared.config.security.authentication;
        Session {
            principal: RefCell::new(trusted.then_some(Principal::Trusted)),
            exchange: RefCell::new(None),
            sasl_done: std::cell::Cell::new(false),
        }
    }

    /// Who the connection is; `None` until it has authenticated.
    pub fn principal(&self) -> Option<Principal> {
        self.principal.borrow().clone()
    }

    pub fn is_authenticated(&self) -> bool {
        self.principal.borrow().is_some()
    }

    /// Starts an exchange with `mechanism` (Kafka's SaslHandshake), replacing
    /// none: a connection authenticates once.
    pub fn begin(&self, mechanism: &str) -> Result<(), SaslError> {
        if self.sasl_done.get() {
            return Err(SaslError::Malformed("the connection has already authenticated"));
        }
        let exchange = ServerExchange::new(mechanism)?;
        *self.exchange.borrow_mut() = Some((mechanism.to_owned(), exchange));
        Ok(())
    }

    /// The mechanism of the exchange in progress.
    pub fn mechanism(&self) -> Option<String> {
        self.exchange.borrow().as_ref().map(|(mechanism, _)| mechanism.clone())
    }

    /// Takes the client's next SASL message: `Ok((reply, done))`. On `done`
    /// the connection is authenticated. Any error ends the exchange.
    pub fn step(&self, handle: &ShardHandle, message: &[u8]) -> Result<(Vec<u8>, bool), SaslError> {
        let mut slot = self.exchange.borrow_mut();
        let Some((_, exchange)) = slot.as_mut() else {
            return Err(SaslError::Malformed("no SASL exchange was started"));
        };
        let security = handle.security();
        let step = exchange.step(message, |user| security.users.get(user).cloned());
        match step {
            Ok(Step::Continue(reply)) => Ok((reply, false)),
            Ok(Step::Done { user, reply }) => {
                *slot = None;
                self.sasl_done.set(true);
                // With authentication off the credentials are checked, but the
                // connection stays trusted (ACLs apply only with it on).
                let security = &handle.shared.config.security;
                if security.authentication {
                    let superuser = security.super_users.contains(&user);
                    *self.principal.borrow_mut() = Some(Principal::User { name: user.into(), superuser });
                }
                Ok((reply, true))
            }
            Err(error) => {
                *slot = None;
                Err(error)
            }
        }
    }
}
