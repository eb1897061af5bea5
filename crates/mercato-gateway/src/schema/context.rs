//! What every resolver knows about its request: the caller ([`Session::require`] and friends
//! give the coded errors), the credentials passed on to the services, and the per-request
//! batching loaders behind `Order.user` and `OrderItem.product`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_graphql::Result;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use mercato_platform::auth::Caller;

use crate::clients::{Credentials, Services};
use crate::errors::{ServiceError, forbidden, unauthenticated};
use crate::schema::connections::OrderConnection;
use crate::schema::types::{Order, OrderStatus, Page, Product, User};

/// Who sent the request, as the gateway's own check of the token found.
#[derive(Debug, Clone)]
pub enum Authentication {
    Anonymous,
    Caller(Caller),
    /// A token was sent and refused; the reason is safe to show.
    Refused(String),
}

/// The per-request (or per-socket) context of the resolvers.
///
/// The loaders are made on first use: most requests (`product(id)`, a mutation) need none.
pub struct Session {
    pub services: Services,
    pub credentials: Credentials,
    pub authentication: Authentication,
    /// Whether the loaders keep what they loaded for the rest of the request.
    cache: bool,
    products: OnceLock<DataLoader<ProductLoader, HashMapCache>>,
    users: OnceLock<DataLoader<UserLoader, HashMapCache>>,
    user_orders: OnceLock<DataLoader<UserOrdersLoader, HashMapCache>>,
}

/// The loader in `cell`, made by `make` on first use.
fn made<T: Send + Sync + 'static>(
    cell: &OnceLock<DataLoader<T, HashMapCache>>,
    cache: bool,
    make: impl FnOnce() -> T,
) -> &DataLoader<T, HashMapCache> {
    cell.get_or_init(|| {
        let loader = DataLoader::with_cache(make(), tokio::spawn, HashMapCache::default());
        loader.enable_all_cache(cache);
        loader
    })
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("authentication", &self.authentication)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(
        services: Services,
        credentials: Credentials,
        authentication: Authentication,
    ) -> Self {
        Self {
            services,
            credentials,
            authentication,
            cache: true,
            products: OnceLock::new(),
            users: OnceLock::new(),
            user_orders: OnceLock::new(),
        }
    }

    /// Turns the loaders' caches off: a socket lives long, and a product it shows must be the
    /// product now, not as a first event found it.
    pub fn without_cache(mut self) -> Self {
        self.cache = false;
        self
    }

    /// Products by id, batched.
    pub fn products(&self) -> &DataLoader<ProductLoader, HashMapCache> {
        made(&self.products, self.cache, || ProductLoader {
            services: self.services.clone(),
            credentials: self.credentials.clone(),
        })
    }

    /// Users by id, batched (what the caller may see).
    pub fn users(&self) -> &DataLoader<UserLoader, HashMapCache> {
        made(&self.users, self.cache, || UserLoader {
            services: self.services.clone(),
            credentials: self.credentials.clone(),
            caller: match &self.authentication {
                Authentication::Caller(caller) => Some(caller.clone()),
                _ => None,
            },
        })
    }

    /// Users' first pages of orders, batched.
    pub fn user_orders(&self) -> &DataLoader<UserOrdersLoader, HashMapCache> {
        made(&self.user_orders, self.cache, || UserOrdersLoader {
            services: self.services.clone(),
            credentials: self.credentials.clone(),
        })
    }

    /// Loads, in one batch each, the users and products that the page of `orders` will show
    /// when the query asks for them (`node` is the look-ahead of an order), so that nested
    /// fields read them from the request's cache: a page costs the same calls whatever its size
    /// and however its fields are scheduled.
    pub async fn prefetch(&self, node: async_graphql::Lookahead<'_>, orders: &[Order]) {
        let users: Vec<String> = if node.field("user").exists() {
            orders.iter().map(|order| order.user_id.to_string()).collect()
        } else {
            Vec::new()
        };
        let products: Vec<String> = if node.field("items").field("product").exists() {
            orders
                .iter()
                .flat_map(|order| order.items.iter().map(|item| item.product_id.to_string()))
                .collect()
        } else {
            Vec::new()
        };
        // Errors are left for the fields themselves to report.
        let (_, _) = futures::join!(
            async {
                if !users.is_empty() {
                    let _ = self.users().load_many(users).await;
                }
            },
            async {
                if !products.is_empty() {
                    let _ = self.products().load_many(products).await;
                }
            },
        );
    }

    /// The caller, `None` when no token was sent; a refused token is `UNAUTHENTICATED`.
    pub fn caller(&self) -> Result<Option<&Caller>> {
        match &self.authentication {
            Authentication::Anonymous => Ok(None),
            Authentication::Caller(caller) => Ok(Some(caller)),
            Authentication::Refused(reason) => {
                Err(crate::errors::coded(crate::errors::UNAUTHENTICATED, reason.clone()))
            }
        }
    }

    /// The caller, or `UNAUTHENTICATED`.
    pub fn require(&self) -> Result<&Caller> {
        self.caller()?.ok_or_else(unauthenticated)
    }

    /// An admin caller, or `UNAUTHENTICATED` / `FORBIDDEN`.
    pub fn require_admin(&self) -> Result<&Caller> {
        let caller = self.require()?;
        if caller.is_admin() { Ok(caller) } else { Err(forbidden("only an admin may do this")) }
    }
}

