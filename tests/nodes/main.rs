//! Several callbackd processes sharing one Redis: restarts, two nodes under
//! load, a node killed with SIGKILL, Redis itself restarted. Each test starts
//! its own redis-server on a free port (`REDIS_URL` is honoured where the
//! test does not need to stop Redis) and real `callbackd-node` processes.

mod booking;
mod keys;
mod load;
mod outage;
mod personal_data;
mod push;
mod restart;
mod support;
mod targets;
mod throttling;
mod webhooks;
