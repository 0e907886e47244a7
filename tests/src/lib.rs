//! Shared harness for vip's integration tests, demo and bench.

pub mod anycast;
pub mod bench;
pub mod cpu_rows;
pub mod daemon;
pub mod deploy;
pub mod e2e;
pub mod fixture;
pub mod flow;
pub mod fuzz;
pub mod http;
pub mod netns;
pub mod oracle;
pub mod packet_socket;
pub mod packets;
pub mod root;
pub mod scrape;
pub mod scrape_hashes;
pub mod seed;
pub mod sparse_model;
pub mod tunnel;
pub mod wait;
