//! Progress of a long command (a replay, a dead-letter replay) on stderr: an `indicatif` bar
//! when stderr is a terminal, a plain line every few seconds otherwise (a log file, CI), so
//! the same command reads well in both. Callers update it as often as they like.

use std::time::{Duration, Instant};

/// Time between two plain lines.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// How often callers should update: often enough for a smooth bar.
pub const TICK: Duration = Duration::from_millis(200);

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// Names the command in plain lines.
    label: String,
    last_line: Instant,
    last_text: String,
}

impl Progress {
    /// `total` sizes the bar (in the unit of the positions given to [`Progress::update`]);
    /// without one, a spinner shows the position.
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                total,
                indicatif::ProgressDrawTarget::stderr(),
            );
            let template = match total {
                Some(_) => "{elapsed_precise} [{wide_bar}] {percent:>3}% {msg}",
                None => "{elapsed_precise} {spinner} {msg}",
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            label: label.into(),
            last_line: Instant::now(),
            last_text: String::new(),
        }
    }

    /// Shows `position` (of `total`, when it changed) and `text`. Plain lines are written at
    /// most every few seconds, and only when the text changed.
    pub fn update(&mut self, position: u64, total: Option<u64>, text: String) {
        match &self.bar {
            Some(b) => {
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(position);
                b.set_message(text);
            }
            None => {
                if self.last_line.elapsed() >= LINE_EVERY && text != self.last_text {
                    eprintln!("{}: {text}", self.label);
                    self.last_line = Instant::now();
                    self.last_text = text;
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
