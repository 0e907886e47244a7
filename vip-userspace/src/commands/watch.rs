//! `vip stats --watch`: a live table of rates, redrawn every second until `q`,
//! Esc or Ctrl-C.

use std::{
    io::{IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use crossterm::{
    cursor,
    event::{self, Event, KeyCode, KeyEvent, KeyModifiers},
    execute, queue,
    terminal::{self, ClearType},
};
use vip_userspace::{
    datapath::{
        maps::{Access, Maps},
        pin,
    },
    errors::{self, Blame},
    stats::{self, rates, Selection},
};

use super::{Context, Failure};

const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("vip stats --watch needs a terminal; use vip stats --json to read counters from a script")]
pub struct NotATerminal;

impl Blame for NotATerminal {
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Puts the terminal back however the watch ends.
struct Screen;

impl Screen {
    fn enter() -> Result<Screen, Failure> {
        terminal::enable_raw_mode().context("terminal raw mode")?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("terminal setup")?;
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

fn quits(key: &KeyEvent) -> bool {
    matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
        || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
}

/// The pinned maps the watch reads, opened again whenever the pins are
/// other maps than those it holds.
struct Source<'a> {
    pin_dir: &'a Path,
    maps: Maps,
    identity: Option<Vec<u64>>,
}

/// What one refresh found.
enum Refresh {
    Read(stats::Report, Vec<String>),
    /// The pins are other maps now: read afresh, no rates this time.
    Reopened(stats::Report),
    /// No datapath to read now, and why.
    Unreadable(String),
}

impl<'a> Source<'a> {
    fn open(pin_dir: &'a Path) -> Result<Source<'a>, Failure> {
        let identity = pin::maps_identity(pin_dir);
        let maps = Maps::open_pinned(pin_dir, Access::ReadOnly)?;
        Ok(Source {
            pin_dir,
            maps,
            identity,
        })
    }

    fn refresh(&mut self, run_dir: &Path, selection: &Selection) -> Refresh {
        let identity = pin::maps_identity(self.pin_dir);
        if identity.is_none() {
            return Refresh::Unreadable(format!(
                "no datapath pinned in {} (vip run is not running)",
                self.pin_dir.display()
            ));
        }
        let reopened = identity != self.identity;
        if reopened {
            match Maps::open_pinned(self.pin_dir, Access::ReadOnly) {
                Ok(maps) => {
                    self.maps = maps;
                    self.identity = identity;
                }
                Err(e) => return Refresh::Unreadable(errors::chain(&e)),
            }
        }
        match read(&self.maps, run_dir, selection) {
            Ok((report, _)) if reopened => Refresh::Reopened(report),
            Ok((report, missing)) => Refresh::Read(report, missing),
            Err(e) => Refresh::Unreadable(errors::chain(&e)),
        }
    }
}

/// The named ranges' counters, and the names the datapath does not have.
fn read(
    maps: &Maps,
    run_dir: &Path,
    selection: &Selection,
) -> Result<(stats::Report, Vec<String>), stats::StatsError> {
    let mut report = stats::collect(maps, run_dir)?;
    let missing = selection
        .missing(&report)
        .into_iter()
        .map(String::from)
        .collect();
    selection.keep_ranges(&mut report);
    Ok((report, missing))
}

/// Names are checked once, at the start. From then on nothing the daemon does
/// ends the watch: a range a reload removes is named in the header (and shown
/// again if a reload adds it back), maps pinned anew (a restart, an upgrade,
/// a reload that changed the attachments) are opened again, and while there
/// is no datapath the header says so.
pub fn watch(pin_dir: &Path, run_dir: &Path, selection: &Selection) -> Result<(), Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(NotATerminal.into());
    }
    let mut source = Source::open(pin_dir)?;
    let mut before = stats::collect(&source.maps, run_dir)?;
    selection.check(&before)?;
    selection.keep_ranges(&mut before);
    // `since` paces the refreshes; `before_at` is when `before` was read,
    // which a refresh that read nothing leaves behind.
    let mut since = Instant::now();
    let mut before_at = since;
    let _screen = Screen::enter()?;
    let mut out = std::io::stdout();
    loop {
        let deadline = since + REFRESH;
        while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            if event::poll(wait).context("reading the keyboard")? {
                if let Event::Key(key) = event::read().context("reading the keyboard")? {
                    if quits(&key) {
                        return Ok(());
                    }
                }
            }
        }
        since = Instant::now();
        let mut header = format!(
            "vip stats --watch: {} (q to quit)",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        let ranges = match source.refresh(run_dir, selection) {
            Refresh::Read(now, missing) => {
                if !missing.is_empty() {
                    header += &format!("; no longer in the datapath: {}", missing.join(", "));
                }
                let ranges = rates::rates(&before, &now, before_at.elapsed().as_secs_f64());
                (before, before_at) = (now, Instant::now());
                ranges
            }
            Refresh::Reopened(now) => {
                header += "; the datapath's maps were pinned anew: rates from the next second";
                (before, before_at) = (now, Instant::now());
                Vec::new()
            }
            Refresh::Unreadable(why) => {
                header += &format!("; {why}");
                Vec::new()
            }
        };
        let (_, rows) = terminal::size().unwrap_or((80, 24));
        let lines = rates::screen(&ranges, &header, rows as usize);
        queue!(out, cursor::MoveTo(0, 0), terminal::Clear(ClearType::All))?;
        for (i, line) in lines.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, i as u16))?;
            write!(out, "{line}")?;
        }
        out.flush()?;
    }
}
