//! Kafka clients: the relay's idempotent producer, the projection's consumer, and
//! creating the topic. Kafka is optional for serving: without a broker the outbox
//! grows and is published once one is back.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Settings;

/// How long one publish may keep retrying inside librdkafka before the relay sees
/// it fail and backs off (and `/health/ready` says the relay is degraded).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

fn base(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.kafka_brokers)
        .set("client.id", "boxoffice")
        .set("log_level", "3");
    config
}

/// `acks=all` and idempotence: a retried send is written once, in order.
pub fn producer(settings: &Settings) -> anyhow::Result<FutureProducer> {
    Ok(base(settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()?)
}

/// A consumer in `kafka_consumer_group` that commits only offsets the caller
/// stored, i.e. of events it has applied.
pub fn consumer(settings: &Settings) -> anyhow::Result<StreamConsumer> {
    Ok(base(settings)
        .set("group.id", &settings.kafka_consumer_group)
        .set(
            "session.timeout.ms",
            settings.kafka_session_timeout_ms.to_string(),
        )
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()?)
}

/// Creates the topic with `kafka_partitions` partitions unless it exists.
pub async fn ensure_topic(settings: &Settings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(settings).create()?;
    let topic = NewTopic::new(
        &settings.kafka_topic,
        settings.kafka_partitions,
        TopicReplication::Fixed(i32::from(settings.kafka_replication_factor.get())),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
