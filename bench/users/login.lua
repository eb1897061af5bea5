-- wrk: POST /api/auth/login with the benchmark account (set by users.sh).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"benchmark-password"}'
