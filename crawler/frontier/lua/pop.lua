-- pop: lease up to `limit` requests from the given hosts, within each host's allowance and shared rate.
-- KEYS: ready req leased owner my-leases tat stats, then one queue key per host.
-- ARGV: worker, lease ms, limit, prefix, max hosts, horizon ms, then four per host: host, allowance,
-- interval ms (0: unlimited), tau ms. Per host, a GCRA token bucket shared by every process: k requests may
-- start now when tat + (k - 1) * interval - tau <= now; each start moves tat one interval on.
-- Returns {now, 2 * popped, id, record, ..., then the ready hosts as ready.lua lists them}.
local now = now_ms()
reclaim(ARGV[4], now, KEYS[1], KEYS[3], KEYS[4], KEYS[2], KEYS[7])
local exp = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local out, taken = {}, 0
local i = 0
for b = 6, #ARGV - 1, 4 do
  i = i + 1
  if taken >= limit then break end
  local host = ARGV[b + 1]
  local allow = math.min(tonumber(ARGV[b + 2]), limit - taken)
  local interval = tonumber(ARGV[b + 3])
  local tau = tonumber(ARGV[b + 4])
  local qk = KEYS[7 + i]
  local tat = now
  if interval > 0 then
    tat = math.max(tonumber(redis.call('HGET', KEYS[6], host) or '0'), now)
    local k = math.floor((now + tau - tat) / interval) + 1
    if k < allow then allow = k end
  end
  local n = 0
  if allow > 0 then
    local popped = redis.call('ZPOPMIN', qk, allow)
    n = #popped / 2
    for j = 1, n do
      local id = popped[2 * j - 1]
      redis.call('ZADD', KEYS[3], exp, id)
      redis.call('HSET', KEYS[4], id, ARGV[1])
      redis.call('SADD', KEYS[5], id)
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', KEYS[2], id)
    end
    taken = taken + n
  end
  if n > 0 then
    redis.call('HINCRBY', KEYS[7], 'queued', -n)
    if interval > 0 then
      tat = tat + n * interval
      redis.call('HSET', KEYS[6], host, tat)
    end
  end
  if redis.call('ZCARD', qk) == 0 then
    redis.call('ZREM', KEYS[1], host)
  elseif interval > 0 then
    redis.call('ZADD', KEYS[1], 'XX', tat - tau, host)
  elseif n > 0 then
    redis.call('ZADD', KEYS[1], 'XX', now, host)
  end
end
local reply = {tostring(now), #out}
for _, v in ipairs(out) do reply[#reply + 1] = v end
return list_ready(KEYS[1], now, tonumber(ARGV[6]), tonumber(ARGV[5]), reply)
