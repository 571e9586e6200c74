-- ready: put expired leases back, then list the hosts with queued work that may start within the horizon,
-- longest-waiting first, as {now, 0, host, start, host, start, ...} (the same shape as pop's reply).
-- KEYS: ready leased owner req stats. ARGV: prefix, max hosts, horizon ms.
local now = now_ms()
reclaim(ARGV[1], now, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return list_ready(KEYS[1], now, tonumber(ARGV[3]), tonumber(ARGV[2]), {tostring(now), 0})
