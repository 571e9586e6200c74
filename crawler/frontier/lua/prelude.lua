-- Shared by the scripts that need it (pop, ack, renew, release): prepended to them when they are loaded.
-- The crawl's key names from its prefix, the current Redis time in ms, giving back a request's host slot,
-- putting one leased id back on its host's queue, and reclaiming expired leases.
local RECLAIM_BATCH = 200  -- expired leases put back per call: one call must not hold Redis for long
local BUCKET_MS = 100      -- a host's GCRA bucket holds 0.1 s of requests (as the local limiter's does)
local WAITING_MS = 500     -- a worker held back by a host's cap is served next for this long

local function keys_of(prefix)
  return {
    prefix = prefix, req = prefix .. 'req', ready = prefix .. 'ready', tat = prefix .. 'tat',
    leased = prefix .. 'leased', owner = prefix .. 'owner', stats = prefix .. 'stats', done = prefix .. 'done',
    checkpoint = prefix .. 'checkpoint', slots = prefix .. 'slots', slot = prefix .. 'slot',
    pause = prefix .. 'pause', rate = prefix .. 'rate', waiting = prefix .. 'waiting',
  }
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A leased id holds one of its host's in-flight slots from its pop until the engine is done with it (or it is
-- acked, or its lease is given back): `slot` id -> host, `slots` host -> count.
local function free_slot(K, id, now)
  local host = redis.call('HGET', K.slot, id)
  if host then
    redis.call('HDEL', K.slot, id)
    if redis.call('HINCRBY', K.slots, host, -1) <= 0 then redis.call('HDEL', K.slots, host) end
    redis.call('ZADD', K.ready, 'XX', 'LT', now, host)  -- a host held back by its cap may go again
  end
end

local function requeue(K, id, now)
  local who = redis.call('HGET', K.owner, id)
  redis.call('ZREM', K.leased, id)
  redis.call('HDEL', K.owner, id)
  free_slot(K, id, now)
  if who then redis.call('SREM', K.prefix .. 'worker:' .. who .. ':leases', id) end
  local rec = redis.call('HGET', K.req, id)
  if rec then
    local score, host = string.match(rec, '^(%S+) (%S+) ')
    redis.call('ZADD', K.prefix .. 'q:' .. host, score, id)
    redis.call('ZADD', K.ready, 'NX', 0, host)
    redis.call('HINCRBY', K.stats, 'queued', 1)
    redis.call('HINCRBY', K.stats, 'requeued', 1)
  end
end

local function reclaim(K, now)
  local expired = redis.call('ZRANGEBYSCORE', K.leased, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
  for _, id in ipairs(expired) do requeue(K, id, now) end
end
