//! The Unleash client API model: what `GET /api/client/features` returns, and the
//! delta events of `GET /api/client/delta`.
//!
//! These types deserialize Unleash's JSON (unknown fields are ignored, as the SDKs do)
//! and serialize back to it. They are the input of compilation
//! ([`Flags::load`](crate::Flags::load)); nothing evaluates them directly.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// A full state: the toggles and the segments they refer to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientFeatures {
    /// Format version (Unleash sends 2).
    #[serde(default)]
    pub version: u32,
    /// The toggles.
    #[serde(default)]
    pub features: Vec<Feature>,
    /// Shared constraint sets that strategies refer to by id.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub segments: Vec<Segment>,
}

/// One toggle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Feature {
    /// The toggle's name, unique in a state.
    pub name: String,
    /// Off means off, whatever the strategies say.
    #[serde(default)]
    pub enabled: bool,
    /// The activation strategies; the toggle is on when any one is (or when there are none).
    #[serde(default, deserialize_with = "null_default")]
    pub strategies: Vec<Strategy>,
    /// The toggle's variants.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<Variant>,
    /// Parent toggles this one depends on.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<Dependency>,
    /// Whether the SDK should emit impression events.
    #[serde(default, deserialize_with = "null_default")]
    pub impression_data: bool,
    /// The project the toggle belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The toggle type (release, experiment, kill-switch, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An activation strategy with its constraints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// `default`, `userWithId`, `flexibleRollout`, ... or a custom strategy's name.
    pub name: String,
    /// Parameters, as strings (numbers and booleans are accepted and kept as text).
    #[serde(default, deserialize_with = "parameters")]
    pub parameters: BTreeMap<String, String>,
    /// Constraints that must all hold.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<Constraint>,
    /// Segment ids whose constraints must all hold too.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segments: Vec<i64>,
    /// Strategy variants, chosen when this strategy is the one that matched.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<Variant>,
}

/// A constraint: `<context field> <operator> <values>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraint {
    /// The context field (`userId`, `currentTime`, or any property name).
    pub context_name: String,
    /// `IN`, `NOT_IN`, `STR_CONTAINS`, `NUM_GT`, `DATE_AFTER`, `SEMVER_EQ`, `REGEX`, `IN_CIDR`, ...
    pub operator: String,
    /// The values for list operators.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<String>,
    /// The value for single-value operators.
    #[serde(
        default,
        deserialize_with = "scalar_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<String>,
    /// Negate the result.
    #[serde(default, deserialize_with = "null_default")]
    pub inverted: bool,
    /// Compare strings ignoring case (string and regex operators).
    #[serde(default, deserialize_with = "null_default")]
    pub case_insensitive: bool,
}

/// A variant of a toggle or strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// The variant's name.
    pub name: String,
    /// Its share of the total weight.
    #[serde(default)]
    pub weight: u32,
    /// `variable` or `fix` (informational: the server computes the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_type: Option<String>,
    /// The context field that keeps a user on one variant (`default` if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    /// The payload handed to the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// Context values that force this variant.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub overrides: Vec<Override>,
}

/// A variant's payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payload {
    /// `string`, `json`, `csv` or `number`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value, as text.
    #[serde(deserialize_with = "scalar")]
    pub value: String,
}

/// Forces a variant for some values of a context field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// The context field.
    pub context_name: String,
    /// The values that select the variant.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A dependency on a parent toggle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    /// The parent's name.
    pub feature: String,
    /// Whether the parent must be on (`true`, the default) or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// When the parent must be on: variants it must resolve to (empty: any).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<String>,
}

/// A named set of constraints shared by strategies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The id strategies refer to.
    pub id: i64,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The constraints.
    #[serde(default, deserialize_with = "null_default")]
    pub constraints: Vec<Constraint>,
}

/// The body of Unleash's delta API: events applied in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The events.
    pub events: Vec<DeltaEvent>,
}

/// One delta event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DeltaEvent {
    /// Replace the whole state.
    #[serde(rename_all = "camelCase")]
    Hydration {
        /// Event id.
        #[serde(default)]
        event_id: i64,
        /// All toggles.
        #[serde(default)]
        features: Vec<Feature>,
        /// All segments.
        #[serde(default, deserialize_with = "null_default")]
        segments: Vec<Segment>,
    },
    /// Add or replace one toggle.
    #[serde(rename_all = "camelCase")]
    FeatureUpdated {
        /// Event id.
        #[serde(default)]
        event_id: i64,
        /// The toggle.
        feature: Feature,
    },
    /// Remove one toggle.
    #[serde(rename_all = "camelCase")]
    FeatureRemoved {
        /// Event id.
        #[serde(default)]
        event_id: i64,
        /// The toggle's name.
        feature_name: String,
        /// Its project.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<String>,
    },
    /// Add or replace one segment.
    #[serde(rename_all = "camelCase")]
    SegmentUpdated {
        /// Event id.
        #[serde(default)]
        event_id: i64,
        /// The segment.
        segment: Segment,
    },
    /// Remove one segment.
    #[serde(rename_all = "camelCase")]
    SegmentRemoved {
        /// Event id.
        #[serde(default)]
        event_id: i64,
        /// The segment's id.
        segment_id: i64,
    },
}

impl ClientFeatures {
    /// Applies delta events in order. Toggles and segments keep their positions when
    /// updated; new ones are appended.
    ///
    /// ```
    /// use scalekit_flags::model::{ClientFeatures, Delta};
    /// let delta: Delta = serde_json::from_str(r#"{"events":[
    ///   {"type":"feature-updated","eventId":1,"feature":{"name":"a","enabled":true}},
    ///   {"type":"feature-removed","eventId":2,"featureName":"a"}]}"#).unwrap();
    /// let mut state = ClientFeatures::default();
    /// state.apply_delta(&delta);
    /// assert!(state.features.is_empty());
    /// ```
    pub fn apply_delta(&mut self, delta: &Delta) {
        for event in &delta.events {
            match event {
                DeltaEvent::Hydration {
                    features, segments, ..
                } => {
                    self.features = features.clone();
                    self.segments = segments.clone();
                }
                DeltaEvent::FeatureUpdated { feature, .. } => {
                    match self.features.iter_mut().find(|f| f.name == feature.name) {
                        Some(slot) => *slot = feature.clone(),
                        None => self.features.push(feature.clone()),
                    }
                }
                DeltaEvent::FeatureRemoved { feature_name, .. } => {
                    self.features.retain(|f| &f.name != feature_name);
                }
                DeltaEvent::SegmentUpdated { segment, .. } => {
                    match self.segments.iter_mut().find(|s| s.id == segment.id) {
                        Some(slot) => *slot = segment.clone(),
                        None => self.segments.push(segment.clone()),
                    }
                }
                DeltaEvent::SegmentRemoved { segment_id, .. } => {
                    self.segments.retain(|s| s.id != *segment_id);
                }
            }
        }
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A JSON scalar kept as text (Unleash sends some numbers as numbers, some as strings).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    B(bool),
    I(i64),
    U(u64),
    F(f64),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::S(s) => s,
            Scalar::B(b) => b.to_string(),
            Scalar::I(i) => i.to_string(),
            Scalar::U(u) => u.to_string(),
            Scalar::F(f) => f.to_string(),
        }
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Scalar::deserialize(d)?.text())
}

fn scalar_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::text))
}

fn parameters<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, Option<Scalar>>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v.map(Scalar::text).unwrap_or_default()))
        .collect())
}
