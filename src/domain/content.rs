//! What a turn says: plain text, or a list of parts (text, images, audio, files), in
//! OpenAI's chat format, stored as given.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A message's `content`: a string or a list of parts.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

/// One content part. Unknown keys inside a part are ignored, as OpenAI ignores them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    InputAudio {
        input_audio: InputAudio,
    },
    File {
        file: FileData,
    },
    /// Only in an assistant's content.
    Refusal {
        refusal: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// An `https://…` URL or a `data:image/…;base64,…` URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    Auto,
    Low,
    High,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputAudio {
    /// Base64-encoded audio.
    pub data: String,
    /// `wav`, `mp3`, …
    pub format: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileData {
    /// A `data:…;base64,…` URL of the file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// A file uploaded to the provider beforehand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl Content {
    /// The text a text-only reader sees: the text itself, or the text parts joined by
    /// line breaks (images, audio and files have no text).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(text) => Cow::Borrowed(text),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter_map(|part| match part {
                        Part::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                Cow::Owned(texts.join("\n"))
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(text) => text.is_empty(),
            Content::Parts(parts) => parts.is_empty(),
        }
    }

    /// Bytes of the content as it is sent, for size limits.
    pub fn byte_len(&self) -> usize {
        match self {
            Content::Text(text) => text.len(),
            Content::Parts(parts) => parts.iter().map(Part::byte_len).sum(),
        }
    }
}

impl Part {
    fn byte_len(&self) -> usize {
        match self {
            Part::Text { text } => text.len(),
            Part::ImageUrl { image_url } => image_url.url.len(),
            Part::InputAudio { input_audio } => input_audio.data.len(),
            Part::File { file } => [&file.file_data, &file.file_id, &file.filename]
                .iter()
                .map(|field| field.as_ref().map_or(0, String::len))
                .sum(),
            Part::Refusal { refusal } => refusal.len(),
        }
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_string())
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => s.serialize_str(text),
            Content::Parts(parts) => parts.serialize(s),
        }
    }
}

/// Decoded by hand rather than as an untagged enum: serde buffers untagged input, and
/// plain text content is on the bulk import's hot path. `null` (an assistant turn that
/// only calls tools) is empty text.
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> de::Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Content, E> {
                Ok(Content::Text(text.to_string()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Content, E> {
                Ok(Content::Text(text))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::default())
            }

            fn visit_none<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content::default())
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
                Vec::<Part>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(Content::Parts)
            }
        }

        d.deserialize_any(ContentVisitor)
    }
}

/// The media type and the base64 payload of a `data:` URL.
pub fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (media_type, data) = rest.split_once(";base64,")?;
    Some((media_type, data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn text_and_parts_round_trip_as_given() {
        let cases = [
            r#""hello""#,
            r#"[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}]"#,
            r#"[{"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}}]"#,
            r#"[{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE","filename":"a.pdf"}}]"#,
            r#"[{"type":"refusal","refusal":"no"}]"#,
        ];
        for json in cases {
            let content: Content = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&content).unwrap(), json);
        }
    }

    #[test]
    fn null_is_empty_text_and_unknown_part_types_are_refused() {
        let content: Content = serde_json::from_str("null").unwrap();
        assert_eq!(content, Content::default());
        assert!(serde_json::from_str::<Content>(r#"[{"type":"video","url":"x"}]"#).is_err());
        assert!(serde_json::from_str::<Content>("7").is_err());
    }

    #[test]
    fn text_view_joins_text_parts_only() {
        let content: Content = serde_json::from_str(
            r#"[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"b"}]"#,
        )
        .unwrap();
        assert_eq!(content.text(), "a\nb");
    }

    #[test]
    fn data_urls_split_into_media_type_and_payload() {
        assert_eq!(
            data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(data_url("https://example.com/a.png"), None);
    }
}
