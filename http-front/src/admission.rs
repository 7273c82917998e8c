//! The shape the guards share: look at a request before the layers below
//! it, and either let it on (perhaps changed) or answer it at once. One
//! tower layer for all of them, rather than a layer, a service and an
//! early-answer future each (and not `axum::middleware::from_fn`, for the
//! reason [`crate::request_id`] gives).

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures_util::future::Either;

/// A check a request passes before the layers below.
pub trait Admit: Clone {
    /// The request to go on with, or the answer that refuses it. (The
    /// answer goes straight out, never up through `?`, so its size does
    /// not matter.)
    #[allow(clippy::result_large_err)]
    fn admit(&self, request: Request) -> Result<Request, Response>;
}

/// The layer of an [`Admit`] check.
#[derive(Clone)]
pub struct AdmitLayer<A>(pub A);

impl<A: Admit, S> tower::Layer<S> for AdmitLayer<A> {
    type Service = Admitting<A, S>;

    fn layer(&self, inner: S) -> Admitting<A, S> {
        Admitting {
            check: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Admitting<A, S> {
    check: A,
    inner: S,
}

impl<A, S> tower::Service<Request> for Admitting<A, S>
where
    A: Admit,
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.check.admit(request) {
            Ok(request) => Either::Right(self.inner.call(request)),
            Err(refused) => Either::Left(ready(Ok(refused))),
        }
    }
}
