-- wrk script: POST one fixed Open Inference Protocol v2 body (JSON, or JSON header plus
-- binary tensor data) and print one JSON line of results from done().
-- Env: KILN_BENCH_BODY (file with the body), KILN_BENCH_HEADER_LENGTH (binary only),
--      KILN_BENCH_ROWS (rows per request).
local file = assert(io.open(assert(os.getenv("KILN_BENCH_BODY")), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
local header_length = os.getenv("KILN_BENCH_HEADER_LENGTH")
if header_length and header_length ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header_length
  wrk.headers["Content-Type"] = "application/octet-stream"
else
  wrk.headers["Content-Type"] = "application/json"
end
local rows = tonumber(os.getenv("KILN_BENCH_ROWS") or "1")

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  local ok = summary.requests - errors.status
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "req_s": %.1f, "rows_s": %.1f, "p50_ms": %.3f, ' ..
    '"p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, seconds, ok / seconds, ok * rows / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
