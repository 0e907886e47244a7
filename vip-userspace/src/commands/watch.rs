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
    datapath::maps::{Access, Maps},
    errors::Blame,
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

pub fn watch(pin_dir: &Path, run_dir: &Path, selection: &Selection) -> Result<(), Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(NotATerminal.into());
    }
    let maps = Maps::open_pinned(pin_dir, Access::ReadOnly)?;
    let read = || -> Result<stats::Report, Failure> {
        let mut report = stats::collect(&maps, run_dir)?;
        selection.apply(&mut report)?;
        Ok(report)
    };
    let mut before = read()?;
    let mut since = Instant::now();
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
        let now = read()?;
        let elapsed = since.elapsed().as_secs_f64();
        since = Instant::now();
        let (_, rows) = terminal::size().unwrap_or((80, 24));
        let header = format!(
            "vip stats --watch: {} (q to quit)",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        let lines = rates::screen(
            &rates::rates(&before, &now, elapsed),
            &header,
            rows as usize,
        );
        queue!(out, cursor::MoveTo(0, 0), terminal::Clear(ClearType::All))?;
        for (i, line) in lines.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, i as u16))?;
            write!(out, "{line}")?;
        }
        out.flush()?;
        before = now;
    }
}
