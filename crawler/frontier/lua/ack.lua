-- ack: finish leased requests and store the worker's checkpoint, atomically.
-- KEYS: ready req leased owner my-leases stats checkpoint done. ARGV: worker, checkpoint JSON or '', prefix, ids.
-- Returns how many acked ids were no longer leased by this worker and had been taken by another one.
local me, prefix = ARGV[1], ARGV[3]
local acked, lost = 0, 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local who = redis.call('HGET', KEYS[4], id)
  local rec = redis.call('HGET', KEYS[2], id)
  local finish = false
  if who == me then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('SREM', KEYS[5], id)
    finish = rec ~= false
  elseif who then
    lost = lost + 1            -- re-leased by another worker after our lease expired: it finishes it
  elseif rec then
    -- our lease expired and the id went back to its queue: take it out, the work is done
    local host = string.match(rec, '^%S+ (%S+) ')
    local qk = prefix .. 'q:' .. host
    if redis.call('ZREM', qk, id) == 1 then
      redis.call('HINCRBY', KEYS[6], 'queued', -1)
      if redis.call('ZCARD', qk) == 0 then redis.call('ZREM', KEYS[1], host) end
    end
    finish = true
  else
    lost = lost + 1            -- already acked by the worker that took it over
  end
  if finish then
    local host = string.match(rec, '^%S+ (%S+) ')
    redis.call('HDEL', KEYS[2], id)
    redis.call('HINCRBY', KEYS[8], host, 1)
    acked = acked + 1
  end
end
if acked > 0 then redis.call('HINCRBY', KEYS[6], 'acked', acked) end
if lost > 0 then redis.call('HINCRBY', KEYS[6], 'lost_leases', lost) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[7], me, ARGV[2]) end
return lost
