//! Placeholder product images, drawn as SVG from the product's id and name: no image
//! files to ship or store, and each product looks different.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{AppError, AppState, PageError};

pub use storefront_contract::markup::escape;

/// The placeholder image of a product: a gradient in a hue of its own, its initials
/// and a simple shape.
pub fn placeholder(id: i64, name: &str) -> String {
    let h = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let hue = h % 360;
    let hue2 = (hue + 40) % 360;
    let initials: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .filter(|c| c.is_alphabetic())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    let shape = match (h >> 20) % 3 {
        0 => r##"<circle cx="300" cy="70" r="46" fill="#fff" fill-opacity=".18"/>"##,
        1 => {
            r##"<rect x="250" y="26" width="90" height="90" rx="14" fill="#fff" fill-opacity=".18"/>"##
        }
        _ => r##"<polygon points="300,20 350,110 250,110" fill="#fff" fill-opacity=".18"/>"##,
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" role="img" aria-label="{label}"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="hsl({hue},65%,55%)"/><stop offset="1" stop-color="hsl({hue2},70%,38%)"/></linearGradient></defs><rect width="400" height="300" fill="url(#g)"/>{shape}<text x="200" y="185" font-family="system-ui,sans-serif" font-size="96" font-weight="700" fill="#fff" text-anchor="middle">{initials}</text></svg>"##,
        label = escape(name),
        initials = escape(&initials),
    )
}

/// `GET /products/{id}/image.svg`
pub async fn product_image(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, PageError> {
    let Path(id) = id?;
    let product = state
        .store
        .product(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no product has id {id}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        placeholder(product.id, &product.name),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_escape_names() {
        let svg = placeholder(7, "<Tom & Jerry>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("&lt;Tom &amp; Jerry&gt;"));
        assert!(!svg.contains("<Tom"));
        assert_ne!(placeholder(1, "A"), placeholder(2, "A"));
    }
}
