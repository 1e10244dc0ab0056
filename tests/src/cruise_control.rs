//! The real Cruise Control 2.5.146 (provisioned by `scripts/provision/cruise-control.sh`
//! into `cruise-control/`, laid out like an image's `/opt/cruise-control`), on a free
//! 127.0.0.1 port, with the `cruisecontrol.properties`, capacity and cluster configs a
//! test gives. The brokers it watches need Cruise Control's metrics reporter
//! ([`crate::KafkaClusterBuilder::with_cruise_control_reporter`]).

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use crate::{Error, ManagedProcess, WorkDir, http, net::free_port, provisioned, wait_for};

/// How long Cruise Control may take to answer `/state` (about 15 s here; more on a
/// loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// What a Cruise Control is started with.
#[derive(Debug, Clone)]
pub struct CruiseControlFiles {
    /// `cruisecontrol.properties`; the file paths, the address and the port are set
    /// after it (last wins).
    pub properties: String,
    /// `capacity.json`.
    pub capacity: String,
    /// `clusterConfigs.json`.
    pub cluster_configs: String,
}

/// A running Cruise Control.
#[derive(Debug)]
pub struct CruiseControl {
    process: ManagedProcess,
    addr: SocketAddr,
    work: WorkDir,
}

impl CruiseControl {
    /// Starts Cruise Control with `files` and waits until `/state` answers.
    pub async fn start(files: &CruiseControlFiles) -> Result<Self, Error> {
        let home = Self::home()?;
        let work = WorkDir::new("cruise-control")?;
        let capacity = work.write("capacity.json", &files.capacity)?;
        let clusters = work.write("clusterConfigs.json", &files.cluster_configs)?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let properties = format!(
            "{}\ncapacity.config.file={}\ncluster.configs.file={}\nwebserver.http.address=127.0.0.1\nwebserver.http.port={port}\n",
            files.properties,
            capacity.display(),
            clusters.display()
        );
        let properties = work.write("cruisecontrol.properties", properties)?;
        let mut cmd = Command::new(home.join("bin/kafka-cruise-control-start.sh"));
        cmd.arg(&properties).current_dir(work.path());
        let process = ManagedProcess::spawn(
            "cruise-control",
            cmd,
            &work.path().join("cruise-control.log"),
        )?;
        let mut cc = Self {
            process,
            addr,
            work,
        };
        cc.wait_ready().await?;
        Ok(cc)
    }

    /// The provisioned layout (`/opt/cruise-control` of an image).
    pub fn home() -> Result<PathBuf, Error> {
        provisioned(
            "cruise control",
            "cruise-control/bin/kafka-cruise-control-start.sh",
        )?
        .parent()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_owned)
        .ok_or_else(|| Error::Other("the cruise-control folder has no parent".into()))
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let addr = self.addr;
        let process = &mut self.process;
        wait_for(
            "cruise control",
            READY_TIMEOUT,
            Duration::from_millis(500),
            || {
                let running = process.ensure_running();
                async move {
                    running?;
                    Ok(
                        match http::get(addr, "/kafkacruisecontrol/state?json=true").await {
                            Ok(r) if r.status == 200 => Ok(()),
                            Ok(r) => Err(format!("/state answered {}: {}", r.status, r.body)),
                            Err(e) => Err(format!("/state: {e}")),
                        },
                    )
                }
            },
        )
        .await
    }

    /// `http://127.0.0.1:<port>/kafkacruisecontrol`: the base of its REST API.
    pub fn url(&self) -> String {
        format!("http://{}/kafkacruisecontrol", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills it (SIGKILL): it forgets every task, as after a crash.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.process.kill();
        Ok(())
    }

    /// Starts it again on the same port and waits until it answers.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.process.restart()?;
        self.wait_ready().await
    }

    /// Its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Its work dir.
    pub fn work_dir(&self) -> &std::path::Path {
        self.work.path()
    }
}
