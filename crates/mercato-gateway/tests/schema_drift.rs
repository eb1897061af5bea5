//! The served schema is the committed `schema.graphql` (API.md): a change to one without the
//! other fails here. `MERCATO_BLESS=1 cargo test -p mercato-gateway --test schema_drift` rewrites
//! the file from the code after an intended change.

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema.graphql")
}

#[test]
fn the_served_schema_is_the_committed_one() {
    let served = mercato_gateway::schema::sdl();
    let path = committed_path();
    if std::env::var("MERCATO_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &served).expect("writing schema.graphql");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("schema.graphql is committed");
    assert!(
        committed == served,
        "the served schema differs from schema.graphql; if the change is intended, run \
         MERCATO_BLESS=1 cargo test -p mercato-gateway --test schema_drift and commit the file.\n\
         served:\n{served}"
    );
}

#[test]
fn the_schema_has_every_root_field_of_the_contract() {
    let served = mercato_gateway::schema::sdl();
    let fields = [
        "me: User",
        "user(id: ID!): User",
        "users(first: Int, after: String, query: String): UserConnection!",
        "product(id: ID!): Product",
        "products(first: Int, after: String, filter: ProductFilter): ProductConnection!",
        "order(id: ID!): Order",
        "orders(first: Int, after: String, status: OrderStatus, userId: ID): OrderConnection!",
        "registerUser(input: RegisterInput!): User!",
        "login(email: String!, password: String!): AuthPayload!",
        "refreshToken(refreshToken: String!): AuthPayload!",
        "updateUser(id: ID!, input: UpdateUserInput!): User!",
        "deleteUser(id: ID!): Boolean!",
        "createProduct(input: CreateProductInput!): Product!",
        "updateProduct(id: ID!, input: UpdateProductInput!): Product!",
        "deleteProduct(id: ID!): Boolean!",
        "adjustInventory(productId: ID!, delta: Int!): Product!",
        "placeOrder(input: PlaceOrderInput!, idempotencyKey: String, waitSeconds: Int): Order!",
        "updateOrder(id: ID!, input: UpdateOrderInput!, waitSeconds: Int): Order!",
        "cancelOrder(id: ID!, waitSeconds: Int): Order!",
        "orderStatusChanged(orderId: ID): Order!",
        "inventoryChanged(productId: ID): Product!",
        "domainEvents(types: [String!]): DomainEvent!",
        "scalar Decimal",
        "scalar DateTime",
        "scalar JSON",
        "enum OrderStatus",
        "enum Role",
    ];
    let missing: Vec<_> = fields.iter().filter(|field| !served.contains(*field)).collect();
    assert!(missing.is_empty(), "missing from the schema: {missing:?}\n{served}");
}
