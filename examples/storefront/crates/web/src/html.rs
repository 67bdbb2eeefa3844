//! The pages people use. Forms post back to the server (no JavaScript needed);
//! after a change the browser is redirected (303), so reloading never repeats it.

use askama::Template;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::auth::{self, MaybeUser, SESSION_COOKIE};
use super::error::{set_retry_after, AppError, PageError};
use super::signin::{self, ClientAddr};
use super::{now, AppState};
use storefront_storage::{
    Cart, Category, Order, OrderSummary, Page, Product, ProductPage, StoreError, User,
};

pub(crate) use super::{date, money};

type PageResult = Result<Response, PageError>;

fn render(status: StatusCode, page: &impl Template) -> PageResult {
    let html = page
        .render()
        .map_err(|e| AppError::Internal(format!("template: {e}")))?;
    Ok((status, Html(html)).into_response())
}

pub use storefront_contract::form::url_encode;

/// Query of the listing pages.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Category slug.
    pub category: Option<String>,
    /// Search words.
    pub q: Option<String>,
}

/// The largest page number accepted.
pub const MAX_PAGE: u32 = 100_000;

pub(crate) fn valid_page(page: Option<u32>, size: u32) -> Result<Page, AppError> {
    let number = page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&number) {
        return Err(AppError::invalid(
            "page",
            format!("the page number must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(Page { number, size })
}

pub(crate) fn valid_category(slug: &str) -> Result<&str, AppError> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(slug)
    } else {
        Err(AppError::invalid(
            "category",
            "a category is named with lower-case letters, digits and dashes",
        ))
    }
}

pub(crate) fn valid_query(q: &str) -> Result<&str, AppError> {
    let q = super::input::no_controls("q", q)?.trim();
    if q.chars().nth(100).is_some() {
        return Err(AppError::invalid("q", "search with at most 100 characters"));
    }
    Ok(q)
}

pub(crate) fn valid_quantity(quantity: i64, min: i64) -> Result<i64, AppError> {
    if !(min..=storefront_storage::MAX_QUANTITY).contains(&quantity) {
        return Err(AppError::invalid(
            "quantity",
            format!(
                "the quantity must be between {min} and {}",
                storefront_storage::MAX_QUANTITY
            ),
        ));
    }
    Ok(quantity)
}

pub(crate) fn valid_id(field: &'static str, id: i64) -> Result<i64, AppError> {
    if id <= 0 {
        return Err(AppError::invalid(field, "ids are positive whole numbers"));
    }
    Ok(id)
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    title: String,
    user: Option<User>,
    heading: String,
    categories: Vec<Category>,
    current_category: String,
    query: String,
    searched: bool,
    page: ProductPage,
    prev: Option<String>,
    next: Option<String>,
}

fn pager(page: &ProductPage, base: &str) -> (Option<String>, Option<String>) {
    let link = |n: u32| format!("{base}page={n}");
    let prev = (page.page > 1).then(|| link(page.page - 1));
    let next = (page.page < page.pages()).then(|| link(page.page + 1));
    (prev, next)
}

/// `GET /?category=slug&page=N`
pub async fn catalog(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query?;
    let page = valid_page(query.page, state.config.page_size)?;
    let categories = state.store.categories().await?;
    let category = match query.category.as_deref().filter(|c| !c.is_empty()) {
        Some(slug) => {
            let slug = valid_category(slug)?;
            Some(
                categories
                    .iter()
                    .find(|c| c.slug == slug)
                    .cloned()
                    .ok_or_else(|| {
                        AppError::NotFound(format!("there is no category \"{slug}\""))
                    })?,
            )
        }
        None => None,
    };
    let listing = state
        .store
        .list_products(category.as_ref().map(|c| c.slug.as_str()), page)
        .await?;
    let base = match &category {
        Some(c) => format!("/?category={}&", url_encode(&c.slug)),
        None => "/?".to_owned(),
    };
    let (prev, next) = pager(&listing, &base);
    let heading = category
        .as_ref()
        .map_or_else(|| "All products".to_owned(), |c| c.name.clone());
    render(
        StatusCode::OK,
        &CatalogPage {
            title: heading.clone(),
            user,
            heading,
            categories,
            current_category: category.map(|c| c.slug).unwrap_or_default(),
            query: String::new(),
            searched: false,
            page: listing,
            prev,
            next,
        },
    )
}

/// `GET /search?q=words&page=N`
pub async fn search(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query?;
    let page = valid_page(query.page, state.config.page_size)?;
    let q = valid_query(query.q.as_deref().unwrap_or(""))?.to_owned();
    let categories = state.store.categories().await?;
    let results = state.store.search(&q, page).await?;
    let (prev, next) = pager(&results, &format!("/search?q={}&", url_encode(&q)));
    let heading = if q.is_empty() {
        "Search".to_owned()
    } else {
        format!("Results for \u{201c}{q}\u{201d}")
    };
    render(
        StatusCode::OK,
        &CatalogPage {
            title: heading.clone(),
            user,
            heading,
            categories,
            current_category: String::new(),
            searched: !q.is_empty(),
            query: q,
            page: results,
            prev,
            next,
        },
    )
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductView {
    title: String,
    user: Option<User>,
    product: Product,
}

/// `GET /products/{id}`
pub async fn product(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    id: Result<Path<i64>, PathRejection>,
) -> PageResult {
    let Path(id) = id?;
    let product = state
        .store
        .product(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("there is no product #{id}")))?;
    render(
        StatusCode::OK,
        &ProductView {
            title: product.name.clone(),
            user,
            product,
        },
    )
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    title: &'static str,
    user: Option<User>,
    error: String,
    name: String,
    email: String,
}

/// `GET /signup`
pub async fn signup_form(MaybeUser(user, _): MaybeUser) -> PageResult {
    render(
        StatusCode::OK,
        &SignupPage {
            title: "Sign up",
            user,
            error: String::new(),
            name: String::new(),
            email: String::new(),
        },
    )
}

/// The sign-up form.
#[derive(Debug, Deserialize)]
pub struct SignupForm {
    name: String,
    email: String,
    password: String,
}

fn session_cookie(token: &str, max_age: i64) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .map_err(|e| AppError::Internal(e.to_string()))
}

