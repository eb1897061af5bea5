-- wrk: POST /api/users, a new email per request (thread id + counter keep them unique).
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

local counter = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Bench","email":"bench-%s-%d-%d@example.com","password":"benchmark-password"}',
    os.time(), tid, counter)
  return wrk.format("POST", "/api/users", {["Content-Type"] = "application/json"}, body)
end
