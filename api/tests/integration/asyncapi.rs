//! `asyncapi.yaml` against the code. Every Kafka event type and every waiting-room
//! message is built from the real types, serialized as the app serializes it, and
//! validated against the document's schema for it (with the Kafka key and headers the
//! relay sends); the document may list no message, field or enum value the code never
//! sends, and its examples must be what the code reads. `contract/asyncapi` checks the
//! document itself with the AsyncAPI parser.
//!
//! The document lets consumers read leniently (new fields may come within a version),
//! so its object schemas allow unknown properties. Here every object is closed and
//! every property must be required, because the code always sends every field: a field
//! added, renamed or dropped in Rust fails until the document says so.

use std::collections::{BTreeMap, BTreeSet};

use boxoffice::waiting_room::ServerMessage;
use chrono::{DateTime, TimeDelta, Utc};
use domain::event::SCHEMA_VERSION;
use domain::order::SeatChoice;
use domain::sale::{SaleChanges, SettingChange};
use domain::{
    CancelReason, ChargeAmount, ConcertId, DomainEvent, EventEnvelope, GradeName, OrderId,
    OrderSeat, PaymentId, Points, ReservationId, SaleAction, SaleSettings, SaleState, ScheduleId,
    SeatNo, UserId,
};
use serde_json::{Value, json};

const EVENTS: &str = "events";
const WAITING_ROOM: &str = "waitingRoom";

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../asyncapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `node` with every `$ref` replaced by what it points to (the document has no cycles).
fn resolved(doc: &Value, node: &Value) -> Value {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let pointer = target
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("asyncapi.yaml: $ref {target} is not local"));
                let found = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("asyncapi.yaml: $ref {target} points nowhere"));
                return resolved(doc, found);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolved(doc, v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolved(doc, v)).collect()),
        other => other.clone(),
    }
}

/// A channel's messages, by their name in the channel, resolved.
fn channel_messages(doc: &Value, channel: &str) -> BTreeMap<String, Value> {
    doc["channels"][channel]["messages"]
        .as_object()
        .unwrap_or_else(|| panic!("asyncapi.yaml: channel {channel} has no messages"))
        .iter()
        .map(|(name, message)| (name.clone(), resolved(doc, message)))
        .collect()
}

/// The names (in its channel) of the messages an operation lists.
fn operation_messages(doc: &Value, operation: &str) -> BTreeSet<String> {
    doc["operations"][operation]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("asyncapi.yaml: operation {operation} lists no messages"))
        .iter()
        .map(|m| {
            let target = m["$ref"].as_str().unwrap();
            target.rsplit('/').next().unwrap().to_owned()
        })
        .collect()
}

/// A closed copy of `schema`: every object schema refuses properties it does not list
/// and must require every property it lists.
fn closed(schema: &Value, at: &str) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), closed(v, &format!("{at}/{k}"))))
                .collect();
            if let Some(Value::Object(properties)) = map.get("properties") {
                let required: BTreeSet<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for name in properties.keys() {
                    assert!(
                        required.contains(name.as_str()),
                        "asyncapi.yaml {at}: `{name}` is not required, but the code always sends it"
                    );
                }
                out.entry("additionalProperties")
                    .or_insert(Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| closed(v, &format!("{at}/{i}")))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What is wrong with `instance` by the closed `schema` (AsyncAPI schemas are JSON
/// Schema draft 7), each line saying where.
fn violations(schema: &Value, at: &str, instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&closed(schema, at))
        .unwrap_or_else(|e| panic!("asyncapi.yaml {at} is not a valid schema: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{at}: {e} (at `{}`)", e.instance_path))
        .collect()
}

/// For every `enum` of the document, the values it allows and those the code sent.
#[derive(Default)]
struct EnumUse(BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>);

impl EnumUse {
    fn record(&mut self, schema: &Value, instance: &Value, at: &str) {
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            let (_, sent) = self.0.entry(at.to_owned()).or_insert_with(|| {
                (
                    allowed.iter().map(Value::to_string).collect(),
                    BTreeSet::new(),
                )
            });
            sent.insert(instance.to_string());
        }
        if let (Some(properties), Some(fields)) = (
            schema.get("properties").and_then(Value::as_object),
            instance.as_object(),
        ) {
            for (name, property) in properties {
                if let Some(value) = fields.get(name) {
                    self.record(property, value, &format!("{at}/{name}"));
                }
            }
        }
        if let (Some(items), Some(elements)) = (schema.get("items"), instance.as_array()) {
            for element in elements {
                self.record(items, element, &format!("{at}/[]"));
            }
        }
    }

    /// Values the document allows that the code never sent.
    fn unused(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(at, (allowed, sent))| {
                let unused: Vec<&String> = allowed.difference(sent).collect();
                (!unused.is_empty()).then(|| {
                    format!("{at}: the document allows {unused:?}, which the code never sends")
                })
            })
            .collect()
    }
}

