//! Output options shared by commands: format and colour.

use clap::ValueEnum;
use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text for people.
    Human,
    /// JSON for scripts.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    pub fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
            }
        }
    }
}

/// Writes `text` to the file at `path`, or to standard output when `path` is `-` or absent.
pub fn write(path: Option<&str>, text: &str) -> Result<(), String> {
    match path {
        None | Some("-") => {
            print!("{text}");
            Ok(())
        }
        Some(p) => std::fs::write(p, text).map_err(|e| format!("cannot write `{p}`: {e}")),
    }
}

pub fn error(message: &str) {
    eprintln!("error: {message}");
}