/// Products by id: one `GET /api/products?ids=` per batch.
pub struct ProductLoader {
    services: Services,
    credentials: Credentials,
}

impl Loader<String> for ProductLoader {
    type Value = Product;
    type Error = Arc<ServiceError>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Product>, Self::Error> {
        let ids: Vec<String> =
            keys.iter().filter(|id| uuid::Uuid::parse_str(id).is_ok()).cloned().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let products = self.services.products_by_ids(&ids, &self.credentials).await?;
        Ok(products.into_iter().map(|product| (product.id.to_string(), product)).collect())
    }
}

/// Users by id: one `GET /api/users?ids=` per batch for an admin; a customer may see only
/// themself, one `GET /api/users/me`; nobody else sees anyone.
pub struct UserLoader {
    services: Services,
    credentials: Credentials,
    caller: Option<Caller>,
}

impl Loader<String> for UserLoader {
    type Value = User;
    type Error = Arc<ServiceError>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, User>, Self::Error> {
        let Some(caller) = &self.caller else { return Ok(HashMap::new()) };
        let users = if caller.is_admin() {
            let ids: Vec<String> =
                keys.iter().filter(|id| uuid::Uuid::parse_str(id).is_ok()).cloned().collect();
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            self.services.users_by_ids(&ids, &self.credentials).await?
        } else if keys.iter().any(|id| *id == caller.user_id.to_string()) {
            vec![self.services.me(&self.credentials).await?]
        } else {
            Vec::new()
        };
        Ok(users.into_iter().map(|user| (user.id.to_string(), user)).collect())
    }
}

/// The first page of a user's orders, as `User.orders(first, status)` without `after` asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserOrdersKey {
    pub user_id: String,
    pub status: Option<OrderStatus>,
    pub first: i32,
}

/// Users' first pages of orders: one `GET /api/orders/by-user` per batch (per distinct
/// `first` and `status`), whatever the number of users.
pub struct UserOrdersLoader {
    services: Services,
    credentials: Credentials,
}

impl Loader<UserOrdersKey> for UserOrdersLoader {
    type Value = OrderConnection;
    type Error = Arc<ServiceError>;

    async fn load(
        &self,
        keys: &[UserOrdersKey],
    ) -> Result<HashMap<UserOrdersKey, OrderConnection>, Self::Error> {
        let mut groups: HashMap<(Option<OrderStatus>, i32), Vec<String>> = HashMap::new();
        for key in keys {
            groups.entry((key.status, key.first)).or_default().push(key.user_id.clone());
        }
        let mut found = HashMap::with_capacity(keys.len());
        for ((status, first), users) in groups {
            let status_text = status.map(OrderStatus::as_rest);
            let pages =
                self.services.orders_by_user(&users, status_text, first, &self.credentials).await?;
            for page in pages {
                let key = UserOrdersKey { user_id: page.user_id, status, first };
                let page = Page { items: page.items, next_cursor: page.next_cursor };
                found.insert(key, OrderConnection::from_page(page, Order::cursor));
            }
        }
        Ok(found)
    }
}
