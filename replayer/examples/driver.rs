//! Stand-in for the `alloctrace` binary until its `main` dispatches `replay`:
//! a replay driver process when `ALLOCTRACE_REPLAY_DRIVER` is set, otherwise
//! `alloctrace replay` itself.
//!
//! `cargo run -p replayer --example driver -- TRACE -a glibc -a alloctrace`

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: replayer::cli::ReplayArgs,
}

fn main() {
    replayer::cli::driver_main_if_requested();
    let cli = Cli::parse();
    // Driver processes are this example too.
    if std::env::var_os(replayer::preload_driver::DRIVER_EXE_ENV).is_none() {
        if let Ok(me) = std::env::current_exe() {
            // Set before any thread starts.
            std::env::set_var(replayer::preload_driver::DRIVER_EXE_ENV, me);
        }
    }
    match replayer::cli::replay(&cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("alloctrace: {e:#}");
            std::process::exit(2);
        }
    }
}
