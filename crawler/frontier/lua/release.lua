-- release: put a worker's leases back on their queues: at start (a previous run under this identity died),
-- at close (requests popped but not finished), for `crawler status --repair` (a dead worker's), and for leases
-- in limbo whose (dead) worker's journal has been read. Ids in the worker's journal (committed: their pages are
-- in its output below its checkpoint) are finished instead.
-- KEYS: ready leased owner req stats my-leases slots slot. ARGV: prefix, worker, mode, count of committed
-- ids, the committed ids, then the ids to release (none: every lease of the worker).
-- Returns the number of ids put back on their queues.
local K = keys_of(ARGV[1], ARGV[3])
local now = now_ms()
local me = ARGV[2]
local committed = {}
local n = tonumber(ARGV[4])
local acked = 0
for i = 5, 4 + n do
  committed[ARGV[i]] = true
  if finish(K, ARGV[i], me, now) == 1 then acked = acked + 1 end
end
if acked > 0 then redis.call('HINCRBY', K.stats, 'acked', acked) end
local ids = {}
if #ARGV > 4 + n then
  for i = 5 + n, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('SMEMBERS', KEYS[6])
end
local back = 0
for _, id in ipairs(ids) do
  if not committed[id] and redis.call('HGET', K.owner, id) == me then
    requeue(K, id, now)
    back = back + 1
  end
end
return back