async fn start_session(state: &AppState, user_id: i64, to: &str) -> PageResult {
    let token = auth::new_token();
    let ttl = state.config.session_ttl_secs;
    state
        .store
        .create_session(&token, user_id, now() + ttl)
        .await?;
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, ttl)?);
    Ok(response)
}

/// `POST /signup` (limits and password policy: [`signin`])
pub async fn signup(
    State(state): State<AppState>,
    addr: ClientAddr,
    form: Result<Form<SignupForm>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let again = |error: AppError, status: StatusCode| {
        let mut page = render(
            status,
            &SignupPage {
                title: "Sign up",
                user: None,
                error: error.to_string(),
                name: form.name.clone(),
                email: form.email.clone(),
            },
        )?;
        set_retry_after(&mut page, &error);
        Ok(page)
    };
    let new_user =
        match signin::new_account(&state, addr, &form.name, &form.email, &form.password).await {
            Ok(new_user) => new_user,
            Err(
                e @ (AppError::Invalid { .. }
                | AppError::TooManyAttempts { .. }
                | AppError::Busy { .. }),
            ) => {
                let status = e.status();
                return again(e, status);
            }
            Err(e) => return Err(e.into()),
        };
    match state.store.create_user(&new_user, now()).await {
        Ok(user) => start_session(&state, user.id, "/").await,
        Err(StoreError::EmailTaken) => again(
            AppError::Conflict(
                "email_taken",
                "an account with this email exists already: log in instead".into(),
            ),
            StatusCode::CONFLICT,
        ),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: &'static str,
    user: Option<User>,
    error: String,
    email: String,
    next: String,
}

/// Where to go after logging in: a local path only (no open redirects).
fn safe_next(next: Option<&str>) -> String {
    super::redirect::same_origin_or_root(next)
}

/// Query of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login?next=/path`
pub async fn login_form(
    MaybeUser(user, _): MaybeUser,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> PageResult {
    let Query(query) = query?;
    render(
        StatusCode::OK,
        &LoginPage {
            title: "Log in",
            user,
            error: String::new(),
            email: String::new(),
            next: safe_next(query.next.as_deref()),
        },
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// `POST /login` (limits: [`signin`])
pub async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    form: Result<Form<LoginForm>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let next = safe_next(form.next.as_deref());
    match signin::log_in(&state, addr, &form.email, &form.password).await {
        Ok(user) => start_session(&state, user.id, &next).await,
        Err(
            e @ (AppError::BadCredentials
            | AppError::Invalid { .. }
            | AppError::TooManyAttempts { .. }
            | AppError::Busy { .. }),
        ) => {
            let mut page = render(
                e.status(),
                &LoginPage {
                    title: "Log in",
                    user: None,
                    error: e.to_string(),
                    email: form.email.clone(),
                    next,
                },
            )?;
            set_retry_after(&mut page, &e);
            Ok(page)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /logout`
pub async fn logout(State(state): State<AppState>, MaybeUser(_, token): MaybeUser) -> PageResult {
    if let Some(token) = token {
        state.store.delete_session(&token).await?;
    }
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0)?);
    Ok(response)
}

fn login_redirect(next: &str) -> Response {
    Redirect::to(&format!("/login?next={}", url_encode(next))).into_response()
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    title: &'static str,
    user: Option<User>,
    error: String,
    cart: Cart,
}

async fn cart_page(state: &AppState, user: User, error: Option<AppError>) -> PageResult {
    let cart = state.store.cart(user.id).await?;
    let status = error.as_ref().map_or(StatusCode::OK, AppError::status);
    render(
        status,
        &CartPage {
            title: "Cart",
            user: Some(user),
            error: error.map(|e| e.to_string()).unwrap_or_default(),
            cart,
        },
    )
}

/// `GET /cart`
pub async fn cart(State(state): State<AppState>, MaybeUser(user, _): MaybeUser) -> PageResult {
    match user {
        Some(user) => cart_page(&state, user, None).await,
        None => Ok(login_redirect("/cart")),
    }
}

/// The add-to-cart and update forms.
#[derive(Debug, Deserialize)]
pub struct CartForm {
    product_id: i64,
    quantity: i64,
}

/// `POST /cart/add`
pub async fn cart_add(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    form: Result<Form<CartForm>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let product_id = valid_id("product_id", form.product_id)?;
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/products/{product_id}")));
    };
    let quantity = valid_quantity(form.quantity, 1)?;
    state
        .store
        .add_to_cart(user.id, product_id, quantity)
        .await?;
    Ok(Redirect::to("/cart").into_response())
}

/// `POST /cart/update` (quantity 0 removes the line)
pub async fn cart_update(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    form: Result<Form<CartForm>, FormRejection>,
) -> PageResult {
    let Form(form) = form?;
    let Some(user) = user else {
        return Ok(login_redirect("/cart"));
    };
    let product_id = valid_id("product_id", form.product_id)?;
    let quantity = valid_quantity(form.quantity, 0)?;
    state
        .store
        .set_cart_quantity(user.id, product_id, quantity)
        .await?;
    Ok(Redirect::to("/cart").into_response())
}

/// `POST /checkout`: on success to the order's page; an empty cart or missing stock
/// shows the cart again with the reason.
pub async fn checkout(State(state): State<AppState>, MaybeUser(user, _): MaybeUser) -> PageResult {
    let Some(user) = user else {
        return Ok(login_redirect("/cart"));
    };
    match state.store.checkout(user.id, now()).await {
        Ok(order) => Ok(Redirect::to(&format!("/orders/{}?placed=1", order.id)).into_response()),
        Err(e @ (StoreError::EmptyCart | StoreError::OutOfStock { .. })) => {
            cart_page(&state, user, Some(e.into())).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    title: &'static str,
    user: Option<User>,
    orders: Vec<OrderSummary>,
}

/// `GET /orders`
pub async fn orders(State(state): State<AppState>, MaybeUser(user, _): MaybeUser) -> PageResult {
    let Some(user) = user else {
        return Ok(login_redirect("/orders"));
    };
    let orders = state.store.orders(user.id).await?;
    render(
        StatusCode::OK,
        &OrdersPage {
            title: "Orders",
            user: Some(user),
            orders,
        },
    )
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    title: String,
    user: Option<User>,
    order: Order,
    placed: bool,
}

/// Query of the order page.
#[derive(Debug, Deserialize)]
pub struct PlacedQuery {
    placed: Option<u8>,
}

/// `GET /orders/{id}`
pub async fn order(
    State(state): State<AppState>,
    MaybeUser(user, _): MaybeUser,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<PlacedQuery>, QueryRejection>,
) -> PageResult {
    let Path(id) = id?;
    let Query(query) = query?;
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/orders/{id}")));
    };
    let order = state
        .store
        .order(user.id, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("you have no order #{id}")))?;
    render(
        StatusCode::OK,
        &OrderPage {
            title: format!("Order #{}", order.id),
            user: Some(user),
            order,
            placed: query.placed == Some(1),
        },
    )
}

/// A method this address does not take: a 405 page (the `Allow` header, which
/// axum adds, lists the ones it does).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> PageError {
    PageError(AppError::MethodNotAllowed(format!(
        "{} does not take {method} requests",
        uri.path()
    )))
}

/// Any other address: a friendly 404 page.
pub async fn not_found(uri: axum::http::Uri) -> PageError {
    PageError(AppError::NotFound(format!(
        "there is no page at {}",
        uri.path()
    )))
}
