//! `aidledger`: one binary for operators, node runners and auditors.
//!
//! Errors go to stderr as one line, `error: <reason>: <cause>...`. Exit
//! codes: 0 success, 1 failure, 2 bad arguments or input.

use std::path::PathBuf;
use std::process::ExitCode;

use aidledger_node::cli::{self, Ctx, OperatorCmd, Output};
use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "aidledger",
    version,
    about = "A permissioned consortium ledger for aid funds",
    propagate_version = true
)]
struct Cli {
    /// The node home (config.toml, genesis.json, keys/, data/).
    #[arg(long, global = true, env = "AIDLEDGER_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// The node API to talk to [default: HOME/config.toml's api.listen, else http://127.0.0.1:26701].
    #[arg(long, global = true, env = "AIDLEDGER_NODE", value_name = "URL")]
    node: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Operator(OperatorCmd),
    /// A local consortium for development and tests.
    #[command(subcommand)]
    Testnet(aidledger_testnet::testnet::TestnetCmd),
    /// Load generation and benchmarks against a testnet.
    #[command(subcommand)]
    Bench(aidledger_testnet::bench::BenchCmd),
    /// Print a shell completion script, e.g. `aidledger completions bash >
    /// /etc/bash_completion.d/aidledger`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (aidledger.1 and one per command) into DIR.
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Runs a parsed command line and returns the exit code.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let csv_ok = matches!(
        cli.command,
        Command::Operator(OperatorCmd::Audit(cli::audit::AuditCmd::Report(_)))
    );
    if cli.output == Output::Csv && !csv_ok {
        return Err(cli::usage(
            "--output csv is for `audit report`; other commands write text or json",
        ));
    }
    let ctx = Ctx {
        home: cli.home,
        node: cli.node,
        output: cli.output,
    };
    match cli.command {
        Command::Operator(c) => cli::run(&ctx, c),
        Command::Testnet(c) => aidledger_testnet::testnet::run(&ctx, c),
        Command::Bench(c) => aidledger_testnet::bench::run(&ctx, c),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into memory first: clap_complete panics when its writer fails,
            // as stdout does when closed (`... | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "aidledger", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::from(141)),
                other => other.map(|()| ExitCode::SUCCESS).map_err(Into::into),
            }
        }
        Command::Man { out } => {
            use clap::CommandFactory;
            if !out.is_dir() {
                return Err(cli::usage(format!("{} is not a directory", out.display())));
            }
            clap_mangen::generate_to(Cli::command(), &out)?;
            let pages = std::fs::read_dir(&out)?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
                .count();
            println!("wrote {pages} manual pages to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

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
    let cli = match Cli::try_parse() {
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
    match run(cli) {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every subcommand.
    #[test]
    fn every_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// An argument id used twice along one subcommand path (a kind's
    /// `key` field beside the signer's `--key`) passes clap's checks but
    /// panics when that subcommand runs, as `gov-propose add-node --key`
    /// once did: no id may repeat from the root to any leaf.
    #[test]
    fn no_argument_id_repeats_along_a_subcommand_path() {
        fn walk(cmd: &clap::Command, path: &mut Vec<String>, seen: &mut Vec<String>) {
            let before = seen.len();
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str().to_string();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    !seen.contains(&id),
                    "argument id {id:?} repeats along `{}`",
                    path.join(" ")
                );
                seen.push(id);
            }
            for sub in cmd.get_subcommands() {
                path.push(sub.get_name().to_string());
                walk(sub, path, seen);
                path.pop();
            }
            seen.truncate(before);
        }
        let cmd = super::Cli::command();
        walk(&cmd, &mut vec!["aidledger".into()], &mut Vec::new());
    }
}