/// Checks `value` (a message's payload or headers, or its Kafka key) against the
/// schema at `part` of `message`, recording the enums it uses.
fn check(
    message: &Value,
    name: &str,
    part: &str,
    value: &Value,
    enums: &mut EnumUse,
    failures: &mut Vec<String>,
) {
    let at = format!("{name}{part}");
    let Some(schema) = message.pointer(part) else {
        failures.push(format!("{at}: missing from the document"));
        return;
    };
    failures.extend(violations(schema, &at, value));
    enums.record(schema, value, &at);
}

/// The schema versions under which each event type is published now or was before.
/// Exhaustive on purpose: a new variant does not compile until it is placed here;
/// give it samples in `every_event` and a message in asyncapi.yaml too.
fn versions(event: &DomainEvent) -> &'static [u16] {
    const CURRENT: &[u16] = &[SCHEMA_VERSION];
    const BOTH: &[u16] = &[1, SCHEMA_VERSION];
    const FIRST_ONLY: &[u16] = &[1];
    match event {
        DomainEvent::OrderHeld { .. }
        | DomainEvent::OrderReleased { .. }
        | DomainEvent::OrderExpired { .. }
        | DomainEvent::OrderPaid { .. }
        | DomainEvent::OrderCancelled { .. }
        | DomainEvent::PointsRefunded { .. }
        | DomainEvent::ShowCancelled { .. } => CURRENT,
        DomainEvent::PointsCharged { .. } | DomainEvent::SaleChanged { .. } => BOTH,
        DomainEvent::ReservationHeld { .. }
        | DomainEvent::ReservationReleased { .. }
        | DomainEvent::ReservationExpired { .. }
        | DomainEvent::PaymentCompleted { .. } => FIRST_ONLY,
    }
}

