//! Validated names and identifiers: tenant, product id, SKU code, slug,
//! category and region. Each `parse` states the rule once; a value of these
//! types is valid by construction.

use std::{fmt, str::FromStr};

use serde::Serialize;
use uuid::Uuid;

use super::validation::{kebab, length};

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validate `s`; the error is a message for a field violation.
            pub fn parse(s: &str) -> Result<$name, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s)?;
                Ok($name(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::parse(s)
            }
        }
    };
}

/// Longest tenant id accepted.
pub const TENANT_ID_MAX_CHARS: usize = 64;
/// Longest SKU code accepted.
pub const SKU_ID_MAX_CHARS: usize = 64;
/// Longest slug accepted.
pub const SLUG_MAX_CHARS: usize = 120;
/// Longest category slug accepted.
pub const CATEGORY_MAX_CHARS: usize = 64;
/// Longest region name accepted.
pub const REGION_MAX_CHARS: usize = 32;

/// Only ASCII letters, digits, `-`, `_` and `.`.
fn ascii_ident(s: &str) -> Result<(), String> {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err("may contain only ASCII letters, digits, '-', '_' and '.'".into())
    }
}

text_newtype!(
    /// The tenant a request acts for: ASCII letters, digits, `-`, `_` and `.`.
    TenantId,
    |s| {
        length(s, 1, TENANT_ID_MAX_CHARS)?;
        ascii_ident(s)
    }
);

text_newtype!(
    /// A SKU code, e.g. `TWK-0001-HC`: the merchant's identifier of a
    /// sellable variant, unique per tenant. It is the `sku_id` on every wire.
    SkuId,
    |s| {
        length(s, 1, SKU_ID_MAX_CHARS)?;
        ascii_ident(s)
    }
);

text_newtype!(
    /// A product's URL name, unique per tenant; the seed's idempotency key.
    Slug,
    |s| kebab(s, SLUG_MAX_CHARS)
);

text_newtype!(
    /// A category slug, e.g. `books`.
    Category,
    |s| kebab(s, CATEGORY_MAX_CHARS)
);

text_newtype!(
    /// A sales region, e.g. `eu` or `eu-west`.
    Region,
    |s| kebab(s, REGION_MAX_CHARS)
);

impl TenantId {
    /// The tenant of the demo and of requests that carry none.
    pub const DEFAULT: &'static str = "default";
}

impl Default for TenantId {
    fn default() -> TenantId {
        TenantId(TenantId::DEFAULT.to_string())
    }
}

/// A product's id: a UUID (v7 from the id port in production).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ProductId(pub Uuid);

impl ProductId {
    pub fn parse(s: &str) -> Result<ProductId, String> {
        Uuid::parse_str(s)
            .map(ProductId)
            .map_err(|_| "must be a UUID".to_string())
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert_eq!(TenantId::default().as_str(), "default");
        assert!(TenantId::parse("acme-eu_1.prod").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a b").is_err());
        assert!(TenantId::parse(&"t".repeat(65)).is_err());
    }

    #[test]
    fn sku_ids_allow_the_seed_codes() {
        assert!(SkuId::parse("TWK-0001-HC").is_ok());
        assert!(SkuId::parse("ALS-0002-NVY").is_ok());
        assert!(SkuId::parse("a/b").is_err());
        assert!(SkuId::parse("").is_err());
    }

    #[test]
    fn product_ids_are_uuids() {
        let id = Uuid::now_v7();
        assert_eq!(ProductId::parse(&id.to_string()), Ok(ProductId(id)));
        assert!(ProductId::parse("nope").is_err());
    }

    #[test]
    fn slugs_categories_regions_are_kebab_case() {
        assert!(Slug::parse("alder-lambswool-scarf-0002").is_ok());
        assert!(Category::parse("Books").is_err());
        assert!(Region::parse("eu-west").is_ok());
        assert!(Region::parse(&"r".repeat(33)).is_err());
    }
}
