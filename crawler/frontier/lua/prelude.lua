-- Shared by the scripts that need it (pop, ack, renew, release): prepended to them when they are loaded.
-- The shard's key names from its prefix, the current Redis time in ms, giving back a request's host slot,
-- putting one leased id back on its host's queue, finishing one, and reclaiming expired leases.
-- Every key a script touches is under one prefix, `crawler:{TAG}:`: one hash slot, so one cluster node.
local RECLAIM_BATCH = 200  -- expired leases put back per call: one call must not hold Redis for long
local BUCKET_MS = 100      -- a host's GCRA bucket holds 0.1 s of requests (as the local limiter's does)
local WAITING_MS = 500     -- a worker held back by a host's cap is served next for this long

-- `mode` holds 'j' when the crawl's acks are journaled (its shards are not in the slot of the workers'
-- checkpoints, as on a Redis Cluster): an expired lease may belong to a page its worker has already committed,
-- so it goes to `limbo` until a process reads that worker's journal, instead of straight back to its queue;
-- and 'p' when its workers are host-partitioned: a host with queued work is listed in its partition's
-- `pready:<p>` (and the partition in `pwork`), not in the shard's `ready`.
local function keys_of(prefix, mode)
  return {
    prefix = prefix, req = prefix .. 'req', ready = prefix .. 'ready', tat = prefix .. 'tat',
    leased = prefix .. 'leased', owner = prefix .. 'owner', stats = prefix .. 'stats', done = prefix .. 'done',
    checkpoint = prefix .. 'checkpoint', slots = prefix .. 'slots', slot = prefix .. 'slot',
    pause = prefix .. 'pause', rate = prefix .. 'rate', waiting = prefix .. 'waiting', limbo = prefix .. 'limbo',
    hostp = prefix .. 'hostp', pwork = prefix .. 'pwork',
    journaled = string.find(mode, 'j', 1, true) ~= nil, partitioned = string.find(mode, 'p', 1, true) ~= nil,
  }
end

-- `host` has queued work again: list it where pickers look.
local function mark_ready(K, host)
  if K.partitioned then
    local p = redis.call('HGET', K.hostp, host)
    if redis.call('ZADD', K.prefix .. 'pready:' .. p, 'NX', 0, host) == 1 then
      redis.call('ZADD', K.pwork, 'NX', 0, p)
    end
  else
    redis.call('ZADD', K.ready, 'NX', 0, host)
  end
end

-- `host`'s queue is empty: unlist it.
local function unmark_ready(K, host)
  if K.partitioned then
    local p = redis.call('HGET', K.hostp, host)
    local pk = K.prefix .. 'pready:' .. p
    redis.call('ZREM', pk, host)
    if redis.call('ZCARD', pk) == 0 then redis.call('ZREM', K.pwork, p) end
  else
    redis.call('ZREM', K.ready, host)
  end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function leases_of(K, worker)
  return K.prefix .. 'worker:' .. worker .. ':leases'
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
  if K.journaled then redis.call('SREM', K.limbo, id) end
  free_slot(K, id, now)
  if who then redis.call('SREM', leases_of(K, who), id) end
  local rec = redis.call('HGET', K.req, id)
  if rec then
    local score, host = string.match(rec, '^(%S+) (%S+) ')
    redis.call('ZADD', K.prefix .. 'q:' .. host, score, id)
    mark_ready(K, host)
    redis.call('HINCRBY', K.stats, 'queued', 1)
    redis.call('HINCRBY', K.stats, 'requeued', 1)
  end
end

-- The page of `id` is done (and, with a checkpoint, in worker `me`'s output): forget the request. Returns 1
-- when it was finished here, 0 when another worker had taken it over after `me`'s lease expired (that worker
-- finishes it), -1 when it was already finished (by the worker that took it over, or an earlier replay).
local function finish(K, id, me, now)
  local who = redis.call('HGET', K.owner, id)
  local rec = redis.call('HGET', K.req, id)
  if who == me then
    redis.call('ZREM', K.leased, id)
    redis.call('HDEL', K.owner, id)
    redis.call('SREM', leases_of(K, me), id)
    if K.journaled then redis.call('SREM', K.limbo, id) end
    free_slot(K, id, now)
    if not rec then return -1 end
  elseif who then
    return 0
  elseif rec then
    -- our lease expired and the id went back to its queue: take it out, the work is done
    local host = string.match(rec, '^%S+ (%S+) ')
    local qk = K.prefix .. 'q:' .. host
    if redis.call('ZREM', qk, id) == 1 then
      redis.call('HINCRBY', K.stats, 'queued', -1)
      if redis.call('ZCARD', qk) == 0 then unmark_ready(K, host) end
    end
  else
    return -1
  end
  local host = string.match(rec, '^%S+ (%S+) ')
  redis.call('HDEL', K.req, id)
  redis.call('HINCRBY', K.done, host, 1)
  return 1
end

local function reclaim(K, now)
  local expired = redis.call('ZRANGEBYSCORE', K.leased, '-inf', now, 'LIMIT', 0, RECLAIM_BATCH)
  for _, id in ipairs(expired) do
    if K.journaled then
      -- Its worker may have committed it (journal written, ack not yet applied): held until someone reads
      -- the journal (a live process, after the worker's liveness key is gone; or the worker's restart).
      redis.call('ZREM', K.leased, id)
      redis.call('SADD', K.limbo, id)
    else
      requeue(K, id, now)
    end
  end
end
