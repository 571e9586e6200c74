-- pull: lease up to `limit` queued requests of the partitions this worker owns (host-partitioned workers: the
-- worker enforces politeness itself, so nothing here looks at rates, slots or pauses). A partition is pulled by
-- one worker at a time, the holder of `plock:<p>` (renewed by each pull); one held by another worker (which
-- has not handed it over yet) is skipped.
-- KEYS: req leased owner my-leases stats (of one shard).
-- ARGV: worker, lease ms, limit, at most this many per host, lock ms, prefix, mode, count of owned partitions,
--   the owned partitions, then the partitions to hand over (their lock is deleted if it is ours).
-- Returns {now, leases in limbo, 2 * pulled, id, record, ..., then partition, state for each owned partition
-- that had work: 1 it still has, 0 it is empty now, -1 another worker holds it}.
local K = keys_of(ARGV[6], ARGV[7])
local now = now_ms()
reclaim(K, now)
local me = ARGV[1]
local exp = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local per_host = tonumber(ARGV[4])
local lock_ms = tonumber(ARGV[5])
local n = tonumber(ARGV[8])
local owned = {}
for i = 9, 8 + n do owned[ARGV[i]] = true end
for i = 9 + n, #ARGV do
  local lk = K.prefix .. 'plock:' .. ARGV[i]
  if redis.call('GET', lk) == me then redis.call('DEL', lk) end
end
local out, taken = {}, 0
local state = {}
for _, p in ipairs(redis.call('ZRANGE', K.pwork, 0, -1)) do
  if owned[p] then
    local lk = K.prefix .. 'plock:' .. p
    local holder = redis.call('GET', lk)
    if holder and holder ~= me then
      state[#state + 1] = p
      state[#state + 1] = -1
    elseif taken < limit then
      redis.call('SET', lk, me, 'PX', lock_ms)
      local pk = K.prefix .. 'pready:' .. p
      -- Hosts by when they were last served (new ones first): every host of the partition gets its turn.
      for _, host in ipairs(redis.call('ZRANGE', pk, 0, limit - taken - 1)) do
        local qk = K.prefix .. 'q:' .. host
        local popped = redis.call('ZPOPMIN', qk, math.min(per_host, limit - taken))
        for j = 1, #popped / 2 do
          local id = popped[2 * j - 1]
          redis.call('ZADD', K.leased, exp, id)
          redis.call('HSET', K.owner, id, me)
          redis.call('SADD', KEYS[4], id)
          out[#out + 1] = id
          out[#out + 1] = redis.call('HGET', K.req, id)
        end
        taken = taken + #popped / 2
        if redis.call('ZCARD', qk) == 0 then
          redis.call('ZREM', pk, host)
        else
          redis.call('ZADD', pk, 'XX', now, host)
        end
        if taken >= limit then break end
      end
      state[#state + 1] = p
      if redis.call('ZCARD', pk) == 0 then
        redis.call('ZREM', K.pwork, p)
        state[#state + 1] = 0
      else
        state[#state + 1] = 1
      end
    else
      state[#state + 1] = p
      state[#state + 1] = 1
    end
  end
end
if taken > 0 then redis.call('HINCRBY', K.stats, 'queued', -taken) end
local limbo = 0
if K.journaled then limbo = redis.call('SCARD', K.limbo) end
local reply = {tostring(now), limbo, #out}
for _, v in ipairs(out) do reply[#reply + 1] = v end
for _, v in ipairs(state) do reply[#reply + 1] = v end
return reply