/// Every event type name serde knows for `DomainEvent`, read from its refusal of a
/// name it does not know: a variant added without a sample in `every_event` shows up
/// here.
fn serde_event_types() -> BTreeSet<String> {
    let refusal = serde_json::from_value::<DomainEvent>(json!({"type": "", "data": {}}))
        .unwrap_err()
        .to_string();
    let (_, expected) = refusal
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("serde no longer lists the variants it expects: {refusal}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn every_cancel_reason() -> Vec<CancelReason> {
    // A new reason does not compile here until it is listed.
    let listed = |reason: CancelReason| match reason {
        CancelReason::Owner | CancelReason::ShowCancelled => reason,
    };
    vec![
        listed(CancelReason::Owner),
        listed(CancelReason::ShowCancelled),
    ]
}

fn every_sale_action() -> Vec<SaleAction> {
    // A new action does not compile here until it is listed.
    let listed = |action: SaleAction| match action {
        SaleAction::Pause | SaleAction::Resume | SaleAction::Close => action,
    };
    vec![
        listed(SaleAction::Pause),
        listed(SaleAction::Resume),
        listed(SaleAction::Close),
    ]
}

const CONCERT: ConcertId = ConcertId(1);
const SCHEDULE: ScheduleId = ScheduleId(2);
const ORDER: OrderId = OrderId(9);

fn user() -> UserId {
    UserId::parse("user-42").unwrap()
}

/// The longest user id, with every character besides letters and digits it may have.
fn longest_user() -> UserId {
    UserId::parse(&"a.b@c-d_e".repeat(8)[..UserId::MAX_LEN]).unwrap()
}

fn first_seat() -> SeatNo {
    SeatNo::parse(1).unwrap()
}

fn last_seat() -> SeatNo {
    SeatNo::parse(SeatNo::MAX.into()).unwrap()
}

/// Samples of every event, at the edges the domain allows: the longest user id and
/// grade name, the first and last seat, a full order, the highest prices and balance.
fn every_event(now: DateTime<Utc>) -> Vec<DomainEvent> {
    let mut events = order_events(now);
    events.extend(wallet_and_show_events());
    events.extend(first_version_events(now));
    events.extend(sale_changes(now));
    events
}

fn order_events(now: DateTime<Utc>) -> Vec<DomainEvent> {
    let full_order = (1..=SeatChoice::MAX_SEATS)
        .map(|i| SeatNo::parse(i64::from(SeatNo::MAX) + 1 - i as i64).unwrap())
        .collect::<Vec<_>>();
    let one_seat = vec![OrderSeat {
        reservation_id: ReservationId(31),
        seat_no: first_seat(),
        grade: GradeName::standard(),
        price: Points(150_000),
    }];
    let longest_grade = GradeName::parse(&"G-_1".repeat(8)).unwrap();
    let dearest_seats = full_order
        .iter()
        .enumerate()
        .map(|(i, &seat_no)| OrderSeat {
            reservation_id: ReservationId(1000 + i as u64),
            seat_no,
            grade: longest_grade.clone(),
            price: Points::MAX_PRICE,
        })
        .collect::<Vec<_>>();
    let seats = vec![first_seat(), last_seat()];
    let mut events = vec![
        DomainEvent::OrderHeld {
            order_id: ORDER,
            user_id: user(),
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seats: one_seat,
            total: Points(150_000),
            held_until: now + TimeDelta::minutes(5),
        },
        DomainEvent::OrderHeld {
            order_id: OrderId(u64::from(u32::MAX)),
            user_id: longest_user(),
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seats: dearest_seats,
            total: Points::MAX_BALANCE,
            held_until: DateTime::from_timestamp(1_700_000_300, 0).unwrap(),
        },
        DomainEvent::OrderReleased {
            order_id: ORDER,
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seats: seats.clone(),
        },
        DomainEvent::OrderExpired {
            order_id: ORDER,
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seats: full_order.clone(),
        },
        DomainEvent::OrderPaid {
            order_id: ORDER,
            payment_id: PaymentId(5),
            user_id: longest_user(),
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seats: full_order,
            amount: Points::MAX_BALANCE,
        },
    ];
    for reason in every_cancel_reason() {
        events.push(DomainEvent::OrderCancelled {
            order_id: ORDER,
            user_id: user(),
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seats: seats.clone(),
            refund: Points(270_000),
            fee: Points(0),
            reason,
        });
    }
    events
}

fn wallet_and_show_events() -> Vec<DomainEvent> {
    vec![
        DomainEvent::PointsRefunded {
            user_id: user(),
            order_id: ORDER,
            amount: Points(270_000),
            fee: Points(30_000),
            balance: Points::MAX_BALANCE,
        },
        DomainEvent::PointsCharged {
            user_id: longest_user(),
            amount: ChargeAmount::MAX,
            balance: Points::MAX_BALANCE,
        },
        DomainEvent::PointsCharged {
            user_id: user(),
            amount: Points(1),
            balance: Points(1),
        },
        DomainEvent::ShowCancelled {
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
        },
    ]
}

/// The per-seat events of version 1, which a topic may still hold.
fn first_version_events(now: DateTime<Utc>) -> Vec<DomainEvent> {
    let reservation = ReservationId(31);
    vec![
        DomainEvent::ReservationHeld {
            reservation_id: reservation,
            user_id: user(),
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seat_no: last_seat(),
            price: Points::MAX_PRICE,
            held_until: now,
        },
        DomainEvent::ReservationReleased {
            reservation_id: reservation,
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seat_no: first_seat(),
        },
        DomainEvent::ReservationExpired {
            reservation_id: reservation,
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seat_no: last_seat(),
        },
        DomainEvent::PaymentCompleted {
            payment_id: PaymentId(5),
            reservation_id: reservation,
            user_id: longest_user(),
            concert_id: CONCERT,
            schedule_id: SCHEDULE,
            seat_no: first_seat(),
            amount: Points(0),
        },
    ]
}

/// A sale's events as `infra::service::sale` writes them: the opening (no changes),
/// each operator action from every state it applies to (one `state` change), and an
/// update of every setting (the changes the domain computes).
fn sale_changes(now: DateTime<Utc>) -> Vec<DomainEvent> {
    let concert = CONCERT;
    let mut events = vec![DomainEvent::SaleChanged {
        concert_id: concert,
        action: "open".into(),
        state: SaleState::Open,
        changes: Vec::new(),
    }];
    for action in every_sale_action() {
        for from in SaleState::ALL {
            if let Ok(to) = action.apply(from) {
                events.push(DomainEvent::SaleChanged {
                    concert_id: concert,
                    action: action.as_str().into(),
                    state: to,
                    changes: vec![SettingChange {
                        field: "state".into(),
                        old: json!(from.as_str()),
                        new: json!(to.as_str()),
                    }],
                });
            }
        }
    }
    let scheduled = SaleSettings::new(
        SaleChanges {
            opens_at: Some(now + TimeDelta::days(1)),
            ..SaleChanges::default()
        },
        now,
    )
    .unwrap();
    let (updated, changes) = scheduled
        .change(
            SaleChanges {
                opens_at: Some(now + TimeDelta::days(2)),
                admission_rate: Some(SaleSettings::MAX_ADMISSION_RATE),
                active_capacity: Some(SaleSettings::MAX_ACTIVE_CAPACITY),
                max_seats_per_fan: Some(SaleSettings::MAX_SEATS_PER_FAN),
            },
            now,
        )
        .unwrap();
    events.push(DomainEvent::SaleChanged {
        concert_id: concert,
        action: "update".into(),
        state: updated.state_at(now),
        changes,
    });
    events
}

/// An event as the outbox writes it (`infra::db::outbox::append`) and the relay
/// publishes it: key, headers `event-id` and `event-type`, and the JSON envelope.
fn published(event: DomainEvent, version: u16, at: DateTime<Utc>) -> (String, Value, Value) {
    let envelope = EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        version,
        occurred_at: at,
        event,
    };
    let key = envelope.event.key();
    let headers = json!({"event-id": envelope.id, "event-type": envelope.event.event_type()});
    let payload = serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
    (key, headers, payload)
}

