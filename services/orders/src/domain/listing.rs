//! Listing orders: how long a page is.

/// Orders per page when the caller asks for no particular size.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most orders on one page; a larger request gets this many.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The page size for a requested one: 0 (unset) is [`DEFAULT_PAGE_SIZE`],
/// anything above [`MAX_PAGE_SIZE`] is [`MAX_PAGE_SIZE`].
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_is_the_default_and_large_requests_are_capped() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1), 1);
        assert_eq!(page_size(MAX_PAGE_SIZE), MAX_PAGE_SIZE);
        assert_eq!(page_size(u32::MAX), MAX_PAGE_SIZE);
    }
}
