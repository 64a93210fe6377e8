//! The google-cloud APIs' paged listings, read to the end.

use labctl_provider_api::ProviderError;

/// Every item of a paged listing: `page` fetches the page of a token (the first: `""`)
/// and gives its items and the next token (`""` after the last).
pub async fn every_page<T, F, Fut>(mut page: F) -> Result<Vec<T>, ProviderError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), ProviderError>>,
{
    let (mut all, mut token) = (vec![], String::new());
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}
