//! A stock CometD client (npm `cometd`, run by node) against the real server.
