//! Parses flags, sets up logging and runs the gateway (or the simulator) until SIGINT/SIGTERM.

use clap::Parser as _;
use ecs_gateway::config::{Cli, Command};
use ecs_gateway::{shutdown_signal, simulator, telemetry};

// glibc malloc's arena locks showed up in profiles under load; mimalloc removes them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Some(Command::Simulator(args)) => simulator::run(args, shutdown_signal()).await?,
        None => {
            let listener = tokio::net::TcpListener::bind(cli.gateway.listen).await?;
            ecs_gateway::run(cli.gateway, None, listener, shutdown_signal()).await?;
        }
    }
    Ok(())
}
