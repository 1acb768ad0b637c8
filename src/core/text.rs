//! Values that are written as text (`linux/arm64`, `docker://reg/app:1`, `400KB`): on the wire
//! and in stored records they are the same text a user types, read back by the same parser.

/// Implements `Serialize` by `Display` and `Deserialize` by `FromStr` for a type, so its JSON
/// is the text the command line takes and a bad value is refused with the parser's message.
macro_rules! serde_as_text {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use serde_as_text;
