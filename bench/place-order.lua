-- wrk script: POST /api/orders with three lines, as the customer whose token is in $TOKEN, for the
-- products in $PRODUCTS (comma-separated ids). $PREFER (e.g. "wait=30") holds each answer until the
-- order is settled, which turns wrk's request rate into settled orders per second.
local token = os.getenv("TOKEN")
local products = {}
for id in string.gmatch(os.getenv("PRODUCTS"), "[^,]+") do products[#products + 1] = id end
local prefer = os.getenv("PREFER")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
if prefer and prefer ~= "" then wrk.headers["Prefer"] = prefer end
wrk.body = string.format(
  '{"items":[{"productId":"%s","quantity":1},{"productId":"%s","quantity":2},{"productId":"%s","quantity":1}],' ..
  '"paymentMethod":"card","shippingAddress":{"street":"1 Bench Road","city":"Loadtown","zipCode":"12345"}}',
  products[1], products[2], products[3])
-- wrk prints "Non-2xx or 3xx responses" when any answer is not a 201.
