-- wrk: POST /api/auth/login, rotating over the 100 benchmark accounts created by users.sh.
-- (Concurrent logins of ONE account are limited on purpose: an attempt in flight holds one of the
-- account's failed-login slots until it succeeds; see docs/adr/0004-login-rate-limits.md.)
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

local counter = 0
function request()
  counter = counter + 1
  local account = (tid * 7919 + counter) % 100
  local body = string.format('{"email":"bench-%d@example.com","password":"benchmark-password"}', account)
  return wrk.format("POST", "/api/auth/login", {["Content-Type"] = "application/json"}, body)
end
