//! Strict decoding of JSON request bodies and import items.
//!
//! serde's derived structs also accept a JSON array, filling the fields by position
//! (`["hello", null]` would be a send of "hello"), and its messages name Rust types
//! (`expected struct CreateSession`). [`Strict`] wraps a deserializer at every depth: a
//! struct is read only from a JSON object, and what it expects is said in JSON's words.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::error::{DomainError, from_json_error};

/// Decodes `bytes` as one JSON value of type `T`, strictly; the error names the field at
/// fault (`messages[2].role`) when one is.
pub fn decode<'a, T: de::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DomainError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(Strict(&mut de)).map_err(from_json_error)?;
    de.end()
        .map_err(|e| DomainError::malformed(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Like [`decode`] without tracking the path: faster, for the common case of a good body.
pub fn decode_fast<'a, T: de::Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(Strict(&mut de)).ok()?;
    de.end().ok().map(|()| value)
}

/// A deserializer whose structs accept objects only (see the module comment).
pub struct Strict<D>(pub D);

/// What a wrapped visitor stands for, to say so in JSON's words.
#[derive(Clone, Copy)]
enum Expected {
    /// Whatever the inner visitor says, unless it names a Rust type (a struct with a
    /// flattened field is read as a map, and says `struct Name`).
    Inner,
    Object,
    OneOf(&'static [&'static str]),
}

struct Wrap<V> {
    inner: V,
    expected: Expected,
}

fn wrap<V>(inner: V) -> Wrap<V> {
    Wrap {
        inner,
        expected: Expected::Inner,
    }
}

struct Seed<S>(S);
struct Seq<A>(A);
struct Map<A>(A);
struct Enum<A>(A);
struct Variant<A>(A);

macro_rules! forward_deserialize {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.0.$method(wrap(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, wrap(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, wrap(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, wrap(v))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, wrap(visitor))
    }

    /// The heart of it: a struct is read as a map, which JSON spells only as an object.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Wrap {
            inner: visitor,
            expected: Expected::Object,
        };
        self.0.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Wrap {
            inner: visitor,
            expected: Expected::OneOf(variants),
        };
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.expected {
            Expected::Inner => {
                let said = Said(&self.inner).to_string();
                if said.starts_with("struct ") {
                    f.write_str("a JSON object")
                } else if said.starts_with("enum ") {
                    f.write_str("one of the documented values")
                } else {
                    f.write_str(&said)
                }
            }
            Expected::Object => f.write_str("a JSON object"),
            Expected::OneOf(names) => {
                let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                write!(f, "one of {}", quoted.join(", "))
            }
        }
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>)
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Map(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Enum(data))
    }
}

/// What a visitor expects, as text.
struct Said<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> std::fmt::Display for Said<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, Variant(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, wrap(v))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Wrap {
            inner: visitor,
            expected: Expected::Object,
        };
        self.0.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        role: Role,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Role {
        User,
        Assistant,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        content: String,
        count: Option<u32>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    fn error(json: &str) -> (String, Option<String>) {
        match decode::<Outer>(json.as_bytes()) {
            Err(DomainError::Invalid { message, field }) => (message, field),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn objects_decode_as_before() {
        let json = r#"{"content": "hi", "count": 2, "items": [{"role": "user"}]}"#;
        let expected = Outer {
            content: "hi".into(),
            count: Some(2),
            items: vec![Inner { role: Role::User }],
        };
        assert_eq!(decode::<Outer>(json.as_bytes()).unwrap(), expected);
        assert_eq!(decode_fast::<Outer>(json.as_bytes()), Some(expected));
    }

    #[test]
    fn arrays_are_not_structs_at_any_depth() {
        for json in [r#"["hello", null, null]"#, r#""text""#, "42", "null"] {
            let (message, field) = error(json);
            assert!(
                message.contains("expected a JSON object"),
                "{json}: {message}"
            );
            assert_eq!(field, None);
            assert!(decode_fast::<Outer>(json.as_bytes()).is_none());
        }
        let (message, field) = error(r#"{"content": "x", "items": [["user"]]}"#);
        assert!(message.contains("expected a JSON object"), "{message}");
        assert_eq!(field.as_deref(), Some("items[0]"));
    }

    #[test]
    fn messages_name_no_rust_type() {
        for json in [
            r#"{"content": "x", "items": [{"role": 7}]}"#,
            r#"{"content": 5}"#,
            r#"{"content": "x", "count": "many"}"#,
            "[]",
        ] {
            let (message, _) = error(json);
            for rust in ["struct", "Outer", "Inner", "enum Role", "u32"] {
                assert!(!message.contains(rust), "{json}: {message}");
            }
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(error(r#"{"count": 1}"#).1.as_deref(), Some("content"));
        let nested = error(r#"{"content": "x", "items": [{}]}"#);
        assert_eq!(nested.1.as_deref(), Some("items[0].role"), "{}", nested.0);
    }
}
