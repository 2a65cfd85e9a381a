//! Request values whose schema states the domain's rule while the domain keeps
//! enforcing it. Each parses any value of its JSON type, so a breach is answered
//! by the rule's owner with the rule's own code (`422 INVALID_SEAT_NUMBER`,
//! `INVALID_USER_ID`, ...), as before, rather than a generic `400`; the schema tells
//! generated clients and fuzzers the rule.
//!
//! [`Text`] is a JSON string that must be a JSON string. poem-openapi's `String`
//! also takes numbers and booleans (`"userId": false` becomes the user "false"),
//! which lets a client's type bug through as data; the spec says `string`, so the
//! API holds to it.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

/// What a string must look like, as the domain checks it.
pub trait TextRule: Send + Sync + 'static {
    /// An ECMA-262 pattern the whole string must match (anchor it for "whole").
    const PATTERN: &'static str;
    const MAX_LENGTH: usize;
}

/// Any string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyText;

impl TextRule for AnyText {
    const PATTERN: &'static str = "";
    const MAX_LENGTH: usize = 0;
}

/// A user id (`domain::UserId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIdText;

impl TextRule for UserIdText {
    const PATTERN: &'static str = "^[A-Za-z0-9._@-]{1,64}$";
    const MAX_LENGTH: usize = domain::UserId::MAX_LEN;
}

/// A grade name (`domain::GradeName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradeText;

impl TextRule for GradeText {
    const PATTERN: &'static str = "^[A-Za-z0-9_-]{1,32}$";
    const MAX_LENGTH: usize = domain::GradeName::MAX_LEN;
}

/// A concert's title or artist, or a venue: not blank, at most 200 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameText;

impl TextRule for NameText {
    const PATTERN: &'static str = "\\S";
    const MAX_LENGTH: usize = domain::NewConcert::MAX_TEXT;
}

/// An `Idempotency-Key` (`domain::IdempotencyKey`): 1-64 visible ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyKeyText;

impl TextRule for IdempotencyKeyText {
    const PATTERN: &'static str = "^[!-~]{1,64}$";
    const MAX_LENGTH: usize = domain::IdempotencyKey::MAX_LEN;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<R = AnyText>(pub String, PhantomData<R>);

impl<R> Text<R> {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into(), PhantomData)
    }
}

impl<R: TextRule> Type for Text<R> {
    const IS_REQUIRED: bool = true;

    type RawValueType = String;

    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        if R::PATTERN.is_empty() {
            String::name()
        } else {
            format!("string({})", R::PATTERN).into()
        }
    }

    fn schema_ref() -> MetaSchemaRef {
        if R::PATTERN.is_empty() {
            return String::schema_ref();
        }
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some(R::PATTERN.to_owned()),
            max_length: Some(R::MAX_LENGTH),
            min_length: Some(1),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<R: TextRule> ParseFromJSON for Text<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Ok(Self::new(s)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<R: TextRule> poem_openapi::types::ParseFromParameter for Text<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self::new(value))
    }
}

impl<R: TextRule> ToJSON for Text<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl<R> From<&str> for Text<R> {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

// The request values of the API, bounded by the domain's own constants.
#[expect(
    clippy::cast_possible_wrap,
    reason = "every bound is far below i64::MAX"
)]
mod bounds {
    use domain::{CancellationPolicy, ChargeAmount, Points, SeatChoice, SeatNo};

    pub const SEAT_NO: i64 = SeatNo::MAX as i64;
    pub const PRICE: i64 = Points::MAX_PRICE.0 as i64;
    pub const TOP_UP: i64 = ChargeAmount::MAX.0 as i64;
    pub const SEATS_PER_ORDER: i64 = SeatChoice::MAX_SEATS as i64;
    pub const CUTOFF_HOURS: i64 = CancellationPolicy::MAX_CUTOFF_HOURS as i64;
}

/// A seat number (`domain::SeatNo`).
pub type SeatNumber = Int<1, { bounds::SEAT_NO }>;
/// The seats of one order, each once.
pub type SeatNumbers = DistinctInts<1, { bounds::SEAT_NO }, { domain::SeatChoice::MAX_SEATS }>;
/// How many seats of a grade one order asks for.
pub type Quantity = Int<1, { bounds::SEATS_PER_ORDER }>;
/// A grade's price in points.
pub type GradePrice = Int<1, { bounds::PRICE }>;
/// A seat's price in points when one price covers a schedule (free seats allowed).
pub type SeatPrice = Int<0, { bounds::PRICE }>;
/// Points added to a wallet in one top-up (`domain::ChargeAmount`).
pub type TopUp = Int<1, { bounds::TOP_UP }>;
/// Hours before a show that cancelling closes.
pub type CutoffHours = Int<0, { bounds::CUTOFF_HOURS }>;
/// A cancellation fee in percent of the order's total.
pub type FeePercent = Int<0, 100>;

