//! The server half of the typed protocol: each subsystem registers a
//! handler per endpoint, and the [`Dispatcher`] turns a received frame into
//! a call of that handler and its answer back into bytes.
//!
//! Registering is typed (`register::<Replicate, _>(coordinator)` needs a
//! `Handler<Replicate>` whose answer is `Replicate::Response`), so a request
//! can only ever be answered with the response its type names.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use dynkv_ring::NodeId;
use futures::future::BoxFuture;

use crate::wire::{Endpoint, Message, RemoteError};

/// Who is calling, as the handshake established it.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The calling node.
    pub peer: NodeId,
    /// The message version agreed with it: a handler answers fields of a
    /// newer version only to peers that speak it.
    pub version: u32,
}

/// Serves one endpoint.
pub trait Handler<E: Endpoint>: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        self: Arc<Self>,
        request: E,
        ctx: CallContext,
    ) -> impl Future<Output = Result<E::Response, RemoteError>> + Send + 'static;
}

type Erased =
    dyn Fn(Bytes, CallContext) -> BoxFuture<'static, Result<Bytes, RemoteError>> + Send + Sync;

/// Endpoint id → handler, built once when a node starts.
#[derive(Default)]
pub struct Dispatcher {
    handlers: HashMap<u16, (&'static str, Box<Erased>)>,
}

impl Dispatcher {
    /// An empty dispatcher (every endpoint answered `UnknownEndpoint`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `E` with `handler`.
    ///
    /// # Panics
    /// When `E::ID` is already registered: two subsystems claiming one id
    /// is a bug to catch at start, not a request to misroute.
    pub fn register<E: Endpoint, H: Handler<E>>(&mut self, handler: Arc<H>) -> &mut Self {
        let erased = move |body: Bytes, ctx: CallContext| {
            let handler = handler.clone();
            Box::pin(async move {
                let request = E::decode(body).map_err(|e| {
                    RemoteError::BadRequest(format!("undecodable {} request: {e}", E::NAME))
                })?;
                let response = handler.handle(request, ctx).await?;
                Ok(response.encode())
            }) as BoxFuture<'static, Result<Bytes, RemoteError>>
        };
        let previous = self.handlers.insert(E::ID, (E::NAME, Box::new(erased)));
        assert!(
            previous.is_none(),
            "endpoint {} ({}) registered twice",
            E::ID,
            E::NAME
        );
        self
    }

    /// The name of an endpoint, for logs and metrics.
    pub fn name(&self, endpoint: u16) -> &'static str {
        self.handlers.get(&endpoint).map_or("unknown", |(n, _)| n)
    }

    /// Runs the handler of `endpoint` on an encoded request.
    pub fn dispatch(
        &self,
        endpoint: u16,
        body: Bytes,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        match self.handlers.get(&endpoint) {
            Some((_, h)) => h(body, ctx),
            None => Box::pin(async move { Err(RemoteError::UnknownEndpoint(endpoint)) }),
        }
    }
}
