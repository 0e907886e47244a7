//! Serde for the `Pod` map values a [`super::Layout`] holds (`RangeValue`,
//! `RangePolicy`): their bytes as hex, so the saved layout is exactly what the
//! maps hold, without serde on the `no_std` shared types.

use bytemuck::Pod;
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

pub fn serialize<T: Pod, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode(bytemuck::bytes_of(value)))
}

pub fn deserialize<'de, T: Pod, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    let bytes = decode(&text).ok_or_else(|| D::Error::custom("not a hex string"))?;
    bytemuck::try_pod_read_unaligned(&bytes).map_err(|_| {
        D::Error::custom(format!(
            "{} bytes where {} were expected",
            bytes.len(),
            size_of::<T>()
        ))
    })
}

/// For `Vec<(u32, T)>`: a list of `[id, "hex"]` pairs.
pub mod pairs {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<T: Pod, S: Serializer>(
        pairs: &[(u32, T)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(pairs.len()))?;
        for (id, value) in pairs {
            seq.serialize_element(&(id, encode(bytemuck::bytes_of(value))))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, T: Pod, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(u32, T)>, D::Error> {
        Vec::<(u32, String)>::deserialize(deserializer)?
            .into_iter()
            .map(|(id, text)| {
                let bytes = decode(&text).ok_or_else(|| D::Error::custom("not a hex string"))?;
                let value = bytemuck::try_pod_read_unaligned(&bytes)
                    .map_err(|_| D::Error::custom("wrong length"))?;
                Ok((id, value))
            })
            .collect()
    }
}

fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use vip_common::RangeValue;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let value = RangeValue {
            range_id: 7,
            per_vip_mode: 1,
            dense_base: 0x0102_0304,
            network_v4_host: 0xc000_0200,
            epoch: 9,
            policy_id: 3,
        };
        let text = super::encode(bytemuck::bytes_of(&value));
        assert_eq!(text.len(), 48);
        let bytes = super::decode(&text).unwrap();
        assert_eq!(bytemuck::pod_read_unaligned::<RangeValue>(&bytes), value);
        assert_eq!(super::decode("0g"), None);
        assert_eq!(super::decode("abc"), None);
    }
}
