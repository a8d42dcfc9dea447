//! Newtype identifiers, so a tenant id can never be passed where a session id
//! belongs. Both are short, URL-safe strings.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {value:?}: use 1 to 64 characters from A-Z a-z 0-9 _ -")]
pub struct InvalidId {
    pub value: String,
}

fn check(value: &str) -> Result<(), InvalidId> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidId {
            value: value.to_owned(),
        })
    }
}

/// The schema every id shares: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
fn id_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some("^[A-Za-z0-9_-]+$"))
        .into()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                check(&value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// In the OpenAPI document: a string of the id's alphabet, inline.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A tenant (organization): the unit of isolation and of anti-ban budgets.
    TenantId
);
id_type!(
    /// One WhatsApp session (one linked number) of a tenant.
    SessionId
);

id_type!(
    /// A user account (an admin, or a user of one tenant).
    UserId
);

impl UserId {
    /// A fresh random user id (`u_` + 32 hex digits).
    pub fn generate() -> Self {
        Self(format!("u_{}", uuid::Uuid::new_v4().simple()))
    }
}

impl SessionId {
    /// A fresh random session id (`s_` + 32 hex digits).
    pub fn generate() -> Self {
        Self(format!("s_{}", uuid::Uuid::new_v4().simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_url_safe_strings_only() {
        assert!(TenantId::new("clinic-1_A").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("a/b").is_err());
        assert!(TenantId::new("x".repeat(65)).is_err());
        assert!(SessionId::new(SessionId::generate().to_string()).is_ok());
    }

    #[test]
    fn ids_are_validated_when_deserialized() {
        let bad: Result<TenantId, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
        let good: TenantId = serde_json::from_str("\"t1\"").expect("valid id");
        assert_eq!(good.as_str(), "t1");
    }
}
