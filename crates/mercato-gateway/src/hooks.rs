//! The gateway's one async-graphql extension, [`GatewayHooks`]: on every request the schema
//! runs it resolves automatic persisted queries and hands over remembered documents and
//! validations ([`crate::documents`]), runs the guards ([`crate::limits`]) on the document and
//! its validation, and codes the errors of the answer ([`crate::limits::finish`]).
//!
//! One extension, not three: async-graphql wraps the resolution of every field in every
//! registered extension, each wrapper a boxed future whether or not the extension looks at
//! fields. With the persisted-queries extension, the guards and the document cache registered
//! apart, that was about 1.6 k instructions per field; merging them took a `product(id)`
//! request from 206.6 k to 189.9 k instructions (callgrind, 2026-12-04; see BENCHMARKS.md,
//! "GraphQL gateway").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::documents::{Documents, PersistedQueries, ValidationKey};
use crate::limits::{self, Limits, ReadOnly};

/// Makes the [`RequestHooks`] of each request.
#[derive(Debug, Clone)]
pub struct GatewayHooks {
    limits: Arc<Limits>,
    allow_introspection: bool,
    documents: Arc<Documents>,
    persisted: Arc<PersistedQueries>,
}

impl GatewayHooks {
    /// `introspection: false` refuses documents that ask for `__schema` or `__type`.
    /// `documents` must be new to this schema: validation results are only true of the schema
    /// that computed them.
    pub fn new(limits: Limits, introspection: bool, documents: Arc<Documents>) -> Self {
        Self {
            limits: Arc::new(limits),
            allow_introspection: introspection,
            documents,
            persisted: Arc::default(),
        }
    }
}

impl ExtensionFactory for GatewayHooks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestHooks {
            hooks: self.clone(),
            executed: AtomicBool::new(false),
            introspection_only: AtomicBool::new(false),
            validation: OnceLock::new(),
        })
    }
}

/// [`GatewayHooks`] for one request.
struct RequestHooks {
    hooks: GatewayHooks,
    /// Execution began: a failure is no longer a refusal.
    executed: AtomicBool,
    /// The document asks only for `__schema`, `__type` and `__typename`.
    introspection_only: AtomicBool,
    /// Set when the request's validation may be remembered (see [`Documents::prepare`]).
    validation: OnceLock<ValidationKey>,
}

#[async_trait::async_trait]
impl Extension for RequestHooks {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let response = next.run(ctx).await;
        limits::finish(response, self.executed.load(Ordering::Acquire))
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.hooks.persisted.resolve(&mut request)?;
        if let Some(key) = self.hooks.documents.prepare(&mut request) {
            let _ = self.validation.set(key);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let read_only = ctx.data_opt::<ReadOnly>().is_some();
        let introspection_only = self.hooks.limits.check_document(
            &document,
            self.hooks.allow_introspection,
            read_only,
        )?;
        self.introspection_only.store(introspection_only, Ordering::Release);
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = match self.validation.get() {
            None => next.run(ctx).await?,
            Some(key) => match self.hooks.documents.validated(key) {
                Some(remembered) => remembered,
                None => {
                    // Remembered before the limits are checked, so that a document over them is
                    // refused quickly next time too.
                    let result = next.run(ctx).await?;
                    self.hooks.documents.remember_validation(key.clone(), result);
                    result
                }
            },
        };
        let introspection_only = self.introspection_only.load(Ordering::Acquire);
        self.hooks.limits.check_validation(&result, introspection_only).map_err(|e| vec![e])?;
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.executed.store(true, Ordering::Release);
        next.run(ctx, operation_name).await
    }
}
