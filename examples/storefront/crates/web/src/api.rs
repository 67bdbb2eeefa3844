//! The JSON API: the same operations as the pages. Authenticate with the token that
//! `POST /api/signup` or `POST /api/login` returns: `Authorization: Bearer <token>`.
//! Errors are `{"error": {"code": "...", "message": "...", "field": "..."}}` with a
//! 4xx status for anything the client can fix; 429 and 503 carry `Retry-After`.
//! Sign-up and login are limited per client address and per account
//! ([`super::signin`]). A request signed in with the session cookie instead of a
//! bearer token must send JSON or an `X-Requested-With` header ([`super::csrf`]).
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `GET /api/categories` | | categories |
//! | `GET /api/products?category=&page=&per_page=` | | a page of products |
//! | `GET /api/products/{id}` | | a product |
//! | `GET /api/search?q=&page=&per_page=` | | a page of products |
//! | `POST /api/signup` | `{name, email, password}` | 201 `{token, user}` |
//! | `POST /api/login` | `{email, password}` | `{token, user}` |
//! | `POST /api/logout` | | 204 |
//! | `GET /api/me` | | the user |
//! | `GET /api/cart` | | the cart |
//! | `POST /api/cart/items` | `{product_id, quantity}` | the cart (units added) |
//! | `PUT /api/cart/items/{product_id}` | `{quantity}` | the cart (0 removes) |
//! | `DELETE /api/cart/items/{product_id}` | | the cart |
//! | `POST /api/checkout` | | 201 the order |
//! | `GET /api/orders`, `GET /api/orders/{id}` | | orders, an order |

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{self, MaybeUser};
use super::error::{ApiError, AppError};
use super::html::{valid_category, valid_id, valid_page, valid_quantity, valid_query};
use super::signin::{self, ClientAddr};
use super::{now, AppState};
use storefront_storage::{Cart, Category, Order, OrderSummary, Page, Product, ProductPage, User};

type ApiResult<T> = Result<T, ApiError>;

/// The API's routes, to nest under `/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/categories", get(categories))
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/search", get(search))
        .route("/signup", post(signup))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/cart", get(cart))
        .route("/cart/items", post(cart_add))
        .route(
            "/cart/items/{product_id}",
            put(cart_set).delete(cart_remove),
        )
        .route("/checkout", post(checkout))
        .route("/orders", get(orders))
        .route("/orders/{id}", get(order))
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError(AppError::MethodNotAllowed(format!(
                "/api{} does not take {method} requests (the Allow header lists the methods it takes)",
                uri.path()
            )))
        })
        .fallback(not_found)
}

/// Any other address under `/api`: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError(AppError::NotFound("no such API route".into()))
}

fn signed_in(user: Option<User>) -> Result<User, AppError> {
    user.ok_or(AppError::Unauthorized)
}

/// Query of the product listings.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<u32>,
    per_page: Option<u32>,
    category: Option<String>,
    q: Option<String>,
}

fn api_page(q: &ListQuery, default_size: u32) -> Result<Page, AppError> {
    let size = q.per_page.unwrap_or(default_size);
    if !(1..=100).contains(&size) {
        return Err(AppError::invalid(
            "per_page",
            "per_page must be between 1 and 100",
        ));
    }
    valid_page(q.page, size)
}

async fn categories(State(state): State<AppState>) -> ApiResult<Json<Vec<Category>>> {
    Ok(Json(state.store.categories().await?))
}

