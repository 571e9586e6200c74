-- release: put a worker's leases back on their queues: at start (a previous run under this identity died),
-- at close (requests popped but not finished), and for `crawler status --repair` (a dead worker's).
-- KEYS: ready leased owner req stats my-leases slots slot. ARGV: prefix, worker, ids (none: all the worker's).
local K = keys_of(ARGV[1])
local now = now_ms()
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('SMEMBERS', KEYS[6])
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', K.owner, id) == ARGV[2] then
    requeue(K, id, now)
    n = n + 1
  end
end
return n
