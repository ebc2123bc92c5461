//! `record` alone, without the analyzer (and polars): the same arguments as
//! `alloctrace record`, so `recorder/bench/run.sh` can time the recorder from a
//! quick `cargo build --release -p recorder --example record`. The report that
//! `alloctrace record` prints afterwards is never made here.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Run a program and record every heap allocation it makes.
    Record(recorder::cli::RecordArgs),
}

fn main() -> anyhow::Result<()> {
    let Cmd::Record(args) = Cli::parse().cmd;
    let outcome = recorder::cli::run(&args)?;
    std::process::exit(outcome.exit_code)
}
