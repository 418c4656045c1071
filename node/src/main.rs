//! `aidledger`: one binary for operators, node runners and auditors.
//!
//! Errors go to stderr as one line, `error: <reason>: <cause>...`. Exit
//! codes: 0 success, 1 failure, 2 bad arguments or input.

mod api;
mod api_trace;
mod api_types;
mod cli;
mod client;
mod clock;
mod config;
mod driver;
mod metrics;
mod node;
mod openapi;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

/// Clap's message as one line: the lines before its usage hint, joined.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        if !l.is_empty() {
            parts.push(l.to_string());
        }
    }
    let mut s = parts.join(" ");
    if !s.starts_with("error:") {
        s = format!("error: {s}");
    }
    s
}

/// Exits quietly when stdout is a closed pipe (`aidledger ... | head`)
/// instead of panicking with a backtrace.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(2)
                }
                _ => {
                    eprintln!("{} (see --help)", one_line(&e));
                    ExitCode::from(2)
                }
            };
        }
    };
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let msg = chain.join(": ").replace('\n', " ");
            eprintln!("error: {msg}");
            if cli::is_usage(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
