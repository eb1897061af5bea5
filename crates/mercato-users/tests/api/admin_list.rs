//! `GET /api/users`: the admin's paginated, searchable list.

use std::collections::BTreeSet;

use mercato_testkit::backend_tests;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

async fn list(app: &TestApp, query: &[(&str, &str)], token: &str) -> Value {
    let page =
        json_body(app.get_query("/api/users", query, Some(token)).await, StatusCode::OK).await;
    let mut members: Vec<&str> =
        page.as_object().expect("a page is an object").keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["items", "nextCursor"], "{page}");
    for item in page["items"].as_array().expect("items") {
        assert_user_shape(item);
    }
    page
}

async fn emails_matching(app: &TestApp, q: &str, token: &str) -> BTreeSet<String> {
    let page = list(app, &[("q", q), ("limit", "100")], token).await;
    assert_eq!(page["nextCursor"], Value::Null, "everything fits in one page");
    page["items"].as_array().expect("items").iter().map(|user| text(&user["email"])).collect()
}

backend_tests! {
    async fn only_admins_list_users(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        problem(app.get("/api/users", None).await, StatusCode::UNAUTHORIZED, "unauthenticated")
            .await;
        problem(app.get("/api/users", Some(&ada.token)).await, StatusCode::FORBIDDEN, "forbidden")
            .await;

        let admin = app.admin().await;
        let page = list(&app, &[], &admin.token).await;
        assert_eq!(page["nextCursor"], Value::Null);
        let emails: BTreeSet<String> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|user| text(&user["email"]))
            .collect();
        assert_eq!(emails, BTreeSet::from([ADMIN_EMAIL.to_owned(), "ada@example.com".to_owned()]));
    }

    async fn pages_of_two_walk_every_user_exactly_once(db) {
        let app = spawn_app(db).await;
        let mut expected = BTreeSet::from([ADMIN_EMAIL.to_owned()]);
        for n in 1..=5 {
            let email = format!("user{n}@example.com");
            app.create_user(&format!("User {n}"), &email, PASSWORD).await;
            expected.insert(email);
        }
        let admin = app.admin().await;

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let mut query = vec![("limit", "2")];
            if let Some(cursor) = cursor.as_deref() {
                query.push(("cursor", cursor));
            }
            let page = list(&app, &query, &admin.token).await;
            let items = page["items"].as_array().expect("items");
            assert!(items.len() <= 2, "a page holds at most `limit` items: {page}");
            seen.extend(items.iter().map(|user| text(&user["email"])));
            match &page["nextCursor"] {
                Value::Null => break,
                Value::String(next) => {
                    assert_eq!(items.len(), 2, "only a full page has a next one: {page}");
                    cursor = Some(next.clone());
                }
                other => panic!("nextCursor is a string or null: {other}"),
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "nobody is listed twice: {seen:?}");
        assert_eq!(unique, expected, "everybody is listed");
        assert!(cursor.is_some(), "six users do not fit in one page of two");
    }

    async fn q_matches_name_or_email_in_any_case_with_percent_and_underscore_taken_literally(db) {
        let app = spawn_app(db).await;
        app.create_user("Alice Wonder", "alice@example.com", PASSWORD).await;
        app.create_user("Bob", "bob.builder@site.org", PASSWORD).await;
        app.create_user("Under_Score", "under@example.com", PASSWORD).await;
        app.create_user("Percent 100% Sure", "x_y@example.com", PASSWORD).await;
        let admin = app.admin().await;
        let set = |emails: &[&str]| {
            emails.iter().map(|email| (*email).to_owned()).collect::<BTreeSet<_>>()
        };

        assert_eq!(emails_matching(&app, "ALICE", &admin.token).await, set(&["alice@example.com"]));
        assert_eq!(
            emails_matching(&app, "wONDER", &admin.token).await,
            set(&["alice@example.com"])
        );
        assert_eq!(
            emails_matching(&app, "SITE.ORG", &admin.token).await,
            set(&["bob.builder@site.org"])
        );
        assert_eq!(
            emails_matching(&app, "_", &admin.token).await,
            set(&["under@example.com", "x_y@example.com"])
        );
        assert_eq!(emails_matching(&app, "%", &admin.token).await, set(&["x_y@example.com"]));
        assert_eq!(emails_matching(&app, "100%", &admin.token).await, set(&["x_y@example.com"]));
        assert_eq!(emails_matching(&app, "a%e", &admin.token).await, set(&[]));
        assert_eq!(emails_matching(&app, "b_b", &admin.token).await, set(&[]));
        assert_eq!(emails_matching(&app, "nobody-here", &admin.token).await, set(&[]));
        assert_eq!(emails_matching(&app, "example.com", &admin.token).await.len(), 3);
    }

    async fn a_limit_outside_1_to_100_or_an_unreadable_cursor_is_a_bad_request(db) {
        let app = spawn_app(db).await;
        let admin = app.admin().await;
        for limit in ["0", "101", "abc", "-1", "1.5"] {
            let response =
                app.get_query("/api/users", &[("limit", limit)], Some(&admin.token)).await;
            problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
        }
        for cursor in ["garbage", "!!!", "%%%"] {
            let response =
                app.get_query("/api/users", &[("cursor", cursor)], Some(&admin.token)).await;
            problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
        }
        // The edges of the range are fine.
        for limit in ["1", "100"] {
            let page = list(&app, &[("limit", limit)], &admin.token).await;
            assert_eq!(page["items"].as_array().expect("items").len(), 1, "only the admin exists");
        }
    }

    async fn q_with_a_backslash_matches_it_literally(db) {
        let app = spawn_app(db).await;
        app.create_user(r"Back\Slash", "back@example.com", PASSWORD).await;
        app.create_user("Plain", "plain@example.com", PASSWORD).await;
        let admin = app.admin().await;
        let set = |emails: &[&str]| {
            emails.iter().map(|email| (*email).to_owned()).collect::<BTreeSet<_>>()
        };
        assert_eq!(emails_matching(&app, r"\", &admin.token).await, set(&["back@example.com"]));
        assert_eq!(emails_matching(&app, r"k\s", &admin.token).await, set(&["back@example.com"]));
        assert_eq!(emails_matching(&app, r"\%", &admin.token).await, set(&[]));
    }
}

backend_tests! {
    async fn ids_lists_exactly_those_accounts_in_the_order_asked(db) {
        let app = spawn_app(db).await;
        let ada = app.token_for("Ada", "ada@example.com").await;
        let bo = app.token_for("Bo", "bo@example.com").await;
        let admin = app.admin().await;
        let unknown = "0193a0c4-7b5e-7cc2-9f3e-2f1d7f0c9a11";
        let ids = format!("{},{unknown},{},{}", bo.id, ada.id, bo.id);
        let page = list(&app, &[("ids", &ids)], &admin.token).await;
        let emails: Vec<String> =
            page["items"].as_array().expect("items").iter().map(|u| text(&u["email"])).collect();
        assert_eq!(emails, ["bo@example.com", "ada@example.com"], "{page}");
        assert_eq!(page["nextCursor"], Value::Null);

        // A customer may not batch-read accounts; bad ids and too many are refused.
        let own = ada.id.clone();
        problem(
            app.get_query("/api/users", &[("ids", &own)], Some(&ada.token)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        problem(
            app.get_query("/api/users", &[("ids", "nope")], Some(&admin.token)).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
        let many = vec![unknown; 101].join(",");
        problem(
            app.get_query("/api/users", &[("ids", &many)], Some(&admin.token)).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
}
