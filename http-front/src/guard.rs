//! What every request passes before a handler, against clients that send
//! slowly, too much, or never finish: a declared body over the limit is
//! refused before it is read (so `Expect: 100-continue` gets a 413, not
//! `100 Continue`), a body that stops arriving fails the read with
//! [`BodyStalled`] (answered 408 by [`crate::form::read_body`]), and an API
//! request that takes too long is answered 503 in the JSON error shape.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::admission::Admit;
use crate::error::AppError;
use crate::form::BODY_LIMIT;

/// The error a body read gets when nothing came for too long.
#[derive(Debug, thiserror::Error)]
#[error("nothing received for {}ms", .0.as_millis())]
pub struct BodyStalled(pub Duration);

/// Refuses a declared body over [`BODY_LIMIT`] without reading it, and
/// cuts a body that makes no progress for `idle`.
#[derive(Clone, Copy)]
pub struct BodyGuard {
    pub idle: Duration,
}

impl Admit for BodyGuard {
    fn admit(&self, req: Request) -> Result<Request, Response> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            // hyper sends `100 Continue` only when the body is first polled:
            // answering now refuses it before the client sends a byte of it.
            return Err(AppError::TooLarge { limit: BODY_LIMIT }.into_response());
        }
        let idle = self.idle;
        Ok(req.map(|body| Body::new(Stalling::new(body, idle))))
    }
}

/// Answers an API request that is not done within `within` with a 503
/// that says so (tower-http's `TimeoutLayer` answers with an empty body).
///
/// A tower layer, not `from_fn`, for the reason [`crate::request_id`]
/// gives: a `from_fn` middleware boxes its future and a clone of the
/// service below on every request.
#[derive(Clone, Copy)]
pub struct RequestTimeoutLayer(pub Duration);

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            within: self.0,
        }
    }
}

#[derive(Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    within: Duration,
}

impl<S> tower::Service<Request> for RequestTimeout<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimedRequest<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TimedRequest {
            inner: tokio::time::timeout(self.within, self.inner.call(req)),
            within: self.within,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer, or the 503 once `within` has passed.
    pub struct TimedRequest<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        within: Duration,
    }
}

impl<F, E> Future for TimedRequest<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(answer)) => Poll::Ready(answer),
            Poll::Ready(Err(_)) => Poll::Ready(Ok(AppError::TimedOut(format!(
                "the request was not answered within {}ms",
                this.within.as_millis()
            ))
            .into_response())),
        }
    }
}

/// A body that fails with [`BodyStalled`] when no frame came for `idle`.
struct Stalling {
    inner: Body,
    idle: Duration,
    // Armed on the first poll: a handler that never reads the body is not
    // waiting for it.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Stalling {
    fn new(inner: Body, idle: Duration) -> Self {
        Stalling {
            inner,
            idle,
            deadline: None,
        }
    }
}

impl HttpBody for Stalling {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Progress: the next frame has `idle` again.
                this.deadline = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this.deadline.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + idle))
                });
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyStalled(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_fails_with_stalled_and_one_that_flows_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let body = Body::new(http_body_util::StreamBody::new(tokio_stream_like(rx)));
        let mut body = Stalling::new(body, Duration::from_millis(300));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"a"));
        // 200 ms, then a frame: progress resets the clock.
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        let mut stalled = false;
        while let Some(e) = source {
            stalled |= e.is::<BodyStalled>();
            source = e.source();
        }
        assert!(stalled, "{err}");
        drop(tx);
    }

    fn tokio_stream_like<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
