//! A steady UDP echo flow to a set of VIPs while a test restarts or upgrades
//! the daemon, and a sampler that checks the counters never go backwards.

use std::{
    collections::BTreeMap,
    net::{IpAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{daemon::Instance, netns::Netns, seed::UDP_PORT};

/// Samples [`Sampler::sample_for`] takes at the least.
pub const MIN_SAMPLES: usize = 5;

/// Bounds of a flow, whatever the test does meanwhile.
const MAX_DATAGRAMS: u64 = 30_000;
const MAX_FLOW_TIME: Duration = Duration::from_secs(90);

/// What the flow did: datagrams sent per VIP, and how many came back unechoed.
pub struct FlowResult {
    pub sent: BTreeMap<String, u64>,
    pub lost: u64,
}

/// UDP datagrams to the VIPs in turn, each waiting for its echo (from
/// `seed::Services` on the server), every 2 ms, until told to stop (or a bound
/// is hit).
pub struct Flow {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<FlowResult>,
}

impl Flow {
    pub fn start(client: &Netns, vips: &'static [&'static str]) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            client.spawn_in(move || {
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let started = Instant::now();
                let mut result = FlowResult {
                    sent: BTreeMap::new(),
                    lost: 0,
                };
                for n in 0..MAX_DATAGRAMS {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_FLOW_TIME {
                        break;
                    }
                    let vip = vips[n as usize % vips.len()];
                    let addr: IpAddr = vip.parse().unwrap();
                    let payload = n.to_be_bytes();
                    *result.sent.entry(vip.to_string()).or_default() += 1;
                    if !send_echoed(&socket, addr, payload) {
                        result.lost += 1;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                result
            })
        };
        Flow { stop, thread }
    }

    pub fn finish(self) -> FlowResult {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the flow thread")
    }
}

/// Sends `payload` to `addr`'s UDP echo service (`seed::Services`) and waits
/// for its echo within the socket's read timeout. An echo of an earlier
/// datagram would be a late one: skipped.
pub fn send_echoed(socket: &UdpSocket, addr: IpAddr, payload: [u8; 8]) -> bool {
    socket.send_to(&payload, (addr, UDP_PORT)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((8, _)) if buf[..8] == payload => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// Packets per listed VIP in `vip stats --json`.
pub fn vip_packets(stats: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for range in stats["ranges"].as_array().expect("ranges") {
        for vip in range["vips"].as_array().expect("vips") {
            out.insert(
                vip["addr"].as_str().unwrap().to_string(),
                vip["packets"].as_u64().unwrap(),
            );
        }
    }
    out
}

/// Samples `vip stats --json`; every sample must read, and no VIP's count may
/// be lower than in the sample before.
pub struct Sampler<'a> {
    instance: &'a Instance,
    ns: &'a Netns,
    last: BTreeMap<String, u64>,
}

impl<'a> Sampler<'a> {
    pub fn new(instance: &'a Instance, ns: &'a Netns) -> Sampler<'a> {
        Sampler {
            instance,
            ns,
            last: BTreeMap::new(),
        }
    }

    pub fn sample(&mut self, when: &str) -> BTreeMap<String, u64> {
        let now = vip_packets(&self.instance.stats_json(self.ns));
        for (vip, before) in &self.last {
            let after = now.get(vip).copied().unwrap_or(0);
            assert!(
                after >= *before,
                "{vip} went backwards {when}: {before} -> {after}"
            );
        }
        self.last = now.clone();
        now
    }

    /// Samples for `duration`, and at least [`MIN_SAMPLES`] times however slow
    /// a sample is (a VM without KVM takes 10 times longer); returns the last.
    pub fn sample_for(&mut self, duration: Duration, when: &str) -> BTreeMap<String, u64> {
        let end = Instant::now() + duration;
        let mut last = self.sample(when);
        let mut taken = 1;
        while Instant::now() < end || taken < MIN_SAMPLES {
            std::thread::sleep(Duration::from_millis(50));
            last = self.sample(when);
            taken += 1;
        }
        last
    }
}

/// The sum of `vips`' counts in a sample.
pub fn total(packets: &BTreeMap<String, u64>, vips: &[&str]) -> u64 {
    vips.iter()
        .map(|v| packets.get(*v).copied().unwrap_or(0))
        .sum()
}

/// Checks, at the end of a flow, that every datagram was echoed and that each
/// VIP counted exactly what was sent to it.
pub fn assert_exact(result: &FlowResult, last: &BTreeMap<String, u64>, vips: &[&str]) {
    assert_eq!(result.lost, 0, "datagrams without an echo");
    let counted: BTreeMap<String, u64> = vips
        .iter()
        .map(|v| (v.to_string(), last.get(*v).copied().unwrap_or(0)))
        .collect();
    assert_eq!(counted, result.sent, "counted == sent, per VIP");
}
