-- ack: finish leased requests and (on one slot) store the worker's checkpoint, atomically.
-- KEYS: ready req leased owner my-leases stats checkpoint done slots slot. ARGV: worker, checkpoint JSON or ''
-- ('' on a journaled crawl: the checkpoint went with the journal), prefix, mode (see keys_of), the ids
-- joined by commas (one argument: the client's cost is per argument).
-- Returns how many acked ids were no longer leased by this worker and had been taken by another.
local K = keys_of(ARGV[3], ARGV[4])
local now = now_ms()
local me = ARGV[1]
local acked, lost = 0, 0
for id in string.gmatch(ARGV[5], '%d+') do
  if finish(K, id, me, now) == 1 then acked = acked + 1 else lost = lost + 1 end
end
if acked > 0 then redis.call('HINCRBY', K.stats, 'acked', acked) end
if lost > 0 then redis.call('HINCRBY', K.stats, 'lost_leases', lost) end
if ARGV[2] ~= '' then redis.call('HSET', K.checkpoint, me, ARGV[2]) end
return lost
