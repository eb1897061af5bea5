-- wrk script: POST /api/orders with three lines, as the customer whose token is in $TOKEN, for the
-- products in $PRODUCTS (comma-separated ids). $PREFER (e.g. "wait=30") holds each answer until the
-- order is settled, which turns wrk's request rate into settled orders per second.
--
-- Like bench/order-transaction.sql (pgbench's baseline), each order takes one product at random
-- from each third of the list, so both spread their stock updates over the same number of rows.
-- With three products, every order names the same three.
local token = os.getenv("TOKEN")
local products = {}
for id in string.gmatch(os.getenv("PRODUCTS"), "[^,]+") do products[#products + 1] = id end
local prefer = os.getenv("PREFER")
local third = math.max(1, math.floor(#products / 3))

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
if prefer and prefer ~= "" then wrk.headers["Prefer"] = prefer end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(os.time() * 100 + (seed or 0))
end

local function pick(part)
  return products[(part * third) + math.random(1, third)]
end

function request()
  local body = string.format(
    '{"items":[{"productId":"%s","quantity":1},{"productId":"%s","quantity":2},{"productId":"%s","quantity":1}],' ..
    '"paymentMethod":"card","shippingAddress":{"street":"1 Bench Road","city":"Loadtown","zipCode":"12345"}}',
    pick(0), pick(1), pick(2))
  return wrk.format(nil, nil, nil, body)
end
-- wrk prints "Non-2xx or 3xx responses" when any answer is not a 201.
