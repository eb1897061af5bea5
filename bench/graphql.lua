-- wrk script: POST /graphql with the document in $QUERY (and the bearer token in $TOKEN, if
-- set). Every answer should be a 200 without `errors`; wrk counts non-2xx answers, and the script
-- counts answers carrying `errors` and prints them at the end.
local token = os.getenv("TOKEN")
local query = os.getenv("QUERY")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
wrk.body = '{"query":' .. string.format("%q", query):gsub("\\\n", "\\n") .. '}'

local errors = 0
function response(status, headers, body)
  if string.find(body, '"errors"', 1, true) then errors = errors + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("GraphQL answers with errors: %d\n", errors))
end
