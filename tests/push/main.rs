//! Push tests: Bayeux over long-polling and WebSocket, and the plain WebSocket,
//! from Rust clients against the real server on 127.0.0.1:0.