/// A whole number the domain accepts from `MIN` to `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int<const MIN: i64, const MAX: i64>(pub i64);

#[expect(
    clippy::cast_precision_loss,
    reason = "the bounds are far below 2^53, exact as f64"
)]
fn int_schema(min: i64, max: i64) -> MetaSchema {
    MetaSchema {
        minimum: Some(min as f64),
        maximum: Some(max as f64),
        ..MetaSchema::new_with_format("integer", "int64")
    }
}

impl<const MIN: i64, const MAX: i64> Type for Int<MIN, MAX> {
    const IS_REQUIRED: bool = true;

    type RawValueType = i64;

    type RawElementValueType = i64;

    fn name() -> Cow<'static, str> {
        format!("integer({MIN}..={MAX})").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(int_schema(MIN, MAX)))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<const MIN: i64, const MAX: i64> ParseFromJSON for Int<MIN, MAX> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let value = value.unwrap_or_default();
        value
            .as_i64()
            .map(Self)
            .ok_or_else(|| ParseError::expected_type(value))
    }
}

impl<const MIN: i64, const MAX: i64> ToJSON for Int<MIN, MAX> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0))
    }
}

/// A list of 1 to `MAX_ITEMS` distinct whole numbers from `MIN` to `MAX`, as the
/// domain checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctInts<const MIN: i64, const MAX: i64, const MAX_ITEMS: usize>(pub Vec<i64>);

impl<const MIN: i64, const MAX: i64, const MAX_ITEMS: usize> Type
    for DistinctInts<MIN, MAX, MAX_ITEMS>
{
    const IS_REQUIRED: bool = true;

    type RawValueType = Vec<i64>;

    type RawElementValueType = i64;

    fn name() -> Cow<'static, str> {
        format!("[integer({MIN}..={MAX}); 1..={MAX_ITEMS}]").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            items: Some(Box::new(MetaSchemaRef::Inline(Box::new(int_schema(
                MIN, MAX,
            ))))),
            min_items: Some(1),
            max_items: Some(MAX_ITEMS),
            unique_items: Some(true),
            ..MetaSchema::new("array")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.0.iter())
    }
}

impl<const MIN: i64, const MAX: i64, const MAX_ITEMS: usize> ParseFromJSON
    for DistinctInts<MIN, MAX, MAX_ITEMS>
{
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Array(items) => items
                .into_iter()
                .map(|item| item.as_i64().ok_or_else(|| ParseError::expected_type(item)))
                .collect::<Result<_, _>>()
                .map(Self),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl<const MIN: i64, const MAX: i64, const MAX_ITEMS: usize> ToJSON
    for DistinctInts<MIN, MAX, MAX_ITEMS>
{
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strings_parse() {
        let ann: Option<Text> = Text::parse_from_json(Some(Value::String("ann".into()))).ok();
        assert_eq!(ann, Some(Text::from("ann")));
        assert!(Text::<AnyText>::parse_from_json(Some(Value::Bool(false))).is_err());
        assert!(Text::<AnyText>::parse_from_json(Some(serde_json::json!(7))).is_err());
        assert!(Text::<AnyText>::parse_from_json(None).is_err());
    }

    /// The schema states the rule; the value still parses, so the domain answers a
    /// breach with its own code.
    #[test]
    fn rules_are_stated_in_the_schema_and_left_to_the_domain() {
        let MetaSchemaRef::Inline(seat) = SeatNumber::schema_ref() else {
            panic!("inline")
        };
        assert_eq!((seat.minimum, seat.maximum), (Some(1.0), Some(100_000.0)));
        assert_eq!(
            SeatNumber::parse_from_json(Some(serde_json::json!(100_001))).ok(),
            Some(Int(100_001))
        );
        assert!(SeatNumber::parse_from_json(Some(serde_json::json!(1.5))).is_err());
        assert!(SeatNumber::parse_from_json(Some(serde_json::json!("7"))).is_err());

        let MetaSchemaRef::Inline(seats) = SeatNumbers::schema_ref() else {
            panic!("inline")
        };
        assert_eq!(
            (seats.min_items, seats.max_items, seats.unique_items),
            (Some(1), Some(100), Some(true))
        );
        assert_eq!(
            SeatNumbers::parse_from_json(Some(serde_json::json!([3, 3]))).ok(),
            Some(DistinctInts(vec![3, 3]))
        );
        assert!(SeatNumbers::parse_from_json(Some(serde_json::json!([3, "4"]))).is_err());

        let MetaSchemaRef::Inline(user) = Text::<UserIdText>::schema_ref() else {
            panic!("inline")
        };
        assert_eq!(user.pattern.as_deref(), Some(UserIdText::PATTERN));
        assert_eq!(user.max_length, Some(64));
    }
}
