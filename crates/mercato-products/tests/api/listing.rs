//! `GET /api/products`: public, cursor-paginated in creation order, filtered by `q`,
//! `category`, price bounds and `inStock`, or exactly the products of `ids`.

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;

/// Creates a product from `body` (name, price and stock filled in when absent) and returns its id.
async fn add(app: &TestApp, body: Value) -> Uuid {
    let mut full = json!({"name": "Thing", "price": "10.00", "stock": 1});
    for (key, value) in body.as_object().expect("an object") {
        full[key] = value.clone();
    }
    id_of(&app.create_product(full).await)
}

async fn ids_for(app: &TestApp, query: &[(&str, &str)]) -> Vec<Uuid> {
    let page = app.list(query).await;
    assert_eq!(page["nextCursor"], Value::Null, "one page for {query:?}: {page}");
    item_ids(&page)
}

async fn bad_request(app: &TestApp, query: &[(&str, &str)]) {
    problem(app.get_query("/api/products", query).await, StatusCode::BAD_REQUEST, "bad_request")
        .await;
}

fn joined(ids: &[Uuid]) -> String {
    ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(",")
}

backend_tests! {
    async fn anyone_lists_active_products_in_creation_order(db) {
        let app = spawn_app(db).await;
        assert_eq!(app.list(&[]).await, json!({"items": [], "nextCursor": null}));
        let mut created = Vec::new();
        for name in ["Zebra", "Apple", "Mango"] {
            created.push(app.create_product(json!({"name": name, "price": "1.50", "stock": 2})).await);
        }
        let expected = json!({"items": created, "nextCursor": null});
        assert_eq!(app.list(&[]).await, expected);
        for token in [&app.customer, &app.admin] {
            let page = json_body(app.get("/api/products", Some(token)).await, StatusCode::OK).await;
            assert_eq!(page, expected);
        }
    }

    async fn pages_walk_the_whole_list_through_next_cursor(db) {
        let app = spawn_app(db).await;
        let mut created = Vec::new();
        for n in 0..5 {
            created.push(app.product_with_stock(&format!("P{n}"), 1).await);
        }
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "2")];
            if let Some(cursor) = cursor.as_deref() {
                query.push(("cursor", cursor));
            }
            let page = app.list(&query).await;
            let ids = item_ids(&page);
            sizes.push(ids.len());
            seen.extend(ids);
            match &page["nextCursor"] {
                Value::Null => break,
                Value::String(next) => cursor = Some(next.clone()),
                other => panic!("nextCursor is a string or null: {other}"),
            }
            assert!(sizes.len() < 10, "the pages never end: {seen:?}");
        }
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(seen, created);

        // A page that ends exactly at the end has no next cursor.
        let page = app.list(&[("limit", "5")]).await;
        assert_eq!((item_ids(&page), &page["nextCursor"]), (created.clone(), &Value::Null));
        let page = app.list(&[("limit", "4")]).await;
        assert_eq!(item_ids(&page), created[..4].to_vec());
        let next = text(&page["nextCursor"]);
        let last = app.list(&[("limit", "4"), ("cursor", &next)]).await;
        assert_eq!((item_ids(&last), &last["nextCursor"]), (created[4..].to_vec(), &Value::Null));

        // Deleted products drop out of the pages.
        let response = app.delete(&format!("/api/products/{}", created[1]), Some(&app.admin)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let first = app.list(&[("limit", "2")]).await;
        assert_eq!(item_ids(&first), vec![created[0], created[2]]);
        let next = text(&first["nextCursor"]);
        let second = app.list(&[("limit", "2"), ("cursor", &next)]).await;
        assert_eq!((item_ids(&second), &second["nextCursor"]), (vec![created[3], created[4]], &Value::Null));
    }

    async fn the_default_page_holds_twenty(db) {
        let app = spawn_app(db).await;
        let mut created = Vec::new();
        for n in 0..21 {
            created.push(app.product_with_stock(&format!("P{n}"), 1).await);
        }
        let page = app.list(&[]).await;
        assert_eq!(item_ids(&page), created[..20].to_vec());
        let next = text(&page["nextCursor"]);
        let rest = app.list(&[("cursor", &next)]).await;
        assert_eq!((item_ids(&rest), &rest["nextCursor"]), (vec![created[20]], &Value::Null));
        let all = app.list(&[("limit", "100")]).await;
        assert_eq!((item_ids(&all), &all["nextCursor"]), (created.clone(), &Value::Null));
        let one = app.list(&[("limit", "1")]).await;
        assert_eq!(item_ids(&one), vec![created[0]]);
    }

    async fn bad_paging_parameters_are_bad_requests(db) {
        let app = spawn_app(db).await;
        app.product_with_stock("P", 1).await;
        for limit in ["0", "101", "abc", "-1", "", "1.5", "1e1"] {
            bad_request(&app, &[("limit", limit)]).await;
        }
        // Not base64; base64 of something that is not a key this service gives out; empty.
        for cursor in ["!!!", "bm90LWEtdXVpZA", ""] {
            bad_request(&app, &[("cursor", cursor)]).await;
        }
    }

    async fn q_matches_name_description_and_sku_as_a_case_insensitive_substring(db) {
        let app = spawn_app(db).await;
        let by_name = add(&app, json!({"name": "Blue Mug", "description": "Ceramic", "sku": "MUG-1"})).await;
        let by_description = add(&app, json!({"name": "Teapot", "description": "Holds a BLUE glaze", "sku": "POT-1"})).await;
        let by_sku = add(&app, json!({"name": "Plate", "sku": "PLT-bLuE-1"})).await;
        let other = add(&app, json!({"name": "Fork", "description": "Steel", "sku": "FRK-1"})).await;

        for q in ["blue", "BLUE", "Blue", "lu"] {
            assert_eq!(ids_for(&app, &[("q", q)]).await, vec![by_name, by_description, by_sku], "q={q}");
        }
        assert_eq!(ids_for(&app, &[("q", "eram")]).await, vec![by_name]);
        assert_eq!(ids_for(&app, &[("q", "a blue g")]).await, vec![by_description]);
        assert_eq!(ids_for(&app, &[("q", "plt-b")]).await, vec![by_sku]);
        assert_eq!(ids_for(&app, &[("q", "frk")]).await, vec![other]);
        assert_eq!(ids_for(&app, &[("q", "STEEL")]).await, vec![other]);
        assert_eq!(ids_for(&app, &[("q", "-1")]).await, vec![by_name, by_description, by_sku, other]);
        assert_eq!(ids_for(&app, &[("q", "zebra")]).await, Vec::<Uuid>::new());
        // q combines with the other filters and with paging.
        let page = app.list(&[("q", "blue"), ("limit", "2")]).await;
        assert_eq!(item_ids(&page), vec![by_name, by_description]);
        let next = text(&page["nextCursor"]);
        assert_eq!(ids_for(&app, &[("q", "blue"), ("limit", "2"), ("cursor", &next)]).await, vec![by_sku]);
    }

    async fn percent_underscore_and_the_escape_character_in_q_are_literal(db) {
        let app = spawn_app(db).await;
        let percent = add(&app, json!({"name": "50% off"})).await;
        let plain = add(&app, json!({"name": "500 off"})).await;
        let underscore = add(&app, json!({"name": "snake_case"})).await;
        let lookalike = add(&app, json!({"name": "snakeXcase"})).await;
        let bang = add(&app, json!({"name": "Wow!"})).await;
        let backslash = add(&app, json!({"name": "C:\\temp"})).await;

        assert_eq!(ids_for(&app, &[("q", "50%")]).await, vec![percent]);
        assert_eq!(ids_for(&app, &[("q", "%")]).await, vec![percent]);
        assert_eq!(ids_for(&app, &[("q", "0% o")]).await, vec![percent]);
        assert_eq!(ids_for(&app, &[("q", "e_c")]).await, vec![underscore]);
        assert_eq!(ids_for(&app, &[("q", "_")]).await, vec![underscore]);
        assert_eq!(ids_for(&app, &[("q", "!")]).await, vec![bang]);
        assert_eq!(ids_for(&app, &[("q", "w!")]).await, vec![bang]);
        assert_eq!(ids_for(&app, &[("q", "\\")]).await, vec![backslash]);
        assert_eq!(ids_for(&app, &[("q", "c:\\t")]).await, vec![backslash]);
        assert_eq!(ids_for(&app, &[("q", "off")]).await, vec![percent, plain]);
        assert_eq!(ids_for(&app, &[("q", "case")]).await, vec![underscore, lookalike]);
    }

    async fn category_matches_exactly_whatever_the_case(db) {
        let app = spawn_app(db).await;
        let kitchen = add(&app, json!({"name": "Mug", "category": "Kitchen"})).await;
        let lower = add(&app, json!({"name": "Pan", "category": "kitchen"})).await;
        add(&app, json!({"name": "Rack", "category": "Kitchenware"})).await;
        add(&app, json!({"name": "Sofa", "category": "Living"})).await;
        add(&app, json!({"name": "Loose"})).await;

        for category in ["Kitchen", "KITCHEN", "kitchen"] {
            assert_eq!(ids_for(&app, &[("category", category)]).await, vec![kitchen, lower], "{category}");
        }
        assert_eq!(ids_for(&app, &[("category", "kit")]).await, Vec::<Uuid>::new());
        assert_eq!(ids_for(&app, &[("category", "Garden")]).await, Vec::<Uuid>::new());
    }

    async fn price_bounds_are_inclusive(db) {
        let app = spawn_app(db).await;
        let five = add(&app, json!({"price": "5.00"})).await;
        let ten = add(&app, json!({"price": "10.00"})).await;
        let fifteen = add(&app, json!({"price": "15.00"})).await;
        let twenty = add(&app, json!({"price": 20.01})).await;

        assert_eq!(ids_for(&app, &[("minPrice", "10.00"), ("maxPrice", "15.00")]).await, vec![ten, fifteen]);
        assert_eq!(ids_for(&app, &[("minPrice", "10"), ("maxPrice", "15")]).await, vec![ten, fifteen]);
        assert_eq!(ids_for(&app, &[("minPrice", "10.01"), ("maxPrice", "14.99")]).await, Vec::<Uuid>::new());
        assert_eq!(ids_for(&app, &[("maxPrice", "9.99")]).await, vec![five]);
        assert_eq!(ids_for(&app, &[("maxPrice", "5")]).await, vec![five]);
        assert_eq!(ids_for(&app, &[("minPrice", "20.01")]).await, vec![twenty]);
        assert_eq!(ids_for(&app, &[("minPrice", "20.02")]).await, Vec::<Uuid>::new());
        assert_eq!(ids_for(&app, &[("minPrice", "0")]).await, vec![five, ten, fifteen, twenty]);
        for bad in ["abc", "-1", "1.999", "", "1e3", "10,00"] {
            bad_request(&app, &[("minPrice", bad)]).await;
            bad_request(&app, &[("maxPrice", bad)]).await;
        }
    }

    async fn in_stock_true_hides_sold_out_products(db) {
        let app = spawn_app(db).await;
        let sold_out = app.product_with_stock("Sold out", 0).await;
        let stocked = app.product_with_stock("Stocked", 3).await;
        let emptied = app.product_with_stock("Emptied", 1).await;
        let response = app
            .post_json(&format!("/api/products/{emptied}/inventory"), &json!({"delta": -1}), Some(&app.admin))
            .await;
        assert_eq!(response.status(), StatusCode::OK);

        assert_eq!(ids_for(&app, &[]).await, vec![sold_out, stocked, emptied]);
        assert_eq!(ids_for(&app, &[("inStock", "true")]).await, vec![stocked]);
        for bad in ["maybe", "yes", "1", ""] {
            bad_request(&app, &[("inStock", bad)]).await;
        }
    }

    async fn filters_combine(db) {
        let app = spawn_app(db).await;
        let hit = add(&app, json!({"name": "Blue mug", "category": "Kitchen", "price": "12.00", "stock": 2})).await;
        add(&app, json!({"name": "Blue mug, sold out", "category": "Kitchen", "price": "12.00", "stock": 0})).await;
        add(&app, json!({"name": "Blue mug, dear", "category": "Kitchen", "price": "40.00", "stock": 2})).await;
        add(&app, json!({"name": "Blue rug", "category": "Living", "price": "12.00", "stock": 2})).await;
        add(&app, json!({"name": "Red mug", "category": "Kitchen", "price": "12.00", "stock": 2})).await;
        let query = [("q", "BLUE"), ("category", "kitchen"), ("maxPrice", "20"), ("minPrice", "12.00"), ("inStock", "true")];
        assert_eq!(ids_for(&app, &query).await, vec![hit]);
    }

    async fn ids_returns_exactly_those_in_the_order_asked(db) {
        let app = spawn_app(db).await;
        let a = app.create_product(json!({"name": "A", "price": "1.00", "stock": 1})).await;
        let b = app.create_product(json!({"name": "B", "price": "2.00", "stock": 0})).await;
        let c = app.create_product(json!({"name": "C", "price": "3.00", "stock": 3})).await;
        add(&app, json!({"name": "D"})).await;
        let response = app.delete(&format!("/api/products/{}", id_of(&b)), Some(&app.admin)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let b = app.product(id_of(&b)).await;
        assert_eq!(b["active"], false);

        let asked = [id_of(&c), id_of(&a), id_of(&b)];
        let page = app.list(&[("ids", &joined(&asked))]).await;
        assert_eq!(page, json!({"items": [c.clone(), a.clone(), b], "nextCursor": null}));

        // Unknown ids are simply absent; a repeated id is listed once.
        let unknown = Uuid::now_v7();
        let asked = format!("{unknown},{},{},{}", id_of(&a), id_of(&c), id_of(&a));
        assert_eq!(ids_for(&app, &[("ids", &asked)]).await, vec![id_of(&a), id_of(&c)]);
        assert_eq!(ids_for(&app, &[("ids", &unknown.to_string())]).await, Vec::<Uuid>::new());

        for bad in [format!("{},not-a-uuid", id_of(&a)), "42".to_owned(), String::new(), format!("{},", id_of(&a))] {
            bad_request(&app, &[("ids", &bad)]).await;
        }
    }

    async fn ids_takes_up_to_a_hundred_in_one_page(db) {
        let app = spawn_app(db).await;
        let mut created = Vec::new();
        for n in 0..25 {
            created.push(app.product_with_stock(&format!("P{n}"), 1).await);
        }
        // More than a default page, in one answer, in the order asked.
        let reversed: Vec<Uuid> = created.iter().rev().copied().collect();
        assert_eq!(ids_for(&app, &[("ids", &joined(&reversed))]).await, reversed);

        let mut hundred = created.clone();
        hundred.extend((0..75).map(|_| Uuid::now_v7()));
        assert_eq!(hundred.len(), 100);
        assert_eq!(ids_for(&app, &[("ids", &joined(&hundred))]).await, created);

        let mut too_many = hundred.clone();
        too_many.push(Uuid::now_v7());
        bad_request(&app, &[("ids", &joined(&too_many))]).await;
    }
}

backend_tests! {
    async fn q_folds_case_beyond_ascii(db) {
        let app = spawn_app(db).await;
        let named = add(&app, json!({"name": "ÉCLAIR GLACÉ"})).await;
        let described = add(&app, json!({"name": "Lamp", "description": "Designed by ØRSTED"})).await;
        add(&app, json!({"name": "Plain"})).await;
        assert_eq!(ids_for(&app, &[("q", "éclair")]).await, vec![named]);
        assert_eq!(ids_for(&app, &[("q", "Glacé")]).await, vec![named]);
        assert_eq!(ids_for(&app, &[("q", "ørsted")]).await, vec![described]);
    }
}
