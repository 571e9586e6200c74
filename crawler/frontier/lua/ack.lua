-- ack: finish leased requests and store the worker's checkpoint, atomically.
-- KEYS: ready req leased owner my-leases stats checkpoint done slots slot. ARGV: worker, checkpoint JSON or '',
-- prefix, ids. Returns how many acked ids were no longer leased by this worker and had been taken by another.
local K = keys_of(ARGV[3])
local now = now_ms()
local me = ARGV[1]
local acked, lost = 0, 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local who = redis.call('HGET', K.owner, id)
  local rec = redis.call('HGET', K.req, id)
  local finish = false
  if who == me then
    redis.call('ZREM', K.leased, id)
    redis.call('HDEL', K.owner, id)
    redis.call('SREM', KEYS[5], id)
    free_slot(K, id, now)
    finish = rec ~= false
  elseif who then
    lost = lost + 1            -- re-leased by another worker after our lease expired: it finishes it
  elseif rec then
    -- our lease expired and the id went back to its queue: take it out, the work is done
    local host = string.match(rec, '^%S+ (%S+) ')
    local qk = K.prefix .. 'q:' .. host
    if redis.call('ZREM', qk, id) == 1 then
      redis.call('HINCRBY', K.stats, 'queued', -1)
      if redis.call('ZCARD', qk) == 0 then redis.call('ZREM', K.ready, host) end
    end
    finish = true
  else
    lost = lost + 1            -- already acked by the worker that took it over
  end
  if finish then
    local host = string.match(rec, '^%S+ (%S+) ')
    redis.call('HDEL', K.req, id)
    redis.call('HINCRBY', K.done, host, 1)
    acked = acked + 1
  end
end
if acked > 0 then redis.call('HINCRBY', K.stats, 'acked', acked) end
if lost > 0 then redis.call('HINCRBY', K.stats, 'lost_leases', lost) end
if ARGV[2] ~= '' then redis.call('HSET', K.checkpoint, me, ARGV[2]) end
return lost
