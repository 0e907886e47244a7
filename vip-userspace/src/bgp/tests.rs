use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use super::*;
use crate::config::Config;

/// A speaker that records what it was told.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<Announcement>>>>, Arc<Mutex<u32>>);

impl Speaker for Recorder {
    fn announce(&mut self, routes: &[Announcement]) -> Result<(), SpeakerError> {
        self.0.lock().unwrap().push(routes.to_vec());
        Ok(())
    }
    fn stop(&mut self) -> Result<(), SpeakerError> {
        *self.1.lock().unwrap() += 1;
        Ok(())
    }
    fn sessions(&mut self) -> Result<Vec<Session>, SpeakerError> {
        Ok(Vec::new())
    }
    fn describe(&self) -> String {
        "recorder".into()
    }
}

impl Recorder {
    fn last(&self) -> Vec<(String, bool)> {
        self.0
            .lock()
            .unwrap()
            .last()
            .expect("told something")
            .iter()
            .map(|a| (a.cidr.to_string(), a.graceful_shutdown))
            .collect()
    }
    fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

const CONFIG: &str = r#"
interfaces = ["eth0"]
[bgp]
local_as = 65001
router_id = "198.18.1.2"
drain_seconds = 3
[[bgp.neighbor]]
address = "198.18.1.1"
as = 65000
[[range]]
name = "web"
cidr = "192.0.2.0/24"
accept = "alias"
announce = true
[[range]]
name = "dns"
cidr = "198.51.100.0/24"
accept = "route"
announce = true
[[range]]
name = "quiet"
cidr = "203.0.113.0/24"
accept = "alias"
"#;

const UP: Gate = Gate {
    attached: true,
    host_in_place: true,
    steer_up: true,
};

fn announcer() -> (Announcer, Recorder) {
    let config = Config::parse(CONFIG, "t.toml".as_ref()).unwrap();
    let recorder = Recorder::default();
    let mut a = Announcer::new(&config, Box::new(recorder.clone()), Drain::default());
    a.set_gates(|_| UP);
    (a, recorder)
}

fn phases(a: &Announcer) -> Vec<(String, Phase)> {
    a.status().into_iter().map(|s| (s.range, s.phase)).collect()
}

#[tokio::test]
async fn healthy_ranges_are_announced_and_a_failed_gate_withdraws_at_once() {
    let (mut a, rec) = announcer();
    let now = Instant::now();
    a.evaluate(now).unwrap();
    assert_eq!(
        rec.last(),
        [
            ("192.0.2.0/24".into(), false),
            ("198.51.100.0/24".into(), false)
        ]
    );
    a.set_gates(|name| Gate {
        host_in_place: name != "dns",
        ..UP
    });
    a.evaluate(now).unwrap();
    assert_eq!(rec.last(), [("192.0.2.0/24".into(), false)]);
    let dns = &a.status()[1];
    assert_eq!(dns.phase, Phase::Withdrawn);
    assert_eq!(dns.reason, "alias or route not in place");
    assert_eq!(dns.transitions, 2);
    // Nothing changed: the speaker is not told again.
    a.evaluate(now).unwrap();
    assert_eq!(rec.calls(), 2);
}

#[tokio::test]
async fn a_drain_tags_first_then_withdraws_after_drain_seconds_and_undrain_brings_it_back() {
    let (mut a, rec) = announcer();
    let start = Instant::now();
    a.evaluate(start).unwrap();
    a.set_drained(Drain {
        all: false,
        ranges: ["web".to_string()].into(),
    });
    a.evaluate(start).unwrap();
    assert_eq!(
        rec.last(),
        [
            ("192.0.2.0/24".into(), true),
            ("198.51.100.0/24".into(), false)
        ]
    );
    assert_eq!(a.next_deadline(), Some(start + Duration::from_secs(3)));
    a.evaluate(start + Duration::from_millis(2999)).unwrap();
    assert_eq!(phases(&a)[0].1, Phase::Draining);
    a.evaluate(start + Duration::from_secs(3)).unwrap();
    assert_eq!(rec.last(), [("198.51.100.0/24".into(), false)]);
    assert_eq!(a.status()[0].reason, "drained by the operator");
    a.set_drained(Drain::default());
    a.evaluate(start + Duration::from_secs(4)).unwrap();
    assert_eq!(
        rec.last(),
        [
            ("192.0.2.0/24".into(), false),
            ("198.51.100.0/24".into(), false)
        ]
    );
    assert_eq!(a.status()[0].transitions, 4);
}

#[tokio::test]
async fn a_failure_while_draining_withdraws_without_waiting() {
    let (mut a, rec) = announcer();
    let start = Instant::now();
    a.evaluate(start).unwrap();
    a.set_drained(Drain {
        all: true,
        ranges: Default::default(),
    });
    a.evaluate(start).unwrap();
    assert_eq!(phases(&a)[1].1, Phase::Draining);
    a.set_gates(|_| Gate {
        attached: false,
        ..UP
    });
    a.evaluate(start).unwrap();
    assert_eq!(rec.last(), []);
    assert_eq!(a.next_deadline(), None);
}

#[tokio::test]
async fn stand_down_drains_everything_then_stops_the_speaker() {
    let (mut a, rec) = announcer();
    a.evaluate(Instant::now()).unwrap();
    let before = Instant::now();
    a.stand_down().await.unwrap();
    assert!(before.elapsed() >= Duration::from_secs(3));
    let told = rec.0.lock().unwrap().clone();
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(told[1].iter().all(|r| r.graceful_shutdown));
    assert!(told[2].is_empty());
    assert_eq!(*rec.1.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_health_check_that_is_not_up_keeps_its_range_withdrawn() {
    let text = CONFIG.replace(
        "name = \"dns\"",
        "name = \"dns\"\nhealth = [{ check = \"tcp:198.18.1.2:53\", interval_ms = 60000, timeout_ms = 10 }]",
    );
    let config = Config::parse(&text, "t.toml".as_ref()).unwrap();
    let rec = Recorder::default();
    let mut a = Announcer::new(&config, Box::new(rec.clone()), Drain::default());
    for task in a.tasks.drain(..) {
        task.abort();
    }
    a.set_gates(|_| UP);
    a.evaluate(Instant::now()).unwrap();
    assert_eq!(rec.last(), [("192.0.2.0/24".into(), false)]);
    assert_eq!(a.status()[1].reason, "health check tcp:198.18.1.2:53 down");
    a.take_change(health::Change {
        range: 1,
        check: 0,
        up: true,
        failure: None,
    });
    a.evaluate(Instant::now()).unwrap();
    assert_eq!(rec.last().len(), 2);
    a.take_change(health::Change {
        range: 1,
        check: 0,
        up: false,
        failure: Some("connect: Connection refused (os error 111)".into()),
    });
    a.evaluate(Instant::now()).unwrap();
    assert_eq!(rec.last().len(), 1);
    let status = &a.status()[1];
    assert_eq!(status.health[0].transitions, 1);
    assert_eq!(
        status.reason,
        "health check tcp:198.18.1.2:53 down: connect: Connection refused (os error 111)"
    );
    assert_eq!(
        status.health[0].failure.as_deref(),
        Some("connect: Connection refused (os error 111)")
    );
}
