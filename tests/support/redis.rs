//! A real `redis-server` on a loopback port of its own, without persistence, that tests can stop,
//! freeze and start again on the same port.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running (or stopped) redis-server.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The password it requires (`requirepass`).
    pub password: &'static str,
}

/// The password every test Redis requires, so tests can prove it never shows.
pub const PASSWORD: &str = "redis-pass-9f2c41";

impl RedisServer {
    /// Starts one on a free port; `None` (with a note) where redis-server is not installed, which
    /// under CI — where `.ci/run` installs it — is a failure.
    pub async fn start() -> Option<Self> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is missing under CI, where .ci/run installs it"
            );
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: None,
            port,
            password: PASSWORD,
        };
        server.restart().await;
        Some(server)
    }

    /// The URL the gateway is given.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }

    /// The URL without the password, for `--redis-password-file`.
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again) on its port, empty, and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--requirepass", self.password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if self.ping().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        ready.await.expect("redis-server answers PING");
    }

    /// Kills it and waits until it is gone.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }

    /// Freezes (`true`, SIGSTOP) or thaws (`false`, SIGCONT) it: a Redis that accepts nothing and
    /// answers nothing, yet keeps its connections open.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Whether it answers PING with PONG now.
    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut answer = [0u8; 12];
        let command = format!("AUTH {}\r\nPING\r\n", self.password);
        stream.write_all(command.as_bytes()).await.is_ok()
            && stream.read_exact(&mut answer).await.is_ok()
            && &answer == b"+OK\r\n+PONG\r\n"
    }
}
