//! Field rules of order requests, as parsers from JSON values. Each collects its errors in
//! [`Fields`] under the field's path (`items[2].quantity`, `shippingAddress.city`), so one `422`
//! lists every problem of a body.

use std::collections::HashSet;

use mercato_contracts::{MAX_LINE_QUANTITY, MAX_ORDER_LINES, OrderLine};
use mercato_platform::validation::Fields;
use serde_json::Value;
use uuid::Uuid;

use crate::order::Address;

/// Characters of a payment method.
pub const MAX_PAYMENT_METHOD: usize = 50;

/// A text of 1..=`max` characters (Unicode scalar values) after trimming.
pub fn text(value: &Value, max: usize) -> Result<String, String> {
    let Value::String(text) = value else { return Err("must be a string".to_owned()) };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if trimmed.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(trimmed.to_owned())
}

pub fn uuid(value: &Value) -> Result<Uuid, String> {
    value
        .as_str()
        .and_then(|text| Uuid::parse_str(text).ok())
        .ok_or_else(|| "must be a UUID".to_owned())
}

pub fn quantity(value: &Value) -> Result<i64, String> {
    match value.as_i64() {
        Some(quantity) if (1..=MAX_LINE_QUANTITY).contains(&quantity) => Ok(quantity),
        _ => Err(format!("must be a whole number from 1 to {MAX_LINE_QUANTITY}")),
    }
}

/// `items`: 1..=100 lines of `{productId, quantity}`, each product at most once.
pub fn items(fields: &mut Fields, value: &Value) -> Option<Vec<OrderLine>> {
    let Value::Array(raw) = value else {
        fields.push("items", "must be a list of {productId, quantity}");
        return None;
    };
    if raw.is_empty() || raw.len() > MAX_ORDER_LINES {
        fields.push("items", format!("must have 1 to {MAX_ORDER_LINES} lines"));
        return None;
    }
    let mut lines = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    let mut valid = true;
    for (index, item) in raw.iter().enumerate() {
        let Value::Object(item) = item else {
            fields.push(&format!("items[{index}]"), "must be an object {productId, quantity}");
            valid = false;
            continue;
        };
        let product =
            fields.required(&format!("items[{index}].productId"), item.get("productId"), uuid);
        let quantity =
            fields.required(&format!("items[{index}].quantity"), item.get("quantity"), quantity);
        match (product, quantity) {
            (Some(product_id), Some(quantity)) => {
                if !seen.insert(product_id) {
                    fields.push(
                        &format!("items[{index}].productId"),
                        "names a product already in the order; give each product once",
                    );
                    valid = false;
                }
                lines.push(OrderLine { product_id, quantity });
            }
            _ => valid = false,
        }
    }
    valid.then_some(lines)
}

/// `shippingAddress`: `{street, city, zipCode, state?, country?}`; `null` means none.
pub fn address(fields: &mut Fields, value: &Value) -> Option<Option<Address>> {
    let object = match value {
        Value::Null => return Some(None),
        Value::Object(object) => object,
        _ => {
            fields.push(
                "shippingAddress",
                "must be an object {street, city, zipCode, state?, country?}",
            );
            return None;
        }
    };
    let before = fields.len();
    let part = |name: &str| format!("shippingAddress.{name}");
    let street = fields.required(&part("street"), object.get("street"), |v| text(v, 200));
    let city = fields.required(&part("city"), object.get("city"), |v| text(v, 100));
    let zip_code = fields.required(&part("zipCode"), object.get("zipCode"), |v| text(v, 20));
    let state = fields.optional(&part("state"), optional(object.get("state")), |v| text(v, 100));
    let country =
        fields.optional(&part("country"), optional(object.get("country")), |v| text(v, 100));
    if fields.len() != before {
        return None;
    }
    Some(Some(Address { street: street?, city: city?, zip_code: zip_code?, state, country }))
}

fn optional(value: Option<&Value>) -> Option<&Value> {
    value.filter(|value| !value.is_null())
}

/// `paymentMethod`: 1..=50 characters; `null` means none.
pub fn payment_method(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        value => text(value, MAX_PAYMENT_METHOD).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_items(value: Value) -> Result<Vec<OrderLine>, Vec<String>> {
        let mut fields = Fields::default();
        let lines = items(&mut fields, &value);
        match (lines, fields.finish()) {
            (Some(lines), Ok(())) => Ok(lines),
            (_, Err(mercato_platform::ApiError::Validation(errors))) => {
                Err(errors.into_iter().map(|error| error.field).collect())
            }
            _ => Err(vec!["?".into()]),
        }
    }

    #[test]
    fn items_take_one_to_a_hundred_distinct_lines() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_items(json!([{"productId": id, "quantity": 3}])),
            Ok(vec![OrderLine { product_id: id, quantity: 3 }])
        );
        assert_eq!(parse_items(json!([])), Err(vec!["items".into()]));
        assert_eq!(parse_items(json!({"productId": id})), Err(vec!["items".into()]));
        let many: Vec<Value> =
            (0..101).map(|_| json!({"productId": Uuid::now_v7(), "quantity": 1})).collect();
        assert_eq!(parse_items(Value::Array(many)), Err(vec!["items".into()]));
        assert_eq!(
            parse_items(
                json!([{"productId": id, "quantity": 1}, {"productId": id, "quantity": 2}])
            ),
            Err(vec!["items[1].productId".into()])
        );
    }

    #[test]
    fn every_bad_line_is_named() {
        let errors = parse_items(json!([
            {"productId": "nope", "quantity": 1},
            {"productId": Uuid::now_v7(), "quantity": 0},
            {"productId": Uuid::now_v7(), "quantity": 10_001},
            {"productId": Uuid::now_v7(), "quantity": 1.5},
            {"productId": Uuid::now_v7(), "quantity": "2"},
            {"quantity": 1},
            7,
        ]))
        .expect_err("all bad");
        assert_eq!(
            errors,
            [
                "items[0].productId",
                "items[1].quantity",
                "items[2].quantity",
                "items[3].quantity",
                "items[4].quantity",
                "items[5].productId",
                "items[6]"
            ]
        );
    }

    #[test]
    fn addresses_need_street_city_and_zip_code() {
        let mut fields = Fields::default();
        let parsed = address(
            &mut fields,
            &json!({"street": " 1 Main St ", "city": "Springfield", "zipCode": "12345", "state": null}),
        );
        let parsed = parsed.flatten().expect("a valid address");
        assert_eq!(parsed.street, "1 Main St");
        assert_eq!(parsed.state, None);
        assert!(fields.is_empty());
        assert_eq!(address(&mut fields, &Value::Null), Some(None));
        assert!(address(&mut fields, &json!({"street": "", "city": 5})).is_none());
        let Err(mercato_platform::ApiError::Validation(errors)) = fields.finish() else {
            panic!("errors expected");
        };
        let named: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(
            named,
            ["shippingAddress.street", "shippingAddress.city", "shippingAddress.zipCode"]
        );
    }

    #[test]
    fn payment_methods_are_short_texts_or_null() {
        assert_eq!(payment_method(&json!("card")), Ok(Some("card".into())));
        assert_eq!(payment_method(&Value::Null), Ok(None));
        assert!(payment_method(&json!("x".repeat(51))).is_err());
        assert_eq!(payment_method(&json!("é".repeat(50))), Ok(Some("é".repeat(50))));
        assert!(payment_method(&json!(12)).is_err());
    }
}
