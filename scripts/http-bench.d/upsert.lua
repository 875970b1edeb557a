-- wrk script: POST one contact upsert per request, a new person each time (a random phone).
-- PREFER_ASYNC=1 adds `Prefer: respond-async`; THINK_MS=N makes each connection wait N ms
-- between a response and its next request (a paced client, not flat out). Prints one RESULT
-- line at the end.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "demo-key-acme-2026"
if os.getenv("PREFER_ASYNC") == "1" then wrk.headers["Prefer"] = "respond-async" end
local think = tonumber(os.getenv("THINK_MS") or "")
if think then delay = function() return think end end

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 100 + id)
end

request = function()
  local phone = string.format("+5699%07d", math.random(0, 9999999))
  local body = '{"channel":"whatsapp","channel_phone_number":"+56 2 2345 6789","contact_phone_number":"'
    .. phone .. '","contact_name":"Load Test","meta_data":{"source":"wrk"}}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests, summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
