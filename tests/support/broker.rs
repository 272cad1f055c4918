//! A broker of a test's own, to kill and restart.

use super::app::env_or;
use super::poll::eventually;

/// A tansu broker of the test's own, so a test can kill and restart it.
pub struct PrivateBroker {
    pub port: u16,
    child: tokio::process::Child,
}

impl PrivateBroker {
    pub async fn start(port: Option<u16>) -> PrivateBroker {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port()
        });
        let home = std::env::var("HOME").unwrap_or_default();
        let cache = env_or("MURIMA_CACHE", &format!("{home}/.cache/murima"));
        let bin = env_or("MURIMA_TANSU_BIN", &format!("{cache}/tansu-0.6.0/bin/tansu"));
        let url = format!("tcp://127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts (scripts/stack.sh install builds it)");
        eventually("the private broker to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        PrivateBroker { port, child }
    }

    /// The broker's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the broker runs")
    }

    /// Kills the broker outright: its in-memory log, topics and group offsets are gone.
    pub async fn kill(mut self) -> u16 {
        self.child.kill().await.expect("kill tansu");
        self.port
    }
}

impl super::app::TestApp {
    /// Every message of the event topic, read from the start of each partition.
    pub fn event_log(&self) -> Vec<String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Message, Offset, TopicPartitionList};
        let client: BaseConsumer = runtime::kafka::client_config(&self.settings.kafka_brokers)
            .set("group.id", "murima.tests.whole-log")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a Kafka client");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..self.settings.kafka_partitions {
            assignment.add_partition_offset(&self.settings.kafka_topic, partition, Offset::Beginning).expect("offset");
        }
        client.assign(&assignment).expect("assignment");
        let mut read = Vec::new();
        while let Some(message) = client.poll(std::time::Duration::from_secs(3)) {
            let message = message.expect("a message");
            read.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
        read
    }
}
