//! Black-box API tests: one binary, the real server on 127.0.0.1:0.

mod seed_flow;