#[test]
fn every_event_the_code_publishes_matches_its_message_in_the_document() {
    let doc = document();
    let messages = channel_messages(&doc, EVENTS);
    // Fractional seconds (as the clock gives) and whole ones (as chrono writes them).
    let now = Utc::now();
    let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let (mut enums, mut failures) = (EnumUse::default(), Vec::new());
    for event in every_event(now) {
        let name = event.event_type();
        let Some(message) = messages.get(name) else {
            failures.push(format!(
                "{name}: the code publishes it; the document has no such message"
            ));
            continue;
        };
        for (i, &version) in versions(&event).iter().enumerate() {
            let at = if i % 2 == 0 { now } else { whole };
            let (key, headers, payload) = published(event.clone(), version, at);
            let key = Value::String(key);
            let parts = [
                ("/payload", &payload),
                ("/headers", &headers),
                ("/bindings/kafka/key", &key),
            ];
            for (part, value) in parts {
                check(message, name, part, value, &mut enums, &mut failures);
            }
        }
    }
    failures.extend(enums.unused());
    assert!(
        failures.is_empty(),
        "asyncapi.yaml disagrees with the events the code publishes:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_document_lists_exactly_the_event_types_the_code_has() {
    let doc = document();
    let now = Utc::now();
    let samples = every_event(now);
    let sampled: BTreeSet<String> = samples.iter().map(|e| e.event_type().to_owned()).collect();
    assert_eq!(
        sampled,
        serde_event_types(),
        "every_event() must sample every DomainEvent variant"
    );
    let messages = channel_messages(&doc, EVENTS);
    for (name, message) in &messages {
        assert_eq!(
            message["payload"]["properties"]["type"]["const"], *name,
            "asyncapi.yaml: message {name} of channel {EVENTS} must carry type {name}"
        );
        assert_eq!(
            message["name"], *name,
            "asyncapi.yaml: message {name}'s name"
        );
    }
    let documented: BTreeSet<String> = messages.into_keys().collect();
    assert_eq!(documented, sampled, "the event types of asyncapi.yaml");
    let current: BTreeSet<String> = samples
        .iter()
        .filter(|e| versions(e).contains(&SCHEMA_VERSION))
        .map(|e| e.event_type().to_owned())
        .collect();
    assert_eq!(
        operation_messages(&doc, "publishEvents"),
        current,
        "the relay publishes the event types of the current schema version"
    );
    assert_eq!(
        operation_messages(&doc, "consumeSales"),
        sampled,
        "the sales consumer reads every event type, of every version"
    );
}

#[test]
fn the_kafka_topic_and_group_are_the_defaults_of_the_settings() {
    let doc = document();
    let settings = infra::Settings::default();
    let channel = &doc["channels"][EVENTS];
    assert_eq!(channel["address"], settings.kafka_topic.as_str());
    let binding = &channel["bindings"]["kafka"];
    assert_eq!(binding["topic"], settings.kafka_topic.as_str());
    assert_eq!(binding["partitions"], settings.kafka_partitions);
    assert_eq!(binding["replicas"], settings.kafka_replication_factor.get());
    assert_eq!(
        doc["operations"]["consumeSales"]["bindings"]["kafka"]["groupId"]["default"],
        settings.kafka_consumer_group.as_str()
    );
    let (_, port) = settings.kafka_brokers.rsplit_once(':').unwrap();
    let host = doc["servers"]["kafka"]["host"].as_str().unwrap();
    assert!(host.ends_with(&format!(":{port}")), "Kafka server {host}");
}

/// Every message the socket sends, with and without its optional values.
fn every_socket_message(now: DateTime<Utc>) -> Vec<ServerMessage> {
    // A new message does not compile here until it is listed, with samples.
    let listed = |message: ServerMessage| match message {
        ServerMessage::Position { .. }
        | ServerMessage::Admitted { .. }
        | ServerMessage::Expired
        | ServerMessage::Prequeue { .. }
        | ServerMessage::Closed
        | ServerMessage::SoldOut => message,
    };
    vec![
        ServerMessage::Prequeue {
            opens_at: Some(now),
        },
        ServerMessage::Prequeue { opens_at: None },
        ServerMessage::Position {
            position: 1,
            people_ahead: 0,
            eta_seconds: Some(0),
        },
        ServerMessage::Position {
            position: 12,
            people_ahead: 11,
            eta_seconds: None,
        },
        ServerMessage::Admitted {
            active_until: DateTime::from_timestamp(1_700_000_000, 0),
        },
        ServerMessage::Admitted { active_until: None },
        ServerMessage::Expired,
        ServerMessage::Closed,
        ServerMessage::SoldOut,
    ]
    .into_iter()
    .map(listed)
    .collect()
}

#[test]
fn every_socket_message_matches_its_message_in_the_document() {
    let doc = document();
    let messages = channel_messages(&doc, WAITING_ROOM);
    let (mut enums, mut failures) = (EnumUse::default(), Vec::new());
    let mut sent = BTreeSet::new();
    for message in every_socket_message(Utc::now()) {
        // As the socket writes it: one JSON text frame.
        let payload: Value =
            serde_json::from_str(&serde_json::to_string(&message).unwrap()).unwrap();
        let name = payload["type"].as_str().unwrap().to_owned();
        sent.insert(name.clone());
        match messages.get(&name) {
            Some(documented) => check(
                documented,
                &name,
                "/payload",
                &payload,
                &mut enums,
                &mut failures,
            ),
            None => failures.push(format!(
                "{name}: the socket sends it; the document has no such message"
            )),
        }
    }
    failures.extend(enums.unused());
    for (name, message) in &messages {
        if message["payload"]["properties"]["type"]["const"] != *name {
            failures.push(format!("{name}: its payload's `type` must be {name}"));
        }
    }
    let documented: BTreeSet<String> = messages.into_keys().collect();
    if documented != sent {
        failures.push(format!(
            "the document's socket messages {documented:?}, the code's {sent:?}"
        ));
    }
    if operation_messages(&doc, "followWaitingRoom") != sent {
        failures.push("followWaitingRoom must list every socket message".into());
    }
    assert!(
        failures.is_empty(),
        "asyncapi.yaml disagrees with the waiting-room socket:\n{}",
        failures.join("\n")
    );
}

/// The examples are what a consumer or a page would see: each validates, each event
/// example is one the code decodes and writes back unchanged, and its headers agree
/// with its envelope.
#[test]
fn the_documents_examples_are_messages_the_code_reads_and_writes() {
    let doc = document();
    let mut failures = Vec::new();
    for channel in [EVENTS, WAITING_ROOM] {
        for (name, message) in channel_messages(&doc, channel) {
            let examples = message["examples"].as_array().cloned().unwrap_or_default();
            if examples.is_empty() {
                failures.push(format!("{name}: no example"));
            }
            for (i, example) in examples.iter().enumerate() {
                let at = format!("{name}/examples/{i}");
                let payload = &example["payload"];
                failures.extend(violations(
                    &message["payload"],
                    &format!("{at}/payload"),
                    payload,
                ));
                if channel != EVENTS {
                    continue;
                }
                let headers = &example["headers"];
                failures.extend(violations(
                    &message["headers"],
                    &format!("{at}/headers"),
                    headers,
                ));
                if headers["event-id"] != payload["id"] || headers["event-type"] != payload["type"]
                {
                    failures.push(format!(
                        "{at}: headers {headers} disagree with the envelope"
                    ));
                }
                match serde_json::from_value::<EventEnvelope>(payload.clone()) {
                    Ok(envelope) => {
                        let written = serde_json::to_value(&envelope).unwrap();
                        if written != *payload {
                            failures.push(format!("{at}: the code writes it back as {written}"));
                        }
                    }
                    Err(e) => failures.push(format!("{at}: the consumer cannot decode it: {e}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "asyncapi.yaml's examples:\n{}",
        failures.join("\n")
    );
}