async fn products(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<ProductPage>> {
    let Query(query) = query?;
    let page = api_page(&query, state.config.page_size)?;
    let category = match query.category.as_deref() {
        Some(slug) => {
            let slug = valid_category(slug)?;
            if !state
                .store
                .categories()
                .await?
                .iter()
                .any(|c| c.slug == slug)
            {
                return Err(AppError::NotFound(format!("there is no category \"{slug}\"")).into());
            }
            Some(slug)
        }
        None => None,
    };
    Ok(Json(state.store.list_products(category, page).await?))
}

async fn product(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Product>> {
    let Path(id) = id?;
    let product = state
        .store
        .product(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no product has id {id}")))?;
    Ok(Json(product))
}

async fn search(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<ProductPage>> {
    let Query(query) = query?;
    let page = api_page(&query, state.config.page_size)?;
    let q = valid_query(query.q.as_deref().unwrap_or(""))?;
    if q.is_empty() {
        return Err(AppError::invalid("q", "give some words to search for: ?q=...").into());
    }
    Ok(Json(state.store.search(q, page).await?))
}

/// `POST /api/signup` body.
#[derive(Debug, Deserialize)]
pub struct SignupBody {
    name: String,
    email: String,
    password: String,
}

/// A new session.
#[derive(Debug, Serialize)]
pub struct SessionBody {
    token: String,
    user: User,
}

async fn new_session(state: &AppState, user: User) -> Result<SessionBody, AppError> {
    let token = auth::new_token();
    state
        .store
        .create_session(&token, user.id, now() + state.config.session_ttl_secs)
        .await?;
    Ok(SessionBody { token, user })
}

async fn signup(
    State(state): State<AppState>,
    addr: ClientAddr,
    body: Result<Json<SignupBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<SessionBody>)> {
    let Json(body) = body?;
    let new_user =
        signin::new_account(&state, addr, &body.name, &body.email, &body.password).await?;
    let user = state.store.create_user(&new_user, now()).await?;
    Ok((StatusCode::CREATED, Json(new_session(&state, user).await?)))
}

/// `POST /api/login` body.
#[derive(Debug, Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> ApiResult<Json<SessionBody>> {
    let Json(body) = body?;
    let user = signin::log_in(&state, addr, &body.email, &body.password).await?;
    Ok(Json(new_session(&state, user).await?))
}

async fn logout(
    State(state): State<AppState>,
    MaybeUser(user, token): MaybeUser,
) -> ApiResult<StatusCode> {
    signed_in(user)?;
    if let Some(token) = token {
        state.store.delete_session(&token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(MaybeUser(user, _): MaybeUser) -> ApiResult<Json<User>> {
    Ok(Json(signed_in(user)?))
}

async fn cart(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
) -> ApiResult<Json<Cart>> {
    let user = signed_in(user)?;
    Ok(Json(state.store.cart(user.id).await?))
}

/// `POST /api/cart/items` body.
#[derive(Debug, Deserialize)]
pub struct AddBody {
    product_id: i64,
    quantity: Option<i64>,
}

async fn cart_add(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    body: Result<Json<AddBody>, JsonRejection>,
) -> ApiResult<Json<Cart>> {
    let user = signed_in(user)?;
    let Json(body) = body?;
    let product_id = valid_id("product_id", body.product_id)?;
    let quantity = valid_quantity(body.quantity.unwrap_or(1), 1)?;
    state
        .store
        .add_to_cart(user.id, product_id, quantity)
        .await?;
    Ok(Json(state.store.cart(user.id).await?))
}

/// `PUT /api/cart/items/{product_id}` body.
#[derive(Debug, Deserialize)]
pub struct SetBody {
    quantity: i64,
}

async fn cart_set(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<SetBody>, JsonRejection>,
) -> ApiResult<Json<Cart>> {
    let user = signed_in(user)?;
    let Path(id) = id?;
    let Json(body) = body?;
    let product_id = valid_id("product_id", id)?;
    let quantity = valid_quantity(body.quantity, 0)?;
    state
        .store
        .set_cart_quantity(user.id, product_id, quantity)
        .await?;
    Ok(Json(state.store.cart(user.id).await?))
}

async fn cart_remove(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Cart>> {
    let user = signed_in(user)?;
    let Path(id) = id?;
    let product_id = valid_id("product_id", id)?;
    state
        .store
        .set_cart_quantity(user.id, product_id, 0)
        .await?;
    Ok(Json(state.store.cart(user.id).await?))
}

async fn checkout(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
) -> ApiResult<(StatusCode, Json<Order>)> {
    let user = signed_in(user)?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.checkout(user.id, now()).await?),
    ))
}

async fn orders(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
) -> ApiResult<Json<Vec<OrderSummary>>> {
    let user = signed_in(user)?;
    Ok(Json(state.store.orders(user.id).await?))
}

async fn order(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let user = signed_in(user)?;
    let Path(id) = id?;
    let order = state
        .store
        .order(user.id, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("you have no order #{id}")))?;
    Ok(Json(json!(order)))
}
