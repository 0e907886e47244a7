//! A TCP service for tests that must run as another user than the test (started
//! through `setpriv --reuid`): listens on ADDRESS, prints `listening`, then the
//! local address of each connection it accepts, one per line. Exits when its
//! standard input closes, or after 120 s at the latest.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The address to listen on.
    address: SocketAddr,
}

const LIFETIME: Duration = Duration::from_secs(120);

fn main() {
    let args = Args::parse();
    let listener =
        TcpListener::bind(args.address).unwrap_or_else(|e| panic!("binding {}: {e}", args.address));
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(LIFETIME);
        std::process::exit(0);
    });
    let mut out = std::io::stdout();
    writeln!(out, "listening").unwrap();
    out.flush().unwrap();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        writeln!(out, "{}", stream.local_addr().unwrap()).unwrap();
        out.flush().unwrap();
    }
}
