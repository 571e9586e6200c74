-- Shared by the scripts that need it (pop, ready, renew, release): prepended to them when they are loaded.
-- The current Redis time in ms, putting one leased id back on its host's queue, and reclaiming expired leases.
local RECLAIM_BATCH = 200  -- expired leases put back per call: one call must not hold Redis for long
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function requeue(prefix, id, ready, leased, owner, req, stats)
  local who = redis.call('HGET', owner, id)
  redis.call('ZREM', leased, id)
  redis.call('HDEL', owner, id)
  if who then redis.call('SREM', prefix .. 'worker:' .. who .. ':leases', id) end
  local rec = redis.call('HGET', req, id)
  if rec then
    local score, host = string.match(rec, '^(%S+) (%S+) ')
    redis.call('ZADD', prefix .. 'q:' .. host, score, id)
    redis.call('ZADD', ready, 'NX', 0, host)
    redis.call('HINCRBY', stats, 'queued', 1)
    redis.call('HINCRBY', stats, 'requeued', 1)
  end
end
local function reclaim(prefix, now, ready, leased, owner, req, stats)
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
  for _, id in ipairs(expired) do requeue(prefix, id, ready, leased, owner, req, stats) end
end
local function list_ready(ready, now, horizon, max_hosts, out)
  local hosts = redis.call('ZRANGEBYSCORE', ready, '-inf', now + horizon, 'WITHSCORES', 'LIMIT', 0, max_hosts)
  for _, v in ipairs(hosts) do out[#out + 1] = v end
  return out
end
