//! Parses flags, sets up logging and runs the gateway (or the simulator) until SIGINT/SIGTERM.
//! A setting that cannot work ends the process at once with one line on stderr.

use std::process::ExitCode;

use clap::Parser as _;
use ecs_gateway::aliyun::Env;
use ecs_gateway::app::cli::{Cli, Command};
use ecs_gateway::app::{
    CredentialsFrom, Gateway, Settings, init_logging, run_simulator, shutdown_signal,
};

// glibc malloc's arena locks showed up in profiles under load; mimalloc removes them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking work (file reads of configuration; DNS is async). Bounded, so that no
/// outage can make the process spawn hundreds of threads.
const MAX_BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let rendered = error.render().to_string();
            let line = rendered.lines().find(|l| !l.trim().is_empty());
            eprintln!("{}", line.unwrap_or("error: invalid arguments"));
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the trace exporter, when configured, runs on it.
    let telemetry = {
        let _entered = runtime.enter();
        match init_logging(cli.log_format.into()) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    let code = match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    let _entered = runtime.enter();
    telemetry.shutdown();
    code
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    // First, so that a SIGTERM during start-up is a shutdown request, not the default death.
    let shutdown = shutdown_signal();
    match cli.command {
        Some(Command::Simulator(args)) => run_simulator(args, shutdown).await?,
        None => {
            let settings = Settings::try_from(&cli.gateway)?;
            let credentials = CredentialsFrom::Chain(Env::process());
            Gateway::build(settings, credentials)
                .await?
                .serve(shutdown)
                .await;
        }
    }
    Ok(())
}
