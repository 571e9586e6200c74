-- release: put a worker's leases back on their queues: at start (a previous run under this identity died)
-- and at close (requests popped but not finished).
-- KEYS: ready leased owner req stats my-leases. ARGV: prefix, worker, ids (none: every lease of the worker).
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('SMEMBERS', KEYS[6])
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', KEYS[3], id) == ARGV[2] then
    requeue(ARGV[1], id, KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    n = n + 1
  end
end
return n
